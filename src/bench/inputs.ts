import { allocate } from '../model/datatypes.js';
import type { Tensors } from '../model/session.js';
import { seededRandom } from '../holdout/stats.js';
import type { HoldoutRow } from '../holdout/types.js';
import type { TensorSignature } from '../predict/predictor.js';
import { rowsToTensors } from '../evaluate/batches.js';
import { encodeTensorData } from '../server/codec.js';

/** Distinct request payloads a run cycles through, so the client never encodes on the hot path. */
export const PAYLOADS = 32;

/**
 * Random valid tensors from the model's signature, seeded so that runs repeat:
 * floats uniform in [-1, 1), integers in [0, 10) (safe as indices into small
 * embedding tables), booleans, and short strings. Dynamic dimensions beyond
 * the batch are 1.
 */
export function randomFeeds(inputs: TensorSignature[], rows: number, seed: number): Tensors {
  const random = seededRandom(seed);
  const feeds: Tensors = {};
  for (const spec of inputs) {
    const dims = [rows, ...spec.shape.slice(1).map((d) => (d > 0 ? d : 1))];
    const fixedBatch = spec.shape[0];
    if (fixedBatch !== undefined && fixedBatch > 0) dims[0] = fixedBatch;
    const length = dims.reduce((n, d) => n * d, 1);
    const data = allocate(spec.datatype, length) as unknown as { [i: number]: unknown };
    for (let i = 0; i < length; i++) {
      const r = random();
      switch (spec.datatype) {
        case 'FP16':
        case 'FP32':
        case 'FP64':
          data[i] = r * 2 - 1;
          break;
        case 'BOOL':
          data[i] = r < 0.5 ? 0 : 1;
          break;
        case 'BYTES':
          data[i] = `mlops-${Math.floor(r * 1000)}`;
          break;
        case 'INT64':
        case 'UINT64':
          data[i] = BigInt(Math.floor(r * 10));
          break;
        default:
          data[i] = Math.floor(r * 10);
      }
    }
    feeds[spec.name] = { data: data as unknown as Tensors[string]['data'], dims };
  }
  return feeds;
}

/** Feeds built from holdout rows, `rows` at a time, cycling through what was read. */
export function holdoutFeeds(inputs: TensorSignature[], sample: HoldoutRow[], rows: number, index: number): Tensors {
  const picked = Array.from({ length: rows }, (_, r) => sample[(index * rows + r) % sample.length]);
  const fixedBatch = inputs[0]?.shape[0];
  return rowsToTensors(picked, inputs, fixedBatch && fixedBatch > 0 ? fixedBatch : rows);
}

export function requestBody(inputs: TensorSignature[], feeds: Tensors): Buffer {
  return Buffer.from(
    JSON.stringify({
      inputs: inputs.map((spec) => ({
        name: spec.name,
        datatype: spec.datatype,
        shape: feeds[spec.name].dims,
        data: encodeTensorData(spec.datatype, feeds[spec.name].data),
      })),
    }),
  );
}
