/**
 * Issue 21: what mlops writes, checked by the ecosystem's own tools (promtool here; Debian's prometheus
 * package). Missing on a developer's machine, these tests say so and skip; in CI they must run.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { startServer } from '../src/server/run.js';
import { serveOptions } from './helpers.js';
import { probeTool } from './tools.js';

const promtool = probeTool('promtool', 'apt-get install prometheus');

describe.runIf(promtool.ok)(`/metrics as Prometheus reads it${promtool.ok ? '' : ` (skipped: ${promtool.reason})`}`, () => {
  it('passes `promtool check metrics` after traffic of every kind', async () => {
    const server = await startServer(serveOptions('wine', { modelName: 'wine' }), () => undefined);
    try {
      const body = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 13], data: Array.from({ length: 13 }, (_, i) => i) }] });
      expect((await fetch(`${server.url}/v2/models/wine/infer`, { method: 'POST', body })).status).toBe(200);
      expect((await fetch(`${server.url}/v2/models/wine/infer`, { method: 'POST', body: '{' })).status).toBe(400);
      const text = await (await fetch(`${server.url}/metrics`)).text();
      expect(text).toContain('mlops_nodejs_active_resources ');
      expect(text).not.toMatch(/^# TYPE \S+_total gauge$/m);
      // promtool exits 0 with no output when every metric passes its lint; each finding is a line.
      const findings = execFileSync(promtool.path, ['check', 'metrics'], { input: text, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
      expect(findings.trim()).toBe('');
    } finally {
      await server.stop();
    }
  });
});
