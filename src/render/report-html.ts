// The run report as one static HTML page: inline CSS, no scripts, images referenced by relative
// file names next to the page, so it opens from disk with no network. Pure string building; the
// report stage gathers the data and copies the images.

import type { EpochMetrics } from '../ground/epoch-metrics.js';
import type { JsonObject, JsonValue } from '../ground/json.js';
import type { RunSummary } from '../ground/run-summary.js';

export interface ReportImage {
  /** File name relative to the page (copied next to it). */
  file: string;
  title: string;
  caption?: string;
  /** Display width in CSS pixels, for pictures rasterised at more than one pixel per CSS pixel. */
  width?: number;
}

export interface ReportStage {
  name: string;
  kind: string;
  key: string;
  settings: JsonObject;
  result: JsonObject;
}

export interface ReportEvaluation {
  stage: string;
  testAccuracy: number;
  /** Class name -> accuracy in [0, 1], in class order. */
  perClass: [string, number][];
  confusion?: number[][];
}

/** One section of the page, filled from the upstream kinds' declared report parts. */
export interface ReportSection {
  id: string;
  title: string;
  /** Place on the page, smaller first. */
  order: number;
  /** Plain-text paragraphs shown above the images (escaped when rendered). */
  notes: string[];
  images: ReportImage[];
  /** A per-epoch metrics table, from one stage. */
  epochs?: { stage: string; rows: EpochMetrics[] };
  /** Headline test accuracy, per-class accuracy and confusion matrix, from one stage. */
  evaluation?: ReportEvaluation;
}

/** Everything the page shows; stored as report.json so the page can be re-rendered later. */
export interface ReportData {
  title: string;
  pipeline: string;
  generatedAt: string;
  stages: ReportStage[];
  /** Test accuracy of the reference report, shown next to ours; null hides it. */
  referenceAccuracy: number | null;
  /** In page order. */
  sections: ReportSection[];
}

/** What the "This run" table shows: the runner's RunSummary without the stage folders. */
export interface RunTable extends Pick<RunSummary, 'startedAt' | 'backend'> {
  stages: Omit<RunSummary['stages'][number], 'dir'>[];
}

export function escapeHtml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );
}

const pct = (v: number | null) => (v !== null && Number.isFinite(v) ? `${(v * 100).toFixed(2)}%` : '–');
const num = (v: number | null, digits = 4) => (v !== null && Number.isFinite(v) ? v.toFixed(digits) : '–');

function formatValue(v: JsonValue): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** Relative file names only: a page that opens from disk must not point elsewhere. */
function imageSrc(file: string): string {
  if (/^[a-z]+:|^\/|\\|(^|\/)\.\.(\/|$)/i.test(file))
    throw new Error(`report image must be a relative file name, got ${file}`);
  return file.split('/').map(encodeURIComponent).join('/');
}

function keyValueTable(obj: JsonObject, cls: string): string {
  const rows = Object.entries(obj)
    .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td><code>${escapeHtml(formatValue(v))}</code></td></tr>`)
    .join('');
  return rows ? `<table class="${cls}">${rows}</table>` : '<p class="muted">none</p>';
}

function stagesSection(stages: ReportStage[]): string {
  const blocks = stages.map(
    (
      s,
    ) => `<details class="stage"><summary><b>${escapeHtml(s.name)}</b> <span class="kind">${escapeHtml(s.kind)}</span> <code class="key">${escapeHtml(s.key.slice(0, 12))}</code></summary>
<div class="cols"><div><h4>Settings</h4>${keyValueTable(s.settings, 'kv')}</div><div><h4>Result</h4>${keyValueTable(s.result, 'kv')}</div></div></details>`,
  );
  return `<section id="stages"><h2>Stages and settings</h2>${blocks.join('\n')}</section>`;
}

function runSection(run: RunTable): string {
  const rows = run.stages
    .map(
      (s) =>
        `<tr class="${s.state}"><td>${escapeHtml(s.name)}</td><td>${escapeHtml(s.kind)}</td><td class="state">${s.state}</td><td class="n">${num(s.seconds, 1)}</td><td><code>${escapeHtml(s.key.slice(0, 12))}</code></td><td>${escapeHtml(s.error ?? '')}</td></tr>`,
    )
    .join('');
  const backend = run.backend ? ` on backend <code>${escapeHtml(run.backend)}</code>` : '';
  return `<section id="run"><h2>This run</h2><p>Started ${escapeHtml(run.startedAt)}${backend}.</p>
<table class="grid"><thead><tr><th>stage</th><th>kind</th><th>state</th><th>seconds</th><th>key</th><th>error</th></tr></thead><tbody>${rows}</tbody></table></section>`;
}

const stageNote = (stage: string) => ` <span class="muted">(${escapeHtml(stage)})</span>`;
const finite = (v: number | null): v is number => v !== null && Number.isFinite(v);

function epochsTable(rows: EpochMetrics[]): string {
  const best = rows.reduce<EpochMetrics | undefined>(
    (b, r) => (finite(r.val_accuracy) && (!b || r.val_accuracy > (b.val_accuracy as number)) ? r : b),
    undefined,
  );
  const cells = (r: EpochMetrics) => [
    r.epoch,
    num(r.train_loss),
    pct(r.train_accuracy),
    num(r.val_loss),
    pct(r.val_accuracy),
    Number.isFinite(r.lr) ? r.lr.toExponential(2) : '–',
    num(r.images_per_second, 0),
    num(r.seconds, 1),
    num(r.elapsed_seconds / 60, 1),
  ];
  const body = rows
    .map(
      (r) =>
        `<tr${r === best ? ' class="best"' : ''}>${cells(r)
          .map((c) => `<td class="n">${c}</td>`)
          .join('')}</tr>`,
    )
    .join('');
  const bestNote = best
    ? `<p>Best validation accuracy ${pct(best.val_accuracy)} at epoch ${best.epoch} (highlighted).</p>`
    : '';
  return `${bestNote}
<div class="scroll"><table class="grid"><thead><tr><th>epoch</th><th>train loss</th><th>train acc</th><th>val loss</th><th>val acc</th><th>lr</th><th>img/s</th><th>s</th><th>elapsed min</th></tr></thead><tbody>${body}</tbody></table></div>`;
}

function evaluationBody(e: ReportEvaluation, reference: number | null): string {
  const ref = reference === null ? '' : ` <span class="muted">(reference report: ${pct(reference)})</span>`;
  const perClass = e.perClass
    .map(
      ([c, a]) =>
        `<tr><td>${escapeHtml(c)}</td><td class="n">${pct(a)}</td><td><span class="bar" style="width:${Math.round(Math.max(0, Math.min(1, a)) * 160)}px"></span></td></tr>`,
    )
    .join('');
  let confusion = '';
  if (e.confusion && e.confusion.length === e.perClass.length) {
    const names = e.perClass.map(([c]) => c);
    const head = names.map((c) => `<th>${escapeHtml(c)}</th>`).join('');
    const body = e.confusion
      .map((row, i) => {
        const total = row.reduce((a, b) => a + b, 0) || 1;
        const cells = row
          .map(
            (v, j) =>
              `<td class="n${i === j ? ' diag' : ''}" style="background:rgba(49,130,189,${(v / total).toFixed(3)})">${v}</td>`,
          )
          .join('');
        return `<tr><th>${escapeHtml(names[i])}</th>${cells}</tr>`;
      })
      .join('');
    confusion = `<h3>Confusion matrix (rows: true, columns: predicted)</h3><div class="scroll"><table class="grid confusion"><thead><tr><th></th>${head}</tr></thead><tbody>${body}</tbody></table></div>`;
  }
  return `<p class="headline">Test accuracy <b>${pct(e.testAccuracy)}</b>${ref}</p>
<h3>Per-class accuracy</h3><table class="grid"><tbody>${perClass}</tbody></table>${confusion}`;
}

function figures(images: ReportImage[]): string {
  const figs = images
    .map(
      (img) =>
        `<figure><img src="${imageSrc(img.file)}" alt="${escapeHtml(img.title)}"${img.width ? ` width="${Math.round(img.width)}"` : ''}><figcaption><b>${escapeHtml(img.title)}</b>${img.caption ? ` – ${escapeHtml(img.caption)}` : ''}</figcaption></figure>`,
    )
    .join('\n');
  return `<div class="figs">${figs}</div>`;
}

/** A section shows what it has: notes, a headline evaluation, a metrics table, pictures. */
function section(s: ReportSection, reference: number | null): string {
  const from = s.evaluation?.stage ?? s.epochs?.stage;
  const parts = [
    s.notes.map((n) => `<p>${escapeHtml(n)}</p>`).join(''),
    s.evaluation ? evaluationBody(s.evaluation, reference) : '',
    s.epochs ? epochsTable(s.epochs.rows) : '',
    s.images.length > 0 ? figures(s.images) : '',
  ];
  return `<section id="${escapeHtml(s.id)}"><h2>${escapeHtml(s.title)}${from ? stageNote(from) : ''}</h2>${parts.join('')}</section>`;
}

const CSS = `
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;max-width:1200px;padding:1rem 2rem;color:#222;line-height:1.4}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
.muted{color:#777;font-weight:normal}.kind{color:#555;background:#eef;padding:0 .4em;border-radius:3px}
.key{color:#888}code{font-size:.9em}
table{border-collapse:collapse}table.grid td,table.grid th{border:1px solid #ddd;padding:.15rem .5rem}
table.grid thead th{background:#f5f5f5;position:sticky;top:0}
table.kv th{text-align:left;padding-right:1rem;font-weight:normal;color:#555;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}tr.best td{background:#fff6d5}
tr.ran .state{color:#1a7f37}tr.cached .state{color:#555}tr.failed .state{color:#c62828;font-weight:bold}tr.skipped .state{color:#999}
td.diag{font-weight:bold}.bar{display:inline-block;height:.8em;background:#3182bd}
.scroll{max-height:28rem;overflow:auto}.cols{display:flex;gap:2rem;flex-wrap:wrap}
details.stage{margin:.3rem 0}details.stage summary{cursor:pointer}
.figs{display:flex;flex-wrap:wrap;gap:1.5rem;align-items:flex-start}
figure{margin:0;max-width:100%}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#444;margin-top:.3rem}.headline{font-size:1.3em}
`;

/**
 * The whole page. `base` (a relative URL ending in '/') makes image names resolve elsewhere, for a
 * copy of the page saved outside the folder holding the images; `run` adds the "this run" table.
 */
export function renderReportHtml(data: ReportData, opts: { base?: string; run?: RunTable } = {}): string {
  const parts: string[] = [];
  if (opts.run) parts.push(runSection(opts.run));
  for (const s of data.sections) {
    if (s.images.length > 0 || s.notes.length > 0 || s.epochs || s.evaluation)
      parts.push(section(s, data.referenceAccuracy));
  }
  parts.push(stagesSection(data.stages));
  const base = opts.base === undefined ? '' : `<base href="${escapeHtml(opts.base)}">\n`;
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
${base}<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(data.title)}</title>
<style>${CSS}</style></head>
<body><header><h1>${escapeHtml(data.title)}</h1><p class="muted">pipeline <code>${escapeHtml(data.pipeline)}</code> · report generated ${escapeHtml(data.generatedAt)}</p></header>
${parts.join('\n')}
</body></html>
`;
}
