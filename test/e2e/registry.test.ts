import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, lines, runCli } from '../helpers.js';
import { ensureLocalBaseImage, probeEngine, uniqueName } from './docker.js';
import { freePort, startRegistry, type TestRegistry } from './registry-process.js';

const engine = await probeEngine();
const TEAM = uniqueName('team');
const LOCAL = uniqueName('registry-dev');
const errorLine = (stderr: string) => lines(stderr).find((l) => l.startsWith('error:'));

describe.skipIf(!engine.ok)(`versions in a real OCI registry${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  let open: TestRegistry;
  let secured: TestRegistry;
  let base: string;
  const projects: string[] = [];

  async function project(registry: string, model = 'breast_cancer'): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), 'mlops-e2e-registry-'));
    projects.push(dir);
    await copyFile(fixture(model, 'model.onnx'), path.join(dir, 'model.onnx'));
    await writeFile(
      path.join(dir, 'mlops.config.json'),
      JSON.stringify({
        model: { path: 'model.onnx', name: 'bc' },
        image: { repository: `${registry}/${TEAM}/bc`, base },
        test: { holdout: fixture('breast_cancer', 'holdout.csv'), labels: ['malignant', 'benign'], parity: { sample: 0 } },
        bench: { concurrency: [2], durationSeconds: 1, warmupSeconds: 0.2 },
        targets: {
          k8s: { type: 'kubernetes', context: 'no-cluster', namespace: 'ml' },
          run: { type: 'cloudrun', project: 'acme', region: 'europe-west1' },
          aml: { type: 'azureml', subscriptionId: '00000000-1111-2222-3333-444444444444', resourceGroup: 'ml', workspace: 'ws', location: 'westeurope' },
          aca: {
            type: 'containerapp',
            subscriptionId: '00000000-1111-2222-3333-444444444444',
            resourceGroup: 'apps',
            location: 'westeurope',
            environment: 'apps-env',
          },
          dev: { type: 'local', containerName: LOCAL, port: await freePort(), grpcPort: 0, readyTimeoutSeconds: 20 },
        },
      }),
    );
    const built = await runCli(['build'], { cwd: dir });
    expect(built.code, built.stderr).toBe(0);
    return dir;
  }

  const pull = (reference: string) =>
    new Promise<void>((resolve, reject) => {
      void docker.pull(reference, (error: Error | null, stream: NodeJS.ReadableStream) => {
        if (error) return reject(error);
        docker.modem.followProgress(stream, (e: Error | null) => (e ? reject(e) : resolve()));
      });
    });

  beforeAll(async () => {
    base = await ensureLocalBaseImage(docker);
    open = await startRegistry();
    secured = await startRegistry({ name: 'ci-bot', password: 's3cret-Pa55' });
  });

  afterAll(async () => {
    for (const c of await docker.listContainers({ all: true, filters: { name: [LOCAL] } })) await docker.getContainer(c.Id).remove({ force: true });
    await open?.stop();
    await secured?.stop();
    for (const image of await docker.listImages()) {
      // Only this run's repository: a user's own 127.0.0.1:*/team/bc images stay.
      if ([...(image.RepoTags ?? []), ...(image.RepoDigests ?? [])].some((t) => t.includes(`/${TEAM}/bc`))) {
        await docker
          .getImage(image.Id)
          .remove({ force: true })
          .catch(() => undefined);
      }
    }
    for (const dir of projects) await rm(dir, { recursive: true, force: true });
  });

  it('tags with test and bench results, pushes, lists, and pulls back by digest with the labels', async () => {
    const dir = await project(open.address);
    expect((await runCli(['test'], { cwd: dir })).code).toBe(0);
    expect((await runCli(['bench'], { cwd: dir })).code).toBe(0);
    const tagged = await runCli(['tag', '1.0.0', '--alias', 'staging', '--json'], { cwd: dir });
    expect(tagged.code, tagged.stderr).toBe(0);
    const tag = JSON.parse(tagged.stdout);
    expect(tag.reference).toBe(`${open.address}/${TEAM}/bc:1.0.0`);
    expect(tag.labels['mlops.test.passed']).toBe('true');
    expect(Number(tag.labels['mlops.test.accuracy'])).toBeGreaterThan(0.9);
    expect(Number(tag.labels['mlops.bench.p95_ms'])).toBeGreaterThan(0);

    const pushed = await runCli(['push', '--json'], { cwd: dir });
    expect(pushed.code, pushed.stderr).toBe(0);
    const push = JSON.parse(pushed.stdout);
    expect(push.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(push.pushed).toEqual([`${open.address}/${TEAM}/bc:1.0.0`, `${open.address}/${TEAM}/bc:staging`]);
    // Without a terminal (CI) only layer state changes are lines, as Docker prints them: no byte counts.
    const layerLines = lines(pushed.stderr).filter((l) => l.includes('layer '));
    expect(layerLines.length).toBeGreaterThan(0);
    expect(layerLines.filter((l) => / MB$/.test(l))).toEqual([]);
    // A few states a layer for each of the two references (151 MB used to print 132 lines).
    expect(layerLines.length).toBeLessThan(40);

    const listed = JSON.parse((await runCli(['versions', '--json'], { cwd: dir })).stdout);
    expect(listed.source).toBe('registry');
    expect(listed.versions).toEqual([expect.objectContaining({ version: '1.0.0', digest: push.digest, modelSha256: tag.modelSha256, aliases: ['staging'] })]);
    expect(listed.versions[0].metrics['test.accuracy']).toBe(tag.labels['mlops.test.accuracy']);
    expect(Date.parse(listed.versions[0].created)).not.toBeNaN();
    expect(listed.aliases).toEqual({ staging: '1.0.0' });

    // Remote targets run exactly what was pushed: the plan names the registry digest.
    const planned = await runCli(['deploy', '1.0.0', '--target', 'k8s', '--dry-run', '--json'], { cwd: dir });
    expect(planned.code, planned.stderr).toBe(0);
    const plan = JSON.parse(planned.stdout);
    expect(plan.outcome.status).toBe('planned');
    expect(plan.plan[0].command).toBe('kubectl --context no-cluster --namespace ml apply -f -');
    expect(plan.plan[0].input).toContain(`image: ${open.address}/${TEAM}/bc@${push.digest}`);
    const cloud = JSON.parse((await runCli(['deploy', '1.0.0', '--target', 'run', '--dry-run', '--json'], { cwd: dir })).stdout);
    expect(cloud.plan.map((s: { command: string }) => s.command)).toContain(
      `gcloud run services update-traffic bc --project acme --region europe-west1 --to-tags=v1-0-0=100 --quiet`,
    );
    // The Azure targets' dry runs name each ARM request with its body, and send none (no credential is asked).
    const aml = JSON.parse((await runCli(['deploy', '1.0.0', '--target', 'aml', '--dry-run', '--json'], { cwd: dir })).stdout);
    expect(aml.outcome.status).toBe('planned');
    expect(
      aml.plan.map((s: { command: string }) =>
        s.command
          .split('?')[0]
          .replace(
            /^PUT https:\/\/management\.azure\.com\/subscriptions\/[^/]+\/resourceGroups\/ml\/providers\/Microsoft\.MachineLearningServices\/workspaces\/ws\//,
            'PUT ',
          ),
      ),
    ).toEqual([
      expect.stringMatching(/^PUT environments\/mlops-bc\/versions\/v1-0-0-[0-9a-f]{6}$/),
      'PUT onlineEndpoints/mlops-bc',
      expect.stringMatching(/^PUT onlineEndpoints\/mlops-bc\/deployments\/v1-0-0-/),
      expect.stringMatching(/listKeys$/),
      'PUT onlineEndpoints/mlops-bc',
    ]);
    expect(JSON.parse(aml.plan[0].input).properties.image).toBe(`${open.address}/${TEAM}/bc@${push.digest}`);
    const aca = JSON.parse((await runCli(['deploy', '1.0.0', '--target', 'aca', '--dry-run', '--json'], { cwd: dir })).stdout);
    expect(aca.outcome.status).toBe('planned');
    expect(JSON.parse(aca.plan[0].input).properties.template.containers[0].image).toBe(`${open.address}/${TEAM}/bc@${push.digest}`);
    const unpushed = await runCli(['deploy', '9.9.9', '--target', 'k8s', '--dry-run'], { cwd: dir });
    expect(unpushed.code).toBe(2);
    expect(errorLine(unpushed.stderr)).toBe(`error: ${open.address}/${TEAM}/bc:9.9.9 was never pushed to ${open.address}`);
    expect(unpushed.stderr).toContain('hint: run `mlops push 9.9.9` first');

    const byDigest = `${open.address}/${TEAM}/bc@${push.digest}`;
    await docker.getImage(`${open.address}/${TEAM}/bc:1.0.0`).remove({ force: true });
    await pull(byDigest);
    const labels = (await docker.getImage(byDigest).inspect()).Config.Labels;
    expect(labels['mlops.model.sha256']).toBe(tag.modelSha256);
    expect(labels['mlops.test.passed']).toBe('true');
    expect(labels['org.opencontainers.image.version']).toBe('1.0.0');

    // The local target deploys a pushed version this machine does not have: it pulls it, and history has its digest.
    const local = await runCli(['deploy', '1.0.0', '--target', 'dev', '--json'], { cwd: dir });
    expect(local.code, local.stderr).toBe(0);
    expect(local.stderr).toContain(`${open.address}/${TEAM}/bc:1.0.0 is not on this machine: pulling it from ${open.address}`);
    const history = JSON.parse((await runCli(['history', '--target', 'dev', '--json'], { cwd: dir })).stdout);
    expect(history.entries.at(-1)).toMatchObject({ version: '1.0.0', digest: push.digest, outcome: 'deployed' });
    const missing = await runCli(['deploy', '7.7.7', '--target', 'dev'], { cwd: dir });
    expect(missing.code).toBe(2);
    expect(errorLine(missing.stderr)).toBe(`error: ${open.address}/${TEAM}/bc:7.7.7 is neither on this machine nor in ${open.address}`);
  });

  it('keeps versions immutable, bumps from the registry, and guards alias moves in CI', async () => {
    const dir = await project(open.address, 'wine');
    const taken = await runCli(['tag', '1.0.0'], { cwd: dir });
    expect(taken.code).toBe(2);
    expect(errorLine(taken.stderr)).toMatch(/^error: version 1\.0\.0 already exists for another model .*versions are immutable$/);

    const bumped = await runCli(['tag', '--bump', 'minor', '--json'], { cwd: dir });
    expect(JSON.parse(bumped.stdout)).toMatchObject({ version: '1.1.0', checked: 'registry' });

    const guarded = await runCli(['tag', '1.1.0', '--alias', 'staging'], { cwd: dir, env: { CI: 'true' } });
    expect(guarded.code).toBe(2);
    expect(errorLine(guarded.stderr)).toBe("error: refusing to move alias 'staging' (now 1.0.0) to 1.1.0 in CI without --yes");
    const confirmed = await runCli(['tag', '1.1.0', '--alias', 'staging', '--yes', '--json'], { cwd: dir });
    expect(JSON.parse(confirmed.stdout).aliases).toEqual([expect.objectContaining({ alias: 'staging', previous: '1.0.0' })]);
    const history = JSON.parse(await readFile(path.join(dir, '.mlops/aliases.json'), 'utf8'));
    expect(history.moves.at(-1)).toMatchObject({ alias: 'staging', version: '1.1.0', previous: '1.0.0' });

    expect((await runCli(['push'], { cwd: dir })).code).toBe(2);
    expect((await runCli(['push', '--yes'], { cwd: dir })).code).toBe(0);
    const listed = JSON.parse((await runCli(['versions', '--json'], { cwd: dir })).stdout);
    expect(listed.versions.map((v: { version: string }) => v.version)).toEqual(['1.1.0', '1.0.0']);
    expect(listed.aliases).toEqual({ staging: '1.1.0' });

    const forced = await runCli(['tag', '1.0.0', '--force'], { cwd: dir });
    expect(forced.code).toBe(0);
  });

  it('pushes to a registry with basic auth, from the environment or Docker config, and never prints the password', async () => {
    const dir = await project(secured.address);
    const env = { MLOPS_REGISTRY_USERNAME: 'ci-bot', MLOPS_REGISTRY_PASSWORD: 's3cret-Pa55' };
    // tag asks the registry which versions exist, so it needs the login too.
    const anonymous = await runCli(['tag', '2.0.0'], { cwd: dir, env: { DOCKER_CONFIG: dir } });
    expect(anonymous.code).toBe(3);
    expect((await runCli(['tag', '2.0.0'], { cwd: dir, env })).code).toBe(0);

    const wrong = await runCli(['push'], { cwd: dir, env: { MLOPS_REGISTRY_USERNAME: 'ci-bot', MLOPS_REGISTRY_PASSWORD: 'wrong-Pa55' } });
    expect(wrong.code).toBe(3);
    expect(errorLine(wrong.stderr)).toBe(`error: registry ${secured.address} refused the login (HTTP 401)`);
    expect(wrong.stdout + wrong.stderr).not.toContain('wrong-Pa55');

    const none = await runCli(['push'], { cwd: dir, env: { DOCKER_CONFIG: dir } });
    expect(none.code).toBe(3);
    expect(errorLine(none.stderr)).toBe(`error: registry ${secured.address} needs a login`);

    const ok = await runCli(['push', '--json', '--verbose'], { cwd: dir, env });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout + ok.stderr).not.toContain('s3cret-Pa55');

    // The same login from a Docker config file.
    const dockerConfig = path.join(dir, 'docker');
    await mkdir(dockerConfig);
    await writeFile(
      path.join(dockerConfig, 'config.json'),
      JSON.stringify({ auths: { [secured.address]: { auth: Buffer.from('ci-bot:s3cret-Pa55').toString('base64') } } }),
    );
    const listed = await runCli(['versions', '--json'], { cwd: dir, env: { DOCKER_CONFIG: dockerConfig } });
    expect(listed.code, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout).versions.map((v: { version: string }) => v.version)).toEqual(['2.0.0']);
  });

  it('answers a bearer-token challenge (a token service in front of the real registry)', async () => {
    // The registry holds what the first test pushed; this proxy demands a bearer token for it.
    const http = await import('node:http');
    const port = await freePort();
    let tokensIssued = 0;
    const proxy = http.createServer((req, res) => {
      if (req.url?.startsWith('/token')) {
        const basic = `Basic ${Buffer.from('robot:t0ken-Pa55').toString('base64')}`;
        if (req.headers.authorization !== basic) return void res.writeHead(401).end();
        tokensIssued++;
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 'good-token' }));
      }
      if (req.headers.authorization !== 'Bearer good-token') {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${port}/token",service="test-registry"` });
        return void res.end();
      }
      const upstream = http.request(
        { host: '127.0.0.1', port: Number(open.address.split(':')[1]), path: req.url, method: req.method, headers: { accept: req.headers.accept ?? '*/*' } },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      req.pipe(upstream);
    });
    await new Promise<void>((r) => proxy.listen(port, '127.0.0.1', r));
    try {
      const dir = projects[0];
      const env = { MLOPS_REGISTRY_USERNAME: 'robot', MLOPS_REGISTRY_PASSWORD: 't0ken-Pa55' };
      const listed = await runCli(['versions', '--repository', `127.0.0.1:${port}/${TEAM}/bc`, '--json'], { cwd: dir, env });
      expect(listed.code, listed.stderr).toBe(0);
      expect(JSON.parse(listed.stdout).versions.map((v: { version: string }) => v.version)).toContain('1.0.0');
      expect(tokensIssued).toBeGreaterThan(0);
      const refused = await runCli(['versions', '--repository', `127.0.0.1:${port}/${TEAM}/bc`], {
        cwd: dir,
        env: { ...env, MLOPS_REGISTRY_PASSWORD: 'nope-nope' },
      });
      expect(refused.code).toBe(3);
      expect(errorLine(refused.stderr)).toBe(`error: registry 127.0.0.1:${port} refused the login at its token service (HTTP 401)`);
    } finally {
      proxy.close();
    }
  });

  it('exits 3 naming the registry when it is down', async () => {
    const down = `127.0.0.1:${await freePort()}`;
    const dir = await project(down);
    const tagged = await runCli(['tag', '1.0.0'], { cwd: dir });
    expect(tagged.code).toBe(3);
    expect(errorLine(tagged.stderr)).toBe(`error: cannot reach registry ${down}: connection refused; cannot check which versions exist`);
    expect((await runCli(['tag', '1.0.0', '--offline'], { cwd: dir })).code).toBe(0);
    const pushed = await runCli(['push'], { cwd: dir });
    expect(pushed.code).toBe(3);
    expect(errorLine(pushed.stderr)).toBe(`error: cannot reach registry ${down}: connection refused`);
    const listed = await runCli(['versions'], { cwd: dir });
    expect(listed.code).toBe(3);
  });
});
