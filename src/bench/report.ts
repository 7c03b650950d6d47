import type { ChalkInstance } from 'chalk';
import { escapeXml, markdownTable } from '../report/files.js';
import { renderTable } from '../ui/reporter.js';
import { describeGate } from '../metrics/gates.js';
import { runLabel, type BenchReport, type BenchRun } from './bench.js';

/** A latency, or '-' where there is none (no request succeeded): never a 0 that reads as fast. */
const ms = (v: number | null | undefined) => (v === null || v === undefined ? '-' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(3));
const load = (run: BenchRun) => (run.mode === 'closed' ? `c=${run.concurrency}` : `${run.rate}/s`);
const server = (run: BenchRun) => {
  const parts: string[] = [];
  const c = run.server?.container;
  if (c && c.samples > 0) parts.push(`cpu ${c.cpuPercent.mean.toFixed(0)}% mem ${(c.memoryBytes.max / 1e6).toFixed(0)}MB`);
  const t = run.server?.times;
  if (t?.inferenceMeanMs != null) parts.push(`infer ${ms(t.inferenceMeanMs)}ms`);
  if (t?.queueMeanMs != null) parts.push(`queue ${ms(t.queueMeanMs)}ms`);
  if (t?.batchSizeMean != null) parts.push(`rows/run ${t.batchSizeMean.toFixed(1)}`);
  return parts.join(' ');
};

const HEADER = ['load', 'batch', 'req/s', 'rows/s', 'p50', 'p90', 'p95', 'p99', 'p99.9', 'max', 'errors', 'server'];
const row = (r: BenchRun) => [
  load(r),
  String(r.batch),
  r.throughputRps.toFixed(0),
  String(r.rowsPerSecond),
  ms(r.latencyMs?.p50),
  ms(r.latencyMs?.p90),
  ms(r.latencyMs?.p95),
  ms(r.latencyMs?.p99),
  ms(r.latencyMs?.p999),
  ms(r.latencyMs?.max),
  r.errors.count ? `${r.errors.count} (${(r.errors.rate * 100).toFixed(1)}%)` : '0',
  server(r),
];

/** Reasons shown a run; the JSON report has every one kept. */
const SHOWN_REASONS = 3;

/** "c=8, batch 1: 2333 x http_500: inference failed: ..." for the first few reasons of each run with failures. */
function failureLines(report: BenchReport): string[] {
  return report.runs.flatMap((r) => {
    const reasons = r.errors.reasons;
    const shown = reasons.slice(0, SHOWN_REASONS).map((x) => `${runLabel(r)}: ${x.count} x ${x.reason}`);
    if (reasons.length > SHOWN_REASONS) shown.push(`${runLabel(r)}: and ${reasons.length - SHOWN_REASONS} more reasons (see --json)`);
    return shown;
  });
}

function gateRows(report: BenchReport, pass: (ok: boolean) => string): string[][] {
  return report.gates.map((g) => [g.run, describeGate(g), g.value === null ? 'n/a' : ms(g.value), pass(g.passed)]);
}

export function renderBenchHuman(report: BenchReport, s: ChalkInstance): string {
  const where = report.target.image ?? report.target.url ?? 'in-process ONNX Runtime';
  const lines = [`${s.bold('model')} ${report.model} on ${where} (latency in ms)`, '', renderTable(HEADER, report.runs.map(row))];
  for (const r of report.runs.filter((r) => r.unreliable)) lines.push(s.yellow(`unreliable: ${runLabel(r)}: ${r.unreliableReasons.join('; ')}`));
  const failures = failureLines(report);
  if (failures.length > 0) lines.push('', s.bold('failed requests'), ...failures.map((f) => s.red(f)));
  if (report.gates.length > 0)
    lines.push(
      '',
      renderTable(
        ['run', 'gate', 'value', 'result'],
        gateRows(report, (ok) => (ok ? s.green('pass') : s.red('FAIL'))),
      ),
    );
  lines.push('', report.passed ? s.green.bold('PASSED') : s.red.bold('FAILED'));
  return lines.join('\n');
}

export function renderBenchMarkdown(report: BenchReport): string {
  const where = report.target.image ?? report.target.url ?? 'in-process ONNX Runtime';
  return [
    `## mlops bench: ${report.passed ? 'passed' : 'FAILED'}`,
    '',
    `Model \`${report.model}\` on ${where}; latency in ms.`,
    '',
    markdownTable(HEADER, report.runs.map(row)),
    ...report.runs.filter((r) => r.unreliable).map((r) => `\n_Unreliable: ${runLabel(r)}: ${r.unreliableReasons.join('; ')}_`),
    ...(failureLines(report).length > 0
      ? ['', '**Failed requests**', '', ...failureLines(report).map((f) => `- ${f.replace(/[|`*_]/g, (c) => `\\${c}`)}`)]
      : []),
    '',
    report.gates.length > 0
      ? markdownTable(
          ['run', 'gate', 'value', 'result'],
          gateRows(report, (ok) => (ok ? 'pass' : '**FAIL**')),
        )
      : '_No gates configured._',
    '',
  ].join('\n');
}

const SERIES: [keyof NonNullable<BenchRun['latencyMs']>, string, string][] = [
  ['p50', 'p50', '#2b8a3e'],
  ['p90', 'p90', '#1971c2'],
  ['p99', 'p99', '#e8590c'],
  ['p999', 'p99.9', '#c92a2a'],
];

/** One SVG chart: latency percentiles (log scale) against load, for runs of one mode and batch. */
function chart(all: BenchRun[], title: string): string {
  // Runs where every request failed have no latency to draw; the table says so.
  const runs = all.filter((r): r is BenchRun & { latencyMs: NonNullable<BenchRun['latencyMs']> } => r.latencyMs !== null);
  if (runs.length === 0) return `<p><strong>${escapeXml(title)}</strong>: no request succeeded, so there is no latency to chart.</p>`;
  const width = 640;
  const height = 320;
  const m = { left: 60, right: 110, top: 30, bottom: 45 };
  const values = runs.flatMap((r) => SERIES.map(([k]) => Math.max(r.latencyMs[k], 1e-3)));
  const low = Math.log10(Math.min(...values)) - 0.1;
  const high = Math.log10(Math.max(...values)) + 0.1;
  const x = (i: number) => m.left + (runs.length === 1 ? (width - m.left - m.right) / 2 : (i * (width - m.left - m.right)) / (runs.length - 1));
  const y = (v: number) => m.top + ((high - Math.log10(Math.max(v, 1e-3))) * (height - m.top - m.bottom)) / (high - low || 1);
  const ticks: number[] = [];
  for (let e = Math.floor(low); e <= Math.ceil(high); e++)
    for (const f of [1, 2, 5]) if (Math.log10(f * 10 ** e) >= low && Math.log10(f * 10 ** e) <= high) ticks.push(f * 10 ** e);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeXml(title)}">`,
    `<text x="${m.left}" y="18" font-size="14" font-weight="bold">${escapeXml(title)}</text>`,
    ...ticks.map(
      (t) =>
        `<line x1="${m.left}" x2="${width - m.right}" y1="${y(t)}" y2="${y(t)}" stroke="#e9ecef"/><text x="${m.left - 6}" y="${y(t) + 4}" font-size="11" text-anchor="end">${t}</text>`,
    ),
    `<text x="14" y="${height / 2}" font-size="11" transform="rotate(-90 14 ${height / 2})" text-anchor="middle">latency, ms (log)</text>`,
    ...runs.map((r, i) => `<text x="${x(i)}" y="${height - m.bottom + 16}" font-size="11" text-anchor="middle">${escapeXml(load(r))}</text>`),
    `<text x="${(m.left + width - m.right) / 2}" y="${height - 8}" font-size="11" text-anchor="middle">load (${runs[0].mode === 'closed' ? 'concurrent clients' : 'requests a second'})</text>`,
  ];
  SERIES.forEach(([key, name, color], s) => {
    const points = runs.map((r, i) => `${x(i).toFixed(1)},${y(r.latencyMs[key]).toFixed(1)}`);
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${points.join(' ')}"/>`);
    parts.push(
      ...runs.map(
        (r, i) =>
          `<circle cx="${x(i).toFixed(1)}" cy="${y(r.latencyMs[key]).toFixed(1)}" r="3" fill="${color}"><title>${name}: ${ms(r.latencyMs[key])} ms</title></circle>`,
      ),
    );
    parts.push(
      `<rect x="${width - m.right + 14}" y="${m.top + s * 18}" width="12" height="3" fill="${color}"/><text x="${width - m.right + 30}" y="${m.top + s * 18 + 5}" font-size="11">${name}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** A self-contained page: charts and the table, no scripts, no external assets. */
export function renderBenchHtml(report: BenchReport): string {
  const groups = new Map<string, BenchRun[]>();
  for (const r of report.runs) {
    const key = `${r.mode === 'closed' ? 'Closed loop' : 'Open loop'}, batch ${r.batch}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const cell = (v: string) => `<td>${escapeXml(v)}</td>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mlops bench: ${escapeXml(report.model)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;color:#212529}table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #dee2e6;padding:4px 8px;text-align:right}th{background:#f1f3f5}.fail{color:#c92a2a;font-weight:bold}.pass{color:#2b8a3e}td:last-child{text-align:left;white-space:nowrap}</style>
</head><body>
<h1>mlops bench: ${escapeXml(report.model)} <span class="${report.passed ? 'pass' : 'fail'}">${report.passed ? 'passed' : 'FAILED'}</span></h1>
<p>Target: ${escapeXml(report.target.image ?? report.target.url ?? 'in-process ONNX Runtime')}. Latency in milliseconds, measured from when each request was due.</p>
${[...groups.entries()].map(([title, runs]) => chart(runs, title)).join('\n')}
<table><tr>${HEADER.map((h) => `<th>${escapeXml(h)}</th>`).join('')}</tr>
${report.runs.map((r) => `<tr>${row(r).map(cell).join('')}</tr>`).join('\n')}
</table>
${
  failureLines(report).length
    ? `<h2>Failed requests</h2><ul>${failureLines(report)
        .map((f) => `<li class="fail">${escapeXml(f)}</li>`)
        .join('')}</ul>`
    : ''
}
${report.gates.length ? `<table><tr><th>run</th><th>gate</th><th>value</th><th>result</th></tr>${report.gates.map((g) => `<tr>${cell(g.run)}${cell(describeGate(g))}${cell(g.value === null ? 'n/a' : ms(g.value))}<td class="${g.passed ? 'pass' : 'fail'}">${g.passed ? 'pass' : 'FAIL'}</td></tr>`).join('\n')}</table>` : ''}
</body></html>
`;
}
