import { execFileSync } from 'node:child_process';

export interface Tool {
  ok: boolean;
  reason: string;
  path: string;
}

/**
 * A program from Debian's packages that some tests drive (prometheus, promtool,
 * chromium). Missing on a developer's machine, those tests are skipped and say
 * so; in CI (MLOPS_REQUIRE_TOOLS=1, set by .ci/run, which installs them) a
 * missing one fails the run instead.
 */
export function probeTool(name: string, installHint: string): Tool {
  try {
    const path = execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
    if (path) return { ok: true, reason: '', path };
  } catch {
    // not on PATH
  }
  const reason = `${name} is not installed (${installHint})`;
  if (process.env.MLOPS_REQUIRE_TOOLS === '1') throw new Error(`${reason}, and MLOPS_REQUIRE_TOOLS=1 requires it`);
  process.stderr.write(`\nSKIPPED tests that need ${name}: ${reason}.\n`);
  return { ok: false, reason, path: '' };
}
