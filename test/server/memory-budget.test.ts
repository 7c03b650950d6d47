import { describe, expect, it } from 'vitest';
import { isMlopsError } from '../../src/errors.js';
import { applyServerEnv } from '../../src/server/options.js';
import { MemoryLedger, parseByteSize } from '../../src/server/memory-budget.js';
import { startServer } from '../../src/server/run.js';
import { serveOptions } from '../helpers.js';

describe('server.memoryBudget', () => {
  it('reads sizes in binary and decimal units, and names what it could not read', () => {
    expect(parseByteSize('512Mi', 'x')).toBe(512 * 2 ** 20);
    expect(parseByteSize('2Gi', 'x')).toBe(2 * 2 ** 30);
    expect(parseByteSize('1.5G', 'x')).toBe(1.5e9);
    expect(parseByteSize('4096', 'x')).toBe(4096);
    expect(() => parseByteSize('lots', 'MLOPS_MEMORY_BUDGET')).toThrow('MLOPS_MEMORY_BUDGET "lots": expected a size like 512Mi, 2Gi or 1G');
    expect(() => applyServerEnv(serveOptions('breast_cancer'), { MLOPS_MEMORY_BUDGET: '2 gigs' })).toThrow('MLOPS_MEMORY_BUDGET');
  });

  it("counts a session per worker and the main thread's", () => {
    expect(() => new MemoryLedger(3000, '3000').claim({ weights: 1000, workers: 2, modelName: 'm' })).not.toThrow();
    expect(() => new MemoryLedger(2999, '2999').claim({ weights: 1000, workers: 2, modelName: 'm' })).toThrow(
      '3 ONNX Runtime session(s) (2 worker(s) and the main thread) need at least',
    );
    expect(() => new MemoryLedger(1000, '1000').claim({ weights: 1000, workers: 0, modelName: 'm' })).not.toThrow();
  });

  it('sums the claims of several models, names each in the refusal, and takes a claim back on release', () => {
    const ledger = new MemoryLedger(5000, '5000');
    const giveBack = ledger.claim({ weights: 1000, workers: 2, modelName: 'fraud', version: '1' });
    expect(() => ledger.claim({ weights: 1000, workers: 1, modelName: 'churn', version: '1' })).not.toThrow();
    expect(() => ledger.claim({ weights: 1000, workers: 0, modelName: 'churn', version: '2' })).toThrow(
      /model 'churn' version 2 has .* on top of 4\.9 KiB for model 'fraud' version 1 \(2\.9 KiB\), model 'churn' version 1 \(2\.0 KiB\)/,
    );
    giveBack();
    expect(() => ledger.claim({ weights: 1000, workers: 0, modelName: 'churn', version: '2' })).not.toThrow();
  });

  it('a budget too small refuses the start with exit 2 before any worker starts; a large one starts', async () => {
    const error = await startServer(serveOptions('breast_cancer', { memoryBudget: '4Ki', workers: 2 }), () => undefined).catch((e) => e);
    expect(isMlopsError(error) && error.exitCode).toBe(2);
    expect(error.message).toMatch(/^server\.memoryBudget 4Ki: model 'breast_cancer' version 1 has [\d.]+ KiB of weights, and 3 ONNX Runtime session\(s\)/);
    expect(error.hint).toContain('lower server.workers');
    const server = await startServer(serveOptions('breast_cancer', { memoryBudget: '1Gi', workers: 2 }), () => undefined);
    await server.stop();
  });
});
