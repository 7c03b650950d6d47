/** The explain routes: OIP v2 (/v2/models/{name}/explain) and v1 (:explain), Kernel SHAP or occlusion in a worker thread. */
import type http from 'node:http';
import { spatialMap } from '../../explain/occlusion.js';
import { fromHalfBits } from '../../model/datatypes.js';
import type { Tensors } from '../../model/session.js';
import { decodeInstances } from '../../protocol/instances.js';
import { BadRequest } from '../../protocol/request.js';
import { decodeRestRequest, HEADER_LENGTH } from '../../protocol/rest.js';
import { readBody } from '../body.js';
import type { ExplainReply, OcclusionReply } from '../engine.js';
import type { ServedVersion } from '../model-repository.js';
import { parseJsonBody, type RestContext, type RestInference } from '../rest-inference.js';
import { MODEL_PATH, requestId, sendJson, type Handler, type Route } from '../rest-pipeline.js';

export function explainRoutes(ctx: RestContext, inference: RestInference, explainMaxRows: number): Route[] {
  const { repository, bodyLimits, deadline } = ctx;
  const { readInferBody } = inference;
  const options = { explainMaxRows };

  /** What the explain routes offer; a server that cannot explain says why before reading the body. */
  const explanations = (served: ServedVersion) => {
    const offered = served.engine.explanations;
    if (!('method' in offered)) throw new BadRequest(offered.unavailable, offered.status);
    return offered;
  };

  /**
   * Explanations for the rows of a request, in a worker thread. The body is an OIP v2 request (explain)
   * or {"instances": [...]} (v1 :explain). A tabular input gets Kernel SHAP: each feature's attribution
   * to each floating-point output column, with the base value (the background's mean output), which
   * the attributions add up to the output from. A spatial input gets occlusion: a map of the input's
   * height and width, each position carrying how much the column fell when its patch was zeroed.
   */
  const runExplain = async (served: ServedVersion, req: http.IncomingMessage, res: http.ServerResponse, feeds: Tensors, rows: number, id: string) => {
    const { engine } = served;
    const { model } = engine;
    const offered = explanations(served);
    const cost = offered.method === 'kernel_shap' ? `${offered.samples} x ${offered.backgroundRows} model rows` : 'a model row per patch';
    if (rows > options.explainMaxRows)
      throw new BadRequest(
        `an explanation request may hold at most ${options.explainMaxRows} rows (explain.maxRows), and this one holds ${rows}: each row costs ${cost}`,
        400,
      );
    const head = { model_name: model.name, model_version: model.version, id };
    const { values, dims } = explainedValues(feeds[offered.input], model.inputs[0].datatype === 'FP16');
    if (offered.method === 'occlusion') {
      const reply = await engine.occlude(values, dims, rows, deadline());
      return sendJson(res, 200, { ...head, ...occlusionAnswer(reply, dims, offered.patch, /[?&]map=full(?:&|$)/.test(req.url ?? '')) });
    }
    const reply = await engine.explain(values, rows, deadline());
    sendJson(res, 200, { ...head, ...kernelShapAnswer(reply, offered.features, offered.backgroundRows) });
  };

  // Explanations are of the version that would have answered: picked by the split like an inference.
  const explain: Handler = async (req, res, params) => {
    explanations(repository.route(params.name, params.version));
    const { body, header } = await readInferBody(req, req.headers[HEADER_LENGTH]);
    const served = repository.route(params.name, params.version);
    const request = decodeRestRequest(body, header, served.engine.model);
    await runExplain(served, req, res, request.inputs, request.rows, request.id ?? requestId(req));
  };
  const explainInstances: Handler = async (req, res, params) => {
    explanations(repository.route(params.name));
    const parsed = parseJsonBody(await readBody(req, bodyLimits));
    const served = repository.route(params.name);
    const { feeds, rows } = decodeInstances(served.engine.model.inputs, parsed, ':explain');
    const id = requestId(req);
    res.setHeader('x-request-id', id);
    await runExplain(served, req, res, feeds, rows, id);
  };

  return [
    { label: '/v2/models/{name}/explain', pattern: new RegExp(`^${MODEL_PATH}/explain$`), methods: { POST: explain } },
    { label: '/v1/models/{name}:explain', pattern: /^\/v1\/models\/([^/:]+):explain$/, methods: { POST: explainInstances } },
  ];
}

/** The explained input's values as float64 (FP16 from its bits), and each row's shape. */
function explainedValues(tensor: Tensors[string], half: boolean): { values: Float64Array; dims: number[] } {
  const data = tensor.data as ArrayLike<number | bigint>;
  const values = new Float64Array(data.length);
  for (let i = 0; i < data.length; i++) values[i] = half ? fromHalfBits(Number(data[i])) : Number(data[i]);
  return { values, dims: tensor.dims.slice(1) };
}

/** The worker attributes every floating-point output at once, their columns side by side: split per output. */
function perOutput<R>(outputs: { name: string; width: number }[], each: (start: number, width: number, total: number) => R) {
  const total = outputs.reduce((n, o) => n + o.width, 0);
  let next = 0;
  return outputs.map((o) => ({ name: o.name, ...each((next += o.width) - o.width, o.width, total) }));
}

/** Occlusion's answer: per output and row, the values and a map of how much the mapped column fell with each patch zeroed. */
function occlusionAnswer(reply: OcclusionReply, dims: number[], patch: number, full: boolean) {
  const [h, w] = [dims[reply.axes[0]], dims[reply.axes[1]]];
  // A patch's value holds for each of its positions: one value a patch unless ?map=full asks for one a position.
  // Position by position, 16 images of 224 x 224 answered 19 MB of JSON and held health 0.6 s (issue 34).
  const grid = reply.rows[0]?.grid ?? [0, 0];
  const outputs = perOutput(reply.outputs, (start, width, total) => ({
    rows: reply.rows.map((r) => {
      const own = r.output.slice(start, start + width);
      // The column mapped: the largest (the predicted class), or the value.
      const column = own.reduce((best, v, k) => (v > own[best] ? k : best), 0);
      return {
        values: own,
        column,
        map: full ? spatialMap(r.patches, r.grid, total, start + column, [h, w], patch) : patchMap(r.patches, r.grid, total, start + column),
      };
    }),
  }));
  return { method: 'occlusion', patch, baseline: 0, spatial_shape: [h, w], ...(full ? {} : { grid }), model_rows: reply.modelRows, outputs };
}

/** Kernel SHAP's answer: per output the base values and, per row, the values and each feature's attribution to them. */
function kernelShapAnswer(reply: ExplainReply, features: string[], backgroundRows: number) {
  const outputs = perOutput(reply.outputs, (start, width, total) => ({
    base_values: reply.base.slice(start, start + width),
    rows: reply.rows.map((r) => ({
      values: r.output.slice(start, start + width),
      attributions: features.map((_, f) => r.values.slice(f * total + start, f * total + start + width)),
    })),
  }));
  return {
    method: 'kernel_shap',
    features,
    coalitions: reply.coalitions,
    exact: reply.exact,
    background_rows: backgroundRows,
    model_rows: reply.modelRows,
    outputs,
  };
}

/** One value a patch ([grid rows][grid columns]), to 6 significant digits: the map as compact as it is exact. */
function patchMap(patches: ArrayLike<number>, grid: [number, number], width: number, column: number): number[][] {
  return Array.from({ length: grid[0] }, (_, y) =>
    Array.from({ length: grid[1] }, (_, x) => Number(patches[(y * grid[1] + x) * width + column].toPrecision(6))),
  );
}
