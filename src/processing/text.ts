/**
 * Sentences to a text model's inputs through Hugging Face's own tokenizers implementation
 * (@huggingface/tokenizers: WordPiece, BPE and Unigram with their normalizers, pre-tokenizers and
 * post-processors, read from tokenizer.json). What it leaves to the caller, transformers' truncation
 * and padding, is done here: the sequence is cut before the post-processor adds its special tokens,
 * so [CLS] ... [SEP] survive, and a batch is padded to its longest sentence.
 */
import { Tokenizer as UntypedTokenizer } from '@huggingface/tokenizers';
import { allocate, type Datatype } from '../model/datatypes.js';
import type { Tensors } from '../model/session.js';
import { BadRequest } from '../protocol/request.js';

/** The model inputs a tokenizer fills, by role; undefined where the model has none. */
export interface TextInputs {
  ids: { name: string; datatype: Datatype };
  mask?: { name: string; datatype: Datatype };
  typeIds?: { name: string; datatype: Datatype };
  positions?: { name: string; datatype: Datatype };
}

export interface TextSettings {
  inputs: TextInputs;
  /** Tokens a sequence may have, special tokens included. */
  maxLength: number;
  /** Past maxLength: cut the sentence, or refuse it (400 / a rejected row). */
  truncation: 'truncate' | 'refuse';
  /** Checked before tokenizing: bytes of UTF-8 one text may have. */
  maxBytes: number;
}

/** What a sentence looked like to the model: the monitor's input statistics. */
export interface TextFacts {
  tokens: number;
  unknown: number;
  truncated: boolean;
}

/** What @huggingface/tokenizers' encode returns. */
interface Encoding {
  ids: number[];
  tokens: string[];
  attention_mask: number[];
  token_type_ids?: number[];
}

/**
 * The part of @huggingface/tokenizers' Tokenizer used here, as its own .d.ts declares it. Those files
 * import each other without extensions, which NodeNext resolution cannot follow, so the class would
 * arrive untyped.
 */
interface Tokenizer {
  encode(text: string, options?: { return_token_type_ids?: boolean }): Encoding;
  tokenize(text: string, options?: { add_special_tokens?: boolean }): string[];
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
  post_processor: unknown;
}
const Tokenizer = UntypedTokenizer as unknown as new (tokenizerJson: object, tokenizerConfig: object) => Tokenizer;

export class TextTokenizer {
  private readonly tokenizer: Tokenizer;
  private readonly padId: number;
  private readonly unkId: number | undefined;
  /** The unknown token's id, when the vocabulary has one. */
  get unknownId(): number | undefined {
    return this.unkId;
  }
  /** How many special tokens the post-processor adds to one sequence. */
  private readonly specials: number;

  constructor(
    tokenizerJson: object,
    tokenizerConfig: Record<string, unknown>,
    readonly settings: TextSettings,
  ) {
    this.tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
    const padToken = tokenName(tokenizerConfig.pad_token) ?? padFromJson(tokenizerJson);
    this.padId = (padToken !== undefined ? this.tokenizer.token_to_id(padToken) : undefined) ?? 0;
    const unkToken = tokenName(tokenizerConfig.unk_token) ?? '[UNK]';
    this.unkId = this.tokenizer.token_to_id(unkToken);
    this.specials = this.tokenizer.encode('').ids.length;
  }

  /** The token a masked word becomes when a text is explained: mask, else unknown. */
  maskId(tokenizerConfig: Record<string, unknown>): number {
    const mask = tokenName(tokenizerConfig.mask_token);
    return (mask !== undefined ? this.tokenizer.token_to_id(mask) : undefined) ?? this.unkId ?? this.padId;
  }

  /** One sentence to ids (special tokens added), cut to maxLength as transformers' truncation=True does. */
  encodeOne(text: string, where: string): { ids: number[]; typeIds: number[]; tokens: string[]; facts: TextFacts } {
    if (text.length === 0 || text.trim().length === 0) throw new BadRequest(`${where}: the text is empty`);
    if (Buffer.byteLength(text, 'utf8') > this.settings.maxBytes) {
      throw new BadRequest(
        `${where}: ${Buffer.byteLength(text, 'utf8')} bytes of text, over the ${this.settings.maxBytes} a text may have (model.preprocess.text.maxBytes)`,
        413,
      );
    }
    let encoded = this.tokenizer.encode(text, { return_token_type_ids: true });
    let truncated = false;
    if (encoded.ids.length > this.settings.maxLength) {
      if (this.settings.truncation === 'refuse') {
        throw new BadRequest(
          `${where}: ${encoded.ids.length} tokens, over the model's ${this.settings.maxLength} (model.preprocess.text.truncation is "refuse")`,
        );
      }
      // Cut the words, then let the post-processor add its special tokens around what is left.
      const words = this.tokenizer.tokenize(text, { add_special_tokens: false });
      const kept = words.slice(0, Math.max(0, this.settings.maxLength - this.specials));
      const post = this.tokenizer.post_processor;
      type Processed = { tokens: string[]; token_type_ids?: number[] };
      const processed: Processed = post ? (post as unknown as (t: string[], p: null, s: boolean) => Processed)(kept, null, true) : { tokens: kept };
      encoded = {
        tokens: processed.tokens,
        ids: processed.tokens.map((t) => this.tokenizer.token_to_id(t) ?? this.unkId ?? 0),
        attention_mask: processed.tokens.map(() => 1),
        token_type_ids: processed.token_type_ids ?? processed.tokens.map(() => 0),
      };
      truncated = true;
    }
    let unknown = 0;
    if (this.unkId !== undefined) for (const id of encoded.ids) if (id === this.unkId) unknown++;
    return {
      ids: encoded.ids,
      typeIds: encoded.token_type_ids ?? encoded.ids.map(() => 0),
      tokens: encoded.tokens,
      facts: { tokens: encoded.ids.length, unknown, truncated },
    };
  }

  /** Sentences to the model's feeds, padded to the longest; the facts of each for the monitor. */
  encode(texts: string[], where: (index: number) => string): { feeds: Tensors; facts: TextFacts[] } {
    const encoded = texts.map((t, i) => this.encodeOne(t, where(i)));
    return {
      feeds: this.feeds(
        encoded.map((e) => e.ids),
        encoded.map((e) => e.typeIds),
      ),
      facts: encoded.map((e) => e.facts),
    };
  }

  /** Token id sequences (from encodeOne, or with words masked) to padded feeds. */
  feeds(ids: number[][], typeIds?: number[][], padTo = 0): Tensors {
    const rows = ids.length;
    const length = Math.max(padTo, ...ids.map((s) => s.length));
    const { inputs } = this.settings;
    const fill = (input: { name: string; datatype: Datatype }, value: (row: number, at: number) => number) => {
      const big = input.datatype === 'INT64' || input.datatype === 'UINT64';
      const data = allocate(input.datatype, rows * length) as unknown as { [i: number]: number | bigint };
      for (let r = 0; r < rows; r++) for (let t = 0; t < length; t++) data[r * length + t] = big ? BigInt(value(r, t)) : value(r, t);
      feeds[input.name] = { data: data as never, dims: [rows, length] };
    };
    const feeds: Tensors = {};
    fill(inputs.ids, (r, t) => (t < ids[r].length ? ids[r][t] : this.padId));
    if (inputs.mask) fill(inputs.mask, (r, t) => (t < ids[r].length ? 1 : 0));
    if (inputs.typeIds) fill(inputs.typeIds, (r, t) => (typeIds && t < ids[r].length ? typeIds[r][t] : 0));
    if (inputs.positions) fill(inputs.positions, (_r, t) => t);
    return feeds;
  }

  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  /** The ids the post-processor adds ([CLS], [SEP], <s>...) and the padding: never a word of the text. */
  specialIds(): number[] {
    return [...new Set([...this.tokenizer.encode('').ids, this.padId])];
  }
}

function tokenName(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') return (value as { content: string }).content;
  return undefined;
}

/** tokenizer.json's own padding token, when tokenizer_config.json names none. */
function padFromJson(json: object): string | undefined {
  const padding = (json as { padding?: { pad_token?: unknown } }).padding;
  return tokenName(padding?.pad_token);
}
