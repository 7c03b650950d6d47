import * as ort from 'onnxruntime-node';
import { inputError } from '../errors.js';
import type { HoldoutSource } from '../holdout/types.js';
import { seededRandom } from '../model/random.js';
import { ORT_TYPES } from '../model/session.js';
import type { TensorSignature } from '../predict/predictor.js';
import { batchSizeFor, inBatches, rowsToTensors } from '../evaluate/batches.js';
import { encodeModel, type ModelProto } from './onnx-graph.js';
import { withOutputs, type Range } from './quantize.js';

export type CalibrationMethod = 'minmax' | 'percentile';

export interface CalibrationOptions {
  model: ModelProto;
  /** The tensors whose ranges are wanted. */
  tensors: string[];
  inputs: TensorSignature[];
  data: HoldoutSource;
  /** At most this many rows are run. */
  rows: number;
  method: CalibrationMethod;
  /** With method percentile: the range is cut at this percentile and its mirror (99.999: 0.001 and 99.999). */
  percentile: number;
}

/** Values kept per tensor for percentiles: a seeded reservoir sample beyond that. */
const RESERVOIR = 200_000;

/**
 * Runs the float model on calibration rows with the wanted tensors made graph outputs (as
 * onnxruntime.quantization's calibrators do) and returns each tensor's range: min and max, or the
 * percentiles that cut outliers.
 */
export async function calibrate(options: CalibrationOptions): Promise<{ ranges: Map<string, Range>; rows: number }> {
  const session = await ort.InferenceSession.create(encodeModel(withOutputs(options.model, options.tensors)), {
    graphOptimizationLevel: 'disabled',
    logSeverityLevel: 4,
  });
  const minmax = new Map(options.tensors.map((t) => [t, { min: Infinity, max: -Infinity }]));
  const samples = new Map(options.tensors.map((t) => [t, { values: new Float32Array(RESERVOIR), kept: 0, seen: 0 }]));
  const random = seededRandom(7);
  const { size, fixed } = batchSizeFor(options.inputs, 32);
  let rows = 0;
  try {
    const source = options.data.rows();
    for await (const batch of inBatches(source, size)) {
      const take = batch.slice(0, options.rows - rows);
      if (take.length === 0) break;
      const tensors = rowsToTensors(take, options.inputs, fixed ? size : take.length);
      const feeds = Object.fromEntries(
        options.inputs.map((spec) => [spec.name, new ort.Tensor(ORT_TYPES[spec.datatype], tensors[spec.name].data as never, tensors[spec.name].dims)]),
      );
      const results = await session.run(feeds, options.tensors);
      for (const name of options.tensors) {
        const data = results[name].data as Float32Array;
        // A padded batch's extra rows are copies of the last: they widen no range.
        const used = fixed ? (data.length / size) * take.length : data.length;
        const range = minmax.get(name)!;
        const sample = samples.get(name)!;
        for (let i = 0; i < used; i++) {
          const v = data[i];
          if (v < range.min) range.min = v;
          if (v > range.max) range.max = v;
          if (options.method !== 'percentile') continue;
          if (sample.kept < RESERVOIR) sample.values[sample.kept++] = v;
          else {
            const slot = Math.floor(random() * (sample.seen + 1));
            if (slot < RESERVOIR) sample.values[slot] = v;
          }
          sample.seen++;
        }
      }
      rows += take.length;
      if (rows >= options.rows) {
        await source.return(undefined);
        break;
      }
    }
  } finally {
    await session.release();
  }
  if (rows === 0) throw inputError(`${options.data.file} has no rows to calibrate with`, 'pass --calibration <file> with rows like the model will see');
  if (options.method === 'minmax') return { ranges: minmax, rows };
  const ranges = new Map<string, Range>();
  for (const [name, sample] of samples) {
    const sorted = sample.values.slice(0, sample.kept).sort();
    const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.round((p / 100) * (sorted.length - 1))))];
    ranges.set(name, { min: at(100 - options.percentile), max: at(options.percentile) });
  }
  return { ranges, rows };
}
