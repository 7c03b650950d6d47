/**
 * What a text model relies on, over a holdout: occlusion by token. Each token of a sampled sentence
 * (never the special tokens or the padding) is replaced in turn by the mask token (else the unknown
 * token), and the fall of the sentence's predicted column is its attribution. Ranked by vocabulary
 * token, the mean |fall| over its occurrences; and a few sentences with each token's own fall.
 */
import type { Config } from '../config/defaults.js';
import { environmentError, inputError } from '../errors.js';
import { chooseOutput } from '../evaluate/evaluate.js';
import type { HoldoutSource } from '../holdout/types.js';
import { seededRandom } from '../model/random.js';
import type { Predictor } from '../predict/predictor.js';
import type { TextInputs, TextTokenizer } from '../processing/text.js';
import type { ExplainSettings } from './global.js';
import { sampleRows, spreadExamples } from './sample.js';

export interface TokenImportance {
  token: string;
  /** Occurrences over the explained sentences. */
  count: number;
  meanAbsAttribution: number;
}

export interface TokenExplanation {
  method: 'token-occlusion';
  model: string;
  input: string;
  output: string;
  holdoutRows: number;
  explainedRows: number;
  /** The token each token was replaced by. */
  maskToken: string;
  /** Tokens ranked by mean |attribution|, largest first. */
  tokens: TokenImportance[];
  /** A few sentences, token by token, with each token's fall of the predicted column. */
  examples: { where: string; column: number; label?: string; tokens: { token: string; attribution: number }[] }[];
  seconds: number;
}

const EXAMPLES = 6;
/** Rows of one model call: a sentence and its occluded copies go in chunks of this many. */
const CHUNK_ROWS = 64;

/** Every sentence's ids (the padding dropped), kept as small arrays: a holdout of texts is small. */
async function readSentences(holdout: HoldoutSource, roles: TextInputs): Promise<{ where: string; ids: number[] }[]> {
  const sentences: { where: string; ids: number[] }[] = [];
  for await (const row of holdout.rows()) {
    const ids = row.inputs[roles.ids.name];
    const mask = roles.mask ? row.inputs[roles.mask.name] : undefined;
    const kept: number[] = [];
    for (let i = 0; i < ids.length; i++) if (!mask || Number(mask[i]) === 1) kept.push(Number(ids[i]));
    sentences.push({ where: row.where, ids: kept });
  }
  if (sentences.length === 0) throw inputError(`${holdout.file} has no rows`, 'use a holdout of texts');
  return sentences;
}

/** The model's output for each of `sentences`, asked CHUNK_ROWS at a time: one array of the output's columns per sentence. */
async function scoresOf(predictor: Predictor, tokenizer: TextTokenizer, output: string, sentences: number[][]): Promise<number[][]> {
  const scores: number[][] = [];
  for (let from = 0; from < sentences.length; from += CHUNK_ROWS) {
    const chunk = sentences.slice(from, from + CHUNK_ROWS);
    const answer = await predictor.predict(tokenizer.feeds(chunk));
    const tensor = answer[output];
    if (!tensor) throw environmentError(`the model's answer has no output '${output}'`);
    const width = tensor.data.length / chunk.length;
    for (let r = 0; r < chunk.length; r++) scores.push(Array.from({ length: width }, (_, k) => Number(tensor.data[r * width + k])));
  }
  return scores;
}

/**
 * One sentence occluded token by token: its predicted column, the positions of its tokens (never the
 * special ones), and the column's fall when each of them is masked.
 */
async function occludeSentence(options: {
  predictor: Predictor;
  tokenizer: TextTokenizer;
  output: string;
  maskId: number;
  specials: Set<number>;
  ids: number[];
}): Promise<{ column: number; positions: number[]; falls: number[] }> {
  const { ids, maskId } = options;
  const positions = ids.map((id, i) => (options.specials.has(id) ? -1 : i)).filter((i) => i >= 0);
  // The sentence as it is, then one copy per position with that token masked.
  const variants = [ids, ...positions.map((p) => ids.map((id, i) => (i === p ? maskId : id)))];
  const scores = await scoresOf(options.predictor, options.tokenizer, options.output, variants);
  const base = scores[0];
  const column = base.reduce((best, v, k) => (v > base[best] ? k : best), 0);
  const falls = positions.map((_, k) => base[column] - scores[k + 1][column]);
  return { column, positions, falls };
}

export async function explainTextsGlobally(options: {
  predictor: Predictor;
  tokenizer: TextTokenizer;
  maskId: number;
  holdout: HoldoutSource;
  test: Config['test'];
  settings: ExplainSettings;
  /** Class names in the output's order (id2label), for the examples' predicted column. */
  classNames?: string[];
  onProgress?: (line: string) => void;
}): Promise<TokenExplanation> {
  const started = performance.now();
  const { predictor, tokenizer, holdout, settings } = options;
  const roles = tokenizer.settings.inputs;
  const output = chooseOutput(predictor, options.test.output);
  const sentences = await readSentences(holdout, roles);
  const specials = new Set(tokenizer.specialIds());
  const explained = sampleRows(sentences.length, settings.rows, seededRandom(settings.seed));
  const drawn = spreadExamples(explained.length, EXAMPLES);
  const totals = new Map<string, { sum: number; count: number }>();
  const examples: TokenExplanation['examples'] = [];
  for (const [n, index] of explained.entries()) {
    const { ids, where } = sentences[index];
    const { column, positions, falls } = await occludeSentence({ predictor, tokenizer, output: output.name, maskId: options.maskId, specials, ids });
    positions.forEach((p, k) => {
      const token = tokenizer.idToToken(ids[p]) ?? String(ids[p]);
      const total = totals.get(token) ?? { sum: 0, count: 0 };
      total.sum += Math.abs(falls[k]);
      total.count++;
      totals.set(token, total);
    });
    if (drawn.has(n))
      examples.push({
        where,
        column,
        ...(options.classNames?.[column] ? { label: options.classNames[column] } : {}),
        tokens: positions.map((p, k) => ({ token: tokenizer.idToToken(ids[p]) ?? String(ids[p]), attribution: falls[k] })),
      });
    options.onProgress?.(`token occlusion: ${n + 1}/${explained.length} sentences`);
  }
  const tokens = [...totals.entries()]
    .map(([token, t]) => ({ token, count: t.count, meanAbsAttribution: t.sum / t.count }))
    .sort((a, b) => b.meanAbsAttribution - a.meanAbsAttribution || b.count - a.count);
  return {
    method: 'token-occlusion',
    model: predictor.modelName,
    input: roles.ids.name,
    output: output.name,
    holdoutRows: sentences.length,
    explainedRows: explained.length,
    maskToken: tokenizer.idToToken(options.maskId) ?? String(options.maskId),
    tokens,
    examples,
    seconds: Math.round((performance.now() - started) / 10) / 100,
  };
}
