import bcrypt from 'bcryptjs';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { waitFor } from './docker.js';

export interface TestRegistry {
  /** host:port on 127.0.0.1 */
  address: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Debian's docker-registry (distribution 2.8) on 127.0.0.1 with a config file
 * and storage of its own; with htpasswd basic auth when a user is given.
 */
export async function startRegistry(user?: { name: string; password: string }): Promise<TestRegistry> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mlops-registry-'));
  const port = await freePort();
  const auth = user ? `auth:\n  htpasswd:\n    realm: mlops-test\n    path: ${dir}/htpasswd\n` : '';
  if (user) await writeFile(path.join(dir, 'htpasswd'), `${user.name}:${bcrypt.hashSync(user.password, 6)}\n`);
  await writeFile(
    path.join(dir, 'config.yml'),
    `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n  secret: mlops-test-secret\n${auth}`,
  );
  const child: ChildProcess = spawn('docker-registry', ['serve', path.join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const address = `127.0.0.1:${port}`;
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
        const res = await fetch(`http://${address}/v2/`);
        return res.status === 200 || res.status === 401;
      },
      15_000,
      'the registry to answer',
    );
  } catch (error) {
    child.kill();
    throw error;
  }
  return {
    address,
    async stop() {
      child.kill();
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
