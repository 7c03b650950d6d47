import { describe, expect, it } from 'vitest';
import { fixture, lines, runCli } from '../helpers.js';

describe('mlops build without an engine', () => {
  it('with --builder docker, exits 3 naming the socket it tried', async () => {
    const { code, stdout, stderr } = await runCli(['build', '--builder', 'docker', '--model', fixture('wine', 'model.onnx')], {
      env: { DOCKER_HOST: 'unix:///tmp/mlops-no-such-docker.sock' },
    });
    expect(code).toBe(3);
    expect(stdout).toBe('');
    expect(lines(stderr)[0]).toBe('error: cannot reach the Docker engine at unix:///tmp/mlops-no-such-docker.sock (ENOENT)');
    expect(lines(stderr)[1]).toMatch(/^hint: start an engine/);
  });

  it('by default builds without it, and exits 3 naming a base it cannot reach', async () => {
    const { code, stdout, stderr } = await runCli(['build', '--model', fixture('wine', 'model.onnx'), '--base', '127.0.0.1:59999/nothing/here:1'], {
      env: { DOCKER_HOST: 'unix:///tmp/mlops-no-such-docker.sock' },
    });
    expect(code).toBe(3);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^error: base image 127\.0\.0\.1:59999\/nothing\/here:1: cannot reach registry 127\.0\.0\.1:59999: connection refused$/m);
    expect(stderr).toMatch(/^hint: .*--base oci:<dir> or docker-archive:<file\.tar>/m);
  });
});
