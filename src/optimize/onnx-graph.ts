import { open } from 'node:fs/promises';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { inputError } from '../errors.js';
import type { onnx as OnnxTypes } from 'onnx-proto';

/** The protobuf classes of ONNX, from the onnx-proto package `mlops inspect` reads models with. */
export const { onnx } = onnxProto;
export type ModelProto = InstanceType<typeof onnx.ModelProto>;
export type NodeProto = OnnxTypes.INodeProto;
export type TensorProto = OnnxTypes.ITensorProto;

export const DataType = onnx.TensorProto.DataType;

type LongLike = number | { low: number; high: number; toNumber?: () => number };
const toNumber = (value: LongLike | null | undefined): number =>
  value === null || value === undefined
    ? 0
    : typeof value === 'number'
      ? value
      : typeof value.toNumber === 'function'
        ? value.toNumber()
        : value.high * 2 ** 32 + (value.low >>> 0);

export function decodeModel(bytes: Uint8Array): ModelProto {
  return onnx.ModelProto.decode(bytes);
}

export function encodeModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

export function dimsOf(tensor: TensorProto): number[] {
  return (tensor.dims ?? []).map((d) => toNumber(d as LongLike));
}

/** The values of a FLOAT initializer (raw_data or float_data); null for other types or external data. */
export function floatValues(tensor: TensorProto): Float32Array | null {
  if (tensor.dataType !== DataType.FLOAT || (tensor.externalData ?? []).length > 0) return null;
  if (tensor.rawData && tensor.rawData.length > 0) {
    // A copy: raw_data need not be 4-byte aligned inside the decoded buffer.
    const bytes = Uint8Array.from(tensor.rawData);
    return new Float32Array(bytes.buffer, 0, bytes.length / 4);
  }
  return Float32Array.from(tensor.floatData ?? []);
}

export function floatTensor(name: string, dims: number[], values: ArrayLike<number>): TensorProto {
  const data = Float32Array.from(values);
  return onnx.TensorProto.create({ name, dims, dataType: DataType.FLOAT, rawData: new Uint8Array(data.buffer) });
}

export function int8Tensor(name: string, dims: number[], values: Int8Array): TensorProto {
  return onnx.TensorProto.create({ name, dims, dataType: DataType.INT8, rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) });
}

export function uint8Tensor(name: string, dims: number[], values: Uint8Array): TensorProto {
  return onnx.TensorProto.create({ name, dims, dataType: DataType.UINT8, rawData: Uint8Array.from(values) });
}

export function int32Tensor(name: string, dims: number[], values: Int32Array): TensorProto {
  return onnx.TensorProto.create({ name, dims, dataType: DataType.INT32, rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) });
}

export function node(opType: string, inputs: string[], outputs: string[], name: string, attributes: Record<string, number> = {}, domain = ''): NodeProto {
  return onnx.NodeProto.create({
    opType,
    input: inputs,
    output: outputs,
    name,
    domain,
    attribute: Object.entries(attributes).map(([key, value]) =>
      onnx.AttributeProto.create({ name: key, type: onnx.AttributeProto.AttributeType.INT, i: value }),
    ),
  });
}

/** An INT attribute's value, or the fallback; FLOAT attributes too (alpha, beta). */
export function attribute(n: NodeProto, name: string, fallback: number): number {
  const found = (n.attribute ?? []).find((a) => a.name === name);
  if (!found) return fallback;
  if (found.type === onnx.AttributeProto.AttributeType.FLOAT) return found.f ?? fallback;
  return toNumber(found.i);
}

/** The default ("ai.onnx") domain's opset. */
export function defaultOpset(model: ModelProto): number {
  const entry = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return entry ? toNumber(entry.version) : 0;
}

export function setMetadata(model: ModelProto, entries: Record<string, string>): void {
  const kept = (model.metadataProps ?? []).filter((p) => !(p.key && p.key in entries));
  model.metadataProps = [...kept, ...Object.entries(entries).map(([key, value]) => onnx.StringStringEntryProto.create({ key, value }))];
}

/** A graph output of a float tensor with no shape: how calibration asks ONNX Runtime for an intermediate tensor. */
export function floatOutput(name: string): OnnxTypes.IValueInfoProto {
  return onnx.ValueInfoProto.create({ name, type: onnx.TypeProto.create({ tensorType: onnx.TypeProto.Tensor.create({ elemType: DataType.FLOAT }) }) });
}

/** protobuf's limit on one message: a model past it cannot be one file. */
const MAX_INLINE_BYTES = 2 ** 31 - 1;

/**
 * Initializers kept in external data files (beside the source model) read into the model itself:
 * the optimized model is one file wherever it is written, and its weights can be quantized.
 */
export async function inlineExternalData(model: ModelProto, sourceDir: string): Promise<void> {
  let total = 0;
  for (const tensor of model.graph?.initializer ?? []) {
    const entries = Object.fromEntries((tensor.externalData ?? []).map((e) => [e.key, e.value])) as Record<string, string | undefined>;
    if (!entries.location) continue;
    const file = path.resolve(sourceDir, entries.location);
    if (path.relative(sourceDir, file).startsWith('..'))
      throw inputError(`initializer ${tensor.name}: external data ${entries.location} is outside the model's folder`);
    const offset = Number(entries.offset ?? 0);
    const handle = await open(file, 'r').catch(() => {
      throw inputError(`initializer ${tensor.name}: external data file ${entries.location} not found beside the model`);
    });
    try {
      const length = entries.length !== undefined ? Number(entries.length) : (await handle.stat()).size - offset;
      total += length;
      if (total > MAX_INLINE_BYTES)
        throw inputError("the model's external weights exceed 2 GB: mlops optimize writes one file and cannot hold them", 'optimize a model under 2 GB');
      const bytes = Buffer.alloc(length);
      await handle.read(bytes, 0, length, offset);
      tensor.rawData = bytes;
    } finally {
      await handle.close();
    }
    tensor.externalData = [];
    tensor.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
  }
}
