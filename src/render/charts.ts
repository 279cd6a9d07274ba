// Training curves as Vega-Lite specs, rendered headlessly to SVG with vega and rasterised to PNG
// with sharp. The spec carries its data inline so the .vl.json next to a picture re-renders it
// anywhere (vega editor, vl2svg) without the metrics file. vega, vega-lite and sharp load only
// when a chart is rendered: the plots kind imports this module for the chart names at start-up.

import { writeFile } from '../cache/atomic.js';
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import type { EpochMetrics } from '../ground/epoch-metrics.js';

export const chartNames = ['accuracy', 'loss', 'lr', 'accuracy_minutes'] as const;
export type ChartName = (typeof chartNames)[number];

/** Each chart's title, drawn in the picture and used as its caption in the report. */
export const chartTitles: Record<ChartName, string> = {
  accuracy: 'Accuracy per epoch',
  loss: 'Loss per epoch',
  lr: 'Learning rate per epoch',
  accuracy_minutes: 'Accuracy vs training time',
};

export interface ChartSize {
  width: number;
  height: number;
}

interface Point {
  x: number;
  y: number;
  series: string;
}

function series(rows: EpochMetrics[], x: (r: EpochMetrics) => number, parts: [keyof EpochMetrics, string][]): Point[] {
  const out: Point[] = [];
  for (const [field, label] of parts) {
    for (const r of rows) {
      const xv = x(r);
      const yv = r[field];
      if (Number.isFinite(xv) && typeof yv === 'number' && Number.isFinite(yv))
        out.push({ x: xv, y: yv, series: label });
    }
  }
  return out;
}

function lineChart(
  title: string,
  points: Point[],
  xTitle: string,
  yTitle: string,
  size: ChartSize,
  y: { format?: string; log?: boolean } = {},
): TopLevelSpec {
  // Epochs are whole numbers: short runs get one tick per epoch instead of 1.5-style ticks.
  const xs = [...new Set(points.map((p) => p.x))].sort((a, b) => a - b);
  const xAxis = xTitle === 'epoch' && xs.length <= 20 ? { axis: { values: xs, format: 'd' } } : {};
  const labels = [...new Set(points.map((p) => p.series))];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    width: size.width,
    height: size.height,
    background: 'white',
    data: { values: points },
    mark: { type: 'line', point: points.length <= 120 ? { filled: true, size: 16 } : false },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: xTitle, scale: { zero: false, nice: false }, ...xAxis },
      y: {
        field: 'y',
        type: 'quantitative',
        title: yTitle,
        ...(y.format ? { axis: { format: y.format } } : {}),
        scale: y.log ? { type: 'log' } : { zero: false },
      },
      color: {
        field: 'series',
        type: 'nominal',
        title: null,
        sort: labels,
        ...(labels.length === 1 ? { legend: null } : {}),
      },
    },
  };
}

/** The Vega-Lite spec of one chart, with the metrics inline. */
export function chartSpec(name: ChartName, rows: EpochMetrics[], size: ChartSize): TopLevelSpec {
  const byEpoch = (r: EpochMetrics) => r.epoch;
  switch (name) {
    case 'accuracy':
      return lineChart(
        chartTitles.accuracy,
        series(rows, byEpoch, [
          ['train_accuracy', 'train'],
          ['val_accuracy', 'validation'],
        ]),
        'epoch',
        'accuracy',
        size,
        { format: '~%' },
      );
    case 'loss':
      return lineChart(
        chartTitles.loss,
        series(rows, byEpoch, [
          ['train_loss', 'train'],
          ['val_loss', 'validation'],
        ]),
        'epoch',
        'cross-entropy loss',
        size,
      );
    case 'lr': {
      const pts = series(rows, byEpoch, [['lr', 'learning rate']]);
      // Step schedules span decades; a log axis shows each step, but only works for positive rates.
      const ys = pts.map((p) => p.y);
      const log = ys.length > 0 && Math.min(...ys) > 0 && Math.max(...ys) / Math.min(...ys) >= 10;
      return lineChart(chartTitles.lr, pts, 'epoch', 'learning rate', size, { log, format: '.1e' });
    }
    case 'accuracy_minutes':
      return lineChart(
        chartTitles.accuracy_minutes,
        series(rows, (r) => r.elapsed_seconds / 60, [
          ['train_accuracy', 'train'],
          ['val_accuracy', 'validation'],
        ]),
        'elapsed minutes',
        'accuracy',
        size,
        { format: '~%' },
      );
  }
}

/** Render a Vega-Lite spec to an SVG string without a browser or canvas. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const [vega, vl] = await Promise.all([import('vega'), import('vega-lite')]);
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Rasterise an SVG; scale 2 gives a picture that stays crisp on high-DPI screens. */
export async function svgToPng(svg: string, scale: number): Promise<Buffer> {
  const { default: sharp } = await import('sharp');
  return sharp(Buffer.from(svg), { density: 72 * scale })
    .png()
    .toBuffer();
}

export type ChartFormat = 'svg' | 'png';

/** Write name.vl.json always, plus name.svg / name.png as asked. Returns the file names written. */
export async function writeChart(
  dir: string,
  name: string,
  spec: TopLevelSpec,
  formats: readonly ChartFormat[],
  scale: number,
): Promise<string[]> {
  const files = [`${name}.vl.json`];
  await writeFile(join(dir, files[0]), `${JSON.stringify(spec, null, 2)}\n`);
  if (formats.length === 0) return files;
  const svg = await renderSvg(spec);
  if (formats.includes('svg')) {
    await writeFile(join(dir, `${name}.svg`), svg);
    files.push(`${name}.svg`);
  }
  if (formats.includes('png')) {
    await writeFile(join(dir, `${name}.png`), await svgToPng(svg, scale));
    files.push(`${name}.png`);
  }
  return files;
}
