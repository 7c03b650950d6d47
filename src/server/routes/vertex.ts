/** Vertex AI's routes, when it names them (AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE): matched exactly, before the others. */
import { readBody } from '../body.js';
import { parseJsonBody, type RestContext, type RestInference } from '../rest-inference.js';
import { exactPath, type Handler, type Route } from '../rest-pipeline.js';

export interface PlatformRoutes {
  health?: string;
  predict?: string;
}

export function vertexRoutes(ctx: RestContext, inference: RestInference, ready: Handler, routes: PlatformRoutes): Route[] {
  const { repository, bodyLimits } = ctx;
  const { runInstances } = inference;
  const options = { routes };

  /** Vertex AI's predict route names no model: the first answers, picked once the body has arrived. */
  const vertexPredict: Handler = async (req, res) => {
    repository.check(undefined);
    const parsed = parseJsonBody(await readBody(req, bodyLimits));
    await runInstances(repository.route(undefined), req, res, parsed, options.routes.predict!);
  };

  return [
    ...(routes.health ? [{ label: '$AIP_HEALTH_ROUTE', pattern: exactPath(routes.health), methods: { GET: ready }, open: true }] : []),
    ...(routes.predict ? [{ label: '$AIP_PREDICT_ROUTE', pattern: exactPath(routes.predict), firstModel: true, methods: { POST: vertexPredict } }] : []),
  ];
}
