import { describe, expect, it } from 'vitest';

describe('gates that keep failures from passing (mlops bench and mlops optimize)', () => {
  it('fail one failed request by default, leave a strict error gate alone, and pair a lax one with "some request succeeded"', async () => {
    const { failureGates, parseGateFlag } = await import('../../src/metrics/gates.js');
    expect(failureGates([parseGateFlag('p99_ms<=50')], 'throughput_rps')).toEqual([{ metric: 'error_rate', op: '<=', threshold: 0 }]);
    expect(failureGates([parseGateFlag('error_rate<=0.01')], 'throughput_rps')).toEqual([]);
    expect(failureGates([parseGateFlag('error_rate<=1')], 'throughput_ratio')).toEqual([{ metric: 'throughput_ratio', op: '>', threshold: 0 }]);
  });
});
