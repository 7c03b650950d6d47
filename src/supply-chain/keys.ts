import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { inputError } from '../errors.js';

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicPem: string;
  /** sha256 of the public key's DER (SubjectPublicKeyInfo): the bundle's key hint, and how a key is named in messages. */
  keyId: string;
  /** Where it came from, for messages: MLOPS_SIGNING_KEY or the file. */
  source: string;
}

export const PRIVATE_KEY_FILE = 'mlops.key';
export const PUBLIC_KEY_FILE = 'mlops.pub';

export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

/** Sigstore's key-based signing, as cosign's: ECDSA on P-256 with SHA-256. Other keys are refused up front. */
function requireP256(key: KeyObject, source: string): void {
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    const what =
      key.asymmetricKeyType === 'ec'
        ? `an EC key on ${key.asymmetricKeyDetails?.namedCurve}`
        : `a${key.asymmetricKeyType === 'rsa' ? 'n' : ''} ${key.asymmetricKeyType} key`;
    throw inputError(`${source}: ${what}; mlops signs with ECDSA P-256`, 'make a key pair with `mlops keygen --output <dir>`');
  }
}

/** A fresh ECDSA P-256 key pair, as PEM (PKCS#8 private key, SPKI public key). */
export function generateSigningKeyPair(): { privatePem: string; publicPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
    keyId: keyIdOf(publicKey),
  };
}

/** Writes <dir>/mlops.key (0600, never over an existing key) and <dir>/mlops.pub. */
export async function writeKeyPair(dir: string): Promise<{ privateKeyFile: string; publicKeyFile: string; keyId: string }> {
  const pair = generateSigningKeyPair();
  await mkdir(dir, { recursive: true });
  const privateKeyFile = path.join(dir, PRIVATE_KEY_FILE);
  const publicKeyFile = path.join(dir, PUBLIC_KEY_FILE);
  for (const file of [privateKeyFile, publicKeyFile]) {
    if (
      await stat(file).then(
        () => true,
        () => false,
      )
    ) {
      throw inputError(
        `${file} exists: mlops keygen never overwrites a key`,
        'pick another --output folder, or remove the old pair if you mean to replace it (versions it signed then fail to verify)',
      );
    }
  }
  // 'wx': created here with mode 0600 from the start, never a moment readable by others.
  await writeFile(privateKeyFile, pair.privatePem, { mode: 0o600, flag: 'wx' });
  await writeFile(publicKeyFile, pair.publicPem, { mode: 0o644, flag: 'wx' });
  return { privateKeyFile, publicKeyFile, keyId: pair.keyId };
}

function parsePrivateKey(pem: string, source: string, passphrase: string | undefined): KeyObject {
  try {
    return createPrivateKey({ key: pem, format: 'pem', ...(passphrase ? { passphrase } : {}) });
  } catch (error) {
    const encrypted = /ENCRYPTED/.test(pem);
    // The message never quotes the key: it may be the very secret.
    throw inputError(
      `${source}: not a readable PEM private key${encrypted ? ' (it is encrypted and the passphrase is missing or wrong)' : ''}`,
      encrypted ? 'set MLOPS_SIGNING_KEY_PASSWORD' : 'expected the PEM text `mlops keygen` writes (-----BEGIN PRIVATE KEY-----)',
      error,
    );
  }
}

/**
 * The key `mlops push` signs with: PEM text in MLOPS_SIGNING_KEY (how CI secrets arrive), else the
 * file sign.keyFile, else none (push then pushes unsigned and says so). A key file others may read
 * is refused: a signing key that leaked signs anything.
 */
export async function loadSigningKey(env: NodeJS.ProcessEnv, keyFile: string, baseDir: string): Promise<SigningKey | null> {
  const passphrase = env.MLOPS_SIGNING_KEY_PASSWORD || undefined;
  let pem: string;
  let source: string;
  if (env.MLOPS_SIGNING_KEY?.trim()) {
    pem = env.MLOPS_SIGNING_KEY.replace(/\\n/g, '\n');
    source = 'MLOPS_SIGNING_KEY';
  } else if (keyFile) {
    const file = path.resolve(baseDir, keyFile);
    source = `sign.keyFile ${keyFile}`;
    const info = await stat(file).catch(() => null);
    if (!info) throw inputError(`${source}: no such file`, 'make a key pair with `mlops keygen --output <dir>`, or set MLOPS_SIGNING_KEY');
    if ((info.mode & 0o077) !== 0) {
      throw inputError(`${source}: others may read or change it (mode ${(info.mode & 0o777).toString(8)})`, `restrict it to its owner: chmod 600 ${keyFile}`);
    }
    pem = await readFile(file, 'utf8');
  } else {
    return null;
  }
  const privateKey = parsePrivateKey(pem, source, passphrase);
  requireP256(privateKey, source);
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }) as string, keyId: keyIdOf(publicKey), source };
}

/** A public key to verify with (PEM, SPKI); a private key given by mistake is refused rather than used. */
export async function loadPublicKey(file: string, source: string): Promise<{ publicKey: KeyObject; keyId: string }> {
  const pem = await readFile(file, 'utf8').catch(() => {
    throw inputError(`${source}: cannot read ${file}`, 'give the public key `mlops keygen` wrote (mlops.pub)');
  });
  if (/PRIVATE KEY/.test(pem))
    throw inputError(`${source}: ${file} is a private key`, 'verify with the public key (mlops.pub); the private key belongs only where versions are signed');
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: pem, format: 'pem' });
  } catch (error) {
    throw inputError(`${source}: ${file} is not a PEM public key`, 'give the public key `mlops keygen` wrote (mlops.pub)', error);
  }
  requireP256(publicKey, source);
  return { publicKey, keyId: keyIdOf(publicKey) };
}
