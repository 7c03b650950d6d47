import { inputError } from '../errors.js';
import {
  attribute,
  DataType,
  defaultOpset,
  dimsOf,
  floatOutput,
  floatTensor,
  floatValues,
  int32Tensor,
  int8Tensor,
  node,
  onnx,
  uint8Tensor,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from './onnx-graph.js';

export type QuantizeMode = 'dynamic' | 'static';

/** A node whose weights become INT8. */
interface Candidate {
  node: NodeProto;
  op: 'MatMul' | 'Gemm' | 'Conv';
  activation: string;
  weight: TensorProto;
  /** A float initializer bias (Gemm's C, Conv's B), when there is one. */
  bias: TensorProto | null;
  output: string;
}

export interface LeftInFloat {
  node: string;
  op: string;
  reason: string;
}

export interface QuantizeResult {
  quantized: { node: string; op: string }[];
  leftInFloat: LeftInFloat[];
}

export interface Range {
  min: number;
  max: number;
}

/** Weights: INT8, symmetric, [-127, 127] (onnxruntime.quantization's QInt8 weights), zero point 0. */
export function weightScale(absMax: number): number {
  return absMax > 0 ? absMax / 127 : 1;
}

/** Activations: UINT8, asymmetric over the range widened to hold 0 (onnxruntime.quantization's QUInt8). */
export function activationScale(range: Range): { scale: number; zeroPoint: number } {
  const min = Math.min(range.min, 0);
  const max = Math.max(range.max, 0);
  const scale = max > min ? (max - min) / 255 : 1;
  return { scale, zeroPoint: Math.max(0, Math.min(255, Math.round(-min / scale))) };
}

function quantizeInt8(values: Float32Array, scale: number): Int8Array {
  const out = new Int8Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = Math.max(-127, Math.min(127, Math.round(values[i] / scale)));
  return out;
}

const absMax = (values: ArrayLike<number>, from = 0, to = values.length) => {
  let m = 0;
  for (let i = from; i < to; i++) m = Math.max(m, Math.abs(values[i]));
  return m;
};

/** Weights of at least this many values count as weights worth reporting when left in float. */
const REPORTED_WEIGHT = 256;

/**
 * The nodes whose weights can be quantized (MatMul and Gemm with a constant 2-D weight, and for static
 * quantization Conv), and the weight-holding nodes that stay in float, each with why.
 */
export function findCandidates(model: ModelProto, mode: QuantizeMode, exclude: string[]): { candidates: Candidate[]; leftInFloat: LeftInFloat[] } {
  const graph = model.graph!;
  const initializers = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const floatInit = (name: string | undefined) => {
    const t = name ? initializers.get(name) : undefined;
    return t && t.dataType === DataType.FLOAT && floatValues(t) ? t : null;
  };
  const candidates: Candidate[] = [];
  const leftInFloat: LeftInFloat[] = [];
  for (const n of graph.node ?? []) {
    const name = n.name || `${n.opType}:${n.output?.[0]}`;
    const op = n.opType ?? '';
    const inputs = n.input ?? [];
    const weighty = inputs.some(
      (i) => initializers.get(i)?.dataType === DataType.FLOAT && dimsOf(initializers.get(i)!).reduce((a, b) => a * b, 1) >= REPORTED_WEIGHT,
    );
    const leave = (reason: string) => leftInFloat.push({ node: name, op, reason });
    const quantizable = ['MatMul', 'Gemm', 'Conv'].includes(op) && (!n.domain || n.domain === 'ai.onnx');
    if ((n.attribute ?? []).some((a) => a.g || (a.graphs ?? []).length > 0)) {
      leave(`its body (a subgraph) stays in float: mlops quantizes the main graph only`);
      continue;
    }
    if (!quantizable) {
      if (weighty) leave(`mlops does not quantize ${op}`);
      continue;
    }
    if (exclude.includes(name) || exclude.includes(op) || (n.name && exclude.includes(n.name))) {
      leave('excluded by --exclude');
      continue;
    }
    const weight = floatInit(inputs[1]);
    if (!weight) {
      leave('its weight is not a constant FLOAT tensor');
      continue;
    }
    if (floatInit(inputs[0])) {
      leave('its input is a constant: nothing to quantize at run time');
      continue;
    }
    if (op === 'Conv' && mode === 'dynamic') {
      leave('dynamic quantization leaves Conv in float (ONNX Runtime advises static quantization for CNNs): use --quantize static');
      continue;
    }
    if (op !== 'Conv' && dimsOf(weight).length !== 2) {
      leave(`its weight has ${dimsOf(weight).length} dimensions, not 2`);
      continue;
    }
    if (op === 'Gemm' && (attribute(n, 'transA', 0) !== 0 || attribute(n, 'alpha', 1) !== 1 || (inputs[2] && attribute(n, 'beta', 1) !== 1))) {
      leave('Gemm with transA, alpha or beta other than the defaults');
      continue;
    }
    const bias = op === 'MatMul' ? null : floatInit(inputs[2]);
    candidates.push({ node: n, op: op as Candidate['op'], activation: inputs[0], weight, bias, output: n.output![0] });
  }
  return { candidates, leftInFloat };
}

/** The tensors static quantization needs ranges for: each quantized node's activation input and its output. */
export function calibrationTensors(candidates: Candidate[]): string[] {
  return [...new Set(candidates.flatMap((c) => [c.activation, c.output]))];
}

/** What a node reads: its inputs, and the outer-scope names its subgraphs (Loop, Scan, If bodies) use. */
function reads(n: NodeProto): string[] {
  const names = [...(n.input ?? [])];
  for (const a of n.attribute ?? []) {
    for (const g of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) {
      const local = new Set([
        ...(g.input ?? []).map((v) => v.name),
        ...(g.initializer ?? []).map((t) => t.name),
        ...(g.node ?? []).flatMap((x) => x.output ?? []),
      ]);
      for (const inner of g.node ?? []) for (const name of reads(inner)) if (!local.has(name)) names.push(name);
    }
  }
  return names;
}

/** Nodes in an order where every input is made before it is read, keeping the original order where it can. */
function topologicalOrder(nodes: NodeProto[], available: Set<string>): NodeProto[] {
  const made = new Set(available);
  made.add('');
  const pending = [...nodes];
  const ordered: NodeProto[] = [];
  while (pending.length > 0) {
    const index = pending.findIndex((n) => reads(n).every((i) => made.has(i)));
    if (index === -1) throw new Error(`quantized graph has a cycle or a missing input at ${pending[0].name}`);
    const [next] = pending.splice(index, 1);
    ordered.push(next);
    for (const o of next.output ?? []) made.add(o);
  }
  return ordered;
}

function graphSources(model: ModelProto): Set<string> {
  const graph = model.graph!;
  return new Set([...(graph.input ?? []).map((v) => v.name ?? ''), ...(graph.initializer ?? []).map((t) => t.name ?? '')]);
}

/** Drops initializers no node reads any more (the float weights that were replaced). */
function dropUnused(model: ModelProto): void {
  const graph = model.graph!;
  const read = new Set((graph.node ?? []).flatMap(reads));
  const outputs = new Set((graph.output ?? []).map((o) => o.name));
  const dropped = new Set((graph.initializer ?? []).filter((t) => !read.has(t.name ?? '') && !outputs.has(t.name)).map((t) => t.name));
  graph.initializer = (graph.initializer ?? []).filter((t) => !dropped.has(t.name));
  // Before IR version 4 initializers were listed as inputs too: a dropped one must not become a required input.
  graph.input = (graph.input ?? []).filter((v) => !dropped.has(v.name));
}

function requireOpset(model: ModelProto, wanted: number, what: string): number {
  const opset = defaultOpset(model);
  if (opset < wanted)
    throw inputError(
      `${what} needs opset ${wanted} or later; the model has opset ${opset}`,
      'convert the model to a newer opset first (onnx.version_converter)',
    );
  return opset;
}

/**
 * Dynamic quantization as onnxruntime.quantization.quantize_dynamic does it: weights INT8 with one
 * scale, activations quantized at run time by DynamicQuantizeLinear, MatMulInteger, then Cast and Mul
 * by the two scales (ONNX Runtime fuses that into DynamicQuantizeMatMul when it loads the model).
 * Gemm becomes the same plus an Add of its bias.
 */
export function quantizeDynamic(model: ModelProto, exclude: string[]): QuantizeResult {
  requireOpset(model, 11, 'dynamic quantization (DynamicQuantizeLinear)');
  const graph = model.graph!;
  const { candidates, leftInFloat } = findCandidates(model, 'dynamic', exclude);
  const replaced = new Set(candidates.map((c) => c.node));
  const added: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  const quantizedActivations = new Set<string>();
  for (const c of candidates) {
    const weightName = c.weight.name!;
    const [rows, cols] = dimsOf(c.weight);
    let values = floatValues(c.weight)!;
    let dims = [rows, cols];
    if (c.op === 'Gemm' && attribute(c.node, 'transB', 0) === 1) {
      // MatMulInteger has no transpose: store the weight as [K, N].
      const transposed = new Float32Array(values.length);
      for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) transposed[k * rows + r] = values[r * cols + k];
      values = transposed;
      dims = [cols, rows];
    }
    const scale = weightScale(absMax(values));
    const prefix = `${weightName}_${c.node.name || c.output}`;
    initializers.push(
      int8Tensor(`${prefix}_quantized`, dims, quantizeInt8(values, scale)),
      floatTensor(`${prefix}_scale`, [], [scale]),
      int8Tensor(`${prefix}_zero_point`, [], new Int8Array(1)),
    );
    const a = c.activation;
    if (!quantizedActivations.has(a)) {
      quantizedActivations.add(a);
      added.push(node('DynamicQuantizeLinear', [a], [`${a}_quantized`, `${a}_scale`, `${a}_zero_point`], `${a}_DynamicQuantizeLinear`));
    }
    const out = c.output;
    const product = c.op === 'Gemm' && c.node.input?.[2] ? `${out}_matmul` : out;
    added.push(
      node(
        'MatMulInteger',
        [`${a}_quantized`, `${prefix}_quantized`, `${a}_zero_point`, `${prefix}_zero_point`],
        [`${out}_int32`],
        `${c.node.name || out}_MatMulInteger`,
      ),
      node('Cast', [`${out}_int32`], [`${out}_int32_float`], `${c.node.name || out}_Cast`, { to: DataType.FLOAT }),
      node('Mul', [`${a}_scale`, `${prefix}_scale`], [`${out}_scale_product`], `${c.node.name || out}_ScaleProduct`),
      node('Mul', [`${out}_int32_float`, `${out}_scale_product`], [product], `${c.node.name || out}_Rescale`),
    );
    if (product !== out) added.push(node('Add', [product, c.node.input![2]], [out], `${c.node.name || out}_Bias`));
  }
  graph.initializer = [...(graph.initializer ?? []), ...initializers];
  graph.node = topologicalOrder([...(graph.node ?? []).filter((n) => !replaced.has(n)), ...added], graphSources(model));
  dropUnused(model);
  return { quantized: candidates.map((c) => ({ node: c.node.name || c.output, op: c.op })), leftInFloat };
}

/**
 * Static quantization in QDQ form: QuantizeLinear/DequantizeLinear pairs on each quantized node's
 * input and output with scales from the calibration ranges, weights INT8 behind a DequantizeLinear
 * (per output channel for Conv when asked), biases INT32 at the input scale times the weight scale.
 * ONNX Runtime fuses the pattern into QLinearConv, QLinearMatMul and QGemm. The graph's own inputs
 * and outputs stay FLOAT.
 */
/** The nodes and initializers a quantization adds to the graph. */
interface Additions {
  nodes: NodeProto[];
  initializers: TensorProto[];
}

/**
 * Each calibrated activation quantized to UINT8 and back (QuantizeLinear, DequantizeLinear), its readers
 * rewired to the dequantized copy; the scale and zero point each got.
 */
function quantizeActivations(graph: NonNullable<ModelProto['graph']>, tensors: string[], ranges: Map<string, Range>, added: Additions) {
  const activation = new Map<string, { scale: number; zeroPoint: number }>();
  const outputs = new Set((graph.output ?? []).map((o) => o.name ?? ''));
  for (const tensor of tensors) {
    const range = ranges.get(tensor);
    if (!range) throw new Error(`no calibration range for ${tensor}`);
    const q = activationScale(range);
    activation.set(tensor, q);
    added.initializers.push(floatTensor(`${tensor}_scale`, [], [q.scale]), uint8Tensor(`${tensor}_zero_point`, [], Uint8Array.of(q.zeroPoint)));
    const isOutput = outputs.has(tensor);
    // A graph output keeps its name on the DequantizeLinear: callers see the same FLOAT tensor.
    const source = isOutput ? `${tensor}_before_quantize` : tensor;
    const dequantized = isOutput ? tensor : `${tensor}_dequantized`;
    if (isOutput) for (const n of graph.node ?? []) n.output = (n.output ?? []).map((o) => (o === tensor ? source : o));
    else for (const n of graph.node ?? []) n.input = (n.input ?? []).map((i) => (i === tensor ? dequantized : i));
    added.nodes.push(
      node('QuantizeLinear', [source, `${tensor}_scale`, `${tensor}_zero_point`], [`${tensor}_quantized`], `${tensor}_QuantizeLinear`),
      node('DequantizeLinear', [`${tensor}_quantized`, `${tensor}_scale`, `${tensor}_zero_point`], [dequantized], `${tensor}_DequantizeLinear`),
    );
  }
  return activation;
}

/**
 * A bias as INT32 at the input's scale times the weight's (per channel when the weight is), with its
 * DequantizeLinear; returns the dequantized bias's name.
 */
function quantizeBias(options: { bias: TensorProto; prefix: string; inputScale: number; scales: Float32Array; channels: number; added: Additions }): string {
  const { prefix, inputScale, scales, channels, added } = options;
  const bias = floatValues(options.bias)!;
  const biasScales = Float32Array.from({ length: bias.length }, (_, i) => inputScale * scales[channels > 1 ? i : 0]);
  const q = Int32Array.from(bias, (b, i) => Math.round(b / (biasScales[i] || 1)));
  const biasScaleValues = channels > 1 ? biasScales : Float32Array.of(biasScales[0] ?? inputScale * scales[0]);
  added.initializers.push(
    int32Tensor(`${prefix}_bias_quantized`, dimsOf(options.bias), q),
    floatTensor(`${prefix}_bias_scale`, channels > 1 ? [bias.length] : [], biasScaleValues),
    int32Tensor(`${prefix}_bias_zero_point`, channels > 1 ? [bias.length] : [], new Int32Array(channels > 1 ? bias.length : 1)),
  );
  added.nodes.push(
    node(
      'DequantizeLinear',
      [`${prefix}_bias_quantized`, `${prefix}_bias_scale`, `${prefix}_bias_zero_point`],
      [`${prefix}_bias_dequantized`],
      `${prefix}_bias_DequantizeLinear`,
      channels > 1 ? { axis: 0 } : {},
    ),
  );
  return `${prefix}_bias_dequantized`;
}

export function quantizeStatic(model: ModelProto, exclude: string[], ranges: Map<string, Range>, perChannel: boolean): QuantizeResult {
  const opset = requireOpset(model, 10, 'static quantization (QuantizeLinear)');
  if (perChannel && opset < 13)
    throw inputError(`per-channel scales need opset 13 or later; the model has opset ${opset}`, 'pass --per-channel false, or convert the model to opset 13');
  const graph = model.graph!;
  const { candidates, leftInFloat } = findCandidates(model, 'static', exclude);
  const added: Additions = { nodes: [], initializers: [] };
  const activation = quantizeActivations(graph, calibrationTensors(candidates), ranges, added);

  for (const c of candidates) {
    const weightName = c.weight.name!;
    const dims = dimsOf(c.weight);
    const values = floatValues(c.weight)!;
    const channels = c.op === 'Conv' && perChannel ? dims[0] : 1;
    const per = values.length / channels;
    const scales = Float32Array.from({ length: channels }, (_, ch) => weightScale(absMax(values, ch * per, (ch + 1) * per)));
    const quantized = new Int8Array(values.length);
    for (let ch = 0; ch < channels; ch++) quantized.set(quantizeInt8(values.subarray(ch * per, (ch + 1) * per), scales[ch]), ch * per);
    const prefix = `${weightName}_${c.node.name || c.output}`;
    const scaleDims = channels > 1 ? [channels] : [];
    added.initializers.push(
      int8Tensor(`${prefix}_quantized`, dims, quantized),
      floatTensor(`${prefix}_scale`, scaleDims, scales),
      int8Tensor(`${prefix}_zero_point`, scaleDims, new Int8Array(channels)),
    );
    const axis: Record<string, number> = channels > 1 ? { axis: 0 } : {};
    added.nodes.push(
      node(
        'DequantizeLinear',
        [`${prefix}_quantized`, `${prefix}_scale`, `${prefix}_zero_point`],
        [`${prefix}_dequantized`],
        `${prefix}_DequantizeLinear`,
        axis,
      ),
    );
    c.node.input![1] = `${prefix}_dequantized`;
    if (c.bias) c.node.input![2] = quantizeBias({ bias: c.bias, prefix, inputScale: activation.get(c.activation)!.scale, scales, channels, added });
  }
  graph.initializer = [...(graph.initializer ?? []), ...added.initializers];
  graph.node = topologicalOrder([...(graph.node ?? []), ...added.nodes], graphSources(model));
  dropUnused(model);
  return { quantized: candidates.map((c) => ({ node: c.node.name || c.output, op: c.op })), leftInFloat };
}

/** The model with every tensor in `names` also a graph output: ONNX Runtime then hands them back. */
export function withOutputs(model: ModelProto, names: string[]): ModelProto {
  const copy = onnx.ModelProto.decode(onnx.ModelProto.encode(model).finish());
  const existing = new Set((copy.graph!.output ?? []).map((o) => o.name));
  for (const name of names) {
    if (existing.has(name)) continue;
    copy.graph!.output!.push(floatOutput(name));
  }
  return copy;
}
