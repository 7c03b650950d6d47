/**
 * TLS for both protocols on their usual ports: HTTPS for REST, TLS for gRPC, and mutual TLS when a
 * client CA is set. The files are checked at start (readable, the key matches the certificate, the
 * certificate is current) and re-read when they change, as cert-manager rotates them in place.
 */
import * as grpc from '@grpc/grpc-js';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import tlsDefaults, { type SecureContextOptions, type TLSSocket } from 'node:tls';
import { inputError } from '../errors.js';

export interface TlsOptions {
  /** PEM certificate (chain); '' with key '' for plain HTTP and gRPC. */
  cert: string;
  key: string;
  /** PEM CA bundle that client certificates must chain to; '' for no client certificates. */
  clientCa: string;
  reloadIntervalMs: number;
}

export const tlsEnabled = (tls: TlsOptions) => tls.cert !== '' || tls.key !== '';

function readPem(file: string, what: string, setting: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw inputError(
      `cannot read the ${what} ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      `check ${setting} and that the file is mounted`,
    );
  }
}

/** The files' contents, checked: a one-line error naming the file and what is wrong. */
export function loadTlsFiles(tls: TlsOptions, now = new Date()): Required<Pick<SecureContextOptions, 'cert' | 'key'>> & { ca?: Buffer } {
  if (!tls.cert || !tls.key)
    throw inputError(
      `TLS needs both a certificate and a key; ${tls.cert ? 'server.tls.key' : 'server.tls.cert'} is not set`,
      'set server.tls.cert and server.tls.key (MLOPS_TLS_CERT, MLOPS_TLS_KEY, or --tls-cert and --tls-key)',
    );
  const cert = readPem(tls.cert, 'TLS certificate', 'server.tls.cert (MLOPS_TLS_CERT)');
  const key = readPem(tls.key, 'TLS key', 'server.tls.key (MLOPS_TLS_KEY)');
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    throw inputError(`${tls.cert} is not a PEM certificate`, 'it should start with -----BEGIN CERTIFICATE-----');
  }
  try {
    if (!x509.checkPrivateKey(createPrivateKey(key))) throw new Error('mismatch');
  } catch (error) {
    throw inputError(
      (error as Error).message === 'mismatch' ? `the key ${tls.key} does not belong to the certificate ${tls.cert}` : `${tls.key} is not a PEM private key`,
      'use the key the certificate was issued for (openssl x509 -noout -pubkey -in CERT and openssl pkey -pubout -in KEY print the same)',
    );
  }
  const notAfter = new Date(x509.validTo);
  const notBefore = new Date(x509.validFrom);
  if (notAfter < now)
    throw inputError(
      `the certificate ${tls.cert} expired on ${notAfter.toISOString()}`,
      'renew it (cert-manager renews before expiry; check its Certificate resource)',
    );
  if (notBefore > now)
    throw inputError(`the certificate ${tls.cert} is not valid before ${notBefore.toISOString()}`, "check this machine's clock, or wait until then");
  if (!tls.clientCa) return { cert, key };
  const ca = readPem(tls.clientCa, 'client CA bundle', 'server.tls.clientCa (MLOPS_TLS_CLIENT_CA)');
  try {
    new X509Certificate(ca);
  } catch {
    throw inputError(`${tls.clientCa} is not a PEM certificate bundle`, 'it should hold the CA certificate(s) client certificates are issued by');
  }
  return { cert, key, ca };
}

/**
 * Options for https.createServer: TLS 1.2 at least. With a client CA a certificate is asked for, and
 * checked per request rather than at the handshake: the health and readiness routes stay reachable
 * by probes that cannot present one (the kubelet's), every other route needs a certificate the CA
 * issued (see clientCertificateRefusal).
 */
export function httpsOptions(tls: TlsOptions): SecureContextOptions & { requestCert: boolean; rejectUnauthorized: boolean; handshakeTimeout: number } {
  const files = loadTlsFiles(tls);
  return { ...files, ...CONTEXT, requestCert: Boolean(files.ca), rejectUnauthorized: false, handshakeTimeout: HANDSHAKE_TIMEOUT_MS };
}

/**
 * TLS 1.3, and TLS 1.2 with forward-secret AEAD suites only (ECDHE with GCM or ChaCha20-Poly1305), the
 * server's order preferred: Node's defaults also offer TLS 1.2 suites without forward secrecy and
 * CBC with SHA-1 (issue 34). Mozilla's "intermediate" configuration, less its DHE suites.
 */
export const CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');
const CONTEXT = { minVersion: 'TLSv1.2', ciphers: CIPHERS, honorCipherOrder: true } as const;
/** A connection that has not finished its handshake by then is closed (Node's default holds it 120 s). */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** Why a request's connection may not use a route that needs a client certificate; undefined when it may. */
export function clientCertificateRefusal(socket: TLSSocket): string | undefined {
  if (socket.authorized) return undefined;
  const presented = Object.keys(socket.getPeerCertificate?.() ?? {}).length > 0;
  if (!presented) return 'this server requires a client certificate (mutual TLS)';
  const reason = String(socket.authorizationError ?? '');
  if (reason === 'CERT_HAS_EXPIRED') return 'the client certificate has expired: renew it';
  if (reason === 'CERT_NOT_YET_VALID') return 'the client certificate is not valid yet (its notBefore is in the future): check the clocks';
  return `the client certificate was not issued by the CA this server trusts (server.tls.clientCa)${reason ? ` (${reason})` : ''}`;
}

/**
 * Re-reads the files when any changes and hands the new context to `apply`; a change that does not
 * check out keeps the one in use and says why. Polling: a mounted Secret changes by a symlink swap.
 */
export function watchTls(tls: TlsOptions, apply: (options: SecureContextOptions) => void, log: (line: string) => void): () => void {
  const files = [tls.cert, tls.key, tls.clientCa].filter((f) => f !== '');
  const reload = (now: { mtimeMs: number; ino: number; size: number }, before: { mtimeMs: number; ino: number; size: number }) => {
    if (now.mtimeMs === before.mtimeMs && now.ino === before.ino && now.size === before.size) return;
    try {
      const { cert, key, ca } = loadTlsFiles(tls);
      apply({ cert, key, ca, ...CONTEXT });
      log('tls: certificate files changed: new connections use them');
    } catch (error) {
      log(`tls: certificate files changed but are not usable, so the ones in use stay: ${(error as Error).message}`);
    }
  };
  for (const file of files) watchFile(file, { interval: tls.reloadIntervalMs, persistent: false }, reload);
  return () => files.forEach((file) => unwatchFile(file, reload));
}

/**
 * gRPC server credentials over the same files, re-read when they change as for HTTPS. grpc-js' own
 * FileWatcherCertificateProvider reads the files on its timer and takes whatever it finds: a key
 * updated before its certificate (as a Secret update may land) made every handshake fail until its
 * next read. This provider hands grpc-js only a pair loadTlsFiles accepted, as HTTPS takes it.
 */
export function grpcServerCredentials(tls: TlsOptions): { credentials: grpc.ServerCredentials; stop: () => void } {
  const first = loadTlsFiles(tls);
  // grpc-js sets no cipher list of its own (only from GRPC_SSL_CIPHER_SUITES, read when it loads), so
  // Node's default applies: made the same forward-secret AEAD list as HTTPS, for this process.
  setDefaultCiphers(CIPHERS);
  const identity = new CheckedCertificates(
    { certificate: first.cert as Buffer, privateKey: first.key as Buffer },
    first.ca ? { caCertificate: first.ca } : null,
  );
  const stop = watchTls(
    tls,
    (files) => identity.update({ certificate: files.cert as Buffer, privateKey: files.key as Buffer }, files.ca ? { caCertificate: files.ca as Buffer } : null),
    () => undefined,
  );
  // grpc-js' declaration names the first two parameters the other way round from what its code does
  // (identity first, then the CA provider): called as the code reads them.
  const create = grpc.experimental.createCertificateProviderServerCredentials as unknown as (
    identity: grpc.experimental.CertificateProvider,
    ca: grpc.experimental.CertificateProvider | null,
    requireClientCertificate: boolean,
  ) => grpc.ServerCredentials;
  return { credentials: create(identity, tls.clientCa ? identity : null, Boolean(tls.clientCa)), stop };
}

/**
 * A grpc-js certificate provider of the pair (and client CA) last checked: listeners get it just after
 * they are added (grpc-js adds its listener before the server that waits for it), and each update.
 */
class CheckedCertificates implements grpc.experimental.CertificateProvider {
  private readonly identityListeners = new Set<grpc.experimental.IdentityCertificateUpdateListener>();
  private readonly caListeners = new Set<grpc.experimental.CaCertificateUpdateListener>();
  constructor(
    private identity: grpc.experimental.IdentityCertificateUpdate,
    private ca: grpc.experimental.CaCertificateUpdate | null,
  ) {}

  update(identity: grpc.experimental.IdentityCertificateUpdate, ca: grpc.experimental.CaCertificateUpdate | null): void {
    this.identity = identity;
    this.ca = ca;
    for (const listener of this.identityListeners) listener(identity);
    for (const listener of this.caListeners) listener(ca);
  }

  addIdentityCertificateListener(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.add(listener);
    queueMicrotask(() => listener(this.identity));
  }

  removeIdentityCertificateListener(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.delete(listener);
  }

  addCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(listener);
    queueMicrotask(() => listener(this.ca));
  }

  removeCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(listener);
  }
}

function setDefaultCiphers(ciphers: string): void {
  (tlsDefaults as { DEFAULT_CIPHERS: string }).DEFAULT_CIPHERS = ciphers;
}
