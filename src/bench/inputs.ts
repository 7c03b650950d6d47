import type { Tensors } from '../model/session.js';
import type { HoldoutRow } from '../holdout/types.js';
import type { TensorSignature } from '../predict/predictor.js';
import { rowsToTensors } from '../evaluate/batches.js';
import { encodeRestRequest, type RestRequest } from '../protocol/rest.js';

/** Distinct request payloads a run cycles through, so the client never encodes on the hot path. */
export const PAYLOADS = 32;

/** Feeds built from holdout rows, `rows` at a time, cycling through what was read. */
export function holdoutFeeds(inputs: TensorSignature[], sample: HoldoutRow[], rows: number, index: number): Tensors {
  const picked = Array.from({ length: rows }, (_, r) => sample[(index * rows + r) % sample.length]);
  const fixedBatch = inputs[0]?.shape[0];
  return rowsToTensors(picked, inputs, fixedBatch && fixedBatch > 0 ? fixedBatch : rows);
}

/** One request's body and headers, JSON or binary (the binary tensor data extension). */
export function requestBody(inputs: TensorSignature[], feeds: Tensors, binary = false): RestRequest {
  return encodeRestRequest(inputs, feeds, { binary });
}
