/**
 * What mlops' own clients (test, bench, monitor, the deploy smoke test) present to a server that
 * asks for it: a bearer token, a CA to trust for https:// and grpcs://, and a client certificate
 * for mutual TLS. Resolved once from the files a command names and the environment; the token is never printed.
 */
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Agent } from 'undici';
import { inputError } from '../errors.js';

/** The files a client's credentials are read from (each relative to cwd); the environment fills in what is not given. */
export interface ClientSecurityFiles {
  tokenFile?: string;
  cacert?: string;
  cert?: string;
  key?: string;
}

export interface ClientSecurity {
  /** Sent as Authorization: Bearer (gRPC: the authorization metadata). */
  token?: string;
  /** PEM CA bundle trusted beside the system's. */
  ca?: Buffer;
  /** Client certificate and key, for mutual TLS. */
  cert?: Buffer;
  key?: Buffer;
  /** Skip checking the server's certificate: only for mlops' probes of a container it just started on loopback. */
  insecure?: boolean;
}

function readFlagFile(file: string, flag: string, cwd: string): Buffer {
  try {
    return readFileSync(path.resolve(cwd, file));
  } catch (error) {
    throw inputError(
      `${flag} ${file}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
      `check the path given to ${flag}`,
    );
  }
}

/** The first token of a token file: what a client sends (a server's file may list several; sha256: lines are digests, not tokens). */
export function firstToken(text: string): string | undefined {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => l !== '' && !l.startsWith('#') && !l.startsWith('sha256:'));
}

/** Files given over the environment: --token-file or MLOPS_TOKEN, --cacert or MLOPS_CACERT, --cert/--key or MLOPS_CLIENT_CERT/MLOPS_CLIENT_KEY. */
export function resolveClientSecurity(files: ClientSecurityFiles, env: NodeJS.ProcessEnv, cwd: string): ClientSecurity {
  const out: ClientSecurity = {};
  if (files.tokenFile) {
    // The first token line of a token file (a server's file may list several; sha256: lines are not tokens).
    const line = firstToken(readFlagFile(files.tokenFile, '--token-file', cwd).toString('utf8'));
    if (!line)
      throw inputError(`--token-file ${files.tokenFile} holds no token`, 'one token a line; a sha256: line is a digest, not a token a client can send');
    out.token = line;
  } else if (env.MLOPS_TOKEN) out.token = env.MLOPS_TOKEN.trim();
  const cacert = files.cacert ?? env.MLOPS_CACERT;
  if (cacert) out.ca = readFlagFile(cacert, '--cacert', cwd);
  const cert = files.cert ?? env.MLOPS_CLIENT_CERT;
  const key = files.key ?? env.MLOPS_CLIENT_KEY;
  if (Boolean(cert) !== Boolean(key))
    throw inputError('a client certificate needs its key: give both --cert and --key (or MLOPS_CLIENT_CERT and MLOPS_CLIENT_KEY)');
  if (cert && key) {
    out.cert = readFlagFile(cert, '--cert', cwd);
    out.key = readFlagFile(key, '--key', cwd);
  }
  return out;
}

/** The Authorization header, when there is a token. */
export const authHeaders = (security: ClientSecurity | undefined): Record<string, string> =>
  security?.token ? { authorization: `Bearer ${security.token}` } : {};

/** TLS options for node:tls and undici's connect. */
export const tlsConnectOptions = (security: ClientSecurity | undefined) => ({
  ...(security?.ca ? { ca: security.ca } : {}),
  ...(security?.cert ? { cert: security.cert, key: security.key } : {}),
  ...(security?.insecure ? { rejectUnauthorized: false } : {}),
});

/** An undici dispatcher for fetch that trusts the CA and presents the client certificate; undefined when neither is set. */
export function tlsDispatcher(security: ClientSecurity | undefined): Agent | undefined {
  return security?.ca || security?.cert || security?.insecure ? new Agent({ connect: tlsConnectOptions(security) }) : undefined;
}

/** gRPC channel credentials: TLS for a grpcs:// address (with the CA and client certificate), plaintext otherwise. */
export function grpcChannelCredentials(secure: boolean, security: ClientSecurity | undefined): grpc.ChannelCredentials {
  return secure ? grpc.credentials.createSsl(security?.ca ?? null, security?.key ?? null, security?.cert ?? null) : grpc.credentials.createInsecure();
}

/** Metadata for every call: the token, when there is one. */
export function grpcMetadata(security: ClientSecurity | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (security?.token) metadata.set('authorization', `Bearer ${security.token}`);
  return metadata;
}
