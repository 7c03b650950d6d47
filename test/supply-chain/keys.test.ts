/** src/supply-chain/keys.ts without Docker: keys as keygen writes them, as CI secrets bring them, and what is refused. */
import { generateKeyPairSync } from 'node:crypto';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateSigningKeyPair, loadPublicKey, loadSigningKey } from '../../src/supply-chain/keys.js';
import { lines, runCli, withTempDir } from '../helpers.js';
import { keyFrom } from './release.js';

describe('signing keys', () => {
  it('keygen writes the private key 0600 and the public key beside it, and never over an existing key', async () => {
    await withTempDir(async (dir) => {
      const made = await runCli(['keygen', '--output', 'keys', '--json'], { cwd: dir });
      expect(made.code, made.stderr).toBe(0);
      const result = JSON.parse(made.stdout);
      expect((await stat(path.join(dir, 'keys', 'mlops.key'))).mode & 0o777).toBe(0o600);
      expect((await stat(path.join(dir, 'keys', 'mlops.pub'))).mode & 0o077).not.toBe(0o077);
      const privatePem = await readFile(path.join(dir, 'keys', 'mlops.key'), 'utf8');
      // Only the paths and the key id are printed: no key material.
      expect(made.stdout + made.stderr).not.toContain(privatePem.split('\n')[1]);
      const { keyId } = await loadPublicKey(path.join(dir, 'keys', 'mlops.pub'), '--key');
      expect(result.keyId).toBe(keyId);
      const again = await runCli(['keygen', '--output', 'keys'], { cwd: dir });
      expect(again.code).toBe(2);
      expect(lines(again.stderr)[0]).toBe(`error: ${path.join(dir, 'keys', 'mlops.key')} exists: mlops keygen never overwrites a key`);
      expect(await readFile(path.join(dir, 'keys', 'mlops.key'), 'utf8')).toBe(privatePem);
    });
  });

  it('a key file others may read is refused before anything is pushed; MLOPS_SIGNING_KEY wins over the file', async () => {
    await withTempDir(async (dir) => {
      const pair = generateSigningKeyPair();
      await writeFile(path.join(dir, 'signing.pem'), pair.privatePem, { mode: 0o644 });
      await chmod(path.join(dir, 'signing.pem'), 0o644);
      await expect(loadSigningKey({}, 'signing.pem', dir)).rejects.toMatchObject({
        exitCode: 2,
        message: 'sign.keyFile signing.pem: others may read or change it (mode 644)',
        hint: 'restrict it to its owner: chmod 600 signing.pem',
      });
      // Through the CLI: push refuses at once (exit 2), before Docker or the registry is asked anything.
      await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ image: { repository: '127.0.0.1:9/team/bc' }, sign: { keyFile: 'signing.pem' } }));
      const pushed = await runCli(['push', '1.0.0'], { cwd: dir, env: { ...process.env, DOCKER_HOST: 'tcp://127.0.0.1:9' } });
      expect(pushed.code).toBe(2);
      expect(lines(pushed.stderr)[0]).toBe('error: sign.keyFile signing.pem: others may read or change it (mode 644)');
      await chmod(path.join(dir, 'signing.pem'), 0o600);
      expect((await loadSigningKey({}, 'signing.pem', dir))!.keyId).toBe(pair.keyId);
      const other = generateSigningKeyPair();
      expect((await loadSigningKey({ MLOPS_SIGNING_KEY: other.privatePem }, 'signing.pem', dir))!.keyId).toBe(other.keyId);
      expect(await loadSigningKey({}, '', dir)).toBeNull();
    });
  });

  it('takes the PEM as CI secrets arrive (escaped newlines too), refuses other key types, and never quotes a key in an error', async () => {
    const pair = generateSigningKeyPair();
    expect((await keyFrom(pair.privatePem.replace(/\n/g, '\\n'))).keyId).toBe(pair.keyId);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    await expect(keyFrom(rsa)).rejects.toMatchObject({ exitCode: 2, message: 'MLOPS_SIGNING_KEY: an rsa key; mlops signs with ECDSA P-256' });
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    await expect(keyFrom(p384)).rejects.toMatchObject({ exitCode: 2, message: 'MLOPS_SIGNING_KEY: an EC key on secp384r1; mlops signs with ECDSA P-256' });
    const broken = pair.privatePem.replace(/[A-Za-z]{10}/, 'AAAAAAAAAA').slice(0, 120);
    const failure = await keyFrom(broken).catch((error: Error) => error);
    expect((failure as Error).message).toBe('MLOPS_SIGNING_KEY: not a readable PEM private key');
    expect(JSON.stringify(failure)).not.toContain(broken.split('\n')[1]);
    const encrypted = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: 'pw',
    }) as string;
    await expect(keyFrom(encrypted)).rejects.toMatchObject({ hint: 'set MLOPS_SIGNING_KEY_PASSWORD' });
    expect((await loadSigningKey({ MLOPS_SIGNING_KEY: encrypted, MLOPS_SIGNING_KEY_PASSWORD: 'pw' }, '', '/'))!.source).toBe('MLOPS_SIGNING_KEY');
  });

  it('verify refuses a private key given as the public one', async () => {
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'k.pem'), generateSigningKeyPair().privatePem);
      await expect(loadPublicKey(path.join(dir, 'k.pem'), '--key')).rejects.toMatchObject({
        exitCode: 2,
        message: `--key: ${path.join(dir, 'k.pem')} is a private key`,
      });
    });
  });
});
