import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { assembleContext } from '../../src/image/context.js';
import { dockerfileString } from '../../src/docker/dockerfile.js';
import { resolveTag } from '../../src/image/build.js';
import { applyDefaults } from '../../src/config/normalize.js';
import { applyServerEnv, imageServerEnv, serveOptionsFromConfig } from '../../src/server/options.js';
import { fixture, withTempDir } from '../helpers.js';

async function listFiles(dir: string, base = dir): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(full, base)));
    else out.push(path.relative(base, full));
  }
  return out.sort();
}

describe('build context', () => {
  for (const [platform, arch, other] of [
    ['linux/amd64', 'x64', 'arm64'],
    ['linux/arm64', 'arm64', 'x64'],
  ] as const) {
    it(`holds ONNX Runtime for ${platform} only, the bundled server and the model`, async () => {
      await withTempDir(async (dir) => {
        await assembleContext(dir, {
          modelPath: fixture('wine', 'model.onnx'),
          modelSha256: 'a'.repeat(64),
          modelName: 'wine',
          modelVersion: '1',
          baseImage: 'node:20-slim',
          platform,
          port: 8080,
          grpcPort: 8081,
          labels: { 'mlops.model.name': 'wine', odd: 'quote " dollar $HOME back \\ slash' },
          referenceProfile: '{"format":"mlops-reference-profile"}\n',
          serverEnv:
            platform === 'linux/amd64'
              ? imageServerEnv(applyDefaults({ server: { inferenceLog: { sample: 0.05, sink: 'file:/tmp/log "1".jsonl' } } }))
              : imageServerEnv(applyDefaults({})),
        });
        const files = await listFiles(dir);
        expect(files).toContain(`runtime/node_modules/onnxruntime-node/bin/napi-v6/linux/${arch}/libonnxruntime.so.1`);
        expect(files).toContain(`runtime/node_modules/onnxruntime-node/bin/napi-v6/linux/${arch}/onnxruntime_binding.node`);
        expect(files.some((f) => f.includes(`/linux/${other}/`) || f.includes('/darwin/') || f.includes('/win32/'))).toBe(false);
        expect(files).toContain('runtime/node_modules/onnxruntime-common/dist/cjs/index.js');
        expect(files).toEqual(
          expect.arrayContaining([
            'server/server.mjs',
            'server/inference-worker.mjs',
            'server/open_inference_grpc.proto',
            'server/grpc-health-check/proto/health/v1/health.proto',
            'server/healthcheck.mjs',
            'model/model.onnx',
            'model/reference-profile.json',
            'Dockerfile',
          ]),
        );
        // No other packages: the server is one bundled file.
        expect(new Set(files.filter((f) => f.startsWith('runtime/')).map((f) => f.split('/')[2]))).toEqual(new Set(['onnxruntime-node', 'onnxruntime-common']));
        const dockerfile = await readFile(path.join(dir, 'Dockerfile'), 'utf8');
        expect(dockerfile).toMatch(/^FROM node:20-slim$/m);
        expect(dockerfile).not.toMatch(/^\s*RUN /m);
        expect(dockerfile).toMatch(/^USER 10001:10001$/m);
        // Both protocols: REST and gRPC, each on the port the server reads from its environment.
        expect(dockerfile).toMatch(/^EXPOSE 8080 8081$/m);
        expect(dockerfile).toMatch(/ PORT=8080 GRPC_PORT=8081 /);
        expect(dockerfile).toContain('odd="quote \\" dollar \\$HOME back \\\\ slash"');
        // Server settings travel in the image's environment: those changed from the defaults, and the inference log when on.
        const tuned = imageServerEnv(applyDefaults({ server: { workers: 1, batching: { enabled: false, maxWaitMs: 2 }, maxBodyBytes: 2 ** 20 } }));
        expect(tuned).toEqual({ MLOPS_WORKERS: '1', MLOPS_BATCHING: 'false', MLOPS_BATCH_MAX_WAIT_MS: '2', MLOPS_MAX_BODY_BYTES: '1048576' });
        // Each is read back by the server as the setting it came from.
        const back = applyServerEnv(serveOptionsFromConfig(applyDefaults({}), '/'), tuned);
        expect([back.workers, back.batching.enabled, back.batching.maxWaitMs, back.maxBodyBytes]).toEqual([1, false, 2, 2 ** 20]);
        if (platform === 'linux/amd64')
          expect(dockerfile).toMatch(
            / MLOPS_INFERENCE_LOG_SAMPLE="0.05" MLOPS_INFERENCE_LOG_SINK="file:\/tmp\/log \\"1\\".jsonl" MLOPS_INFERENCE_LOG_INPUTS="false"$/m,
          );
        else expect(dockerfile).not.toContain('MLOPS_INFERENCE_LOG');
        // The model is the last thing copied.
        const copies = dockerfile.split('\n').filter((l) => l.startsWith('COPY'));
        expect(copies.at(-1)).toBe('COPY model/ /app/model/');
      });
    });
  }

  it('puts external data files beside the model', async () => {
    await withTempDir(async (dir) => {
      await assembleContext(dir, {
        modelPath: fixture('external_data', 'model.onnx'),
        externalData: ['weights.bin'],
        modelSha256: 'a'.repeat(64),
        modelName: 'wine',
        modelVersion: '1',
        baseImage: 'node:20-slim',
        platform: 'linux/amd64',
        port: 8080,
        grpcPort: 0,
        labels: {},
        referenceProfile: '{}',
        serverEnv: {},
      });
      expect(await readFile(path.join(dir, 'model', 'weights.bin'))).toEqual(await readFile(fixture('external_data', 'weights.bin')));
    });
  });

  it('quotes Dockerfile strings without expansion', () => {
    expect(dockerfileString('a"b$c\\d\ne')).toBe('"a\\"b\\$c\\\\d e"');
  });

  it('resolves tags onto the repository and refuses invalid ones', () => {
    expect(resolveTag('bc', 'v1')).toBe('bc:v1');
    expect(resolveTag('bc', 'registry.local:5000/team/bc:v2')).toBe('registry.local:5000/team/bc:v2');
    expect(resolveTag('bc', 'team/bc')).toBe('team/bc:latest');
    expect(() => resolveTag('bc', 'bad tag')).toThrow(/not a valid tag/);
    expect(() => resolveTag('bc', 'UPPER/x:1')).toThrow(/not a valid image reference/);
  });
});
