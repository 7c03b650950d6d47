import { allocate, toHalfBits, type Datatype, type TensorData } from '../model/datatypes.js';

/** A model Kernel SHAP explains: one numeric input of shape [batch, features]. */
export function explainableInput(inputs: { datatype: Datatype; shape: number[] }[]): boolean {
  return inputs.length === 1 && inputs[0].shape.length === 2 && inputs[0].shape[1] > 0 && inputs[0].datatype !== 'BYTES' && inputs[0].datatype !== 'BOOL';
}

/** Rows of float64 values as the input's tensor data: FP16 as half bits, 64-bit integers as BigInt, the rest as is. */
export function rowsAsTensorData(datatype: Datatype, rows: ArrayLike<number>, length: number): TensorData {
  const data = allocate(datatype, length) as unknown as { [i: number]: number | bigint };
  const big = datatype === 'INT64' || datatype === 'UINT64';
  for (let i = 0; i < length; i++) {
    const v = rows[i];
    data[i] = big ? BigInt(Math.round(v)) : datatype === 'FP16' ? toHalfBits(v) : v;
  }
  return data as unknown as TensorData;
}

/** The outputs an explanation attributes: floating-point ones (scores, probabilities, values), not class labels or strings. */
export function explainedOutputs<T extends { datatype: Datatype }>(outputs: T[]): T[] {
  return outputs.filter((o) => o.datatype === 'FP32' || o.datatype === 'FP64' || o.datatype === 'FP16');
}
