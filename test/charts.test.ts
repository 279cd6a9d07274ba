import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { formatMetricsJsonl, parseMetricsJsonl, type EpochMetrics } from '../src/ground/epoch-metrics.js';
import { chartSpec, renderSvg, svgToPng } from '../src/render/charts.js';
import { stage as plots } from '../src/kinds/plots.js';
import type { PlotsSettings } from '../src/kinds/settings.js';
import type { StageContext } from '../src/stage-kind/types.js';

function syntheticMetrics(epochs: number): EpochMetrics[] {
  const rows: EpochMetrics[] = [];
  let elapsed = 0;
  for (let e = 1; e <= epochs; e++) {
    elapsed += 30 + e;
    rows.push({
      epoch: e,
      train_loss: 2 / e,
      train_accuracy: 0.3 + 0.05 * e,
      val_loss: 2.1 / e + 0.01 * e,
      val_accuracy: 0.28 + 0.04 * e,
      lr: e <= 3 ? 0.01 : e <= 5 ? 0.001 : 0.0001,
      images_per_second: 1000 + e,
      seconds: 30 + e,
      elapsed_seconds: elapsed,
      tensors: 100,
    });
  }
  return rows;
}

interface Mark {
  x: number;
  y: number;
  label: string;
}

/** Point marks of the SVG: their translate() positions and aria labels. */
function pointMarks(svg: string): Mark[] {
  const re =
    /<path aria-label="([^"]*)" role="graphics-symbol" aria-roledescription="point" transform="translate\(([-\d.e]+),([-\d.e]+)\)"/g;
  return [...svg.matchAll(re)].map((m) => ({ label: m[1], x: Number(m[2]), y: Number(m[3]) }));
}

/** Vertex counts of every line mark path (one path per series). */
function lineVertexCounts(svg: string): number[] {
  const re = /aria-roledescription="line mark" d="([^"]*)"/g;
  return [...svg.matchAll(re)].map((m) => (m[1].match(/[ML]/g) ?? []).length);
}

test('parseMetricsJsonl reads what train writes; missing fields become NaN, or null for validation', () => {
  const rows = parseMetricsJsonl(
    '{"epoch":1,"train_loss":2.5,"val_accuracy":0.4}\n\n{"epoch":2,"lr":0.1,"val_loss":null}\n',
  );
  assert.equal(rows.length, 2);
  assert.equal(rows[0].train_loss, 2.5);
  assert.equal(rows[0].val_accuracy, 0.4);
  assert.equal(rows[0].val_loss, null);
  assert.ok(Number.isNaN(rows[0].lr));
  assert.equal(rows[1].lr, 0.1);
  assert.equal(rows[1].val_loss, null);
  assert.throws(() => parseMetricsJsonl('{"epoch":1}\nnot json\n'), /line 2/);
  const written = syntheticMetrics(3);
  assert.deepEqual(parseMetricsJsonl(formatMetricsJsonl(written)), written);
});

test('epochs without validation draw only the train series', () => {
  const rows = syntheticMetrics(4).map((r) => ({ ...r, val_loss: null, val_accuracy: null }));
  const values = (chartSpec('accuracy', rows, { width: 200, height: 100 }).data as { values: { series: string }[] })
    .values;
  assert.equal(values.length, 4);
  assert.ok(values.every((v) => v.series === 'train'));
});

test('accuracy chart: spec holds the data, SVG has one point per epoch and series, PNG has the scaled size', async () => {
  const rows = syntheticMetrics(7);
  const spec = chartSpec('accuracy', rows, { width: 300, height: 150 });
  const values = (spec.data as { values: { x: number; y: number; series: string }[] }).values;
  assert.equal(values.length, 14);
  for (const r of rows) {
    assert.ok(values.some((v) => v.series === 'train' && v.x === r.epoch && v.y === r.train_accuracy));
    assert.ok(values.some((v) => v.series === 'validation' && v.x === r.epoch && v.y === r.val_accuracy));
  }
  const svg = await renderSvg(spec);
  const meta = await sharp(Buffer.from(svg)).metadata();
  assert.equal(meta.format, 'svg');
  assert.ok(meta.width! > 300 && meta.height! > 150, 'axes and legend sit around the plotting area');

  const marks = pointMarks(svg);
  assert.equal(marks.length, 14);
  for (const r of rows) {
    assert.ok(marks.some((m) => m.label.includes(`epoch: ${r.epoch};`) && m.label.includes(`series: validation`)));
  }
  // Higher accuracy is drawn higher up (smaller SVG y); x grows with the epoch.
  const train = marks.filter((m) => m.label.includes('series: train'));
  for (let i = 1; i < train.length; i++) {
    assert.ok(train[i].x > train[i - 1].x);
    assert.ok(train[i].y < train[i - 1].y);
  }
  assert.deepEqual(lineVertexCounts(svg), [7, 7]);

  const png = await svgToPng(svg, 2);
  const pm = await sharp(png).metadata();
  assert.equal(pm.format, 'png');
  assert.equal(pm.width, meta.width! * 2);
  assert.equal(pm.height, meta.height! * 2);
});

test('long runs draw lines without point marks, one vertex per epoch', async () => {
  const svg = await renderSvg(chartSpec('loss', syntheticMetrics(150), { width: 200, height: 100 }));
  assert.equal(pointMarks(svg).length, 0);
  assert.deepEqual(lineVertexCounts(svg), [150, 150]);
});

test('lr uses a log axis for step schedules; accuracy_minutes uses elapsed minutes', () => {
  const rows = syntheticMetrics(7);
  const lr = chartSpec('lr', rows, { width: 200, height: 100 });
  type YScale = { encoding: { y: { scale: { type?: string } } } };
  const enc = (lr as unknown as YScale).encoding;
  assert.equal(enc.y.scale.type, 'log');
  const flat = chartSpec(
    'lr',
    rows.map((r) => ({ ...r, lr: 0.01 })),
    { width: 200, height: 100 },
  );
  assert.equal((flat as unknown as YScale).encoding.y.scale.type, undefined);
  const mins = chartSpec('accuracy_minutes', rows, { width: 200, height: 100 });
  const xs = (mins.data as { values: { x: number }[] }).values.map((v) => v.x);
  assert.ok(Math.abs(xs[0] - rows[0].elapsed_seconds / 60) < 1e-12);
  assert.ok(Math.abs(xs[6] - rows[6].elapsed_seconds / 60) < 1e-12);
});

test('plots stage writes vl.json, svg and png for each chart from the train stage metrics', async () => {
  const root = mkdtempSync(join(tmpdir(), 'tfpipe-plots-'));
  try {
    const trainDir = join(root, 'train');
    const outDir = join(root, 'out');
    mkdirSync(trainDir);
    mkdirSync(outDir);
    const rows = syntheticMetrics(5);
    writeFileSync(join(trainDir, 'metrics.jsonl'), formatMetricsJsonl(rows));
    const settings: PlotsSettings = {
      charts: ['accuracy', 'lr'],
      formats: ['svg', 'png'],
      width: 240,
      height: 120,
      scale: 1.5,
    };
    const ctx: StageContext<PlotsSettings> = {
      pipeline: 't',
      name: 'plots',
      kind: 'plots',
      key: 'k',
      settings,
      seed: 1,
      runtime: { backend: 'cpu', threads: 1 },
      outDir,
      pipelineDir: root,
      cacheDir: root,
      inputs: { train: { name: 'train', kind: 'train', key: 'tk', dir: trainDir, settings: {}, result: {} } },
      resolveInput: (p: string) => p,
      progress: () => {},
      log: () => {},
      signal: new AbortController().signal,
    };
    const result = await plots.run(ctx);
    assert.equal(result.epochs, 5);
    for (const name of ['accuracy', 'lr']) {
      for (const ext of ['vl.json', 'svg', 'png'])
        assert.ok(existsSync(join(outDir, `${name}.${ext}`)), `${name}.${ext}`);
    }
    assert.ok(!existsSync(join(outDir, 'loss.vl.json')));
    const spec = JSON.parse(readFileSync(join(outDir, 'accuracy.vl.json'), 'utf8')) as { data: { values: unknown[] } };
    assert.equal(spec.data.values.length, 10);
    const svgMeta = await sharp(readFileSync(join(outDir, 'accuracy.svg'))).metadata();
    const pngMeta = await sharp(readFileSync(join(outDir, 'accuracy.png'))).metadata();
    assert.equal(pngMeta.width, Math.round(svgMeta.width! * 1.5));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
