import { allocate } from '../model/datatypes.js';
import type { Tensors } from '../model/session.js';
import type { HoldoutRow } from '../holdout/types.js';
import type { TensorSignature } from '../predict/predictor.js';

/**
 * Stacks rows into one tensor per input. A model with a fixed batch size gets
 * its last, short batch padded with copies of the last row (the caller drops
 * the padded outputs).
 */
export function rowsToTensors(rows: HoldoutRow[], inputs: TensorSignature[], padTo = rows.length): Tensors {
  const feeds: Tensors = {};
  const count = Math.max(rows.length, padTo);
  for (const spec of inputs) {
    const rowShape = rows[0].shapes[spec.name];
    const rowSize = rowShape.reduce((n, d) => n * d, 1);
    const data = allocate(spec.datatype, count * rowSize) as unknown as { [i: number]: unknown };
    const big = spec.datatype === 'INT64' || spec.datatype === 'UINT64';
    for (let r = 0; r < count; r++) {
      const values = rows[Math.min(r, rows.length - 1)].inputs[spec.name];
      const offset = r * rowSize;
      for (let i = 0; i < rowSize; i++) data[offset + i] = big ? BigInt(values[i]) : values[i];
    }
    feeds[spec.name] = { data: data as unknown as Tensors[string]['data'], dims: [count, ...rowShape] };
  }
  return feeds;
}

/** Rows a request: the model's own batch size when its first dimension is fixed. */
export function batchSizeFor(inputs: TensorSignature[], wanted: number): { size: number; fixed: boolean } {
  const first = inputs[0]?.shape[0];
  return first !== undefined && first > 0 ? { size: first, fixed: true } : { size: wanted, fixed: false };
}

type NumberArray = Float64Array | Float32Array | Int32Array;
type NumberArrayType = { new (length: number): NumberArray };

/**
 * A growing list of numbers in the narrowest exact type (Int32 for class
 * indices, Float32 for FP32 model outputs): the per-row state `mlops test`
 * keeps for exact roc_auc, so it should cost as few bytes a row as it can.
 */
/** Rows in batches of `size` (the last may be shorter). */
export async function* inBatches<T>(rows: AsyncIterable<T>, size: number): AsyncGenerator<T[]> {
  let batch: T[] = [];
  for await (const row of rows) {
    batch.push(row);
    if (batch.length === size) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

export class GrowingArray {
  private data: NumberArray;
  length = 0;
  constructor(
    private readonly type: NumberArrayType = Float64Array,
    initial = 4096,
  ) {
    this.data = new type(initial);
  }
  push(value: number): void {
    if (this.length === this.data.length) {
      // Grow by half: less slack, and less held twice while copying, than doubling.
      const next = new this.type(Math.ceil(this.data.length * 1.5));
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = value;
  }
  view(): NumberArray {
    return this.data.subarray(0, this.length);
  }
}
