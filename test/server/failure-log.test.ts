import { describe, expect, it } from 'vitest';
import { ModelRunError } from '../../src/model/run-error.js';
import { failureLogger } from '../../src/server/failure-log.js';

describe("the server's failure log", () => {
  it('logs each distinct failure once, names the real metric, and stops at its limit with one line saying so', () => {
    const lines: string[] = [];
    const logFailure = failureLogger((line) => lines.push(line), 2);
    for (let i = 0; i < 5; i++) logFailure('POST /v2/models/m/infer', new ModelRunError('Reshape node: no'));
    logFailure('POST /v2/models/m/infer', new ModelRunError('second'));
    logFailure('POST /v2/models/m/infer', new ModelRunError('third'));
    logFailure('POST /v2/models/m/infer', new ModelRunError('fourth'));
    expect(lines).toEqual([
      'error: POST /v2/models/m/infer: Reshape node: no (logged once; repeats are counted in mlops_http_requests_total)',
      'error: POST /v2/models/m/infer: second (logged once; repeats are counted in mlops_http_requests_total)',
      'error: more than 2 distinct inference failures; further ones are counted in mlops_http_requests_total, not logged',
    ]);
  });
});
