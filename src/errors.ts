/**
 * Exit codes are part of the CLI's contract: CI scripts branch on them.
 * Documented in README.md ("Exit codes").
 */
export const ExitCode = {
  ok: 0,
  gateFailed: 1,
  badInput: 2,
  environment: 3,
  rolledBack: 4,
  /** deploy.verify.key is set and the version is unsigned, signed by another key, or changed since signing. */
  untrusted: 5,
  internal: 70,
  /** Ended by a signal, as shells report it (128 + the signal's number): Ctrl-C (SIGINT) 130, SIGTERM 143. */
  interrupted: 130,
  terminated: 143,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The exit status of a process a signal ended: 130 for SIGINT, 143 for SIGTERM. */
export function signalExitCode(signal: NodeJS.Signals): ExitCode {
  return signal === 'SIGTERM' ? ExitCode.terminated : ExitCode.interrupted;
}

export interface MlopsErrorOptions {
  exitCode: ExitCode;
  hint?: string;
  /** Extra lines shown under the message, e.g. the tail of a tool's output. */
  details?: string;
  /** Each problem found, when there are several (a config's fields): a list in the --json document. */
  problems?: string[];
  cause?: unknown;
}

/**
 * The one error type the user sees. Everything that is the user's or the
 * environment's fault is thrown as this; anything else is a bug.
 */
export class MlopsError extends Error {
  readonly exitCode: ExitCode;
  readonly hint?: string;
  readonly details?: string;
  readonly problems?: string[];

  constructor(message: string, options: MlopsErrorOptions) {
    super(message, { cause: options.cause });
    this.name = 'MlopsError';
    this.exitCode = options.exitCode;
    this.hint = options.hint;
    this.details = options.details;
    this.problems = options.problems;
  }
}

/** Bad flag, config, model file or data: exit 2. */
export function inputError(message: string, hint?: string, cause?: unknown): MlopsError {
  return new MlopsError(message, { exitCode: ExitCode.badInput, hint, cause });
}

/** Docker, registry, cluster or server unreachable or failing: exit 3. */
export function environmentError(message: string, hint?: string, details?: string, cause?: unknown): MlopsError {
  return new MlopsError(message, { exitCode: ExitCode.environment, hint, details, cause });
}

/** A version that does not verify against deploy.verify.key: exit 5, and nothing is deployed. */
export function untrustedError(message: string, hint?: string): MlopsError {
  return new MlopsError(message, { exitCode: ExitCode.untrusted, hint });
}

/** The model failed at run time on the data it was judged by: exit 1, as a failed gate (it is the model's failure, not mlops'). */
export function modelFailedError(message: string, hint?: string, cause?: unknown): MlopsError {
  return new MlopsError(message, { exitCode: ExitCode.gateFailed, hint, cause });
}

export function isMlopsError(error: unknown): error is MlopsError {
  return error instanceof MlopsError;
}

/** A value from a parsed file or request as a message shows it: text as itself, anything else as JSON. */
export function shownValue(value: unknown): string {
  return typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value);
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
