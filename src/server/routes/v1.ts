/** KServe's v1 protocol: {"instances": [...]} in, {"predictions": [...]} out. */
import { readBody } from '../body.js';
import { parseJsonBody, type RestContext, type RestInference } from '../rest-inference.js';
import type { Handler, Route } from '../rest-pipeline.js';

export function v1Routes(ctx: RestContext, inference: RestInference): Route[] {
  const { repository, bodyLimits } = ctx;
  const { runInstances } = inference;

  const predict: Handler = async (req, res, params) => {
    repository.check(params.name);
    const parsed = parseJsonBody(await readBody(req, bodyLimits));
    await runInstances(repository.route(params.name), req, res, parsed, ':predict');
  };

  return [{ label: '/v1/models/{name}:predict', pattern: /^\/v1\/models\/([^/:]+):predict$/, methods: { POST: predict } }];
}
