// kind: plots — training curves from the train stage's metrics.jsonl (src/render/charts.ts).
import { EPOCH_METRICS_FILE, readMetrics } from '../ground/epoch-metrics.js';
import { readSchema } from '../ground/paths.js';
import { chartNames, chartSpec, chartTitles, writeChart } from '../render/charts.js';
import type { PlotsSettings } from './settings.js';
import { upstreamOfKind, type StageKind } from '../stage-kind/types.js';
import type { JsonObject } from '../ground/json.js';

export const stage: StageKind<PlotsSettings> = {
  kind: 'plots',
  version: 1,
  description: 'Training curves (accuracy, loss, learning rate, accuracy vs time) as Vega-Lite, SVG and PNG',
  schema: readSchema('plots'),
  requires: ['train'],
  writes: {
    files: Object.fromEntries(
      chartNames.map((name) => [
        `${name}.vl.json`,
        `${chartTitles[name]}: the Vega-Lite spec with its data inline (re-renders anywhere)`,
      ]),
    ),
    report: [
      {
        section: 'plots',
        title: 'Training curves',
        order: 40,
        // An .svg stands in where formats has no png.
        pictures: chartNames.map((name) => ({
          file: `${name}.png`,
          title: chartTitles[name],
          ...(name === 'accuracy' ? { caption: 'train and validation' } : {}),
        })),
        pictureScale: (s) => s.scale,
      },
    ],
  },
  async run(ctx): Promise<JsonObject> {
    const train = upstreamOfKind(ctx, 'train');
    const rows = await readMetrics(train.dir);
    if (rows.length === 0) throw new Error(`${train.name}/${EPOCH_METRICS_FILE} has no epochs to plot`);
    const files: string[] = [];
    for (const name of ctx.settings.charts) {
      ctx.progress({ message: `plotting ${name}` });
      const spec = chartSpec(name, rows, { width: ctx.settings.width, height: ctx.settings.height });
      files.push(...(await writeChart(ctx.outDir, name, spec, ctx.settings.formats, ctx.settings.scale)));
    }
    return { epochs: rows.length, files };
  },
};
