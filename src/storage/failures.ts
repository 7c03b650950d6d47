import { environmentError, errorMessage, inputError, isMlopsError, type MlopsError } from '../errors.js';
import type { ObjectLocation } from './object-store.js';

/** What went wrong, as each store reads its SDK's errors; one message and exit code per kind, whatever the vendor. */
export type Failure =
  | { kind: 'no-object' }
  | { kind: 'no-bucket' }
  | { kind: 'denied'; detail: string }
  | { kind: 'no-credentials'; detail: string }
  /** Set up wrongly on this machine (no region, a connection string for another account): the detail says what, the hint how to fix it. */
  | { kind: 'misconfigured'; detail: string; hint: string }
  | { kind: 'bad-range' }
  | { kind: 'unreachable'; detail: string }
  | { kind: 'service'; detail: string };

export type Operation = 'read' | 'write' | 'list' | 'look up' | 'remove';

/** What each vendor's store says in hints: the CLI that shows what is there, and where its credentials come from. */
export interface Vendor {
  name: string;
  listCommand(location: ObjectLocation): string;
  credentialsHint: string;
  permissionHint(operation: Operation): string;
  endpointHint: string;
}

/** The codes Node and the SDKs' HTTP clients give a connection that could not be made or broke off. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);

/** The network failure under an SDK's error, if that is what it is: SDKs wrap it in `cause`, and a dual-stack connect in an AggregateError. */
export function networkFailure(error: unknown, depth = 0): string | undefined {
  if (!error || typeof error !== 'object' || depth > 5) return undefined;
  const { code, cause, errors, name } = error as { code?: unknown; cause?: unknown; errors?: unknown; name?: unknown };
  if (typeof code === 'string' && NETWORK_CODES.has(code)) return code;
  if (name === 'TimeoutError') return 'timed out';
  if (Array.isArray(errors)) for (const inner of errors) if (networkFailure(inner, depth + 1)) return networkFailure(inner, depth + 1);
  return networkFailure(cause, depth + 1);
}

/**
 * The error the user sees for a failure on `uri`: a missing bucket, object or credentials, or a refusal, is
 * the user's to fix (exit 2); an endpoint that cannot be reached or a service that fails is the environment's
 * (exit 3). An MlopsError passes through unchanged.
 */
export function storageError(uri: string, location: ObjectLocation, operation: Operation, vendor: Vendor, failure: Failure, cause: unknown): MlopsError {
  if (isMlopsError(cause)) return cause;
  const cannot = `cannot ${operation} ${uri}`;
  switch (failure.kind) {
    case 'no-object':
      return inputError(`${cannot}: no such object`, `see what is there: ${vendor.listCommand(location)}`, cause);
    case 'no-bucket': {
      const what =
        location.container === undefined
          ? `the bucket ${location.bucket} does not exist`
          : `the container ${location.container} does not exist in the account ${location.bucket}`;
      return inputError(`${cannot}: ${what}`, `check the name, and that ${vendor.name}'s credentials are for the account it is in`, cause);
    }
    case 'denied':
      return inputError(`${cannot}: access denied (${failure.detail})`, vendor.permissionHint(operation), cause);
    case 'no-credentials':
      return inputError(`${cannot}: no ${vendor.name} credentials (${failure.detail})`, vendor.credentialsHint, cause);
    case 'misconfigured':
      return inputError(`${cannot}: ${failure.detail}`, failure.hint, cause);
    case 'bad-range':
      return inputError(`${cannot}: the byte range starts past the object's end`, 'read a range within the size the store reports', cause);
    case 'unreachable':
      return environmentError(`${cannot}: the endpoint cannot be reached (${failure.detail})`, vendor.endpointHint, undefined, cause);
    case 'service':
      return environmentError(
        `${cannot}: ${vendor.name} failed (${failure.detail})`,
        'try again; if it persists, see the service health page',
        undefined,
        cause,
      );
  }
}

/** A one-line detail from an SDK error, for a message: its first line, trimmed. */
export function firstLine(error: unknown): string {
  return errorMessage(error).split('\n')[0].trim().slice(0, 200);
}
