/**
 * The inputs a command sends when no holdout is given: `mlops bench`'s requests and every deploy's
 * smoke request. Shapes and values follow Triton's perf_analyzer, which model-serving users know:
 * `--shape NAME:D1,D2,...` fixes one input's shape, and `--input-data` is `random`, `zero` or a JSON
 * file of real values (`{"data": [{"NAME": [values] | {"content": [...], "shape": [...]} | {"b64": "..."}}]}`).
 *
 * A dynamic dimension is never guessed: the batch dimension takes the rows asked for, every other one
 * must come from a shape or the data, or nothing is sent and the error names the input and dimension.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { inputError } from '../errors.js';
import { allocate, ELEMENT_BYTES, toHalfBits, type Datatype } from './datatypes.js';
import { seededRandom } from './random.js';
import { randomFeeds } from './random-feeds.js';
import type { Tensors } from './session.js';

/** An input as the model or server declares it; `dims` names symbolic dimensions where the model file is at hand. */
export interface SampleInputSpec {
  name: string;
  datatype: Datatype;
  /** -1 (or any value below 1) for a dynamic dimension; [] for a scalar or an undeclared shape. */
  shape: number[];
  dims?: (number | string)[];
}

export type InputDataMode = 'random' | 'zero';

/** Where random values of one input come from: its reference data's range, per column where known. */
export interface ValueRange {
  min: number;
  max: number;
  /** By column of the flattened row: a tabular input's features. */
  columns?: Record<number, { min: number; max: number }>;
}

export interface SampleInputSettings {
  /** A full shape per input name (--shape, model.shapes); a batch dimension in it takes the rows asked for. */
  shapes: Record<string, number[]>;
  /** 'random', 'zero', or the path of a perf_analyzer JSON file. */
  data: string;
  seed: number;
  /** Random values in these ranges (the image's reference profile), by input name; else the datatype's usual range. */
  ranges?: Record<string, ValueRange>;
  /** How the user sets shapes and data here, for hints: e.g. `--shape` or `model.shapes`. */
  shapeKey: string;
  dataKey: string;
}

export interface SampleInputs {
  /** Request `index`'s feeds with `rows` in the batch dimension. */
  feeds(rows: number, index: number): Tensors;
  /** Distinct requests the data file holds (1 for generated data). */
  readonly entries: number;
}

const INPUT_DATA_MODES = ['random', 'zero'];

/** "NAME:1,512" (from --shape) */
export function parseShapeFlag(text: string): [string, number[]] {
  const colon = text.lastIndexOf(':');
  const dims =
    colon > 0
      ? text
          .slice(colon + 1)
          .split(',')
          .map((d) => d.trim())
      : [];
  if (colon <= 0 || dims.some((d) => !/^\d+$/.test(d) || Number(d) < 1)) {
    throw inputError(
      `--shape ${text}: expected an input name and its dimensions, like 'input:1,512'`,
      'every dimension is a whole number of at least 1; a scalar input needs no --shape',
    );
  }
  return [text.slice(0, colon), dims.map(Number)];
}

/** One dimension of one input: fixed, the batch (rows), or named by a symbol another input may fix. */
type DimPlan = { kind: 'fixed'; size: number } | { kind: 'batch' } | { kind: 'open'; symbol?: string };

interface InputPlan {
  spec: SampleInputSpec;
  dims: DimPlan[];
}

type DataEntry = Record<string, { values?: unknown[]; bytes?: Buffer; shape?: number[] }>;

export async function openSampleInputs(inputs: SampleInputSpec[], settings: SampleInputSettings, cwd: string): Promise<SampleInputs> {
  const byName = new Map(inputs.map((s) => [s.name, s]));
  const known = () => `the model's inputs: ${inputs.map((s) => `${s.name} [${describeDims(s).join(', ')}]`).join(', ')}`;
  for (const name of Object.keys(settings.shapes)) {
    if (!byName.has(name)) throw inputError(`${settings.shapeKey} ${name}: the model has no input '${name}'`, known());
  }
  const entries = INPUT_DATA_MODES.includes(settings.data) ? [] : await readDataFile(settings.data, cwd, settings.dataKey, byName, known);
  const plans = planInputs(inputs, settings, entries);
  const mode: InputDataMode = settings.data === 'zero' ? 'zero' : 'random';

  return {
    entries: Math.max(1, entries.length),
    feeds(rows, index) {
      const entry = entries.length > 0 ? entries[index % entries.length] : {};
      const feeds: Tensors = {};
      plans.forEach((plan, p) => {
        const given = entry[plan.spec.name];
        // Each input its own stream, so that inputs of one shape do not get the same values.
        feeds[plan.spec.name] = given
          ? fromData(plan, given, rows, settings.dataKey, index % entries.length)
          : generated(plan, rows, mode, settings.seed + index + 7919 * p, settings.ranges?.[plan.spec.name]);
      });
      return feeds;
    },
  };
}

const describeDims = (spec: SampleInputSpec) => spec.shape.map((d, i) => (d > 0 ? String(d) : typeof spec.dims?.[i] === 'string' ? String(spec.dims[i]) : '?'));

/**
 * Decides every dimension before anything is sent. The batch dimension is the first dimension of a
 * dynamic-batch input, and every dimension that shares its symbol (recurrent state [2, batch, 64]);
 * other symbols are fixed once by any input whose shape is given, and hold for every input using them.
 */
function planInputs(inputs: SampleInputSpec[], settings: SampleInputSettings, entries: DataEntry[]): InputPlan[] {
  const firstDynamic = inputs.find((s) => s.shape.length > 0 && !(s.shape[0] > 0));
  const batchSymbol = typeof firstDynamic?.dims?.[0] === 'string' ? firstDynamic.dims[0] : undefined;
  const symbolSizes = new Map<string, number>();
  const plans = inputs.map((spec): InputPlan => {
    const given = settings.shapes[spec.name];
    if (given) checkGivenShape(spec, given, settings.shapeKey);
    const dims = spec.shape.map((size, i): DimPlan => {
      if (size > 0) return { kind: 'fixed', size };
      const symbol = typeof spec.dims?.[i] === 'string' ? spec.dims[i] : undefined;
      const isBatch = (i === 0 && (symbol === undefined || symbol === batchSymbol)) || (symbol !== undefined && symbol === batchSymbol);
      if (isBatch) return { kind: 'batch' };
      if (given) {
        if (symbol) symbolSizes.set(symbol, given[i]);
        return { kind: 'fixed', size: given[i] };
      }
      return { kind: 'open', symbol };
    });
    // An input of undeclared rank takes the given shape whole.
    if (spec.shape.length === 0 && given)
      return { spec, dims: given.map((size, i) => (i === 0 && given.length > 1 ? { kind: 'batch' } : { kind: 'fixed', size })) };
    return { spec, dims };
  });
  // Symbols fixed by one input's shape hold for the others; what is left must come from the data file.
  for (const plan of plans) {
    plan.dims = plan.dims.map((d) => (d.kind === 'open' && d.symbol && symbolSizes.has(d.symbol) ? { kind: 'fixed', size: symbolSizes.get(d.symbol)! } : d));
    const open = plan.dims.findIndex((d) => d.kind === 'open');
    if (open === -1) continue;
    const inEveryEntry = entries.length > 0 && entries.every((e) => e[plan.spec.name]?.shape !== undefined);
    if (inEveryEntry) continue;
    const dim = plan.dims[open] as { kind: 'open'; symbol?: string };
    const example = plan.spec.shape
      .map((d, i) => (d > 0 ? String(d) : plan.dims[i].kind === 'batch' ? '1' : `<${typeof plan.spec.dims?.[i] === 'string' ? plan.spec.dims[i] : `dim${i}`}>`))
      .join(',');
    throw inputError(
      `input '${plan.spec.name}' [${describeDims(plan.spec).join(', ')}]: dimension ${open}${dim.symbol ? ` ('${dim.symbol}')` : ''} is dynamic and nothing gives its size`,
      `set it with ${settings.shapeKey} ${plan.spec.name}:${example}${settings.shapeKey === '--shape' ? ' (config: model.shapes)' : ''}, or give '${plan.spec.name}' with its shape in ${settings.dataKey} FILE; mlops does not guess a size`,
    );
  }
  return plans;
}

function checkGivenShape(spec: SampleInputSpec, given: number[], key: string): void {
  if (spec.shape.length === 0) return;
  const where = `${key} ${spec.name}:${given.join(',')}`;
  if (given.length !== spec.shape.length)
    throw inputError(`${where}: input '${spec.name}' has ${spec.shape.length} dimensions [${describeDims(spec).join(', ')}], not ${given.length}`);
  spec.shape.forEach((size, i) => {
    if (size > 0 && given[i] !== size) throw inputError(`${where}: dimension ${i} of input '${spec.name}' is fixed at ${size}`, `write ${size} there`);
  });
}

const dimsFor = (plan: InputPlan, rows: number) => plan.dims.map((d) => (d.kind === 'batch' ? rows : d.kind === 'fixed' ? d.size : 1));

function generated(plan: InputPlan, rows: number, mode: InputDataMode, seed: number, range: ValueRange | undefined): Tensors[string] {
  const dims = dimsFor(plan, rows);
  if (mode === 'zero') {
    return {
      data: allocate(
        plan.spec.datatype,
        dims.reduce((n, d) => n * d, 1),
      ),
      dims,
    };
  }
  if (range && plan.spec.datatype !== 'BYTES' && plan.spec.datatype !== 'BOOL') return inRange(plan.spec.datatype, dims, range, seed);
  // randomFeeds takes the shape as given, with the rows in a dynamic first dimension.
  return randomFeeds([{ name: plan.spec.name, datatype: plan.spec.datatype, shape: dims }], rows, seed)[plan.spec.name];
}

/** Seeded uniform values within the reference's range, column by column where the profile has columns. */
function inRange(datatype: Datatype, dims: number[], range: ValueRange, seed: number): Tensors[string] {
  const random = seededRandom(seed);
  const length = dims.reduce((n, d) => n * d, 1);
  const rowWidth = dims.length > 1 ? length / dims[0] : length;
  const data = allocate(datatype, length) as unknown as { [i: number]: unknown };
  const integer = !datatype.startsWith('FP');
  for (let i = 0; i < length; i++) {
    const { min, max } = range.columns?.[i % rowWidth] ?? range;
    const value = integer ? Math.min(max, Math.floor(min + random() * (max - min + 1))) : min + random() * (max - min);
    data[i] = datatype === 'FP16' ? toHalfBits(value) : datatype === 'INT64' || datatype === 'UINT64' ? BigInt(value) : value;
  }
  return { data: data as unknown as Tensors[string]['data'], dims };
}

/** An entry's values for one input, with `rows` in the batch dimension: a batch-1 entry is repeated along a leading batch dimension. */
function fromData(plan: InputPlan, given: DataEntry[string], rows: number, key: string, entry: number): Tensors[string] {
  const where = `${key}: data[${entry}].${plan.spec.name}`;
  if (given.shape && plan.spec.shape.length > 0) checkDataShape(plan, given.shape, where);
  // Values without a shape fill the planned shape at one row.
  const dims = given.shape ?? dimsFor(plan, 1);
  const size = dims.reduce((n, d) => n * d, 1);
  const count = given.bytes ? Math.floor(given.bytes.byteLength / ELEMENT_BYTES[plan.spec.datatype]) : given.values!.length;
  if (count !== size) {
    throw inputError(
      `${where}: ${count} values for shape [${dims.join(', ')}] (${size} values)`,
      `give ${size} values, or {"content": [...], "shape": [...]} with the shape they fill`,
    );
  }
  const one = typedValues(plan.spec.datatype, given, count, where);
  const batchAt = plan.dims.flatMap((d, i) => (d.kind === 'batch' ? [i] : []));
  if (batchAt.length === 0 || dims[batchAt[0]] === rows) return { data: one, dims };
  // Requests of several rows repeat a one-row entry along a leading batch dimension, as perf_analyzer does.
  if (dims[batchAt[0]] !== 1 || batchAt.length !== 1 || batchAt[0] !== 0) {
    throw inputError(
      `${where}: the entry has ${dims[batchAt[0]]} in its batch dimension but requests of ${rows} rows were asked for`,
      `give entries of ${rows} rows, or of 1 row with the batch dimension first`,
    );
  }
  const source = one as unknown as ArrayLike<unknown>;
  const data = allocate(plan.spec.datatype, count * rows) as unknown as unknown[];
  for (let r = 0; r < rows; r++) for (let i = 0; i < count; i++) data[r * count + i] = source[i];
  return { data: data as unknown as Tensors[string]['data'], dims: [rows, ...dims.slice(1)] };
}

function checkDataShape(plan: InputPlan, shape: number[], where: string): void {
  const spec = plan.spec;
  if (shape.length !== spec.shape.length)
    throw inputError(
      `${where}: shape [${shape.join(', ')}] has ${shape.length} dimensions; input '${spec.name}' has ${spec.shape.length} [${describeDims(spec).join(', ')}]`,
    );
  plan.dims.forEach((d, i) => {
    if (d.kind === 'fixed' && shape[i] !== d.size) throw inputError(`${where}: dimension ${i} is ${shape[i]}, but input '${spec.name}' needs ${d.size} there`);
  });
}

/** Values as the tensor type ONNX Runtime takes; a value that does not fit the datatype is an error naming it. */
function typedValues(datatype: Datatype, given: DataEntry[string], count: number, where: string): Tensors[string]['data'] {
  const data = allocate(datatype, count) as unknown as { [i: number]: unknown };
  if (given.bytes) {
    if (datatype === 'BYTES') throw inputError(`${where}: "b64" gives raw tensor bytes; a BYTES input takes a list of strings`);
    // Raw little-endian tensor bytes, as perf_analyzer's "b64" and the binary tensor formats carry them.
    const typed = data as unknown as { buffer: ArrayBuffer; byteOffset: number };
    const length = count * ELEMENT_BYTES[datatype];
    new Uint8Array(typed.buffer, typed.byteOffset, length).set(given.bytes.subarray(0, length));
    return data as unknown as Tensors[string]['data'];
  }
  const values = given.values!;
  for (let i = 0; i < count; i++) {
    const v = values[i];
    const bad = (what: string) => inputError(`${where}: value ${i} (${JSON.stringify(v)?.slice(0, 40)}) is not ${what}`, `input's datatype is ${datatype}`);
    switch (datatype) {
      case 'BYTES':
        if (typeof v !== 'string') throw bad('a string');
        data[i] = v;
        break;
      case 'BOOL':
        if (typeof v !== 'boolean' && v !== 0 && v !== 1) throw bad('true, false, 0 or 1');
        data[i] = v ? 1 : 0;
        break;
      case 'FP16':
      case 'FP32':
      case 'FP64':
        if (typeof v !== 'number' || !Number.isFinite(v)) throw bad('a finite number');
        // FP16 tensors hold half-precision bits.
        data[i] = datatype === 'FP16' ? toHalfBits(v) : v;
        break;
      case 'INT64':
      case 'UINT64': {
        const text = typeof v === 'number' || typeof v === 'string' ? String(v) : '';
        if (!/^-?\d+$/.test(text) || (datatype === 'UINT64' && text.startsWith('-'))) throw bad('a whole number');
        data[i] = BigInt(text);
        break;
      }
      default:
        if (typeof v !== 'number' || !Number.isInteger(v)) throw bad('a whole number');
        data[i] = v;
    }
  }
  return data as unknown as Tensors[string]['data'];
}

async function readDataFile(file: string, cwd: string, key: string, byName: Map<string, SampleInputSpec>, known: () => string): Promise<DataEntry[]> {
  const shown = `${key} ${path.relative(cwd, path.resolve(cwd, file)) || file}`;
  let text: string;
  try {
    text = await readFile(path.resolve(cwd, file), 'utf8');
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw inputError(
      `${shown}: ${missing ? 'file not found' : (error as Error).message}`,
      `give 'random', 'zero' or a JSON file like {"data": [{"input": [0.1, 0.2]}]}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw inputError(
      `${shown}: not valid JSON: ${(error as Error).message}`,
      'the file is perf_analyzer\'s input format: {"data": [{"NAME": [values...]}, ...]}',
    );
  }
  const data = (parsed as { data?: unknown })?.data;
  if (!Array.isArray(data) || data.length === 0)
    throw inputError(`${shown}: no "data" list of requests`, 'expected {"data": [{"NAME": [values...]}, ...]}, one object a request');
  return data.map((raw, i): DataEntry => {
    const where = `${shown}: data[${i}]`;
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw inputError(`${where}: expected an object of input name to values`);
    const entry: DataEntry = {};
    for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
      if (!byName.has(name)) throw inputError(`${where}.${name}: the model has no input '${name}'`, known());
      if (Array.isArray(value)) entry[name] = { values: value.flat(Infinity) };
      // A bare value for a scalar input ("sr": 16000) is a list of one.
      else if (typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean') entry[name] = { values: [value] };
      else if (value && typeof value === 'object') {
        const { content, shape, b64 } = value as { content?: unknown; shape?: unknown; b64?: unknown };
        if (shape !== undefined && (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || (d as number) < 0)))
          throw inputError(`${where}.${name}.shape: expected a list of whole numbers`);
        if (Array.isArray(content)) entry[name] = { values: content.flat(Infinity), shape: shape as number[] | undefined };
        else if (typeof b64 === 'string') entry[name] = { bytes: Buffer.from(b64, 'base64'), shape: shape as number[] | undefined };
        else throw inputError(`${where}.${name}: expected a list of values, {"content": [...], "shape": [...]} or {"b64": "..."}`);
      } else throw inputError(`${where}.${name}: expected a list of values, {"content": [...], "shape": [...]} or {"b64": "..."}`);
    }
    return entry;
  });
}

/**
 * Settings from config (model.shapes, model.inputData: paths from the config's folder) with the
 * command's flags over them (--shape per input, --input-data: paths from the working directory).
 */
export function sampleSettings(
  model: { shapes: Record<string, number[]>; inputData: string },
  dirs: { projectDir: string; cwd: string },
  seed: number,
  flags?: { shape?: string[]; inputData?: string },
): SampleInputSettings {
  const resolve = (data: string, dir: string) => (INPUT_DATA_MODES.includes(data) ? data : path.resolve(dir, data));
  const flagShapes = Object.fromEntries((flags?.shape ?? []).map(parseShapeFlag));
  return {
    shapes: { ...model.shapes, ...flagShapes },
    data: flags?.inputData !== undefined ? resolve(flags.inputData, dirs.cwd) : resolve(model.inputData, dirs.projectDir),
    seed,
    shapeKey: flags ? '--shape' : 'model.shapes',
    dataKey: flags ? '--input-data' : 'model.inputData',
  };
}
