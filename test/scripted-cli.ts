import type { Runner } from '../src/targets/exec.js';

export type Answer = { exitCode?: number; stdout?: string; stderr?: string };

/**
 * Stands in for kubectl, gcloud or aws, which need a cluster or an account: answers each command
 * line from `answer(line, args, input)` and records the calls and what was piped to them.
 */
export function scripted(answer: (line: string, args: string[], input?: string) => Answer | Promise<Answer>) {
  const calls: string[] = [];
  const inputs: string[] = [];
  const runner: Runner = async (command, args, options) => {
    const line = [command, ...args].join(' ');
    calls.push(line);
    if (options.input !== undefined) inputs.push(options.input);
    const a = await answer(line, args, options.input);
    return { exitCode: a.exitCode ?? 0, stdout: a.stdout ?? '', stderr: a.stderr ?? '' };
  };
  return { runner, calls, inputs };
}
