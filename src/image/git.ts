import { execa } from 'execa';
import { stat } from 'node:fs/promises';
import path from 'node:path';

/** The commit and remote of the repository around `cwd`, when there is one. */
export async function gitInfo(cwd: string): Promise<{ revision?: string; source?: string; dirty?: boolean }> {
  const git = (args: string[]) => execa('git', args, { cwd, reject: false, timeout: 5000 });
  const head = await git(['rev-parse', 'HEAD']).catch(() => undefined);
  if (!head || head.exitCode !== 0) return {};
  const remote = await git(['config', '--get', 'remote.origin.url']);
  const status = await git(['status', '--porcelain', '--untracked-files=no']);
  const source = remote.exitCode === 0 && remote.stdout.trim() ? stripCredentials(remote.stdout.trim()) : undefined;
  return { revision: head.stdout.trim(), source, dirty: status.exitCode === 0 && status.stdout.trim() !== '' };
}

/**
 * When the image was made, for its `created` label, so that the same model, config and base build the
 * same image (reproducible-builds.org): SOURCE_DATE_EPOCH when set, else the time of the last commit
 * that touched the model, else the model file's modification time. Never the clock.
 */
export async function buildTimestamp(cwd: string, modelPath: string, env: NodeJS.ProcessEnv): Promise<Date> {
  const epoch = env.SOURCE_DATE_EPOCH;
  if (epoch && /^\d+$/.test(epoch)) return new Date(Number(epoch) * 1000);
  const committed = await execa('git', ['log', '-1', '--format=%ct', '--', modelPath], { cwd, reject: false, timeout: 5000 }).catch(() => undefined);
  if (committed?.exitCode === 0 && /^\d+$/.test(committed.stdout.trim())) return new Date(Number(committed.stdout.trim()) * 1000);
  return (await stat(path.resolve(cwd, modelPath))).mtime;
}

/** https://user:token@host/repo -> https://host/repo: labels are public. */
function stripCredentials(url: string): string {
  return url.replace(/^(https?:\/\/)[^@/]+@/, '$1');
}
