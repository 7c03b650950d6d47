/**
 * Issue 21: a pipeline gets the CLI from this repository as a GitHub Action. action.yml and both
 * workflow templates are checked with a GitHub Actions schema validator (action-validator), and the
 * action's install step runs here as a runner would run it: in a fresh copy of the repository, with
 * the runner's variables, npm working from its cache only (no network), then `mlops` from PATH.
 */
import { validateAction, validateWorkflow } from '@action-validator/core';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { fixture, ROOT } from '../helpers.js';

const TEMPLATES = ['templates/github-actions.yml', 'templates/monitor-and-retrain.yml'];
const read = (file: string) => readFile(path.join(ROOT, file), 'utf8');

describe('the GitHub Action and the workflow templates', () => {
  it("are valid against GitHub Actions' schemas (and the validator does refuse a broken one)", async () => {
    expect(validateAction(await read('action.yml')).errors).toEqual([]);
    for (const template of TEMPLATES) expect(validateWorkflow(await read(template)).errors, template).toEqual([]);
    expect(validateWorkflow('on: push\njobs:\n  a:\n    runs-on: x\n    stepz: []\n').errors.length).toBeGreaterThan(0);
  });

  it('install mlops through the action, pin third-party actions to commits, and pass secrets through env', async () => {
    for (const template of TEMPLATES) {
      const text = await read(template);
      expect(text, template).not.toMatch(/npm install --global mlops\b/);
      const workflow = parse(text) as { jobs: Record<string, { steps: { uses?: string; run?: string }[] }> };
      for (const [job, { steps }] of Object.entries(workflow.jobs)) {
        const uses = steps.map((s) => s.uses).filter((u): u is string => Boolean(u));
        expect(
          uses.some((u) => /^[\w-]+\/mlops@/.test(u)),
          `${template} ${job} gets the CLI from the action`,
        ).toBe(true);
        for (const u of uses.filter((u) => !/\/mlops@/.test(u))) expect(u, `${template} ${job}`).toMatch(/^[\w-]+\/[\w-]+@[0-9a-f]{40}$/);
        for (const step of steps) expect(step.run ?? '', `${template} ${job}: a secret in a script's text`).not.toContain('secrets.');
      }
    }
    const action = parse(await read('action.yml')) as { runs: { steps: { uses?: string }[] } };
    for (const step of action.runs.steps) if (step.uses) expect(step.uses).toMatch(/@[0-9a-f]{40}$/);
  });

  it('pin every action, the mlops one and those in comments too, to a 40-hex commit or the placeholder docs/ci.md explains', async () => {
    const ci = await read('docs/ci.md');
    const placeholder = '0'.repeat(40);
    expect(ci).toContain(`your-org/mlops@${placeholder}`);
    for (const template of [...TEMPLATES, 'templates/gitlab-ci.yml']) {
      const text = await read(template);
      // Commented steps are what a user uncomments: they are held to the same rule.
      const refs = [...text.matchAll(/uses:\s*([^\s#]+)/g), ...text.matchAll(/(git\+https:\/\/\S+?#[^"\s]+)/g)].map((m) => m[1]);
      expect(refs.length, template).toBeGreaterThan(0);
      for (const ref of refs) expect(ref, template).toMatch(/[@#][0-9a-f]{40}$/);
      for (const ref of refs.filter((r) => r.endsWith(placeholder))) expect(ref, template).toMatch(/your-org\/mlops[@.]/);
      // A pin's comment names a release, so a reader can tell what it is.
      for (const line of text.split('\n').filter((l) => /uses:\s*\S+@[0-9a-f]{40}/.test(l)))
        expect(line, template).toMatch(/# (v\d+(\.\d+)*|mlops \d+\.\d+\.\d+)$/);
    }
  });

  it('give each job only the permissions and secrets it uses', async () => {
    for (const template of TEMPLATES) {
      const workflow = parse(await read(template)) as {
        permissions?: object;
        jobs: Record<
          string,
          { permissions?: Record<string, string>; env?: Record<string, string>; steps: { uses?: string; run?: string; env?: Record<string, string> }[] }
        >;
      };
      expect(workflow.permissions, `${template}: nothing by default`).toEqual({});
      const text = await read(template);
      for (const [name, job] of Object.entries(workflow.jobs)) {
        expect(job.permissions?.contents, `${template} ${name}`).toBe('read');
        // No job-wide registry login: only steps that use the registry get it.
        expect(
          Object.keys(job.env ?? {}).filter((k) => k.startsWith('MLOPS_REGISTRY')),
          `${template} ${name}`,
        ).toEqual([]);
        for (const step of job.steps) {
          if (step.env?.MLOPS_REGISTRY_PASSWORD) expect(step.run ?? '', `${template} ${name}`).toMatch(/mlops (push|tag|deploy|versions)|mlops versions/);
        }
        // id-token: write only beside a cloud login that trades it (in use or commented).
        if (job.permissions?.['id-token'] === 'write') {
          const block = text.slice(text.indexOf(`  ${name}:`));
          expect(block, `${template} ${name}`).toMatch(/google-github-actions\/auth|aws-actions\/configure-aws-credentials|azure\/login/);
        }
      }
    }
    const gitlab = parse(await read('templates/gitlab-ci.yml')) as Record<
      string,
      { script?: string[]; services?: { name: string }[]; variables?: Record<string, string> }
    >;
    // No daemon: no docker:dind service, no DOCKER_HOST, and the build is the daemonless one.
    const services = Object.values(gitlab).flatMap((job) =>
      job && typeof job === 'object' && Array.isArray(job.services) ? job.services.map((s) => s.name) : [],
    );
    expect(services.length).toBeGreaterThan(0);
    for (const service of services) expect(service).not.toMatch(/docker/);
    expect(JSON.stringify(gitlab)).not.toContain('DOCKER_HOST');
    expect(gitlab.build.script!.join('\n')).toMatch(/mlops build --builder oci/);
    for (const [name, job] of Object.entries(gitlab)) {
      if (!job || typeof job !== 'object' || !('script' in job)) continue;
      const pushes = /mlops (build|push|tag|deploy)/.test(job.script!.join('\n'));
      expect(Boolean(job.variables?.MLOPS_REGISTRY_PASSWORD), `gitlab ${name}: the registry login only where the registry is used`).toBe(pushes);
    }
  });
});

describe("the action's install step, as a runner runs it", () => {
  it('installs the CLI from a fresh copy with npm ci (offline, from the cache) and puts a working `mlops` in the bin folder', async () => {
    const work = await mkdtemp(path.join(tmpdir(), 'mlops-action-'));
    try {
      const checkout = path.join(work, 'action');
      // What `uses:` checks out: the repository's files, nothing built or installed.
      const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' })
        .split('\0')
        .filter(Boolean);
      for (const file of files) {
        await mkdir(path.dirname(path.join(checkout, file)), { recursive: true });
        await copyFile(path.join(ROOT, file), path.join(checkout, file)).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOENT') throw error;
        });
      }
      const bin = path.join(work, 'runner-temp', 'mlops-bin');
      const output = path.join(work, 'github-output');
      await writeFile(output, '');
      const env = { PATH: process.env.PATH, HOME: process.env.HOME, CI: 'true', GITHUB_OUTPUT: output, npm_config_offline: 'true' };
      const version = JSON.parse(await read('package.json')).version as string;

      const wrong = spawnSync('bash', ['.ci/install-cli', bin], { cwd: checkout, env: { ...env, WANTED: '99.0.0' }, encoding: 'utf8' });
      expect(wrong.status).toBe(2);
      expect(wrong.stderr).toContain(`this checkout of mlops is version ${version}, but the workflow asks for 99.0.0`);

      const installed = spawnSync('bash', ['.ci/install-cli', bin], { cwd: checkout, env: { ...env, WANTED: version }, encoding: 'utf8', timeout: 300_000 });
      expect(installed.status, installed.stderr.slice(-2000)).toBe(0);
      expect(await readFile(output, 'utf8')).toBe(`version=${version}\n`);
      // The next steps find it on PATH, as $GITHUB_PATH puts it there.
      const onPath = { ...env, PATH: `${bin}:${process.env.PATH}` };
      expect(execFileSync('mlops', ['--version'], { env: onPath, encoding: 'utf8' }).trim()).toBe(version);
      const inspected = JSON.parse(execFileSync('mlops', ['inspect', fixture('wine', 'model.onnx'), '--json'], { env: onPath, encoding: 'utf8' }));
      expect(inspected.inputs[0].name).toBe('features');
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }, 300_000);
});
