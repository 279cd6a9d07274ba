// kind: report — a static HTML page of the run, composed from what the upstream stages' kinds
// declare they write (StageKind.writes.report): this module knows no other kind by name.
import { existsSync } from 'node:fs';
import { copyFile, readFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { writeFile, writeFileAtomic } from '../cache/atomic.js';
import { readSchema } from '../ground/paths.js';
import { renderReportHtml, type ReportData, type ReportSection, type RunTable } from '../render/report-html.js';
import type { ReportSettings } from './settings.js';
import type { Picture, ReportPart, StageContext, StageKind, UpstreamArtefacts } from '../stage-kind/types.js';
import type { JsonObject } from '../ground/json.js';

/** The report's data model, kept next to index.html so the page can be re-rendered with a run table. */
export const REPORT_DATA_FILE = 'report.json';
const PAGE_FILE = 'index.html';

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, '_');
}

/** SVG stands in for a PNG a stage did not rasterise (e.g. plots with formats: [svg]). */
function findPicture(dir: string, file: string): string | undefined {
  if (existsSync(join(dir, file))) return file;
  const svg = file.replace(/\.png$/, '.svg');
  return svg !== file && existsSync(join(dir, svg)) ? svg : undefined;
}

/** A picture rasterised at `scale` pixels per CSS pixel is shown at its CSS size. */
async function displayWidth(path: string, scale: number): Promise<{ width?: number }> {
  if (!path.endsWith('.png') || !(scale > 0) || scale === 1) return {};
  const { default: sharp } = await import('sharp');
  const meta = await sharp(path).metadata();
  return meta.width ? { width: meta.width / scale } : {};
}

/** Copy one stage's pictures for a part next to the page; the images as the page shows them. */
async function copyPictures(
  u: UpstreamArtefacts,
  part: ReportPart,
  outDir: string,
  sameKind: number,
): Promise<ReportSection['images']> {
  const images: ReportSection['images'] = [];
  for (const p of part.pictures ?? ([] as Picture[])) {
    const found = findPicture(u.dir, p.file);
    if (!found) continue;
    const target = `${safeName(u.name)}-${found}`;
    await copyFile(join(u.dir, found), join(outDir, target));
    images.push({
      file: target,
      ...(await displayWidth(join(u.dir, found), part.pictureScale?.(u.settings) ?? 1)),
      // Two stages of one kind (e.g. two rollout settings) are told apart by stage name.
      title: sameKind > 1 ? `${p.title} (${u.name})` : p.title,
      ...(p.caption ? { caption: p.caption } : {}),
    });
  }
  return images;
}

/** Build the report data and copy the pictures into outDir. */
export async function gatherReport(ctx: StageContext<ReportSettings>): Promise<ReportData> {
  const upstreams = Object.values(ctx.inputs);
  const perKind = new Map<string, number>();
  for (const u of upstreams) perKind.set(u.kind, (perKind.get(u.kind) ?? 0) + 1);
  const sections = new Map<string, ReportSection>();
  for (const u of upstreams) {
    for (const part of u.writes?.report ?? []) {
      let s = sections.get(part.section);
      if (!s) {
        s = { id: part.section, title: part.title, order: part.order, notes: [], images: [] };
        sections.set(part.section, s);
      }
      s.images.push(...(await copyPictures(u, part, ctx.outDir, perKind.get(u.kind) ?? 0)));
      const content = part.content ? await part.content(u) : {};
      s.notes.push(...(content.notes ?? []));
      // One table and one headline per section: the first stage's.
      if (content.epochs && ctx.settings.metrics_table && !s.epochs) s.epochs = { stage: u.name, rows: content.epochs };
      if (content.evaluation && !s.evaluation) s.evaluation = { stage: u.name, ...content.evaluation };
    }
  }
  return {
    title: ctx.settings.title || `tfpipe report: ${ctx.pipeline}`,
    pipeline: ctx.pipeline,
    generatedAt: new Date().toISOString(),
    stages: upstreams.map((u) => ({ name: u.name, kind: u.kind, key: u.key, settings: u.settings, result: u.result })),
    referenceAccuracy: ctx.settings.reference_accuracy,
    // Sorting is stable: sections of equal order keep the order of the needs list.
    sections: [...sections.values()].sort((a, b) => a.order - b.order),
  };
}

export const stage: StageKind<ReportSettings> = {
  kind: 'report',
  // 2: report.json holds the sections that upstream kinds declare (the page is unchanged).
  version: 2,
  description: 'Static HTML run report (settings, metrics, plots, predictions, rollout) that opens from disk',
  schema: readSchema('report'),
  // The run's test accuracy, as the page's headline shows it.
  headline: ['test_accuracy'],
  writes: {
    files: {
      [PAGE_FILE]: 'the report page; its pictures are copied next to it, so the folder opens from disk',
      [REPORT_DATA_FILE]:
        'the data the page shows, to re-render it (outputs/<pipeline>/report.html adds the run table)',
    },
  },
  // The runner calls this after every run in which the report is up to date, cached or not.
  async publish(stageDir, pipelineDir, run): Promise<void> {
    await writePipelineReport(pipelineDir, stageDir, run);
  },
  async run(ctx): Promise<JsonObject> {
    const data = await gatherReport(ctx);
    await writeFile(join(ctx.outDir, REPORT_DATA_FILE), `${JSON.stringify(data, null, 2)}\n`);
    await writeFile(join(ctx.outDir, PAGE_FILE), renderReportHtml(data));
    const evaluation = data.sections.find((s) => s.evaluation)?.evaluation;
    return {
      images: data.sections.reduce((n, s) => n + s.images.length, 0),
      sections: data.sections.map((s) => s.id),
      ...(evaluation ? { test_accuracy: evaluation.testAccuracy } : {}),
    };
  },
};

/**
 * Write pipelineDir/report.html: the report stage's page plus a "this run" table, with a relative
 * <base href> into the report stage's folder so its pictures resolve. Returns the file's path.
 */
export async function writePipelineReport(pipelineDir: string, reportStageDir: string, run: RunTable): Promise<string> {
  const dataFile = join(reportStageDir, REPORT_DATA_FILE);
  if (!existsSync(dataFile))
    throw new Error(`${reportStageDir} has no ${REPORT_DATA_FILE}: is it a report stage's folder?`);
  const data = JSON.parse(await readFile(dataFile, 'utf8')) as ReportData;
  const rel = relative(pipelineDir, reportStageDir);
  const base = rel === '' ? './' : `${rel.split(sep).map(encodeURIComponent).join('/')}/`;
  const out = join(pipelineDir, 'report.html');
  await writeFileAtomic(out, renderReportHtml(data, { base, run }));
  return out;
}
