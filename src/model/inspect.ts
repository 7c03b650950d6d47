import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { inputError } from '../errors.js';
import { onnxElementTypeName } from './datatypes.js';
import { modelFileInFolder } from './model-file.js';

/** A dynamic dimension without a name (no dim_param): it constrains nothing across tensors. */
export const UNNAMED_DIM = '?';

const { onnx } = onnxProto;

export interface TensorSpec {
  name: string;
  /** Open Inference Protocol datatype (FP32, INT64, ...), or a description for non-tensor values. */
  datatype: string;
  /** -1 for a dynamic dimension; null when the model declares no shape at all. */
  shape: number[] | null;
  /** The declared dimensions: sizes, or the symbolic names of dynamic ones. */
  dims: (number | string)[] | null;
  isTensor: boolean;
}

export interface ModelInfo {
  path: string;
  sha256: string;
  sizeBytes: number;
  irVersion: number;
  /** The default ("ai.onnx") domain's opset. */
  opset: number | null;
  opsets: { domain: string; version: number }[];
  producer: { name: string; version: string };
  graphName: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  metadata: Record<string, string>;
  /** Files beside the model that hold its weights (ONNX external data), relative to its folder. */
  externalData: string[];
  /** Control-flow operators in the main graph (Loop, Scan, If): its cost may depend on its inputs' values. */
  controlFlow: string[];
}

const CONTROL_FLOW = new Set(['Loop', 'Scan', 'If']);

type LongLike = number | { low: number; high: number; toNumber?: () => number };

function toNumber(value: LongLike | null | undefined): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === 'number') return value;
  if (typeof value.toNumber === 'function') return value.toNumber();
  return value.high * 2 ** 32 + (value.low >>> 0);
}

function describeType(type: InstanceType<typeof onnx.TypeProto> | null | undefined): Omit<TensorSpec, 'name'> {
  if (type?.tensorType) {
    const dims = type.tensorType.shape
      ? (type.tensorType.shape.dim ?? []).map((d) =>
          d.dimParam ? d.dimParam : d.dimValue !== null && d.dimValue !== undefined ? toNumber(d.dimValue) : UNNAMED_DIM,
        )
      : null;
    return {
      datatype: onnxElementTypeName(type.tensorType.elemType ?? 0),
      dims,
      shape: dims ? dims.map((d) => (typeof d === 'number' && d > 0 ? d : -1)) : null,
      isTensor: true,
    };
  }
  const describe = (t: InstanceType<typeof onnx.TypeProto> | null | undefined): string => {
    if (!t) return '?';
    if (t.tensorType) return onnxElementTypeName(t.tensorType.elemType ?? 0);
    if (t.sequenceType) return `seq(${describe(t.sequenceType.elemType as InstanceType<typeof onnx.TypeProto>)})`;
    if (t.mapType) return `map(${onnxElementTypeName(t.mapType.keyType ?? 0)},${describe(t.mapType.valueType as InstanceType<typeof onnx.TypeProto>)})`;
    return t.value ?? 'unknown';
  };
  return { datatype: describe(type), dims: null, shape: null, isTensor: false };
}

/**
 * Reads an ONNX file's signature and provenance without running it.
 * Every way the file can be unusable becomes a one-line input error.
 */
export async function inspectModel(modelPath: string, options: { cwd?: string } = {}): Promise<ModelInfo> {
  // A folder (a Hugging Face export) names its model.onnx, or its one .onnx file.
  const absolute =
    (await modelFileInFolder(path.resolve(options.cwd ?? process.cwd(), modelPath), modelPath)) ?? path.resolve(options.cwd ?? process.cwd(), modelPath);
  let size: number;
  try {
    const info = await stat(absolute);
    size = info.size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      throw inputError(`model file not found: ${modelPath}`, 'check the path, or set model.path in mlops.config.json');
    throw error;
  }
  if (size === 0) throw inputError(`${modelPath} is empty (0 bytes)`, 're-export the model; the file was probably not written completely');

  const bytes = await readFile(absolute);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  let model: InstanceType<typeof onnx.ModelProto>;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (error) {
    const reason = looksLikeText(bytes)
      ? 'it is a text file, not a binary ONNX protobuf'
      : /index out of range/i.test((error as Error).message)
        ? 'the protobuf data ends early (truncated file?)'
        : `the protobuf data is corrupt (${(error as Error).message})`;
    throw inputError(
      `${modelPath} is not a valid ONNX model: ${reason}`,
      'check that the file is a complete .onnx export (compare its size and sha256 with the original)',
      error,
    );
  }
  const irVersion = toNumber(model.irVersion);
  if (!model.graph || irVersion <= 0 || (model.graph.output ?? []).length === 0) {
    throw inputError(
      `${modelPath} is not an ONNX model: no graph, IR version or outputs found in the file`,
      'pass a model exported to ONNX (torch.onnx.export, tf2onnx, skl2onnx, ...)',
    );
  }

  const initializers = new Set((model.graph.initializer ?? []).map((t) => t.name));
  // Before IR version 4, initializers were also listed as graph inputs.
  const inputs = (model.graph.input ?? [])
    .filter((v) => !initializers.has(v.name ?? ''))
    .map((v) => ({ name: v.name ?? '', ...describeType(v.type as InstanceType<typeof onnx.TypeProto>) }));
  const outputs = (model.graph.output ?? []).map((v) => ({
    name: v.name ?? '',
    ...describeType(v.type as InstanceType<typeof onnx.TypeProto>),
  }));
  const externalData = await checkExternalData(model, absolute, modelPath);
  const opsets = (model.opsetImport ?? []).map((o) => ({ domain: o.domain || 'ai.onnx', version: toNumber(o.version as LongLike) }));
  const metadata: Record<string, string> = {};
  for (const prop of model.metadataProps ?? []) if (prop.key) metadata[prop.key] = prop.value ?? '';

  return {
    path: absolute,
    sha256,
    sizeBytes: size,
    irVersion,
    opset: opsets.find((o) => o.domain === 'ai.onnx')?.version ?? null,
    opsets,
    producer: { name: model.producerName ?? '', version: model.producerVersion ?? '' },
    graphName: model.graph.name ?? '',
    inputs,
    outputs,
    metadata,
    externalData,
    controlFlow: [...new Set((model.graph.node ?? []).map((n) => n.opType ?? '').filter((op) => CONTROL_FLOW.has(op)))].sort(),
  };
}

/**
 * Large models keep their weights in files beside the .onnx (external data).
 * They must exist, and stay inside the model's folder, or nothing can load them.
 */
async function checkExternalData(model: InstanceType<typeof onnx.ModelProto>, absolute: string, shown: string): Promise<string[]> {
  const EXTERNAL = 1;
  const locations = new Set<string>();
  for (const tensor of model.graph?.initializer ?? []) {
    if (Number(tensor.dataLocation) !== EXTERNAL) continue;
    const location = (tensor.externalData ?? []).find((e) => e.key === 'location')?.value;
    if (location) locations.add(location);
  }
  const dir = path.dirname(absolute);
  for (const location of locations) {
    const resolved = path.resolve(dir, location);
    if (path.isAbsolute(location) || !resolved.startsWith(dir + path.sep)) {
      throw inputError(
        `${shown}: external data '${location}' is outside the model's folder`,
        'save the model with its data files beside it (onnx.save_model(..., location="weights.bin"))',
      );
    }
    const info = await stat(resolved).catch(() => undefined);
    if (!info?.isFile()) {
      throw inputError(`${shown}: its weights are in '${location}', which is missing beside it`, `copy ${location} into the folder that holds the model`);
    }
  }
  return [...locations].sort();
}

function looksLikeText(bytes: Buffer): boolean {
  const head = bytes.subarray(0, 256);
  return head.every((b) => b === 9 || b === 10 || b === 13 || (b >= 32 && b < 127));
}

/** A model name for URLs and image names: the file's stem, or its folder when the file is just "model.onnx". */
export function defaultModelName(modelPath: string): string {
  const absolute = path.resolve(modelPath);
  let stem = path.basename(absolute).replace(/\.onnx$/i, '');
  // A folder, or its model.onnx: the folder's name.
  if (/^model$/i.test(stem)) {
    const dir = path.dirname(absolute);
    // An onnx/ subfolder (Transformers.js-style exports) is named for the folder that holds it.
    stem = (path.basename(dir) === 'onnx' ? path.basename(path.dirname(dir)) : path.basename(dir)) || stem;
  }
  const name = stem
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '');
  return name || 'model';
}
