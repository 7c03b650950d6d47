/** The Open Inference Protocol v2 routes: server and model metadata, health and readiness, the repository extension, the live profile, and infer. */
import { BadRequest } from '../../protocol/request.js';
import { HEADER_LENGTH, SERVER_EXTENSIONS } from '../../protocol/rest.js';
import { readBody } from '../body.js';
import type { ModelRepository } from '../model-repository.js';
import { RAW_CONTENT_TYPE } from '../processing.js';
import { queryParameters, type RestContext, type RestInference } from '../rest-inference.js';
import { MODEL_PATH, sendJson, type Handler, type Route } from '../rest-pipeline.js';
import type { ServingState } from '../state.js';

export interface OipOptions {
  state: ServingState;
  /** POST /v2/repository/models/{name}/load and /unload; 403 when off. */
  repositoryControl: boolean;
  /** The mlops version, reported by GET /v2. */
  serverVersion: string;
  log: (line: string) => void;
}

/** Readiness, for every contract's probe: the server's state, and a worker to take work for every model. */
export function readiness(repository: ModelRepository, state: ServingState): Handler {
  return (_q, res) => {
    const ready = state.ready && repository.accepting;
    sendJson(res, ready ? 200 : 503, { ready });
  };
}

export function oipRoutes(ctx: RestContext, inference: RestInference, options: OipOptions): Route[] {
  const { repository, bodyLimits } = ctx;
  const { state, log } = options;
  const { rawBody, runRaw, runInfer, readInferBody } = inference;
  const ready = readiness(repository, state);

  const infer: Handler = async (req, res, params) => {
    repository.check(params.name, params.version);
    // Only an image or text content type costs a look at the model's processing before the body is read.
    const raw = RAW_CONTENT_TYPE.test(req.headers['content-type'] ?? '') ? await rawBody(repository.route(params.name, params.version), req) : undefined;
    if (raw && 'raw' in raw) return runRaw(repository.route(params.name, params.version), req, res, raw.raw, 'oip', { parameters: queryParameters(req) });
    if (raw) return runInfer(repository.route(params.name, params.version), params.version === undefined, req, res, raw.body, undefined, 'header', raw.parsed);
    const { body, header } = await readInferBody(req, req.headers[HEADER_LENGTH]);
    return runInfer(repository.route(params.name, params.version), params.version === undefined, req, res, body, header, 'header');
  };

  /** The OIP repository extension's load and unload, when server.repositoryControl allows them. */
  const control =
    (action: 'load' | 'unload'): Handler =>
    async (req, res, params) => {
      if (!options.repositoryControl)
        throw new BadRequest(`model ${action} is off on this server: set server.repositoryControl (MLOPS_REPOSITORY_CONTROL=true) to allow it`, 403);
      // The body (OIP allows {"parameters": {...}}) asks for nothing mlops reads; it is read and dropped.
      await readBody(req, bodyLimits);
      const name = params.name!;
      await (action === 'load' ? repository.load(name) : repository.unload(name));
      // Answers kept for the files it served before are not this model's any more.
      ctx.responseCache?.forget(name);
      log(`model '${name}' ${action === 'load' ? 'loaded' : 'unloaded'} by POST /v2/repository/models/${name}/${action}`);
      sendJson(res, 200, {});
    };

  return [
    {
      label: '/v2',
      pattern: /^\/v2\/?$/,
      methods: { GET: (_q, res) => sendJson(res, 200, { name: 'mlops', version: options.serverVersion, extensions: SERVER_EXTENSIONS }) },
    },
    { label: '/v2/health/live', pattern: /^\/v2\/health\/live$/, methods: { GET: (_q, res) => sendJson(res, 200, { live: true }) }, open: true },
    { label: '/v2/health/ready', pattern: /^\/v2\/health\/ready$/, methods: { GET: ready }, open: true },
    {
      // Triton's model repository index: lets a client find the model on a server it knows nothing about.
      label: '/v2/repository/index',
      pattern: /^\/v2\/repository\/index$/,
      methods: {
        POST: (_q, res) =>
          sendJson(
            res,
            200,
            repository.index().map((m) => (state.ready || m.state !== 'READY' ? m : { ...m, state: 'UNAVAILABLE', reason: 'the server is not ready' })),
          ),
      },
    },
    { label: '/v2/repository/models/{name}/load', pattern: /^\/v2\/repository\/models\/([^/]+)\/load$/, methods: { POST: control('load') } },
    { label: '/v2/repository/models/{name}/unload', pattern: /^\/v2\/repository\/models\/([^/]+)\/unload$/, methods: { POST: control('unload') } },
    {
      label: '/v2/models/{name}',
      pattern: new RegExp(`^${MODEL_PATH}$`),
      methods: {
        GET: (_q, res, p) => sendJson(res, 200, repository.metadata(p.name, p.version)),
      },
    },
    {
      label: '/v2/models/{name}/ready',
      pattern: new RegExp(`^${MODEL_PATH}/ready$`),
      open: true,
      methods: {
        GET: (_q, res, p) => {
          const model = repository.ready(p.name, p.version);
          const ready = state.ready && model.ready;
          sendJson(res, ready ? 200 : 503, { name: model.name, ready });
        },
      },
    },
    {
      // Counts only, never inputs: what `mlops monitor` compares with the reference.
      label: '/v2/models/{name}/profile',
      pattern: new RegExp(`^${MODEL_PATH}/profile$`),
      methods: {
        GET: (_q, res, p) => {
          const document = repository.primary(p.name, p.version).profiling.document();
          sendJson(res, 'error' in document ? 409 : 200, document);
        },
      },
    },
    { label: '/v2/models/{name}/infer', pattern: new RegExp(`^${MODEL_PATH}/infer$`), methods: { POST: infer } },
  ];
}
