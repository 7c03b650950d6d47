import { execa } from 'execa';
import { environmentError } from '../errors.js';

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface PlannedStep {
  command: string;
  /** What is piped to the command (manifests for kubectl apply -f -). */
  input?: string;
}

export type Runner = (command: string, args: string[], options: { input?: string; timeoutMs?: number }) => Promise<CommandResult>;

export interface ExecSeam {
  readonly dryRun: boolean;
  /** Every command, in order, as it ran or would have run. */
  readonly steps: PlannedStep[];
  /** Runs a command (or, in a dry run, only records it and answers with empty success). */
  run(command: string, args: string[], options?: { input?: string; timeoutMs?: number; allowFailure?: boolean }): Promise<CommandResult>;
  /** Records a step an SDK sends itself (an Azure ARM request), so the plan and --dry-run show it. */
  record(line: string, input?: string): void;
  /** Starts a long-running command (kubectl port-forward); returns a stop function. */
  background(command: string, args: string[]): Promise<{ stop: () => void; output: () => string }>;
  /**
   * Asks `look` every `intervalMs` until it comes back with a verdict ({ verdict }), and returns that.
   * In a dry run it looks once, so the plan shows the read, and returns undefined: nothing runs there
   * to be judged.
   */
  poll<T>(look: () => Promise<{ verdict: T } | null>, intervalMs: number): Promise<T | undefined>;
}

const quote = (arg: string) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`);
export const showCommand = (command: string, args: string[]) => [command, ...args].map(quote).join(' ');

export const execaRunner: Runner = async (command, args, options) => {
  try {
    const result = await execa(command, args, { input: options.input, reject: false, timeout: options.timeoutMs, stripFinalNewline: true });
    return { exitCode: result.exitCode ?? 1, stdout: String(result.stdout), stderr: String(result.stderr) };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw environmentError(`${command} is not installed or not on PATH`, `install ${command}, or deploy to another target`);
    }
    throw error;
  }
};

/**
 * The one place kubectl and gcloud are run. A dry run lives here, so no
 * adapter can forget it: every command is recorded, none is executed.
 */
export function createExecSeam(options: { dryRun: boolean; runner?: Runner; onCommand?: (line: string) => void }): ExecSeam {
  const runner = options.runner ?? execaRunner;
  const steps: PlannedStep[] = [];
  return {
    dryRun: options.dryRun,
    steps,
    async run(command, args, runOptions = {}) {
      const line = showCommand(command, args);
      steps.push({ command: line, ...(runOptions.input !== undefined ? { input: runOptions.input } : {}) });
      options.onCommand?.(line);
      if (options.dryRun) return { exitCode: 0, stdout: '', stderr: '' };
      const result = await runner(command, args, { input: runOptions.input, timeoutMs: runOptions.timeoutMs });
      if (result.exitCode !== 0 && !runOptions.allowFailure) {
        throw environmentError(`${line} failed (exit ${result.exitCode})`, undefined, result.stderr.trim().split('\n').slice(-8).join('\n'));
      }
      return result;
    },
    record(line, input) {
      steps.push({ command: line, ...(input !== undefined ? { input } : {}) });
      options.onCommand?.(line);
    },
    async poll(look, intervalMs) {
      for (;;) {
        const seen = await look();
        if (options.dryRun) return undefined;
        if (seen) return seen.verdict;
        await new Promise((resolve) => setTimeout(resolve, intervalMs));
      }
    },
    async background(command, args) {
      const line = showCommand(command, args);
      steps.push({ command: `${line} &` });
      options.onCommand?.(`${line} &`);
      if (options.dryRun || options.runner) return { stop: () => undefined, output: () => '' };
      const child = execa(command, args, { reject: false });
      let output = '';
      child.stdout?.on('data', (d) => (output += d));
      child.stderr?.on('data', (d) => (output += d));
      return { stop: () => child.kill('SIGTERM'), output: () => output };
    },
  };
}

/**
 * A failed get or describe: the thing is not there (`notFound` matches what the tool printed), or the
 * tool could not look (no cluster, no credentials, no network), which is never "not deployed" — exit 3
 * naming what could not be reached.
 */
export function notFoundOrThrow(result: CommandResult, notFound: RegExp, what: string, hint: string): void {
  if (notFound.test(result.stderr)) return;
  const said =
    result.stderr
      .trim()
      .split('\n')
      .filter(Boolean)
      .at(-1)
      ?.replace(/^(error|ERROR):\s*/, '') ?? `exit ${result.exitCode}`;
  throw environmentError(`cannot tell the state of ${what}: ${said}`, hint, result.stderr.trim().split('\n').slice(-8).join('\n') || undefined);
}
