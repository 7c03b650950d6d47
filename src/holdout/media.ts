/**
 * Holdouts of the data people have for image and text models: a folder of images in one subfolder
 * per class (torchvision's ImageFolder layout), or a CSV/JSONL whose `image` column holds paths
 * relative to the file, or whose `text` column holds the sentences. Each row is turned into the
 * model's tensors by the same preprocessing the server runs, a few rows at a time in flight
 * (libvips decodes on its own threads), so every command that reads a holdout works unchanged.
 */
import { createReadStream } from 'node:fs';
import { open, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { inputError, shownValue } from '../errors.js';
import { BadRequest } from '../protocol/request.js';
import type { Tensors } from '../model/session.js';
import { createPreprocessor, utf8Text, type InputFacts, type ProcessingPlan, type RawInput } from '../processing/plan.js';
import { csvRecords } from './records.js';
import type { HoldoutRow, HoldoutSource } from './types.js';

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif']);
export const IMAGE_COLUMNS = ['image', 'image_path', 'path', 'file', 'filename'];
export const TEXT_COLUMNS = ['text', 'sentence', 'content'];
/** Rows preprocessed ahead of the one being read: enough to keep libvips' threads busy. */
const IN_FLIGHT = 8;

export interface RawRow {
  where: string;
  load(): Promise<RawInput>;
  label: string | number;
}

/** Each row's tensors, computed IN_FLIGHT rows ahead, in the holdout's order. */
async function* processed(rows: AsyncIterable<RawRow>, plan: ProcessingPlan, shown: string, onFacts?: (facts: InputFacts) => void): AsyncGenerator<HoldoutRow> {
  const preprocessor = createPreprocessor(plan)!;
  const one = async (row: RawRow): Promise<HoldoutRow> => {
    try {
      const raw = await row.load();
      const where = `${shown} ${row.where}`;
      let feeds: Tensors;
      if (preprocessor.tokenizer) {
        // Every text row padded to the longest a text may be, so that rows stack into batches of one shape.
        const text = typeof raw === 'string' ? raw : utf8Text(raw, where);
        const one = preprocessor.tokenizer.encodeOne(text, where);
        feeds = preprocessor.tokenizer.feeds([one.ids], [one.typeIds], preprocessor.tokenizer.settings.maxLength);
        onFacts?.({ text: one.facts });
      } else {
        const out = await preprocessor.toFeeds([raw], () => where);
        feeds = out.feeds;
        onFacts?.(out.facts[0]);
      }
      const inputs: HoldoutRow['inputs'] = {};
      const shapes: HoldoutRow['shapes'] = {};
      for (const [name, tensor] of Object.entries(feeds)) {
        // Holdout rows hold numbers: 64-bit token ids become doubles (exact below 2^53), made 64-bit again when batched.
        const data = tensor.data;
        inputs[name] = data instanceof BigInt64Array || data instanceof BigUint64Array ? Float64Array.from(data, Number) : data;
        shapes[name] = tensor.dims.slice(1);
      }
      return { where: row.where, inputs, shapes, label: row.label };
    } catch (error) {
      if (error instanceof BadRequest) throw inputError(error.message, 'fix or remove the file');
      throw error;
    }
  };
  const queue: Promise<HoldoutRow>[] = [];
  for await (const row of rows) {
    const next = one(row);
    next.catch(() => undefined);
    queue.push(next);
    if (queue.length >= IN_FLIGHT) yield await queue.shift()!;
  }
  while (queue.length > 0) yield await queue.shift()!;
}

async function readBounded(file: string, maxBytes: number, shown: string): Promise<Uint8Array> {
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile()) throw inputError(`${shown}: file not found`, 'check the path');
  // A little over the limit is read, so that the preprocessor names the size it refuses.
  if (info.size > maxBytes)
    throw inputError(
      `${shown}: ${info.size} bytes, over the ${maxBytes} bytes an image may have (model.preprocess.image.maxBytes)`,
      'shrink the image or raise the limit',
    );
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(info.size);
    await handle.read(buffer, 0, info.size, 0);
    return buffer;
  } finally {
    await handle.close();
  }
}

/** A path from a holdout file, refused when it leads outside the holdout's folder (`../`, absolute, or a link out). */
async function insideFolder(root: string, relative: string, where: string): Promise<string> {
  if (relative.trim() === '') throw inputError(`${where}: the image path is empty`);
  if (path.isAbsolute(relative)) throw inputError(`${where}: '${relative}' is an absolute path`, "image paths are relative to the holdout file's folder");
  const resolved = path.resolve(root, relative);
  const real = await realpath(resolved).catch(() => resolved);
  const realRoot = await realpath(root).catch(() => root);
  if (!real.startsWith(realRoot + path.sep))
    throw inputError(`${where}: '${relative}' is outside the holdout's folder`, "image paths must stay inside the holdout file's folder");
  return real;
}

export interface MediaHoldoutOptions {
  /** Absolute path of the folder or file. */
  file: string;
  shown: string;
  plan: ProcessingPlan;
  label: string;
  labelOptional?: boolean;
  onFacts?: (facts: InputFacts) => void;
}

/** An ImageFolder: `<dir>/<class>/<image>`; the class is the folder's name. */
export async function openImageFolder(options: MediaHoldoutOptions): Promise<HoldoutSource> {
  const { file: dir, shown, plan } = options;
  if (!plan.image)
    throw inputError(
      `${shown} is a folder of images, but the model takes no images`,
      'give the model folder its preprocessor_config.json, or set model.preprocess.image',
    );
  const classes = (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort();
  const files: { relative: string; label: string }[] = [];
  for (const name of classes) {
    for (const entry of (await readdir(path.join(dir, name), { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.isFile() && IMAGE_EXTENSIONS.has(path.extname(entry.name).toLowerCase())) files.push({ relative: path.join(name, entry.name), label: name });
    }
  }
  if (files.length === 0) {
    throw inputError(
      `${shown}: no images found in one subfolder per class`,
      `lay it out as ${shown}/<class>/<image>.jpg (ImageFolder), with ${[...IMAGE_EXTENSIONS].join(', ')} files`,
    );
  }
  const maxBytes = plan.image.maxBytes;
  return {
    file: dir,
    format: 'images',
    featureNames: { [plan.image.input]: [] },
    rows: () =>
      processed(
        (async function* () {
          for (const f of files) {
            const at = path.join(dir, f.relative);
            yield { where: f.relative, label: f.label, load: () => readBounded(at, maxBytes, `${shown}/${f.relative}`) };
          }
        })(),
        plan,
        shown,
        options.onFacts,
      ),
  };
}

/** The first of `names` present in the header. */
const pick = (header: string[], names: string[]) => header.find((h) => names.includes(h.trim().toLowerCase()));

/** A CSV or JSONL with an image-path or text column, when the model takes images or text; undefined otherwise. */
export async function openMediaTable(options: MediaHoldoutOptions & { format: 'csv' | 'jsonl' }): Promise<HoldoutSource | undefined> {
  const { plan, shown } = options;
  const kind = plan.image ? 'image' : plan.text ? 'text' : undefined;
  if (!kind) return undefined;
  const header = options.format === 'csv' ? await csvHeader(options.file) : await jsonlKeys(options.file);
  const column = pick(header, kind === 'image' ? IMAGE_COLUMNS : TEXT_COLUMNS);
  if (!column) return undefined;
  const hasLabel = header.includes(options.label);
  if (!hasLabel && !options.labelOptional)
    throw inputError(`${shown}: missing column '${options.label}' (the label)`, `name the label column in test.label; the columns are: ${header.join(', ')}`);
  const root = path.dirname(options.file);
  const maxBytes = plan.image?.maxBytes ?? 0;
  const records = options.format === 'csv' ? csvObjects(options.file, header, shown) : jsonlObjects(options.file, shown);
  const input = plan.image?.input ?? plan.text!.settings.inputs.ids.name;
  return {
    file: options.file,
    format: options.format,
    featureNames: { [input]: [] },
    rows: () =>
      processed(
        (async function* () {
          for await (const { where, record } of records()) {
            const value = record[column];
            const label = hasLabel ? record[options.label] : '';
            if (hasLabel && (label === undefined || label === null || shownValue(label).trim() === ''))
              throw inputError(`${shown} ${where}, column '${options.label}': the label is empty`, 'fix or drop the row');
            if (typeof value !== 'string')
              throw inputError(`${shown} ${where}, column '${column}': expected ${kind === 'image' ? 'a path' : 'a text'}, got ${JSON.stringify(value)}`);
            const load =
              kind === 'image'
                ? async () => readBounded(await insideFolder(root, value, `${shown} ${where}`), maxBytes, `${shown} ${where} (${value})`)
                : async () => value;
            yield { where, label: typeof label === 'number' ? label : String(label).trim(), load };
          }
        })(),
        plan,
        shown,
        options.onFacts,
      ),
  };
}

async function csvHeader(file: string): Promise<string[]> {
  for await (const record of csvRecords(file)) return record.cells.map((c) => c.trim());
  return [];
}

function csvObjects(file: string, header: string[], shown: string) {
  return async function* (): AsyncGenerator<{ where: string; record: Record<string, unknown> }> {
    let first = true;
    for await (const { line, cells } of csvRecords(file)) {
      if (first) {
        first = false;
        continue;
      }
      if (cells.length !== header.length)
        throw inputError(
          `${shown} row ${line}: ${cells.length} cells, the header has ${header.length}`,
          'every row needs a value for every column (quote cells that hold commas)',
        );
      yield { where: `row ${line}`, record: Object.fromEntries(header.map((h, i) => [h, cells[i]])) };
    }
  };
}

async function jsonlKeys(file: string): Promise<string[]> {
  for await (const { record } of jsonlObjects(file, file)()) return Object.keys(record);
  return [];
}

function jsonlObjects(file: string, shown: string) {
  return async function* (): AsyncGenerator<{ where: string; record: Record<string, unknown> }> {
    const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
    let n = 0;
    for await (const text of lines) {
      n++;
      if (text.trim() === '') continue;
      let record: unknown;
      try {
        record = JSON.parse(text);
      } catch {
        throw inputError(`${shown} line ${n}: not valid JSON`, 'one JSON object per line');
      }
      if (typeof record !== 'object' || record === null || Array.isArray(record)) throw inputError(`${shown} line ${n}: expected a JSON object`);
      yield { where: `line ${n}`, record: record as Record<string, unknown> };
    }
  };
}
