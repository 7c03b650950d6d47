import { describe, expect, it } from 'vitest';
import { TARGET_DEFAULTS, type CloudRunTarget } from '../../src/config/defaults.js';
import { cloudRunAdapter } from '../../src/targets/cloudrun.js';
import type { Runner } from '../../src/targets/exec.js';
import type { Release } from '../../src/targets/types.js';
import { recordsInLine } from '../../src/monitor/inference-records.js';
import { ctx, scripted, v1, v2 } from './plan-context.js';

describe('cloudrun plan tests (gcloud through the exec seam; no cloud account here)', () => {
  const run: CloudRunTarget = { ...TARGET_DEFAULTS.cloudrun, project: 'acme', region: 'europe-west1', canary: [10, 50, 100] };
  const base = '--project acme --region europe-west1';
  const before = { status: { url: 'https://bc-x.a.run.app', traffic: [{ revisionName: 'bc-00001', percent: 100 }] } };
  const after = {
    status: {
      url: 'https://bc-x.a.run.app',
      traffic: [...before.status.traffic, { revisionName: 'bc-00002', percent: 0, tag: 'v1-1-0', url: 'https://v1-1-0---bc-x.a.run.app' }],
    },
  };

  function gcloud(extra: [RegExp, { exitCode?: number; stdout?: string }][] = []) {
    let described = 0;
    const { runner, calls } = scripted([[/auth print-identity-token/, { stdout: 'id-token' }], ...extra]);
    const wrapped: Runner = async (command, args, options) => {
      if (args.includes('describe')) {
        calls.push([command, ...args].join(' '));
        return { exitCode: 0, stdout: JSON.stringify(described++ === 0 ? before : after), stderr: '' };
      }
      return runner(command, args, options);
    };
    return { runner: wrapped, calls };
  }

  it('deploys a tagged revision with no traffic, smoke-tests its URL, then moves traffic in steps', async () => {
    const { runner, calls } = gcloud();
    const smoked: [string, Record<string, string> | undefined][] = [];
    const outcome = await cloudRunAdapter.deploy(run, v2, v1, ctx({ runner, smoke: async (url, _r, headers) => void smoked.push([url, headers]) }));
    expect(outcome).toMatchObject({ status: 'deployed', url: 'https://bc-x.a.run.app' });
    expect(calls).toEqual([
      `gcloud run services describe bc ${base} --format=json`,
      `gcloud run deploy bc --image ${v2.image} ${base} --port 8080 --concurrency 80 --cpu 1 --memory 512Mi --min-instances 0 --max-instances 10 --labels mlops-version=1-1-0,managed-by=mlops --tag v1-1-0 --no-allow-unauthenticated --no-traffic --quiet --format=json`,
      `gcloud run services describe bc ${base} --format=json`,
      'gcloud auth print-identity-token',
      `gcloud run services update-traffic bc ${base} --to-tags=v1-1-0=10 --quiet`,
      `gcloud run services update-traffic bc ${base} --to-tags=v1-1-0=50 --quiet`,
      `gcloud run services update-traffic bc ${base} --to-tags=v1-1-0=100 --quiet`,
    ]);
    expect(smoked).toHaveLength(3);
    expect(smoked[0]).toEqual(['https://v1-1-0---bc-x.a.run.app', { authorization: 'Bearer id-token' }]);
  });

  it('moves traffic back to the serving revisions when the smoke test fails', async () => {
    const { runner, calls } = gcloud([[/logging read/, { stdout: 'Traceback: model file missing' }]]);
    const outcome = await cloudRunAdapter.deploy(run, v2, v1, ctx({ runner, smoke: async () => Promise.reject(new Error('inference answered HTTP 503')) }));
    expect(outcome).toMatchObject({ status: 'rolled-back', reason: 'smoke-failure', restored: v1, logs: 'Traceback: model file missing' });
    expect(calls.at(-1)).toBe(`gcloud run services update-traffic bc ${base} --to-revisions=bc-00001=100 --quiet`);
    expect(calls.some((c) => c.includes('--to-tags'))).toBe(false);
  });

  it('--dry-run lists the gcloud commands and runs none', async () => {
    const { runner, calls } = gcloud();
    const c = ctx({ dryRun: true, runner });
    expect((await cloudRunAdapter.deploy(run, v2, v1, c)).status).toBe('planned');
    expect(calls).toEqual([]);
    expect(c.exec.steps.map((s) => s.command).filter((s) => s.includes('update-traffic'))).toHaveLength(3);
  });
});

describe('inference logs from remote targets, for mlops monitor --labels (kubectl and gcloud through the exec seam)', () => {
  const record = (id: string) =>
    JSON.stringify({
      type: 'mlops.inference',
      id,
      row: 0,
      rows: 1,
      time: '2026-11-20T10:00:00.000Z',
      model: 'bc',
      version: '1',
      sha256: 'f'.repeat(64),
      outputs: [],
    });

  it("cloudrun: the records Cloud Logging parsed from the service's stdout", async () => {
    const run: CloudRunTarget = { ...TARGET_DEFAULTS.cloudrun, project: 'acme', region: 'europe-west1' };
    const entries = [{ jsonPayload: JSON.parse(record('x')), timestamp: '2026-11-20T10:00:00Z' }, { jsonPayload: JSON.parse(record('y')) }];
    const { runner, calls } = scripted([[/logging read/, { stdout: JSON.stringify(entries) }]]);
    const logs = await cloudRunAdapter.inferenceLogs(run, ctx({ runner }), undefined);
    expect(calls).toEqual([
      'gcloud logging read resource.type="cloud_run_revision" AND resource.labels.service_name="bc" AND resource.labels.location="europe-west1" AND jsonPayload.type="mlops.inference" --project acme --format=json --order=asc --freshness=30d',
    ]);
    expect(
      logs[0].text
        .split('\n')
        .flatMap(recordsInLine)
        .map((r) => r.id),
    ).toEqual(['x', 'y']);
  });
});

describe('secrets wired the platform way (issue 23): never values in a manifest or command line', () => {
  const TOKEN = 'a-token-that-must-never-appear-0123';

  it('cloudrun: the token file comes from Secret Manager with --set-secrets; the smoke test sends MLOPS_TOKEN as Authorization and the IAM token as X-Serverless-Authorization; no token on a command line', async () => {
    const run: CloudRunTarget = { ...TARGET_DEFAULTS.cloudrun, project: 'acme', region: 'europe-west1', auth: { secret: 'bc-tokens:3' } };
    const before = { status: { url: 'https://bc-x.a.run.app', traffic: [{ revisionName: 'bc-00001', percent: 100 }] } };
    const after = {
      status: {
        url: 'https://bc-x.a.run.app',
        traffic: [...before.status.traffic, { revisionName: 'bc-00002', percent: 0, tag: 'v1-1-0', url: 'https://v1-1-0---bc-x.a.run.app' }],
      },
    };
    let described = 0;
    const { runner, calls } = scripted([[/auth print-identity-token/, { stdout: 'id-token' }]]);
    const wrapped: Runner = async (command, args, options) =>
      args.includes('describe')
        ? (calls.push([command, ...args].join(' ')), { exitCode: 0, stdout: JSON.stringify(described++ === 0 ? before : after), stderr: '' })
        : runner(command, args, options);
    const smoked: [Record<string, string> | undefined, unknown][] = [];
    const c = {
      ...ctx({
        runner: wrapped,
        smoke: async (_u: string, _r: Release, headers?: Record<string, string>, security?: unknown) => void smoked.push([headers, security]),
      }),
      env: { MLOPS_TOKEN: TOKEN },
    };
    expect((await cloudRunAdapter.deploy(run, v2, v1, c)).status).toBe('deployed');
    const deploy = calls.find((l) => l.startsWith('gcloud run deploy'))!;
    expect(deploy).toContain('--set-secrets /run/secrets/mlops/auth/tokens=bc-tokens:3 --update-env-vars MLOPS_AUTH_TOKEN_FILE=/run/secrets/mlops/auth/tokens');
    expect(calls.join('\n')).not.toContain(TOKEN);
    expect(smoked[0]).toEqual([{ 'x-serverless-authorization': 'Bearer id-token' }, { token: TOKEN, insecure: false }]);
  });
});
