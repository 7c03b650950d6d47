/**
 * The supply chain end to end, against Debian's docker-registry (distribution 2.8: no referrers
 * API, so signatures and SBOMs go by the referrers tag schema): SBOM at build, signature at push,
 * `mlops verify` with only the public key, and deploys that refuse what the key has not signed.
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sbomModelSha256, validateSbom } from '../../src/supply-chain/sbom.js';
import { fixture, lines, runCli } from '../helpers.js';
import { ensureLocalBaseImage, probeEngine, runImage, uniqueName, waitFor } from './docker.js';
import { freePort, startRegistry, type TestRegistry } from './registry-process.js';

const engine = await probeEngine();
const TEAM = uniqueName('signed');
const CONTAINER = uniqueName('signed-dev');
const errorLine = (stderr: string) => lines(stderr).find((l) => l.startsWith('error:'));

describe.skipIf(!engine.ok)(`signed versions and SBOMs in a real OCI registry${engine.ok ? '' : ` (skipped: ${engine.reason})`}`, () => {
  const docker = engine.docker;
  let registry: TestRegistry;
  let base: string;
  let dir: string;
  let repository: string;
  let signingKey: string;
  let port: number;
  const dirs: string[] = [];

  const writeConfig = (extra: object = {}) =>
    writeFile(
      path.join(dir, 'mlops.config.json'),
      JSON.stringify({
        model: { path: 'model.onnx', name: 'bc' },
        image: { repository, base },
        test: { holdout: fixture('breast_cancer', 'holdout.csv'), labels: ['malignant', 'benign'], parity: { sample: 0 } },
        targets: { dev: { type: 'local', containerName: CONTAINER, port, grpcPort: 0, readyTimeoutSeconds: 20 } },
        ...extra,
      }),
    );

  /** A push with docker itself, as anyone with write access to the registry could. */
  const pushImage = async (reference: string) => {
    const stream = await docker.getImage(reference).push({ authconfig: { username: '', password: '', serveraddress: registry.address } });
    await new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (e: Error | null) => (e ? reject(e) : resolve())));
  };

  beforeAll(async () => {
    base = await ensureLocalBaseImage(docker);
    registry = await startRegistry();
    repository = `${registry.address}/${TEAM}/bc`;
    dir = await mkdtemp(path.join(tmpdir(), 'mlops-e2e-signed-'));
    dirs.push(dir);
    await copyFile(fixture('breast_cancer', 'model.onnx'), path.join(dir, 'model.onnx'));
    port = await freePort();
    await writeConfig();
    const made = await runCli(['keygen', '--output', 'keys'], { cwd: dir });
    expect(made.code, made.stderr).toBe(0);
    await runCli(['keygen', '--output', 'other-keys'], { cwd: dir });
    signingKey = await readFile(path.join(dir, 'keys', 'mlops.key'), 'utf8');
  });

  afterAll(async () => {
    for (const c of await docker.listContainers({ all: true, filters: { name: [CONTAINER] } })) await docker.getContainer(c.Id).remove({ force: true });
    await registry?.stop();
    for (const image of await docker.listImages()) {
      if ([...(image.RepoTags ?? []), ...(image.RepoDigests ?? [])].some((t) => t.includes(`/${TEAM}/`)))
        await docker
          .getImage(image.Id)
          .remove({ force: true })
          .catch(() => undefined);
    }
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('build writes a CycloneDX 1.6 SBOM naming the model by its sha256; another model changes only the model and the image in it', async () => {
    const built = await runCli(['build', '--json'], { cwd: dir });
    expect(built.code, built.stderr).toBe(0);
    expect(JSON.parse(built.stdout).sbom).toBe(path.join('.mlops', 'sbom.cdx.json'));
    const sbom = await readFile(path.join(dir, '.mlops', 'sbom.cdx.json'), 'utf8');
    await validateSbom(sbom);
    const image = await docker.getImage(JSON.parse(built.stdout).imageId).inspect();
    expect(sbomModelSha256(sbom)).toBe(image.Config.Labels['mlops.model.sha256']);
    const doc = JSON.parse(sbom);
    expect(doc.metadata.component.properties).toContainEqual({ name: 'mlops:image.id', value: image.Id });
    expect(doc.components.find((c: { name: string }) => c.name === base)?.properties).toContainEqual({
      name: 'mlops:image.id',
      value: (await docker.getImage(base).inspect()).Id,
    });
    // A rebuild of the same model is the same image and the same SBOM, byte for byte.
    expect((await runCli(['build'], { cwd: dir })).code).toBe(0);
    expect(await readFile(path.join(dir, '.mlops', 'sbom.cdx.json'), 'utf8')).toBe(sbom);

    const other = await mkdtemp(path.join(tmpdir(), 'mlops-e2e-signed-other-'));
    dirs.push(other);
    await copyFile(fixture('wine', 'model.onnx'), path.join(other, 'model.onnx'));
    await writeFile(path.join(other, 'mlops.config.json'), JSON.stringify({ model: { path: 'model.onnx', name: 'bc' }, image: { repository, base } }));
    const rebuilt = await runCli(['build', '--json'], { cwd: other });
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    const second = JSON.parse(await readFile(path.join(other, '.mlops', 'sbom.cdx.json'), 'utf8'));
    const byRef = (d: { components: { 'bom-ref': string }[] }) => new Map(d.components.map((c) => [c['bom-ref'], JSON.stringify(c)]));
    expect([...byRef(doc)].filter(([ref, text]) => byRef(second).get(ref) !== text).map(([ref]) => ref)).toEqual(['model']);
    expect(second.metadata.component.version).not.toBe(doc.metadata.component.version);
    expect(second.dependencies).toEqual(doc.dependencies);
  });

  it('push signs and attaches; verify passes with only the public key and the registry; versions shows it signed', async () => {
    expect((await runCli(['test'], { cwd: dir })).code).toBe(0);
    expect((await runCli(['tag', '1.0.0'], { cwd: dir })).code).toBe(0);
    const pushed = await runCli(['push', '--json', '--verbose'], { cwd: dir, env: { ...process.env, MLOPS_SIGNING_KEY: signingKey } });
    expect(pushed.code, pushed.stderr).toBe(0);
    const push = JSON.parse(pushed.stdout);
    expect(push).toMatchObject({ signed: true, supplyChain: { via: 'tag-schema', signature: { keyId: expect.stringMatching(/^[0-9a-f]{64}$/) } } });
    expect(push.supplyChain.bytes).toBeGreaterThan(push.supplyChain.sbom.bytes);
    // No line of the private key reaches the output, even under --verbose.
    for (const line of signingKey.split('\n').filter((l) => l && !l.startsWith('-----'))) expect(pushed.stdout + pushed.stderr).not.toContain(line);
    const hex = push.digest.slice('sha256:'.length);
    const tags = (await (await fetch(`http://${registry.address}/v2/${TEAM}/bc/tags/list`)).json()) as { tags: string[] };
    expect(tags.tags).toEqual(expect.arrayContaining(['1.0.0', `sha256-${hex}`, `sha256-${hex}.sig`, `sha256-${hex}.sbom`]));

    // A folder with nothing but a config and the public key: no build, no .mlops.
    const verifier = await mkdtemp(path.join(tmpdir(), 'mlops-e2e-verifier-'));
    dirs.push(verifier);
    await copyFile(path.join(dir, 'keys', 'mlops.pub'), path.join(verifier, 'mlops.pub'));
    await writeFile(path.join(verifier, 'mlops.config.json'), JSON.stringify({ image: { repository } }));
    const verified = await runCli(['verify', '1.0.0', '--key', 'mlops.pub', '--json'], { cwd: verifier });
    expect(verified.code, verified.stderr).toBe(0);
    const result = JSON.parse(verified.stdout);
    expect(result).toMatchObject({ verified: true, digest: push.digest, signed: true, sbom: true, problems: [] });
    expect(result.modelSha256.label).toMatch(/^[0-9a-f]{64}$/);
    expect(result.modelSha256.sbom).toBe(result.modelSha256.label);
    expect(result.modelSha256.signed).toBe(result.modelSha256.label);

    // Two pushers writing the referrers index at once may lose an entry: the .sig and .sbom tags still find them.
    const index = await fetch(`http://${registry.address}/v2/${TEAM}/bc/manifests/sha256-${hex}`, {
      headers: { accept: 'application/vnd.oci.image.index.v1+json' },
    });
    const indexDigest = index.headers.get('docker-content-digest');
    expect((await fetch(`http://${registry.address}/v2/${TEAM}/bc/manifests/${indexDigest}`, { method: 'DELETE' })).status).toBe(202);
    const withoutIndex = await runCli(['verify', '1.0.0', '--key', 'mlops.pub', '--json'], { cwd: verifier });
    expect(withoutIndex.code, withoutIndex.stderr).toBe(0);

    // The attached SBOM is the one written here, with the version's digest and its test metrics.
    const sbom = JSON.parse(await readFile(path.join(dir, '.mlops', 'sbom.cdx.json'), 'utf8'));
    expect(sbom.metadata.component.purl).toContain(`@sha256:${hex}`);
    const model = sbom.components.find((c: { type: string }) => c.type === 'machine-learning-model');
    expect(model.modelCard.quantitativeAnalysis.performanceMetrics.map((m: { type: string }) => m.type)).toContain('accuracy');

    // Signed only when the key verifies it; without a key, a signature attached is not checked (issue 35).
    const listed = JSON.parse((await runCli(['versions', '--key', 'mlops.pub', '--json'], { cwd: verifier })).stdout);
    expect(listed.versions).toEqual([expect.objectContaining({ version: '1.0.0', signed: true, signature: 'verified', aliases: [] })]);
    const unchecked = JSON.parse((await runCli(['versions', '--json'], { cwd: verifier })).stdout);
    expect(unchecked.versions).toEqual([expect.objectContaining({ version: '1.0.0', signed: false, signature: 'not checked' })]);
    // The artifacts' tags are neither versions nor aliases.
    expect(listed.aliases).toEqual({});
  });

  it('a signature by another key fails, and so does a different image pushed under the same version', async () => {
    const wrongKey = await runCli(['verify', '1.0.0', '--key', 'other-keys/mlops.pub'], { cwd: dir });
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stderr + wrongKey.stdout).toMatch(/its signature does not verify: signed by another key \([0-9a-f]{12}\), not [0-9a-f]{12}/);
    // versions no longer calls it signed: before, a signature merely present showed "signed" (issue 35).
    const listedWrong = JSON.parse((await runCli(['versions', '--key', 'other-keys/mlops.pub', '--json'], { cwd: dir })).stdout);
    expect(listedWrong.versions).toEqual([
      expect.objectContaining({
        version: '1.0.0',
        signed: false,
        signature: 'does not verify',
        signatureProblem: expect.stringMatching(/signed by another key/),
      }),
    ]);

    // Someone pushes another image as 1.0.0 (with docker, not mlops).
    await docker.getImage(base).tag({ repo: repository, tag: '1.0.0' });
    await pushImage(`${repository}:1.0.0`);
    const retagged = await runCli(['verify', '1.0.0', '--key', 'keys/mlops.pub', '--json'], { cwd: dir });
    expect(retagged.code).toBe(1);
    const result = JSON.parse(retagged.stdout);
    expect(result.verified).toBe(false);
    expect(result.failure).toBe('unsigned');
    expect(result.problems[0]).toMatch(
      /^unsigned: no signature refers to sha256:[0-9a-f]{64}, the digest the registry serves for 1\.0\.0 now \(if it was signed, the image under this version changed since\)$/,
    );
    expect(result.problems).toContain('no SBOM is attached');

    await writeConfig({ deploy: { verify: { key: 'keys/mlops.pub' } } });
    const refused = await runCli(['deploy', '1.0.0', '--target', 'dev'], { cwd: dir });
    expect(refused.code).toBe(5);
    expect(errorLine(refused.stderr)).toMatch(/^error: refusing to deploy .*:1\.0\.0: unsigned: no signature refers to sha256:/);
    expect(await docker.listContainers({ all: true, filters: { name: [CONTAINER] } })).toEqual([]);
  });

  it('deploy with deploy.verify.key refuses an unsigned version (exit 5, nothing deployed) and deploys a signed one; rollback is held to the same', async () => {
    await writeConfig({ deploy: { verify: { key: 'keys/mlops.pub' } } });
    expect((await runCli(['tag', '1.0.1'], { cwd: dir })).code).toBe(0);
    const unsigned = await runCli(['push'], { cwd: dir });
    expect(unsigned.code, unsigned.stderr).toBe(0);
    expect(unsigned.stderr).toContain('1.0.1 was pushed unsigned: no signing key (set MLOPS_SIGNING_KEY or sign.keyFile;');

    for (const args of [
      ['deploy', '1.0.1', '--target', 'dev'],
      ['deploy', '1.0.1', '--target', 'dev', '--dry-run', '--json'],
    ]) {
      const refused = await runCli(args, { cwd: dir });
      expect(refused.code, args.join(' ')).toBe(5);
    }
    const refused = await runCli(['deploy', '1.0.1', '--target', 'dev', '--json'], { cwd: dir });
    expect(JSON.parse(refused.stdout).error).toMatchObject({ exitCode: 5, message: expect.stringMatching(/^refusing to deploy .*:1\.0\.1: unsigned: /) });
    expect(await docker.listContainers({ all: true, filters: { name: [CONTAINER] } })).toEqual([]);
    const history = await runCli(['history', '--target', 'dev', '--json'], { cwd: dir });
    expect(JSON.parse(history.stdout).entries ?? []).toEqual([]);

    expect((await runCli(['tag', '1.0.2'], { cwd: dir })).code).toBe(0);
    expect((await runCli(['push'], { cwd: dir, env: { ...process.env, MLOPS_SIGNING_KEY: signingKey } })).code).toBe(0);
    const deployed = await runCli(['deploy', '1.0.2', '--target', 'dev'], { cwd: dir });
    expect(deployed.code, deployed.stderr).toBe(0);
    expect(deployed.stderr).toMatch(/verified .*:1\.0\.2: sha256:[0-9a-f]{64} signed by key [0-9a-f]{12}/);

    const back = await runCli(['rollback', '--target', 'dev', '--to', '1.0.1'], { cwd: dir });
    expect(back.code).toBe(5);
    const status = JSON.parse((await runCli(['status', '--target', 'dev', '--json'], { cwd: dir })).stdout);
    expect(status.version).toBe('1.0.2');
  });

  it('the image serves with a read-only root filesystem and every capability dropped', async () => {
    const image = JSON.parse(await readFile(path.join(dir, '.mlops', 'last-build.json'), 'utf8')).imageId;
    const running = await runImage(docker, image, { hostConfig: { ReadonlyRootfs: true, CapDrop: ['ALL'], SecurityOpt: ['no-new-privileges'] } });
    try {
      const info = await running.container.inspect();
      expect(info.HostConfig.ReadonlyRootfs).toBe(true);
      expect(info.HostConfig.CapDrop).toEqual(['ALL']);
      await waitFor(async () => (await running.container.inspect()).State.Health?.Status === 'healthy', 30_000, 'the health check to pass');
      const row = (await readFile(fixture('breast_cancer', 'holdout.csv'), 'utf8')).trim().split('\n')[1].split(',').slice(0, -1).map(Number);
      const res = await fetch(`${running.url}/v2/models/bc/infer`, {
        method: 'POST',
        body: JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 30], data: row }] }),
      });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { outputs: { data: number[] }[] }).outputs[0].data).toHaveLength(2);
    } finally {
      await running.remove();
    }
  });
});
