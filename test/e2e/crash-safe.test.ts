import { spawn } from 'node:child_process';
import { copyFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, fixture, runCli } from '../helpers.js';
import { ensureLocalBaseImage, probeEngine, uniqueName } from './docker.js';
import { freePort } from './registry-process.js';
import { localAdapter } from '../../src/targets/local.js';
import { thisProcess } from '../../src/targets/lock.js';
import type { DeployContext } from '../../src/targets/types.js';

const engine = await probeEngine();
const REPOSITORY = 'mlops-e2e-crash/bc';
/** Unique to this run: the clean-up removes only what this file made, never a user's mlops-bc-dev. */
const CONTAINER = uniqueName('crash');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The CLI in a process of its own, so it can be killed as a CI runner dies: kill -9, no cleanup. */
function spawnCli(args: string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  return spawnNode([path.join(ROOT, 'bin/mlops.js'), ...args], cwd, env);
}

/** A deploy that kills itself with SIGKILL at `stage` (test/e2e/deploy-killed-at.mjs). */
function spawnKilledAt(stage: string, version: string, target: string, cwd: string): Promise<Run> {
  return spawnNode([path.join(ROOT, 'test/e2e/deploy-killed-at.mjs'), stage, version, target], cwd);
}

function spawnNode(args: string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd, env: { ...process.env, CI: 'true', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/**
 * Deploys that collide, die, or find their history damaged, on the real engine. v1 is the breast
 * cancer model ("probabilities"), v2 the wine model under the same name ("logits"), so what answers
 * on the target's port says which version serves.
 */
describe.skipIf(!engine.ok)(`crash-safe deploys to the local target${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  let dir: string;
  let url: string;
  const served = async () => {
    const res = await fetch(`${url}/v2/models/bc`).catch(() => undefined);
    return res?.ok ? ((await res.json()) as { outputs: { name: string }[] }).outputs[0].name : 'nothing';
  };
  const containers = async () =>
    (await docker.listContainers({ all: true, filters: { name: [CONTAINER] } }))
      .map((c) => `${c.Names[0].slice(1)} ${c.Labels['mlops.release.version'] ?? ''} ${c.State}`.trim())
      .sort();
  const status = async () => JSON.parse((await runCli(['status', '--target', 'dev', '--json'], { cwd: dir })).stdout);
  const history = async () =>
    (JSON.parse((await runCli(['history', '--target', 'dev', '--json'], { cwd: dir })).stdout).entries as { version: string; outcome: string }[]).map(
      (e) => `${e.version} ${e.outcome}`,
    );

  beforeAll(async () => {
    const base = await ensureLocalBaseImage(docker);
    dir = await mkdtemp(path.join(tmpdir(), 'mlops-e2e-crash-'));
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    await writeFile(
      path.join(dir, 'mlops.config.json'),
      JSON.stringify({
        model: { path: 'model.onnx', name: 'bc' },
        image: { repository: REPOSITORY, base },
        targets: { dev: { type: 'local', containerName: CONTAINER, port, grpcPort: 0, readyTimeoutSeconds: 10 } },
      }),
    );
    for (const [model, version] of [
      ['breast_cancer', '1.0.0'],
      ['wine', '2.0.0'],
    ]) {
      await copyFile(fixture(model, 'model.onnx'), path.join(dir, 'model.onnx'));
      expect((await runCli(['build'], { cwd: dir })).code).toBe(0);
      expect((await runCli(['tag', version], { cwd: dir })).code).toBe(0);
    }
    const first = await spawnCli(['deploy', '1.0.0', '--target', 'dev'], dir);
    expect(first.code, first.stderr).toBe(0);
  }, 240_000);

  afterAll(async () => {
    for (const c of await docker.listContainers({ all: true, filters: { name: [CONTAINER] } })) await docker.getContainer(c.Id).remove({ force: true });
    for (const image of await docker.listImages({ filters: { reference: [`${REPOSITORY}*`] } }))
      await docker
        .getImage(image.Id)
        .remove({ force: true })
        .catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the engine lock has exactly one holder when six ask at once, round after round', async () => {
    // A name the engine reports taken before it can inspect it was once read as a stale lock and removed
    // under its live holder: two deploys then ran together (4 rounds in 30 had two winners).
    const target = { type: 'local', containerName: `${CONTAINER}-race`, port: 1 } as const;
    const ctx = { env: process.env, config: { model: { name: 'bc' } }, projectDir: dir, targetName: 'race' } as unknown as DeployContext;
    const winnersPerRound: number[] = [];
    for (let round = 0; round < 20; round++) {
      const attempts = await Promise.all(Array.from({ length: 6 }, () => localAdapter.lock(target as never, ctx, thisProcess('mlops deploy race'))));
      const held = attempts.filter((a) => 'release' in a);
      winnersPerRound.push(held.length);
      for (const lock of held) await lock.release();
    }
    expect(winnersPerRound).toEqual(Array(20).fill(1));
  }, 120_000);

  it('two deploys started together: one serves, the other exits 3 naming the holder; with --lock-timeout it waits its turn', async () => {
    const [a, b] = await Promise.all([spawnCli(['deploy', '2.0.0', '--target', 'dev'], dir), spawnCli(['deploy', '1.0.0', '--target', 'dev'], dir)]);
    const codes = [a.code, b.code].sort();
    expect(codes, `${a.stderr}\n${b.stderr}`).toEqual([0, 3]);
    const loser = a.code === 3 ? a : b;
    const winner = a.code === 0 ? a : b;
    expect(loser.stderr).toMatch(/error: target 'dev' is locked by mlops deploy (1\.0\.0|2\.0\.0) \(pid \d+ on \S+, since \S+\)/);
    expect(loser.stderr).not.toMatch(/internal error|at .*\.js:\d+/);
    expect(await served()).toBe(winner === a ? 'logits' : 'probabilities');
    expect(await containers()).toEqual([`${CONTAINER} ${winner === a ? '2.0.0' : '1.0.0'} running`]);

    const [c, d] = await Promise.all([
      spawnCli(['deploy', '2.0.0', '--target', 'dev', '--lock-timeout', '120'], dir),
      spawnCli(['deploy', '1.0.0', '--target', 'dev', '--lock-timeout', '120'], dir),
    ]);
    expect([c.code, d.code], `${c.stderr}\n${d.stderr}`).toEqual([0, 0]);
    expect(`${c.stderr}${d.stderr}`).toMatch(/waiting for mlops deploy (1\.0\.0|2\.0\.0) \(pid \d+/);
    expect(['probabilities', 'logits']).toContain(await served());
  }, 180_000);

  // Each stage a deploy of 2.0.0 (over 1.0.0) can die at; what must serve right after; what the next deploy of 2.0.0 records.
  const stages: [stage: string, answersAfterKill: string, leftover: string, recorded: string][] = [
    ['candidate-created', 'probabilities', `${CONTAINER}-next`, '2.0.0 interrupted'],
    ['candidate-ready', 'probabilities', `${CONTAINER}-next`, '2.0.0 interrupted'],
    ['old-stopped', 'nothing', `${CONTAINER}-prev`, '2.0.0 interrupted'],
    ['replaced', 'logits', `${CONTAINER}-prev`, '2.0.0 deployed'],
  ];
  for (const [stage, answersAfterKill, leftover, recorded] of stages) {
    it(`a deploy killed with SIGKILL at ${stage}: status says so truthfully, and the next deploy ends with a checked version serving`, async () => {
      const reset = await spawnCli(['deploy', '1.0.0', '--target', 'dev'], dir);
      expect(reset.code, reset.stderr).toBe(0);
      expect(await served()).toBe('probabilities');

      const killed = await spawnKilledAt(stage, '2.0.0', 'dev', dir);
      expect(killed.signal).toBe('SIGKILL');
      expect(await served()).toBe(answersAfterKill);

      const now = await status();
      expect(now.detail.interrupted).toContain(leftover);
      // What the status calls serving is what answers on the port.
      if (answersAfterKill === 'nothing') expect(now.health).not.toBe('ready');
      else expect(now).toMatchObject({ version: answersAfterKill === 'logits' ? '2.0.0' : '1.0.0', health: 'ready' });
      if (answersAfterKill === 'logits') expect(now.detail.unchecked).toContain('the last completed deploy put 1.0.0');

      const next = await spawnCli(['deploy', '2.0.0', '--target', 'dev', '--json'], dir);
      expect(next.code, next.stderr).toBe(0);
      expect(next.stderr).toContain('warning: an interrupted deploy');
      expect(await served()).toBe('logits');
      expect(await containers()).toEqual([`${CONTAINER} 2.0.0 running`]);
      const entries = await history();
      expect(entries.slice(-2)).toEqual([recorded, '2.0.0 deployed']);
      expect((await status()).detail.interrupted).toBeUndefined();
    }, 120_000);
  }

  it('while a deploy runs the port answers the old version, then briefly nothing, then the new one: never an unchecked one', async () => {
    expect((await spawnCli(['deploy', '1.0.0', '--target', 'dev'], dir)).code).toBe(0);
    const seen: [number, string][] = [];
    let done = false;
    const deploying = spawnCli(['deploy', '2.0.0', '--target', 'dev'], dir).finally(() => (done = true));
    while (!done) {
      seen.push([performance.now(), await served()]);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect((await deploying).code).toBe(0);
    seen.push([performance.now(), await served()]);
    const order = seen.map(([, s]) => s).filter((s, i, all) => i === 0 || all[i - 1] !== s);
    expect(order[0]).toBe('probabilities');
    expect(order.at(-1)).toBe('logits');
    expect(order.filter((s) => s !== 'nothing')).toEqual(['probabilities', 'logits']);
    const silent = seen.filter(([, s]) => s === 'nothing').map(([t]) => t);
    const gapMs = silent.length ? silent.at(-1)! - silent[0] : 0;
    // A figure for the README, not a gate: timings on these machines are noise.
    process.stderr.write(`\nthe target's port went unanswered for ${gapMs.toFixed(0)} ms of a ${(seen.at(-1)![0] - seen[0][0]).toFixed(0)} ms deploy\n`);
  }, 120_000);

  it('a rollback also resolves an interrupted deploy first', async () => {
    const killed = await spawnKilledAt('old-stopped', '1.0.0', 'dev', dir);
    expect(killed.signal).toBe('SIGKILL');
    const back = await spawnCli(['rollback', '--target', 'dev', '--to', '1.0.0'], dir);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stderr).toContain('warning: an interrupted deploy');
    expect(await served()).toBe('probabilities');
    expect(await containers()).toEqual([`${CONTAINER} 1.0.0 running`]);
  }, 120_000);

  it('a truncated history: exit 2 naming the file, left untouched; --force sets it aside and starts a new one', async () => {
    const file = path.join(dir, '.mlops', 'history', 'dev.json');
    const whole = await readFile(file, 'utf8');
    const truncated = whole.slice(0, Math.floor(whole.length / 2));
    await writeFile(file, truncated);
    for (const args of [['status'], ['history'], ['deploy', '2.0.0'], ['rollback']]) {
      const run = await spawnCli([...args, '--target', 'dev'], dir);
      expect(run.code, `${args[0]}: ${run.stderr}`).toBe(2);
      expect(run.stderr).toContain(`error: ${file} is damaged`);
      expect(run.stderr).toContain(`cp ${file}.bak ${file}`);
      expect(await readFile(file, 'utf8')).toBe(truncated);
    }
    expect(JSON.parse(await readFile(`${file}.bak`, 'utf8')).entries.length).toBeGreaterThan(3);

    const forced = await spawnCli(['deploy', '2.0.0', '--target', 'dev', '--force'], dir);
    expect(forced.code, forced.stderr).toBe(0);
    const aside = (await readdir(path.dirname(file))).filter((f) => f.startsWith('dev.json.damaged-'));
    expect(aside).toHaveLength(1);
    expect(await readFile(path.join(path.dirname(file), aside[0]), 'utf8')).toBe(truncated);
    expect(await history()).toEqual(['2.0.0 deployed']);
  }, 120_000);

  it('a missing history over a serving target: deploying takes --force, or history --rebuild', async () => {
    await rm(path.join(dir, '.mlops', 'history'), { recursive: true, force: true });
    const refused = await spawnCli(['deploy', '1.0.0', '--target', 'dev'], dir);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/target 'dev' serves 2\.0\.0, but .*dev\.json has no record of it/);
    expect(await served()).toBe('logits');
    // Or the history is rebuilt from the target: here, what serves.
    const rebuilt = await spawnCli(['history', '--target', 'dev', '--rebuild', '--json'], dir);
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    expect(await history()).toEqual(['2.0.0 deployed']);
    expect((await spawnCli(['deploy', '1.0.0', '--target', 'dev'], dir)).code).toBe(0);
    expect(await served()).toBe('probabilities');
  }, 120_000);
});
