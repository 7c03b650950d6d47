import { seededRandom } from './random.js';
import { allocate, toHalfBits, type Datatype } from './datatypes.js';
import type { Tensors } from './session.js';

/**
 * Random valid tensors from the model's signature, seeded so that runs repeat:
 * floats uniform in [-1, 1), integers in [0, 10) (safe as indices into small
 * embedding tables), booleans, and short strings. Dynamic dimensions beyond
 * the batch are 1.
 */
export function randomFeeds(inputs: { name: string; datatype: Datatype; shape: number[] }[], rows: number, seed: number): Tensors {
  const random = seededRandom(seed);
  const feeds: Tensors = {};
  for (const spec of inputs) {
    // A scalar stays a scalar; every other tensor gets `rows` in its first dimension.
    const dims = spec.shape.length === 0 ? [] : [rows, ...spec.shape.slice(1).map((d) => (d > 0 ? d : 1))];
    const fixedBatch = spec.shape[0];
    if (fixedBatch !== undefined && fixedBatch > 0) dims[0] = fixedBatch;
    const length = dims.reduce((n, d) => n * d, 1);
    const data = allocate(spec.datatype, length) as unknown as { [i: number]: unknown };
    for (let i = 0; i < length; i++) {
      const r = random();
      switch (spec.datatype) {
        case 'FP16':
          // FP16 tensors hold half-precision bits.
          data[i] = toHalfBits(r * 2 - 1);
          break;
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

/** Random inputs with `rows` rows in every tensor's first dimension (scalars stay scalars): what the server's start-up probe runs. */
export function probeFeeds(inputs: { name: string; datatype: Datatype; shape: number[] }[], rows: number, seed: number): Tensors {
  return randomFeeds(
    inputs.map((s) => ({ ...s, shape: s.shape.length > 0 ? [rows, ...s.shape.slice(1)] : s.shape })),
    rows,
    seed,
  );
}
