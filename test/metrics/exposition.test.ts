/** Reading /metrics back: samples by exact name, labels unescaped, as prom-client writes them. */
import { Counter, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { samples } from '../../src/metrics/exposition.js';

describe('samples()', () => {
  it('finds every series of one name, with and without labels, and unescapes label values', async () => {
    const registry = new Registry();
    new Counter({ name: 'x_total', help: 'x', labelNames: ['model'], registers: [registry] }).inc({ model: 'a "quoted" \\ name' }, 3);
    new Counter({ name: 'x_total_other', help: 'y', registers: [registry] }).inc(5);
    new Counter({ name: 'plain', help: 'z', registers: [registry] }).inc(2);
    const text = await registry.metrics();
    expect(samples(text, 'x_total')).toEqual([{ labels: { model: 'a "quoted" \\ name' }, value: 3 }]);
    expect(samples(text, 'plain')).toEqual([{ labels: {}, value: 2 }]);
    expect(samples(text, 'missing')).toEqual([]);
  });
});
