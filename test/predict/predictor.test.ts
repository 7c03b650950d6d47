/**
 * src/predict/predictor.ts (and monitor's sources.ts) with --model-name: which model to use on a server
 * that serves several (Triton, KServe, a model repository).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server/run.js';
import { fixture, lines, runCli, serveOptions } from '../helpers.js';

let server: RunningServer;
let repository: ReturnType<typeof createServer>;
let repositoryUrl = '';

beforeAll(async () => {
  server = await startServer(serveOptions('breast_cancer', { modelName: 'bc' }), () => undefined);
  // A repository of two models: without a name, no client can know which one to use.
  repository = createServer((req, res) => {
    res.writeHead(req.url === '/v2/repository/index' ? 200 : 404, { 'content-type': 'application/json' });
    res.end(
      req.url === '/v2/repository/index'
        ? JSON.stringify([
            { name: 'fraud', state: 'READY' },
            { name: 'churn', state: 'READY' },
          ])
        : JSON.stringify({ error: 'not here' }),
    );
  });
  await new Promise<void>((r) => repository.listen(0, '127.0.0.1', r));
  repositoryUrl = `http://127.0.0.1:${(repository.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await server?.stop();
  await new Promise((r) => repository.close(r));
});

describe('--model-name', () => {
  it('a server with several models: the error names them and says to pass --model-name (exit 3)', async () => {
    const result = await runCli(['bench', '--url', repositoryUrl, '--requests', '5']);
    expect(result.code).toBe(3);
    expect(lines(result.stderr).find((l) => l.startsWith('error:'))).toBe(
      `error: the server at ${repositoryUrl}/ serves 2 models (fraud, churn); name the one to use`,
    );
    expect(result.stderr).toContain('hint: pass --model-name <name>, or set model.name in config');
  });

  it('monitor: a server with several models is exit 2 naming them, never the first judged in silence', async () => {
    const result = await runCli(['monitor', '--url', repositoryUrl]);
    expect(result.code).toBe(2);
    expect(lines(result.stderr).find((l) => l.startsWith('error:'))).toBe(`error: ${repositoryUrl} serves 2 models (fraud, churn); name the one to judge`);
    expect(result.stderr).toContain('hint: pass --model-name <name>');
    const named = await runCli(['monitor', '--url', server.url, '--model-name', 'nope']);
    expect(named.code).toBe(2);
    expect(named.stderr).toContain("unknown model 'nope'");
  });

  it('names the model on a server: the right name runs, a wrong one says it is unknown', async () => {
    const bench = await runCli(['bench', '--url', server.url, '--model-name', 'bc', '--requests', '20', '--concurrency', '1', '--json']);
    expect(bench.code, bench.stderr).toBe(0);
    expect(JSON.parse(bench.stdout).model).toBe('bc');
    for (const command of ['bench', 'test', 'explain']) {
      const wrong = await runCli([command, '--url', server.url, '--model-name', 'nope', '--holdout', fixture('breast_cancer', 'holdout.csv')]);
      expect(wrong.code, command).toBe(3);
      expect(
        lines(wrong.stderr).find((l) => l.startsWith('error:')),
        command,
      ).toContain("'nope'");
    }
  });
});
