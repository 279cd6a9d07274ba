import { existsSync } from 'node:fs';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import sharp from 'sharp';
import { writeFileAtomic } from '../cache/atomic.js';
import { readSchema } from '../paths.js';
import { parseMetricsJsonl } from '../render/charts.js';
import {
  renderReportHtml,
  type ReportData,
  type ReportEvaluation,
  type ReportImage,
  type ReportSection,
  type RunSummary,
} from '../render/report-html.js';
import type { ReportSettings } from './settings.js';
import type { JsonObject, StageContext, StageKind, UpstreamArtefacts } from './types.js';

/** The report's data model, kept next to index.html so the page can be re-rendered with a run table. */
export const REPORT_DATA_FILE = 'report.json';

interface Artefact {
  file: string;
  title: string;
  caption?: string;
}

/** Pictures each known kind leaves behind, and the report section they belong to. */
const pictures: Record<string, { section: string; files: Artefact[] }> = {
  cifar10: { section: 'data', files: [{ file: 'samples.png', title: 'CIFAR-10 samples' }] },
  augmentation: {
    section: 'augmentation',
    files: [
      { file: 'preview.png', title: 'Augmentation preview', caption: 'training-time augmentation applied to a batch' },
      { file: 'patches.png', title: 'Patches', caption: 'the same images cut into the patch grid the ViT sees' },
    ],
  },
  vit: { section: 'model', files: [{ file: 'graph.png', title: 'Model graph' }] },
  plots: {
    section: 'plots',
    files: [
      { file: 'accuracy.png', title: 'Accuracy per epoch', caption: 'train and validation' },
      { file: 'loss.png', title: 'Loss per epoch' },
      { file: 'lr.png', title: 'Learning rate per epoch' },
      { file: 'accuracy_minutes.png', title: 'Accuracy vs training time' },
    ],
  },
  evaluate: {
    section: 'predictions',
    files: [
      { file: 'predictions.png', title: 'Predictions on test images' },
      { file: 'confusion.png', title: 'Confusion matrix' },
    ],
  },
  attention_rollout: {
    section: 'rollout',
    files: [{ file: 'rollout.png', title: 'Attention rollout', caption: 'image, rollout heatmap, image × mask' }],
  },
};

const sectionTitles: Record<string, string> = {
  data: 'Data',
  augmentation: 'Augmentation and patches',
  model: 'Model',
  plots: 'Training curves',
  predictions: 'Predictions',
  rollout: 'Attention rollout',
};

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, '_');
}

/** SVG stands in for a PNG a stage did not rasterise (plots with formats: [svg]). */
function findPicture(dir: string, file: string): string | undefined {
  if (existsSync(join(dir, file))) return file;
  const svg = file.replace(/\.png$/, '.svg');
  return svg !== file && existsSync(join(dir, svg)) ? svg : undefined;
}

/** Charts are rasterised at `scale` pixels per CSS pixel; show them at their CSS size. */
async function chartDisplay(file: string, settings: JsonObject): Promise<{ width?: number }> {
  // Resolved settings always carry scale; 2 is the plots schema's default for hand-made inputs.
  const scale = typeof settings.scale === 'number' && settings.scale > 0 ? settings.scale : 2;
  if (!file.endsWith('.png') || scale === 1) return {};
  const meta = await sharp(file).metadata();
  return meta.width ? { width: meta.width / scale } : {};
}

async function readJson(path: string): Promise<JsonObject | undefined> {
  if (!existsSync(path)) return undefined;
  return JSON.parse(await readFile(path, 'utf8')) as JsonObject;
}

async function evaluationOf(u: UpstreamArtefacts): Promise<ReportEvaluation | undefined> {
  const m = await readJson(join(u.dir, 'metrics.json'));
  if (!m || typeof m.test_accuracy !== 'number') return undefined;
  const perClassObj = (m.per_class_accuracy ?? {}) as Record<string, number>;
  const confusion = Array.isArray(m.confusion) ? (m.confusion as number[][]) : undefined;
  return { stage: u.name, testAccuracy: m.test_accuracy, perClass: Object.entries(perClassObj), confusion };
}

async function rolloutNotes(u: UpstreamArtefacts): Promise<string[]> {
  const meta = await readJson(join(u.dir, 'meta.json'));
  if (!meta) return [];
  const wrong = Array.isArray(meta.misclassified) ? meta.misclassified.filter((v) => v === true).length : undefined;
  const n = Array.isArray(meta.indices) ? meta.indices.length : undefined;
  const notes = [
    `Method ${String(meta.method)}, head fusion ${String(meta.head_fusion)}, discard ratio ${String(meta.discard_ratio)}, upsampling ${String(meta.upsample)}.`,
  ];
  if (n !== undefined && wrong !== undefined) notes.push(`${n} test images, ${wrong} misclassified (red captions and borders).`);
  return notes;
}

/** Build the report data and copy the pictures into outDir. */
export async function gatherReport(ctx: StageContext<ReportSettings>): Promise<ReportData> {
  const upstreams = Object.values(ctx.inputs);
  const sections = new Map<string, ReportSection>();
  const section = (id: string): ReportSection => {
    let s = sections.get(id);
    if (!s) {
      s = { id, title: sectionTitles[id] ?? id, notes: [], images: [] };
      sections.set(id, s);
    }
    return s;
  };
  const perKind = new Map<string, number>();
  for (const u of upstreams) perKind.set(u.kind, (perKind.get(u.kind) ?? 0) + 1);

  let metrics: ReportData['metrics'];
  let evaluation: ReportEvaluation | undefined;
  for (const u of upstreams) {
    const known = pictures[u.kind];
    if (known) {
      for (const a of known.files) {
        const found = findPicture(u.dir, a.file);
        if (!found) continue;
        const target = `${safeName(u.name)}-${found}`;
        await copyFile(join(u.dir, found), join(ctx.outDir, target));
        const image: ReportImage = {
          file: target,
          ...(u.kind === 'plots' ? await chartDisplay(join(u.dir, found), u.settings) : {}),
          // Two stages of one kind (e.g. two rollout settings) are told apart by stage name.
          title: (perKind.get(u.kind) ?? 0) > 1 ? `${a.title} (${u.name})` : a.title,
          ...(a.caption ? { caption: a.caption } : {}),
        };
        section(known.section).images.push(image);
      }
    }
    if (u.kind === 'train' && !metrics && ctx.settings.metrics_table && existsSync(join(u.dir, 'metrics.jsonl'))) {
      metrics = { stage: u.name, rows: parseMetricsJsonl(await readFile(join(u.dir, 'metrics.jsonl'), 'utf8')) };
    }
    if (u.kind === 'evaluate' && !evaluation) evaluation = await evaluationOf(u);
    if (u.kind === 'attention_rollout') section('rollout').notes.push(...(await rolloutNotes(u)));
  }
  return {
    title: ctx.settings.title || `tfpipe report: ${ctx.pipeline}`,
    pipeline: ctx.pipeline,
    generatedAt: new Date().toISOString(),
    stages: upstreams.map((u) => ({ name: u.name, kind: u.kind, key: u.key, settings: u.settings, result: u.result })),
    ...(metrics ? { metrics } : {}),
    ...(evaluation ? { evaluation } : {}),
    referenceAccuracy: ctx.settings.reference_accuracy,
    sections: [...sections.values()],
  };
}

export const stage: StageKind<ReportSettings> = {
  kind: 'report',
  version: 1,
  description: 'Static HTML run report (settings, metrics, plots, predictions, rollout) that opens from disk',
  schema: readSchema('report'),
  // The runner calls this after every run in which the report is up to date, cached or not.
  async publish(stageDir, pipelineDir, run): Promise<void> {
    await writePipelineReport(pipelineDir, stageDir, run);
  },
  async run(ctx): Promise<JsonObject> {
    const data = await gatherReport(ctx);
    await writeFile(join(ctx.outDir, REPORT_DATA_FILE), JSON.stringify(data, null, 2) + '\n');
    await writeFile(join(ctx.outDir, 'index.html'), renderReportHtml(data));
    return {
      images: data.sections.reduce((n, s) => n + s.images.length, 0),
      sections: data.sections.map((s) => s.id),
      ...(data.evaluation ? { test_accuracy: data.evaluation.testAccuracy } : {}),
    };
  },
};

/**
 * Write pipelineDir/report.html: the report stage's page plus a "this run" table, with a relative
 * <base href> into the report stage's folder so its pictures resolve. Returns the file's path.
 */
export async function writePipelineReport(
  pipelineDir: string,
  reportStageDir: string,
  run: RunSummary,
): Promise<string> {
  const dataFile = join(reportStageDir, REPORT_DATA_FILE);
  if (!existsSync(dataFile)) throw new Error(`${reportStageDir} has no ${REPORT_DATA_FILE}: is it a report stage's folder?`);
  const data = JSON.parse(await readFile(dataFile, 'utf8')) as ReportData;
  const rel = relative(pipelineDir, reportStageDir);
  const base = rel === '' ? './' : rel.split(sep).map(encodeURIComponent).join('/') + '/';
  const out = join(pipelineDir, 'report.html');
  await writeFileAtomic(out, renderReportHtml(data, { base, run }));
  return out;
}
