/**
 * `mlops optimize` on the digits MLP (Gemm, MatMul) and CNN (Conv) fixtures: what the quantized
 * graphs hold, their size, their quality on the holdout, the QDQ scales against ranges computed here
 * independently, ops left in float, and the gate that keeps a failing model from being written.
 */
import * as ort from 'onnxruntime-node';
import { existsSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType, decodeModel, dimsOf, encodeModel, floatTensor, floatValues, node, onnx, type ModelProto } from '../../src/optimize/onnx-graph.js';
import { quantizeDynamic } from '../../src/optimize/quantize.js';
import { fixture, lines, runCli, withTempDir } from '../helpers.js';

const quick = { bench: { durationSeconds: 0.3, rounds: 1 } };

async function project(dir: string, model: 'digits_mlp' | 'digits_cnn', optimize: object = {}): Promise<void> {
  await writeFile(
    path.join(dir, 'mlops.config.json'),
    JSON.stringify({
      model: { path: fixture(model, 'model.onnx'), name: 'digits' },
      test: { holdout: fixture(model, 'holdout.csv') },
      optimize: { ...quick, ...optimize },
    }),
  );
}

async function optimize(dir: string, args: string[]) {
  const result = await runCli(['optimize', '--json', ...args], { cwd: dir });
  return { ...result, report: result.stdout ? JSON.parse(result.stdout) : null };
}

const model = async (file: string) => decodeModel(await readFile(file));
const ops = (m: ModelProto) => (m.graph!.node ?? []).map((n) => n.opType);
/** Weight initializers (2 dimensions or more: not biases or scales), by element type. */
const weights = (m: ModelProto) => (m.graph!.initializer ?? []).filter((t) => dimsOf(t).length >= 2).map((t) => ({ name: t.name, type: t.dataType }));
const errorLine = (stderr: string) => lines(stderr).find((l) => l.startsWith('error:'));

async function runs(file: string, input: string, data: Float32Array, dims: number[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(file);
  try {
    const out = await session.run({ [input]: new ort.Tensor('float32', data, dims) });
    return out[session.outputNames[0]].data as Float32Array;
  } finally {
    await session.release();
  }
}

async function holdoutRows(name: string, count?: number): Promise<number[][]> {
  const text = await readFile(fixture(name, 'holdout.csv'), 'utf8');
  return text
    .trim()
    .split('\n')
    .slice(1, count === undefined ? undefined : count + 1)
    .map((l) => l.split(',').slice(0, 64).map(Number));
}

describe('mlops optimize', () => {
  it("dynamic: the MLP's MatMul and Gemm weights become INT8 (DynamicQuantizeMatMul), the file is at most 0.35x, and accuracy holds", async () => {
    await withTempDir(async (dir) => {
      await project(dir, 'digits_mlp');
      const { code, stderr, report } = await optimize(dir, ['--output', 'model.int8.onnx', '--quantize', 'dynamic']);
      expect(code, stderr).toBe(0);
      const out = await model(path.join(dir, 'model.int8.onnx'));
      expect(ops(out).filter((o) => o === 'DynamicQuantizeMatMul')).toHaveLength(3);
      expect(ops(out)).not.toContain('Gemm');
      expect(weights(out)).toHaveLength(3);
      expect(weights(out).filter((w) => w.type !== DataType.INT8)).toEqual([]);
      const size = (await stat(path.join(dir, 'model.int8.onnx'))).size / (await stat(fixture('digits_mlp', 'model.onnx'))).size;
      expect(size).toBeLessThanOrEqual(0.35);
      expect(report.values.size_ratio).toBeCloseTo(size, 6);
      expect(report.quantized.map((q: { op: string }) => q.op)).toEqual(['Gemm', 'Gemm', 'Gemm']);
      expect(report.values.accuracy_drop).toBeLessThanOrEqual(0.01);
      expect(report.agreement.rows).toBe(360);
      expect(report.agreement.classChangeRate).toBeLessThanOrEqual(0.01);
      expect(report.gates).toEqual([
        expect.objectContaining({ metric: 'accuracy_drop', op: '<=', threshold: 0.01, passed: true, implicit: true }),
        expect.objectContaining({ metric: 'error_rate', op: '<=', threshold: 0, value: 0, passed: true, implicit: true }),
      ]);
      // Names, signature and opset kept; what was done recorded.
      const source = await model(fixture('digits_mlp', 'model.onnx'));
      expect(out.graph!.input!.map((i) => i.name)).toEqual(source.graph!.input!.map((i) => i.name));
      expect(out.graph!.output!.map((o) => o.name)).toEqual(source.graph!.output!.map((o) => o.name));
      const metadata = Object.fromEntries((out.metadataProps ?? []).map((p) => [p.key, p.value]));
      expect(metadata['mlops.optimize.method']).toBe('dynamic-int8');
      expect(metadata['mlops.optimize.source_sha256']).toBe(report.source.sha256);
      // It loads and runs in onnxruntime-node, and answers close to the float model.
      const rows = await holdoutRows('digits_mlp', 8);
      const input = Float32Array.from(rows.flat());
      const [a, b] = [
        await runs(fixture('digits_mlp', 'model.onnx'), 'pixels', input, [8, 64]),
        await runs(path.join(dir, 'model.int8.onnx'), 'pixels', input, [8, 64]),
      ];
      expect(Math.max(...a.map((v, i) => Math.abs(v - b[i])))).toBeLessThan(0.1);
      // At level basic the standard ops stay as written.
      const basic = await optimize(dir, ['--output', 'basic.onnx', '--quantize', 'dynamic', '--level', 'basic']);
      expect(basic.code, basic.stderr).toBe(0);
      expect(ops(await model(path.join(dir, 'basic.onnx')))).toEqual(expect.arrayContaining(['DynamicQuantizeLinear', 'MatMulInteger', 'Cast', 'Mul']));
    });
  });

  it("static: QDQ scales are those of the calibration rows' ranges, computed here with the float weights", async () => {
    await withTempDir(async (dir) => {
      await project(dir, 'digits_mlp');
      const { code, stderr, report } = await optimize(dir, ['--output', 'qdq.onnx', '--quantize', 'static', '--level', 'basic', '--calibration-rows', '100']);
      expect(code, stderr).toBe(0);
      expect(report.calibration).toEqual({ file: path.relative(dir, fixture('digits_mlp', 'holdout.csv')), rows: 100, method: 'minmax' });
      const out = await model(path.join(dir, 'qdq.onnx'));
      const init = new Map((out.graph!.initializer ?? []).map((t) => [t.name, t]));
      const scaleOf = new Map(
        (out.graph!.node ?? [])
          .filter((n) => n.opType === 'QuantizeLinear')
          .map((n) => [n.input![0], { scale: floatValues(init.get(n.input![1])!)![0], zeroPoint: Number(init.get(n.input![2])!.rawData![0]) }]),
      );

      // The same network, forward in float64 here from the source model's weights.
      const source = await model(fixture('digits_mlp', 'model.onnx'));
      const w = (name: string) => {
        const t = source.graph!.initializer!.find((i) => i.name === name)!;
        return { values: floatValues(t)!, dims: dimsOf(t) };
      };
      const linear = (x: number[], weight: { values: Float32Array; dims: number[] }, bias: Float32Array, transposed: boolean) => {
        const [r, c] = weight.dims;
        const outs = transposed ? r : c;
        const ins = transposed ? c : r;
        return Array.from({ length: outs }, (_, o) => {
          let sum = bias[o];
          for (let i = 0; i < ins; i++) sum += x[i] * (transposed ? weight.values[o * c + i] : weight.values[i * c + o]);
          return sum;
        });
      };
      const relu = (x: number[]) => x.map((v) => Math.max(0, v));
      const ranges = new Map<string, { min: number; max: number }>();
      const see = (name: string, values: number[]) => {
        const r = ranges.get(name) ?? { min: Infinity, max: -Infinity };
        for (const v of values) {
          r.min = Math.min(r.min, v);
          r.max = Math.max(r.max, v);
        }
        ranges.set(name, r);
      };
      for (const row of await holdoutRows('digits_mlp', 100)) {
        const scaled = row.map((v) => v / 16);
        const first = linear(scaled, w('first.weight'), w('first.bias').values, true);
        const middle = linear(relu(first), w('middle_weight'), w('middle_bias').values, false);
        const last = linear(relu(middle), w('last.weight'), w('last.bias').values, true);
        see('/Div_output_0', scaled);
        see('/first/Gemm_output_0', first);
        see('/Relu_output_0', relu(first));
        see('/Add_output_0', middle);
        see('/Relu_1_output_0', relu(middle));
        see('/last/Gemm_output_0', last);
      }
      expect([...scaleOf.keys()].sort()).toEqual([...ranges.keys()].sort());
      for (const [name, range] of ranges) {
        const min = Math.min(0, range.min);
        const max = Math.max(0, range.max);
        const scale = (max - min) / 255;
        expect(scaleOf.get(name)!.scale, name).toBeCloseTo(scale, 5);
        expect(Math.abs(scaleOf.get(name)!.scale - scale) / scale, name).toBeLessThan(1e-4);
        expect(scaleOf.get(name)!.zeroPoint, name).toBe(Math.round(-min / scale) + 0);
      }

      // Percentile ranges cut the outliers: no scale wider than min/max's, some narrower.
      await project(dir, 'digits_mlp', { method: 'percentile', percentile: 99 });
      const cut = await optimize(dir, ['--output', 'cut.onnx', '--quantize', 'static', '--level', 'basic', '--calibration-rows', '100']);
      expect(cut.code, cut.stderr).toBe(0);
      const cutModel = await model(path.join(dir, 'cut.onnx'));
      const cutInit = new Map((cutModel.graph!.initializer ?? []).map((t) => [t.name, t]));
      const cutScales = (cutModel.graph!.node ?? [])
        .filter((n) => n.opType === 'QuantizeLinear')
        .map((n) => [n.input![0], floatValues(cutInit.get(n.input![1])!)![0]] as const);
      expect(cutScales).toHaveLength(scaleOf.size);
      for (const [name, scale] of cutScales) expect(scale, name).toBeLessThanOrEqual(scaleOf.get(name)!.scale * (1 + 1e-6));
      expect(cutScales.some(([name, scale]) => scale < scaleOf.get(name)!.scale * 0.95)).toBe(true);
    });
  });

  it('static on the CNN: QLinearConv with per-channel INT8 weights, at most 0.35x, accuracy within the gate, inputs and outputs still FLOAT', async () => {
    await withTempDir(async (dir) => {
      await project(dir, 'digits_cnn', { gates: { accuracy_drop: '<= 0.01', size_ratio: '<= 0.35', class_change_rate: '<= 0.02' } });
      const { code, stderr, report } = await optimize(dir, ['--output', 'cnn.int8.onnx', '--quantize', 'static']);
      expect(code, stderr).toBe(0);
      expect(report.gates.map((g: { metric: string; passed: boolean }) => [g.metric, g.passed])).toEqual([
        ['accuracy_drop', true],
        ['size_ratio', true],
        ['class_change_rate', true],
        ['error_rate', true],
      ]);
      const out = await model(path.join(dir, 'cnn.int8.onnx'));
      expect(ops(out).filter((o) => o === 'QLinearConv')).toHaveLength(3);
      expect(ops(out)).not.toContain('Conv');
      expect(weights(out)).toHaveLength(4);
      expect(weights(out).filter((w) => w.type !== DataType.INT8)).toEqual([]);
      // Per-channel: one scale per output channel of each Conv weight.
      const scales = (out.graph!.initializer ?? []).filter((t) => /Conv_scale$/.test(t.name ?? ''));
      expect(scales.map((t) => dimsOf(t))).toEqual(expect.arrayContaining([[32], [64], [64]]));
      expect(report.optimized.sizeBytes / report.source.sizeBytes).toBeLessThanOrEqual(0.35);
      for (const io of [...out.graph!.input!, ...out.graph!.output!]) expect(io.type!.tensorType!.elemType, io.name!).toBe(DataType.FLOAT);
      const rows = await holdoutRows('digits_cnn', 4);
      const result = await runs(path.join(dir, 'cnn.int8.onnx'), 'image', Float32Array.from(rows.flat()), [4, 1, 8, 8]);
      expect(result).toHaveLength(40);
    });
  });

  it('an op it does not quantize stays in float and is reported, never dropped; --exclude leaves a node in float', async () => {
    // x [N, 8, 4, 4] -> ConvTranspose (576 weights) -> Flatten -> Gemm -> y
    const transposeWeights = Float32Array.from({ length: 8 * 8 * 3 * 3 }, (_, i) => Math.sin(i) / 10);
    const gemmWeights = Float32Array.from({ length: 8 * 6 * 6 * 10 }, (_, i) => Math.cos(i) / 10);
    const graph = onnx.GraphProto.create({
      name: 'g',
      node: [node('ConvTranspose', ['x', 'wt'], ['t'], 'upsample'), node('Flatten', ['t'], ['f'], 'flatten'), node('Gemm', ['f', 'wg'], ['y'], 'head')],
      initializer: [floatTensor('wt', [8, 8, 3, 3], transposeWeights), floatTensor('wg', [288, 10], gemmWeights)],
      input: [
        onnx.ValueInfoProto.create({
          name: 'x',
          type: onnx.TypeProto.create({
            tensorType: onnx.TypeProto.Tensor.create({
              elemType: DataType.FLOAT,
              shape: onnx.TensorShapeProto.create({ dim: [{ dimParam: 'batch' }, { dimValue: 8 }, { dimValue: 4 }, { dimValue: 4 }] }),
            }),
          }),
        }),
      ],
      output: [
        onnx.ValueInfoProto.create({ name: 'y', type: onnx.TypeProto.create({ tensorType: onnx.TypeProto.Tensor.create({ elemType: DataType.FLOAT }) }) }),
      ],
    });
    const make = () =>
      onnx.ModelProto.create({
        irVersion: 8,
        opsetImport: [{ domain: '', version: 13 }],
        graph: onnx.GraphProto.decode(onnx.GraphProto.encode(graph).finish()),
      });
    const quantized = make();
    const result = quantizeDynamic(quantized, []);
    expect(result.quantized).toEqual([{ node: 'head', op: 'Gemm' }]);
    expect(result.leftInFloat).toEqual([{ node: 'upsample', op: 'ConvTranspose', reason: 'mlops does not quantize ConvTranspose' }]);
    expect(ops(quantized)).toContain('ConvTranspose');
    expect(quantized.graph!.initializer!.find((t) => t.name === 'wt')?.dataType).toBe(DataType.FLOAT);

    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'float.onnx'), encodeModel(make()));
      await writeFile(path.join(dir, 'int8.onnx'), encodeModel(quantized));
      const x = Float32Array.from({ length: 2 * 8 * 4 * 4 }, (_, i) => (i % 7) / 7);
      const [a, b] = [await runs(path.join(dir, 'float.onnx'), 'x', x, [2, 8, 4, 4]), await runs(path.join(dir, 'int8.onnx'), 'x', x, [2, 8, 4, 4])];
      expect(b).toHaveLength(a.length);
      expect(Math.max(...a.map((v, i) => Math.abs(v - b[i])))).toBeLessThan(0.1 * Math.max(...a.map(Math.abs)));
    });

    // A Loop whose body multiplies by an outer weight: the body stays as it is, the weight stays in the model, and the Loop is named.
    await withTempDir(async (dir) => {
      await writeFile(
        path.join(dir, 'mlops.config.json'),
        JSON.stringify({ model: { path: fixture('slow_loop', 'model.onnx') }, optimize: { ...quick, gates: { size_ratio: '<= 2' } } }),
      );
      const looped = await optimize(dir, ['--output', 'loop.onnx', '--quantize', 'dynamic']);
      expect(looped.code, looped.stderr).toBe(0);
      expect(looped.report.leftInFloat).toEqual([
        expect.objectContaining({ op: 'Loop', reason: 'its body (a subgraph) stays in float: mlops quantizes the main graph only' }),
      ]);
    });

    const excluded = make();
    const kept = quantizeDynamic(excluded, ['Gemm']);
    expect(kept.quantized).toEqual([]);
    expect(kept.leftInFloat).toContainEqual({ node: 'head', op: 'Gemm', reason: 'excluded by --exclude' });
    expect(ops(excluded)).toEqual(['ConvTranspose', 'Flatten', 'Gemm']);
  });

  it('a model with external data: its weights are read in and quantized, and the output is one file that loads anywhere', async () => {
    await withTempDir(async (dir) => {
      await writeFile(
        path.join(dir, 'mlops.config.json'),
        JSON.stringify({ model: { path: fixture('external_data', 'model.onnx') }, optimize: { ...quick, gates: { size_ratio: '<= 2' } } }),
      );
      const { code, stderr, report } = await optimize(dir, ['--output', 'one-file.onnx', '--quantize', 'dynamic']);
      expect(code, stderr).toBe(0);
      expect(report.quantized).toEqual([{ node: expect.any(String), op: 'Gemm' }]);
      // The source's size counts its data file.
      expect(report.source.sizeBytes).toBe(
        (await stat(fixture('external_data', 'model.onnx'))).size + (await stat(fixture('external_data', 'weights.bin'))).size,
      );
      const out = await model(path.join(dir, 'one-file.onnx'));
      expect((out.graph!.initializer ?? []).filter((t) => (t.externalData ?? []).length > 0)).toEqual([]);
      const session = await ort.InferenceSession.create(path.join(dir, 'one-file.onnx'));
      await session.release();
    });
  });

  it('a failed gate exits 1 and writes nothing unless --keep; bad flags exit 2 before any work', async () => {
    await withTempDir(async (dir) => {
      await project(dir, 'digits_mlp');
      const failed = await optimize(dir, ['--output', 'out.onnx', '--quantize', 'dynamic', '--gate', 'speedup>=100']);
      expect(failed.code).toBe(1);
      expect(failed.report.passed).toBe(false);
      expect(failed.report.output).toBeNull();
      expect(existsSync(path.join(dir, 'out.onnx'))).toBe(false);
      const kept = await optimize(dir, ['--output', 'out.onnx', '--quantize', 'dynamic', '--gate', 'speedup>=100', '--keep']);
      expect(kept.code).toBe(1);
      expect(existsSync(path.join(dir, 'out.onnx'))).toBe(true);

      // A model that fails every request passes no gate on its size: the benchmark's failures fail the run.
      await writeFile(
        path.join(dir, 'broken.json'),
        JSON.stringify({ model: { path: fixture('failing_reshape', 'model.onnx') }, optimize: { ...quick, gates: { size_ratio: '<= 10' } } }),
      );
      const broken = await runCli(['--config', 'broken.json', 'optimize', '--output', 'broken.onnx', '--json'], { cwd: dir });
      expect(broken.code, broken.stderr).toBe(1);
      const brokenReport = JSON.parse(broken.stdout);
      expect(brokenReport.gates).toEqual([
        expect.objectContaining({ metric: 'size_ratio', passed: true }),
        expect.objectContaining({ metric: 'error_rate', value: 1, passed: false, implicit: true }),
      ]);
      expect(existsSync(path.join(dir, 'broken.onnx'))).toBe(false);

      const unknown = await runCli(['optimize', '--output', 'x.onnx', '--gate', 'sped_up>=2'], { cwd: dir });
      expect(unknown.code).toBe(2);
      expect(errorLine(unknown.stderr)).toBe("error: gate on unknown metric 'sped_up' for optimize");
      const same = await runCli(['optimize', '--output', fixture('digits_mlp', 'model.onnx')], { cwd: dir });
      expect(same.code).toBe(2);
      const mode = await runCli(['optimize', '--output', 'x.onnx', '--quantize', 'int4'], { cwd: dir });
      expect(errorLine(mode.stderr)).toBe('error: --quantize int4: expected none, dynamic, static');
      expect(existsSync(path.join(dir, 'x.onnx'))).toBe(false);
    });
  });
});
