import { appendFile, mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Writes beside the target and renames, so a reader never sees half a report. */
export async function writeFileAtomic(file: string, content: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, content);
  await rename(temporary, file);
}

/** GitHub Actions shows what is appended to $GITHUB_STEP_SUMMARY on the run's page. */
export async function appendStepSummary(env: NodeJS.ProcessEnv, markdown: string): Promise<void> {
  if (env.GITHUB_STEP_SUMMARY) await appendFile(env.GITHUB_STEP_SUMMARY, markdown.endsWith('\n') ? markdown : markdown + '\n');
}

export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

export interface JunitCase {
  name: string;
  passed: boolean;
  message?: string;
}

export function junitXml(suite: string, cases: JunitCase[], seconds: number): string {
  const failures = cases.filter((c) => !c.passed).length;
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="mlops" tests="${cases.length}" failures="${failures}" time="${seconds.toFixed(3)}">`,
    `  <testsuite name="${escapeXml(suite)}" tests="${cases.length}" failures="${failures}" time="${seconds.toFixed(3)}">`,
    ...cases.map((c) =>
      c.passed
        ? `    <testcase classname="${escapeXml(suite)}" name="${escapeXml(c.name)}"/>`
        : `    <testcase classname="${escapeXml(suite)}" name="${escapeXml(c.name)}">\n      <failure message="${escapeXml(c.message ?? 'failed')}"/>\n    </testcase>`,
    ),
    '  </testsuite>',
    '</testsuites>',
    '',
  ];
  return lines.join('\n');
}

export function markdownTable(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}
