import { describe, expect, it } from 'vitest';
import { isMlopsError } from '../../src/errors.js';
import { applyImageArguments, applyServerEnv } from '../../src/server/options.js';
import { serveOptions } from '../helpers.js';

describe('the server in an image under each platform', () => {
  const base = serveOptions('breast_cancer', { port: 9000 });

  it("takes Vertex AI's AIP_HTTP_PORT over PORT", () => {
    expect(applyServerEnv(base, { PORT: '9000', AIP_HTTP_PORT: '7080' }).port).toBe(7080);
  });

  it('refuses a route that is not a path', () => {
    try {
      applyServerEnv(base, { AIP_PREDICT_ROUTE: 'predict' });
      expect.unreachable();
    } catch (error) {
      expect(isMlopsError(error) && error.exitCode).toBe(2);
      expect((error as Error).message).toContain('AIP_PREDICT_ROUTE=predict: expected a URL path');
    }
  });

  it("moves to SageMaker's port 8080 (or SAGEMAKER_BIND_TO_PORT) when started as `IMAGE serve`", () => {
    expect(applyImageArguments(base, [], {}).port).toBe(9000);
    expect(applyImageArguments(base, ['serve'], {}).port).toBe(8080);
    expect(applyImageArguments(base, ['serve'], { SAGEMAKER_BIND_TO_PORT: '8123' }).port).toBe(8123);
    expect(() => applyImageArguments(base, ['train'], {})).toThrow("takes no arguments but `serve` (SageMaker's), got: train");
  });
});
