// outputs/<pipeline>/sweep.html: one static page per sweep, no scripts, links relative to it.
// A row per variant with only the swept values, its accuracies and minutes and which of its
// stages it shares with other variants; a chart per swept setting; links to variant reports.
import { escapeHtml } from '../render/report-html.js';

export interface SweepPageRow {
  index: number;
  name: string;
  /** Short setting -> value as shown. */
  values: Record<string, string>;
  bestValAccuracy: number | null;
  testAccuracy: number | null;
  /** Compute minutes of the variant's stages (shared ones counted in full). */
  minutes: number | null;
  /** Stage names whose result this variant shares with other variants. */
  shared: string[];
  /** Relative link to the variant's report.html, when it has one. */
  report?: string;
  /** Every stage of the variant has a finished result. */
  complete: boolean;
}

export interface SweepPage {
  pipeline: string;
  generatedAt: string;
  settings: { short: string; setting: string }[];
  rows: SweepPageRow[];
  /** Relative file names of the chart pictures, one per swept setting. */
  charts: { title: string; file: string }[];
  stageRuns: { instances: number; withoutSharing: number };
}

const pct = (v: number | null) => (v === null || !Number.isFinite(v) ? '–' : `${(v * 100).toFixed(2)}%`);

function href(path: string): string {
  if (/^[a-z]+:|^\/|\\|(^|\/)\.\.(\/|$)/i.test(path)) throw new Error(`sweep page links must be relative, got ${path}`);
  return path.split('/').map(encodeURIComponent).join('/');
}

const CSS = `
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;max-width:1200px;padding:1rem 2rem;color:#222;line-height:1.4}
h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}.muted{color:#777}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .6rem}thead th{background:#f5f5f5}
td.n{text-align:right;font-variant-numeric:tabular-nums}tr.best td{background:#fff6d5}tr.incomplete td{color:#999}
.figs{display:flex;flex-wrap:wrap;gap:1.5rem}figure{margin:0}figure img{max-width:100%;border:1px solid #eee}
`;

export function renderSweepHtml(page: SweepPage): string {
  const finished = page.rows.filter((r) => r.testAccuracy !== null || r.bestValAccuracy !== null);
  const score = (r: SweepPageRow) => r.testAccuracy ?? r.bestValAccuracy ?? -1;
  const best = finished.reduce<SweepPageRow | undefined>((b, r) => (!b || score(r) > score(b) ? r : b), undefined);
  const head = page.settings.map((s) => `<th title="${escapeHtml(s.setting)}">${escapeHtml(s.short)}</th>`).join('');
  const rows = page.rows
    .map((r) => {
      const cells = page.settings.map((s) => `<td><code>${escapeHtml(r.values[s.short] ?? '')}</code></td>`).join('');
      const link = r.report ? `<a href="${href(r.report)}">report</a>` : '<span class="muted">no report</span>';
      const cls = [r === best ? 'best' : '', r.complete ? '' : 'incomplete'].filter(Boolean).join(' ');
      return (
        `<tr${cls ? ` class="${cls}"` : ''}><td class="n">${r.index}</td>${cells}<td class="n">${pct(r.bestValAccuracy)}</td><td class="n">${pct(r.testAccuracy)}</td>` +
        `<td class="n">${r.minutes === null ? '–' : r.minutes.toFixed(1)}</td><td>${escapeHtml(r.shared.join(', ') || 'none')}</td><td>${link}${r.complete ? '' : ' <span class="muted">(not finished)</span>'}</td></tr>`
      );
    })
    .join('\n');
  const charts = page.charts
    .map(
      (c) =>
        `<figure><img src="${href(c.file)}" alt="${escapeHtml(c.title)}"><figcaption>${escapeHtml(c.title)}</figcaption></figure>`,
    )
    .join('\n');
  const saved = page.stageRuns.withoutSharing - page.stageRuns.instances;
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>tfpipe sweep: ${escapeHtml(page.pipeline)}</title><style>${CSS}</style></head>
<body><header><h1>Sweep of ${escapeHtml(page.pipeline)}</h1>
<p class="muted">${page.rows.length} variants over ${escapeHtml(page.settings.map((s) => s.setting).join(' × '))} · generated ${escapeHtml(page.generatedAt)}</p>
<p>${page.stageRuns.instances} stage runs for the whole sweep instead of ${page.stageRuns.withoutSharing} without sharing${saved > 0 ? ` (${saved} saved)` : ''}.</p></header>
<section id="variants"><h2>Variants</h2>
<table><thead><tr><th>#</th>${head}<th>best val acc</th><th>test acc</th><th>minutes</th><th>shared stages</th><th></th></tr></thead>
<tbody>${rows}</tbody></table>
<p class="muted">Minutes: compute time of the variant's stages, shared ones counted in full. Highlighted: the best finished variant.</p></section>
${charts ? `<section id="charts"><h2>Accuracy against each swept setting</h2><div class="figs">${charts}</div></section>` : ''}
</body></html>
`;
}
