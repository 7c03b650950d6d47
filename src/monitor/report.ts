/** `mlops monitor`'s Markdown summary and self-contained HTML page. */
import { escapeXml, markdownTable } from '../report/files.js';
import { describeGate } from '../metrics/gates.js';
import { binLabels, type FeatureDrift } from './compare.js';
import type { MonitorReport } from './monitor.js';
import type { QualityReport } from './quality.js';

export const fmt = (v: number | null | undefined, digits = 4) => (v === null || v === undefined ? 'n/a' : Number.isInteger(v) ? String(v) : v.toFixed(digits));
export const percent = (v: number) => `${(v * 100).toFixed(v > 0 && v < 0.001 ? 3 : 1)}%`;

export function headline(r: MonitorReport): string {
  if (r.verdict === 'no-reference' || r.verdict === 'too-few-rows') return `${r.passed ? 'WARNING' : 'FAILED'}: ${r.warning}`;
  const drifted = r.features.filter((f) => f.drifted).length;
  return `${r.passed ? 'PASSED' : 'FAILED'}: ${drifted} of ${r.features.length} features drifted (PSI >= ${r.settings.featurePsi})${r.prediction ? `, prediction PSI ${fmt(r.prediction.psi)}` : ''}`;
}

/** Features worst first: the ones that drifted, then by PSI. */
export const byDrift = (features: FeatureDrift[]) => [...features].sort((a, b) => Number(b.drifted) - Number(a.drifted) || b.psi - a.psi);

/** One row per version: a serving version's drift verdict and rows, a shadow's agreement with what was served. */
export function versionRows(versions: NonNullable<MonitorReport['versions']>): string[][] {
  return versions.map((v) => {
    if (v.shadow) {
      const { agree = 0, disagree = 0, failed = 0, skipped = 0 } = v.shadow.outcomes;
      const agreement =
        v.shadow.agreement === null
          ? 'no requests mirrored yet'
          : `agreement ${(v.shadow.agreement * 100).toFixed(2)}% (${agree} agree, ${disagree} disagree, ${failed} failed${skipped ? `, ${skipped} skipped` : ''})`;
      return [v.version, 'shadow', '', agreement];
    }
    const drifted = v.metrics.drifted_share !== undefined ? `, drifted share ${fmt(v.metrics.drifted_share)}` : '';
    return [
      v.version,
      `serving (weight ${v.weight})`,
      String(v.rows),
      `${v.passed ? (v.verdict === 'passed' ? 'pass' : v.verdict) : 'FAIL'}${drifted}${v.warning ? `: ${v.warning}` : ''}`,
    ];
  });
}

export function renderMarkdown(r: MonitorReport): string {
  const lines = [
    `## mlops monitor: ${r.verdict === 'passed' ? 'passed' : r.verdict === 'failed' ? 'FAILED' : r.passed ? 'warning' : 'FAILED'}`,
    '',
    `${headline(r)}.`,
    '',
    `Live: ${r.rows} rows, ${r.source.span} (${r.source.from.join(', ')}). Reference: ${r.reference.file ?? 'none'}${r.reference.rows !== null ? `, ${r.reference.rows} rows` : ''}.`,
    '',
  ];
  if (r.gates.length > 0) {
    lines.push(
      markdownTable(
        ['gate', 'value', 'result'],
        r.gates.map((g) => [describeGate(g), fmt(g.value), g.passed ? 'pass' : r.verdict === 'too-few-rows' ? 'not applied' : '**FAIL**']),
      ),
      '',
    );
  }
  if (r.versions)
    lines.push(
      'Versions side by side:',
      '',
      markdownTable(
        ['version', 'role', 'rows', 'verdict'],
        versionRows(r.versions).map((row) => row.map((c) => c.replace('FAIL', '**FAIL**'))),
      ),
      '',
    );
  if (r.features.length > 0) {
    lines.push(
      markdownTable(
        ['feature', 'PSI', 'Jensen-Shannon', 'out of range', 'missing', 'drifted'],
        byDrift(r.features).map((f) => [
          `\`${f.name}\``,
          fmt(f.psi),
          fmt(f.js),
          percent(f.outOfRange.rate),
          percent(f.missingRate),
          f.drifted ? '**yes**' : 'no',
        ]),
      ),
      '',
    );
  }
  if (r.prediction)
    lines.push(`Prediction (\`${r.prediction.output}\`, ${r.prediction.kind}): PSI ${fmt(r.prediction.psi)}, Jensen-Shannon ${fmt(r.prediction.js)}.`, '');
  return lines.join('\n');
}

const COLORS = { reference: '#5b7db1', live: '#e8833a' };

/** Reference and live shares side by side, a pair of bars per bin. Plain SVG: the page needs no script and no network. */
function barChart(title: string, labels: string[], reference: number[], live: number[]): string {
  const width = 640;
  const height = 240;
  const left = 48;
  const bottom = 64;
  const top = 28;
  const plotWidth = width - left - 12;
  const plotHeight = height - top - bottom;
  const peak = Math.max(0.01, ...reference, ...live);
  const slot = plotWidth / labels.length;
  const bar = Math.max(2, slot * 0.36);
  const y = (share: number) => top + plotHeight - (share / peak) * plotHeight;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(title)}">`,
    `<text x="${left}" y="16" class="title">${escapeXml(title)}</text>`,
  ];
  for (const tick of [0, 0.5, 1]) {
    const value = peak * tick;
    parts.push(
      `<line x1="${left}" x2="${width - 12}" y1="${y(value)}" y2="${y(value)}" class="grid"/>`,
      `<text x="${left - 6}" y="${y(value) + 4}" class="axis" text-anchor="end">${percent(value)}</text>`,
    );
  }
  labels.forEach((label, i) => {
    const x = left + i * slot + slot / 2;
    parts.push(
      `<rect x="${x - bar}" y="${y(reference[i] ?? 0)}" width="${bar}" height="${top + plotHeight - y(reference[i] ?? 0)}" fill="${COLORS.reference}"><title>reference ${escapeXml(label)}: ${percent(reference[i] ?? 0)}</title></rect>`,
      `<rect x="${x}" y="${y(live[i] ?? 0)}" width="${bar}" height="${top + plotHeight - y(live[i] ?? 0)}" fill="${COLORS.live}"><title>live ${escapeXml(label)}: ${percent(live[i] ?? 0)}</title></rect>`,
      `<text x="${x}" y="${top + plotHeight + 12}" class="axis" text-anchor="end" transform="rotate(-35 ${x} ${top + plotHeight + 12})">${escapeXml(label)}</text>`,
    );
  });
  parts.push(`<line x1="${left}" x2="${width - 12}" y1="${top + plotHeight}" y2="${top + plotHeight}" class="baseline"/>`, '</svg>');
  return parts.join('');
}

export function renderHtml(r: MonitorReport): string {
  const state = r.verdict === 'passed' ? 'pass' : r.passed ? 'warn' : 'fail';
  const drifted = byDrift(r.features).filter((f) => f.drifted);
  // With nothing drifted, the closest ones still show what the traffic looks like.
  const charted = drifted.length > 0 ? drifted : byDrift(r.features).slice(0, 3);
  const featureCard = (f: FeatureDrift) =>
    `<section class="card"><h3>${escapeXml(f.name)} ${f.drifted ? '<span class="tag fail">drifted</span>' : ''}</h3><p>PSI ${fmt(f.psi)} · Jensen-Shannon ${fmt(f.js)} · out of range ${percent(f.outOfRange.rate)} (${f.outOfRange.below} below, ${f.outOfRange.above} above) · missing ${percent(f.missingRate)}</p>${barChart(
      `${f.name}: share of rows per reference bin`,
      binLabels(f.edges),
      f.referenceShares,
      f.liveShares,
    )}</section>`;
  const rows = byDrift(r.features)
    .map(
      (f) =>
        `<tr class="${f.drifted ? 'drifted' : ''}"><td>${escapeXml(f.name)}</td><td>${fmt(f.psi)}</td><td>${fmt(f.js)}</td><td>${percent(f.outOfRange.rate)}</td><td>${percent(f.missingRate)}</td><td>${f.drifted ? 'yes' : 'no'}</td></tr>`,
    )
    .join('');
  const gates = r.gates
    .map(
      (g) =>
        `<tr><td>${escapeXml(describeGate(g))}</td><td>${fmt(g.value)}</td><td class="${g.passed ? 'pass' : r.verdict === 'too-few-rows' ? 'warn' : 'fail'}">${g.passed ? 'pass' : r.verdict === 'too-few-rows' ? 'not applied' : 'FAIL'}</td></tr>`,
    )
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mlops monitor: ${escapeXml(headline(r))}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1360px;padding:0 16px;color:#1d2330;background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:15px;margin:0 0 4px}
.banner{padding:14px 18px;border-radius:8px;margin:12px 0 8px;font-weight:600}
.banner.pass{background:#2e7d4f;color:#fff}.banner.fail{background:#b3261e;color:#fff}.banner.warn{background:#9a6700;color:#fff}
.meta{color:#4a5468}table{border-collapse:collapse;background:#fff;border-radius:6px;overflow:hidden}
td,th{padding:5px 12px;border-bottom:1px solid #e3e6eb;text-align:left}th{background:#eef0f4}
tr.drifted td{background:#fdecea}.pass{color:#2e7d4f}.fail{color:#b3261e;font-weight:600}.warn{color:#9a6700}
.grid-cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(660px,1fr));gap:14px}
.card{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px #0001}.card p{margin:0 0 6px;color:#4a5468}
.tag{font-size:11px;padding:2px 6px;border-radius:4px;color:#fff}.tag.fail{background:#b3261e}
svg .title{font-size:12px;fill:#4a5468}svg .axis{font-size:10px;fill:#4a5468}svg .grid{stroke:#e3e6eb}svg .baseline{stroke:#9aa3b2}
.legend span{display:inline-block;width:12px;height:12px;border-radius:2px;margin:0 4px -2px 12px}
</style></head><body>
<h1>mlops monitor${r.model ? `: ${escapeXml(r.model.name)}, version ${escapeXml(r.model.version)}` : ''}</h1>
<div class="meta">Live: ${r.rows} rows, ${escapeXml(r.source.span)} (${escapeXml(r.source.from.join(', '))}). Reference: ${escapeXml(r.reference.file ?? 'none')}${r.reference.rows !== null ? `, ${r.reference.rows} rows` : ''}, ${r.reference.bins} bins at its quantiles.</div>
<div class="banner ${state}">${escapeXml(headline(r))}</div>
<div class="legend">Bars:<span style="background:${COLORS.reference}"></span>reference<span style="background:${COLORS.live}"></span>live</div>
${gates ? `<h2>Gates</h2><table><tr><th>gate</th><th>value</th><th>result</th></tr>${gates}</table>` : ''}
${r.prediction ? `<h2>Predictions</h2><div class="grid-cards"><section class="card"><h3>${escapeXml(r.prediction.output)} (${escapeXml(r.prediction.kind)})</h3><p>PSI ${fmt(r.prediction.psi)} · Jensen-Shannon ${fmt(r.prediction.js)}</p>${barChart(r.prediction.kind === 'value' ? 'share of rows per reference bin of the predicted value' : 'share of rows per predicted class', r.prediction.labels, r.prediction.referenceShares, r.prediction.liveShares)}</section></div>` : ''}
${charted.length > 0 ? `<h2>${drifted.length > 0 ? `Drifted features (${drifted.length})` : 'No feature drifted: the three closest'}</h2><div class="grid-cards">${charted.map(featureCard).join('')}</div>` : ''}
${rows ? `<h2>Every feature</h2><table><tr><th>feature</th><th>PSI</th><th>Jensen-Shannon</th><th>out of range</th><th>missing</th><th>drifted</th></tr>${rows}</table>` : ''}
</body></html>
`;
}

// ---- live quality (--labels) ------------------------------------------------

export function qualityHeadline(r: QualityReport): string {
  if (r.verdict === 'too-few-rows') return `${r.passed ? 'WARNING' : 'FAILED'}: ${r.warning}`;
  const failed = r.gates.filter((g) => !g.passed).length;
  const summary = `${r.join.matched} labelled rows of ${r.model.name} ${r.model.version} scored (coverage ${percent(r.join.coverage)})`;
  return r.passed
    ? `PASSED: ${summary}${r.gates.length ? `, ${r.gates.length} gates passed` : ''}`
    : `FAILED: ${failed} of ${r.gates.length} gates failed on ${summary}`;
}

/** The headline metrics of a task, in the order `mlops test` reports them. */
export const QUALITY_HEADLINE = [
  'accuracy',
  'balanced_accuracy',
  'f1_macro',
  'precision_macro',
  'recall_macro',
  'roc_auc',
  'log_loss',
  'mae',
  'mse',
  'rmse',
  'r2',
  'mape_percent',
  'max_error',
];

export function qualityRows(r: QualityReport): string[][] {
  const metrics = r.metrics as unknown as Record<string, unknown>;
  return QUALITY_HEADLINE.filter((m) => typeof metrics[m] === 'number' || metrics[m] === null).map((m) => [
    m,
    fmt(metrics[m] as number | null),
    r.baseline && typeof r.baseline.metrics[m] === 'number' ? fmt(r.baseline.metrics[m]) : '',
  ]);
}

export function skippedLines(r: QualityReport): string[] {
  return Object.entries(r.join.skipped).map(([reason, s]) => `${s.count} ${reason}: e.g. ${s.example}`);
}

export function renderQualityMarkdown(r: QualityReport): string {
  const lines = [
    `## mlops monitor --labels: ${r.verdict === 'passed' ? 'passed' : r.verdict === 'failed' ? 'FAILED' : r.passed ? 'warning' : 'FAILED'}`,
    '',
    `${qualityHeadline(r)}.`,
    '',
    `Model \`${r.model.name}\` ${r.model.version} (sha256 ${r.model.sha256.slice(0, 12)}), output \`${r.output}\` (${r.outputKind}). Labels: ${r.source.labels}, ${r.join.labels} ids; ${r.join.matched} matched a logged prediction (coverage ${percent(r.join.coverage)}). Log: ${r.join.loggedRows} rows from ${r.source.logs.join(', ')}${r.source.since ? `, since ${r.source.since}` : ''}${r.source.until ? `, until ${r.source.until}` : ''}.`,
    '',
  ];
  if (r.gates.length > 0) {
    lines.push(
      markdownTable(
        ['gate', 'value', 'result'],
        r.gates.map((g) => [describeGate(g), fmt(g.value), g.passed ? 'pass' : r.verdict === 'too-few-rows' ? 'not applied' : '**FAIL**']),
      ),
      '',
    );
  }
  lines.push(markdownTable(['metric', 'live', r.baseline ? `tested (${r.baseline.from})` : 'tested'], qualityRows(r)), '');
  const skipped = skippedLines(r);
  if (skipped.length > 0) lines.push('Labels not scored:', '', ...skipped.map((s) => `- ${s}`), '');
  if (r.versions.length > 1)
    lines.push(
      `Versions in the log: ${r.versions.map((v) => `${v.version} (${v.rows} rows, ${v.matched} labelled)`).join(', ')}; scored: ${r.model.version}.`,
      '',
    );
  return lines.join('\n');
}
