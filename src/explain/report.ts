import { escapeXml, markdownTable } from '../report/files.js';
import type { FeatureImportance, GlobalExplanation } from './global.js';
import type { TokenExplanation } from './tokens.js';
import type { GlobalOcclusion } from './global-occlusion.js';

const fmt = (v: number) => (v === 0 ? '0' : Math.abs(v) >= 0.01 ? v.toFixed(4) : v.toExponential(2));
const spread = (f: FeatureImportance) => `${fmt(f.permutation.mean)} ± ${fmt(f.permutation.std)}`;

export function headline(r: GlobalExplanation): string {
  const top = r.features
    .slice(0, 3)
    .map((f) => f.feature)
    .join(', ');
  return `${r.model}: ${r.features.length} features; it relies most on ${top}`;
}

/** What the numbers are: one line under every rendering. */
export function method(r: GlobalExplanation): string {
  return (
    `Kernel SHAP on ${r.explainedRows} of ${r.holdoutRows} holdout rows against ${r.backgroundRows} background rows, ${r.coalitions} coalitions each` +
    `${r.exact ? ' (all of them: exact values)' : ''}, ${r.modelRowsPerExplanation} model rows per row explained; output '${r.output}'. ` +
    `Permutation importance: the fall of ${r.metric} (${fmt(r.metricValue)} unshuffled) over ${r.repeats} shuffles per feature.`
  );
}

export function tableRows(r: GlobalExplanation): string[][] {
  return r.features.map((f, i) => [String(i + 1), f.feature, fmt(f.meanAbsAttribution), spread(f)]);
}

export const TABLE_HEADER = ['rank', 'feature', 'mean |attribution|', 'permutation importance'];

export function renderMarkdown(r: GlobalExplanation): string {
  return [`### mlops explain: ${headline(r)}`, '', markdownTable(TABLE_HEADER, tableRows(r)), '', method(r), ''].join('\n');
}

/** Features ranked by mean |attribution|, with permutation importance beside: plain SVG, no script, no network. */
function rankChart(r: GlobalExplanation, shown: FeatureImportance[]): string {
  const row = 22;
  const left = 190;
  const width = 900;
  const half = (width - left - 40) / 2;
  const height = 40 + shown.length * row;
  const peakShap = Math.max(1e-12, ...shown.map((f) => f.meanAbsAttribution));
  const peakPerm = Math.max(1e-12, ...shown.map((f) => Math.abs(f.permutation.mean) + f.permutation.std));
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="features ranked by mean absolute attribution">`,
    `<text x="${left}" y="16" class="title">mean |attribution|</text>`,
    `<text x="${left + half + 30}" y="16" class="title">permutation importance (fall of ${escapeXml(r.metric)}), ± spread</text>`,
  ];
  shown.forEach((f, i) => {
    const y = 28 + i * row;
    const shap = (f.meanAbsAttribution / peakShap) * half;
    const permX = left + half + 30;
    const perm = (Math.max(0, f.permutation.mean) / peakPerm) * half;
    const err = (f.permutation.std / peakPerm) * half;
    parts.push(
      `<text x="${left - 8}" y="${y + 14}" class="axis" text-anchor="end">${escapeXml(f.feature)}</text>`,
      `<rect x="${left}" y="${y + 3}" width="${shap.toFixed(1)}" height="${row - 8}" fill="#5b7db1"><title>${escapeXml(f.feature)}: ${fmt(f.meanAbsAttribution)}</title></rect>`,
      `<rect x="${permX}" y="${y + 3}" width="${perm.toFixed(1)}" height="${row - 8}" fill="#e8833a"><title>${escapeXml(f.feature)}: ${spread(f)}</title></rect>`,
      `<line x1="${(permX + perm - err).toFixed(1)}" x2="${(permX + perm + err).toFixed(1)}" y1="${y + row / 2}" y2="${y + row / 2}" class="err"/>`,
    );
  });
  parts.push(
    `<line x1="${left}" x2="${left}" y1="24" y2="${height - 8}" class="baseline"/>`,
    `<line x1="${left + half + 30}" x2="${left + half + 30}" y1="24" y2="${height - 8}" class="baseline"/>`,
    '</svg>',
  );
  return parts.join('');
}

/** Attribution against feature value, one dot per explained row. */
function scatter(f: FeatureImportance, column: string): string {
  const width = 420;
  const height = 260;
  const pad = { left: 56, right: 12, top: 24, bottom: 36 };
  const xs = f.points.map((p) => p[0]);
  const ys = f.points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const peak = Math.max(1e-12, ...ys.map(Math.abs));
  const px = (v: number) => pad.left + (x1 === x0 ? 0.5 : (v - x0) / (x1 - x0)) * (width - pad.left - pad.right);
  const py = (v: number) => pad.top + (1 - (v + peak) / (2 * peak)) * (height - pad.top - pad.bottom);
  const dots = f.points
    .map(
      ([x, y]) =>
        `<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${y >= 0 ? '#b3261e' : '#2f6db5'}" fill-opacity="0.7"><title>value ${fmt(x)}: ${fmt(y)}</title></circle>`,
    )
    .join('');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(f.feature)}: attribution against value">`,
    `<text x="${pad.left}" y="14" class="title">${escapeXml(f.feature)}: attribution to ${escapeXml(column)} against value</text>`,
    `<line x1="${pad.left}" x2="${width - pad.right}" y1="${py(0)}" y2="${py(0)}" class="grid"/>`,
    `<text x="${pad.left - 6}" y="${py(peak) + 4}" class="axis" text-anchor="end">${fmt(peak)}</text>`,
    `<text x="${pad.left - 6}" y="${py(0) + 4}" class="axis" text-anchor="end">0</text>`,
    `<text x="${pad.left - 6}" y="${py(-peak) + 4}" class="axis" text-anchor="end">${fmt(-peak)}</text>`,
    `<text x="${pad.left}" y="${height - 10}" class="axis">${fmt(x0)}</text>`,
    `<text x="${width - pad.right}" y="${height - 10}" class="axis" text-anchor="end">${fmt(x1)}</text>`,
    dots,
    '</svg>',
  ].join('');
}

/** The head and styles both explain pages share; `extraCss` is appended. Self-contained: no fonts, scripts or links. */
function pageHead(title: string, extraCss = ''): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mlops explain: ${escapeXml(title)}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1360px;padding:0 16px;color:#1d2330;background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#4a5468}table{border-collapse:collapse;background:#fff;border-radius:6px;overflow:hidden}
td,th{padding:5px 12px;border-bottom:1px solid #e3e6eb;text-align:left}th{background:#eef0f4}
.card{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px #0001}
.grid-cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:14px}
svg .title{font-size:12px;fill:#4a5468}svg .axis{font-size:11px;fill:#4a5468}svg .grid{stroke:#e3e6eb}svg .baseline{stroke:#9aa3b2}svg .err{stroke:#1d2330;stroke-width:1.5}
${extraCss}
</style></head><body>`;
}

export function renderHtml(r: GlobalExplanation): string {
  const shown = r.features.slice(0, 25);
  const rows = r.features
    .map((f, i) => `<tr><td>${i + 1}</td><td>${escapeXml(f.feature)}</td><td>${fmt(f.meanAbsAttribution)}</td><td>${spread(f)}</td></tr>`)
    .join('');
  return `${pageHead(headline(r))}
<h1>mlops explain: ${escapeXml(r.model)}</h1>
<div class="meta">${escapeXml(method(r))}</div>
<h2>What the model relies on${shown.length < r.features.length ? ` (top ${shown.length} of ${r.features.length})` : ''}</h2>
<section class="card">${rankChart(r, shown)}</section>
<h2>Attribution against value, for the top ${Math.min(3, r.features.length)} features</h2>
<div class="grid-cards">${r.features
    .slice(0, 3)
    .map((f) => `<section class="card">${scatter(f, r.scatterColumn)}</section>`)
    .join('')}</div>
<h2>Every feature</h2>
<table><tr>${['rank', 'feature', 'mean |attribution|', 'permutation importance (mean ± spread)'].map((h) => `<th>${h}</th>`).join('')}</tr>${rows}</table>
</body></html>
`;
}

// An image model's global explanation: the mean occlusion map, and its patches ranked.

export const OCCLUSION_HEADER = ['rank', 'rows', 'columns', 'mean |attribution|'];

export function occlusionHeadline(r: GlobalOcclusion): string {
  const [top] = r.patches;
  return `${r.model}: ${r.spatialShape[0]} x ${r.spatialShape[1]} input; it looks most at rows ${top.rows[0]}-${top.rows[1] - 1}, columns ${top.columns[0]}-${top.columns[1] - 1}`;
}

export function occlusionMethod(r: GlobalOcclusion): string {
  return (
    `Occlusion on ${r.explainedRows} of ${r.holdoutRows} holdout rows: each ${r.patch} x ${r.patch} patch (all channels) set to 0 in turn, ` +
    `${r.modelRowsPerExplanation} model rows per row; per position, the mean |fall| of each row's predicted column of '${r.output}' (or its value).`
  );
}

export function occlusionRows(r: GlobalOcclusion, limit = 10): string[][] {
  return r.patches
    .slice(0, limit)
    .map((p, i) => [String(i + 1), `${p.rows[0]}-${p.rows[1] - 1}`, `${p.columns[0]}-${p.columns[1] - 1}`, fmt(p.meanAbsAttribution)]);
}

export function renderOcclusionMarkdown(r: GlobalOcclusion): string {
  return [`### mlops explain: ${occlusionHeadline(r)}`, '', markdownTable(OCCLUSION_HEADER, occlusionRows(r)), '', occlusionMethod(r), ''].join('\n');
}

/** The mean map as an SVG heat map: one cell per position, darker where zeroing its patch moved the prediction more. */
function heatMap(r: GlobalOcclusion): string {
  const [h, w] = r.spatialShape;
  const cell = Math.max(2, Math.min(48, Math.floor(560 / Math.max(h, w))));
  const max = Math.max(...r.map.flat(), 0);
  const cells = r.map
    .flatMap((row, y) =>
      row.map(
        (v, x) =>
          `<rect x="${x * cell}" y="${y * cell}" width="${cell}" height="${cell}" fill="rgb(${shade(max > 0 ? v / max : 0)})"><title>row ${y}, column ${x}: ${fmt(v)}</title></rect>`,
      ),
    )
    .join('');
  const legend = Array.from({ length: 11 }, (_, i) => `<rect x="${i * 24}" y="0" width="24" height="12" fill="rgb(${shade(i / 10)})"/>`).join('');
  return (
    `<svg role="img" aria-label="mean occlusion map" width="${w * cell}" height="${h * cell}" viewBox="0 0 ${w * cell} ${h * cell}">${cells}</svg>` +
    `<div class="meta">0 <svg width="264" height="12">${legend}</svg> ${fmt(max)}</div>`
  );
}

/** White to deep blue. */
const shade = (t: number) => [255 - 225 * t, 255 - 175 * t, 255 - 75 * t].map((c) => Math.round(c)).join(',');

/** One explained row: the picture the model saw, with its map drawn over it (red where zeroing a patch moved the prediction most). */
function overlay(example: NonNullable<GlobalOcclusion['examples']>[number], shape: [number, number]): string {
  const [h, w] = shape;
  const cell = Math.max(2, Math.min(24, Math.floor(256 / Math.max(h, w))));
  const max = Math.max(...example.map.flat().map(Math.abs), 0);
  const cells = example.map
    .flatMap((row, y) =>
      row.map((v, x) =>
        max > 0 && Math.abs(v) / max > 0.05
          ? `<rect x="${x * cell}" y="${y * cell}" width="${cell}" height="${cell}" fill="rgb(220,30,40)" fill-opacity="${(0.7 * Math.abs(v)) / max}"/>`
          : '',
      ),
    )
    .join('');
  return (
    `<section class="card"><svg role="img" aria-label="occlusion map over ${escapeXml(example.where)}" width="${w * cell}" height="${h * cell}" viewBox="0 0 ${w * cell} ${h * cell}">` +
    `<image href="${example.picture}" x="0" y="0" width="${w * cell}" height="${h * cell}" preserveAspectRatio="none" style="image-rendering:pixelated"/>${cells}</svg>` +
    `<div class="meta">${escapeXml(example.where)}: column ${example.column}</div></section>`
  );
}

export function renderOcclusionHtml(r: GlobalOcclusion): string {
  const rows = occlusionRows(r, 25)
    .map((cells) => `<tr>${cells.map((c) => `<td>${escapeXml(c)}</td>`).join('')}</tr>`)
    .join('');
  return `${pageHead(occlusionHeadline(r), '.card{display:inline-block}')}
<h1>mlops explain: ${escapeXml(r.model)}</h1>
<div class="meta">${escapeXml(occlusionMethod(r))}</div>
<h2>Where the model looks (mean over ${r.explainedRows} rows)</h2>
<section class="card">${heatMap(r)}</section>
${r.examples ? `<h2>Over the images themselves</h2>\n<div>${r.examples.map((e) => overlay(e, r.spatialShape)).join('')}</div>` : ''}
<h2>The patches that matter most</h2>
<table><tr>${OCCLUSION_HEADER.map((h) => `<th>${h}</th>`).join('')}</tr>${rows}</table>
</body></html>
`;
}

// A text model's global explanation: tokens ranked, and sentences shaded token by token.

export const TOKEN_HEADER = ['rank', 'token', 'occurrences', 'mean |attribution|'];

export function tokenHeadline(r: TokenExplanation): string {
  return `${r.model}: the tokens it relies on most are ${r.tokens
    .slice(0, 5)
    .map((t) => `'${t.token}'`)
    .join(', ')}`;
}

export function tokenMethod(r: TokenExplanation): string {
  return `Occlusion by token on ${r.explainedRows} of ${r.holdoutRows} holdout sentences: each token (not the special tokens or padding) replaced by '${r.maskToken}' in turn; per vocabulary token, the mean |fall| of the sentence's predicted column of '${r.output}'.`;
}

export function tokenRows(r: TokenExplanation, limit = 10): string[][] {
  return r.tokens.slice(0, limit).map((t, i) => [String(i + 1), t.token, String(t.count), fmt(t.meanAbsAttribution)]);
}

export function renderTokenMarkdown(r: TokenExplanation): string {
  return [`### mlops explain: ${tokenHeadline(r)}`, '', markdownTable(TOKEN_HEADER, tokenRows(r)), '', tokenMethod(r), ''].join('\n');
}

/** A sentence token by token: red where masking the token lowered the prediction, blue where it raised it. */
function shadedSentence(example: TokenExplanation['examples'][number]): string {
  const max = Math.max(...example.tokens.map((t) => Math.abs(t.attribution)), 0);
  const spans = example.tokens
    .map((t) => {
      const a = max > 0 ? t.attribution / max : 0;
      const colour = a >= 0 ? `rgba(220,30,40,${(0.75 * a).toFixed(3)})` : `rgba(40,90,220,${(-0.75 * a).toFixed(3)})`;
      return `<span class="token" style="background:${colour}" title="${escapeXml(`${t.token}: ${fmt(t.attribution)}`)}">${escapeXml(t.token)}</span>`;
    })
    .join(' ');
  return `<section class="card"><div class="meta">${escapeXml(example.where)}: predicted ${escapeXml(example.label ?? `column ${example.column}`)}</div><p>${spans}</p></section>`;
}

export function renderTokenHtml(r: TokenExplanation): string {
  const rows = tokenRows(r, 25)
    .map((cells) => `<tr>${cells.map((c) => `<td>${escapeXml(c)}</td>`).join('')}</tr>`)
    .join('');
  return `${pageHead(tokenHeadline(r), '.token{padding:1px 3px;border-radius:3px;line-height:1.9}')}
<h1>mlops explain: ${escapeXml(r.model)}</h1>
<div class="meta">${escapeXml(tokenMethod(r))}</div>
<h2>Sentences, token by token</h2>
${r.examples.map(shadedSentence).join('\n')}
<h2>The tokens that matter most</h2>
<table><tr>${TOKEN_HEADER.map((h) => `<th>${h}</th>`).join('')}</tr>${rows}</table>
</body></html>
`;
}
