import { execa } from 'execa';

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

/** https://user:token@host/repo -> https://host/repo: labels are public. */
function stripCredentials(url: string): string {
  return url.replace(/^(https?:\/\/)[^@/]+@/, '$1');
}
