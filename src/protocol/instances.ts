/**
 * The "instances" format of TF Serving's v1 :predict, Vertex AI and SageMaker JSON:
 * {"instances": [row, ...]} in, {"predictions": [row, ...]} out, one entry per row.
 * A single-input model takes each row as that input's values; a model with several
 * inputs takes an object per row keyed by input name (TF Serving's row format).
 */
import type { Datatype } from '../model/datatypes.js';
import type { ServableTensor, Tensor, Tensors } from '../model/session.js';
import { decodeTensorData, encodeTensorData, nest, nestedShape } from './json-data.js';
import { BadRequest, checkShape, finishInputs, fmtShape } from './request.js';
import type { TensorSpec } from './rest.js';

export interface DecodedInstances {
  feeds: Tensors;
  rows: number;
}

/** Checks and stacks the rows into one tensor per input, [rows, ...row shape]. */
export function decodeInstances(inputs: ServableTensor[], body: unknown, where: string): DecodedInstances {
  const instances = (body as { instances?: unknown } | null)?.instances;
  if (!Array.isArray(instances) || instances.length === 0) throw new BadRequest(`${where}: body must be {"instances": [...]} with at least one instance`);
  const rows = instances.length;
  const keyed = inputs.length > 1 || isObject(instances[0]);
  const feeds: Tensors = {};
  for (const spec of inputs) {
    let values: unknown[] = instances;
    if (keyed) {
      values = instances.map((instance, i) => {
        if (!isObject(instance))
          throw new BadRequest(`${where}: instance ${i} must be an object keyed by input name (${inputs.map((s) => s.name).join(', ')})`);
        if (!(spec.name in instance))
          throw new BadRequest(`${where}: instance ${i} has no input '${spec.name}'; the model's inputs are ${inputs.map((s) => s.name).join(', ')}`);
        return instance[spec.name];
      });
    }
    const rowShape = nestedShape(values[0]);
    const expected = spec.shape;
    if (!spec.anyShape && expected.length === 0)
      throw new BadRequest(
        `${where}: input '${spec.name}' is a scalar, which has no rows to send as instances; send it to /v2/models/{name}/infer with shape []`,
      );
    if (!spec.anyShape && (expected.length !== rowShape.length + 1 || expected.slice(1).some((d, i) => d !== -1 && d !== rowShape[i]))) {
      throw new BadRequest(
        `${where}: input '${spec.name}' takes rows of shape ${fmtShape(expected.slice(1))} (the model's shape is ${fmtShape(expected)}), got ${rowShape.length <= 8 ? fmtShape(rowShape) : `${rowShape.length} dimensions`}`,
      );
    }
    // Rows beyond a fixed first dimension (a batch of 1) are run one instance at a time by the caller.
    checkShape(spec, [spec.anyShape || expected[0] === -1 ? rows : expected[0], ...rowShape], `${where}: input '${spec.name}'`);
    const shape = [rows, ...rowShape];
    feeds[spec.name] = { data: decodeTensorData(spec.name, spec.datatype, shape, values), dims: shape };
  }
  // The checks every path shares: finite numbers, text ONNX Runtime can take, named dimensions that agree.
  finishInputs(inputs, feeds);
  return { feeds, rows };
}

/** Row `index` of stacked feeds, for models whose fixed batch dimension is 1. */
export function instanceRow(feeds: Tensors, index: number, rows: number): Tensors {
  const out: Tensors = {};
  for (const [name, tensor] of Object.entries(feeds)) {
    const size = tensor.data.length / rows;
    out[name] = { data: tensor.data.slice(index * size, (index + 1) * size), dims: [1, ...tensor.dims.slice(1)] };
  }
  return out;
}

/** One prediction per row of the results: the output's values, or an object of outputs when there are several. */
export function encodePredictions(outputs: ServableTensor[], results: Tensors[]): unknown[] {
  const predictions: unknown[] = [];
  for (const result of results) {
    const perOutput = outputs.map((o) => splitRows(o.datatype, result[o.name]));
    for (let r = 0; r < perOutput[0].length; r++) {
      predictions.push(outputs.length === 1 ? perOutput[0][r] : Object.fromEntries(outputs.map((o, i) => [o.name, perOutput[i][r]])));
    }
  }
  return predictions;
}

/** A client's side: feeds as an instances body, in the form decodeInstances reads. */
export function encodeInstances(inputs: TensorSpec[], feeds: Tensors): { instances: unknown[] } {
  const perInput = inputs.map((spec) => splitRows(spec.datatype, feeds[spec.name]));
  const rows = perInput[0]?.length ?? 0;
  const instances = Array.from({ length: rows }, (_, r) =>
    inputs.length === 1 ? perInput[0][r] : Object.fromEntries(inputs.map((s, i) => [s.name, perInput[i][r]])),
  );
  return { instances };
}

/** A tensor's rows (its first dimension) as nested JSON values; a scalar is one row. */
function splitRows(datatype: Datatype, tensor: Tensor): unknown[] {
  const flat = encodeTensorData(datatype, tensor.data);
  const rows = tensor.dims[0] ?? 1;
  return Array.from({ length: rows }, (_, r) => nest(flat, tensor.dims.slice(1), (r * flat.length) / rows));
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
