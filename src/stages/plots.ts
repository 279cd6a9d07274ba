import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readSchema } from '../paths.js';
import { chartSpec, parseMetricsJsonl, writeChart } from '../render/charts.js';
import type { PlotsSettings } from './settings.js';
import { upstreamOfKind, type JsonObject, type StageKind } from './types.js';

export const stage: StageKind<PlotsSettings> = {
  kind: 'plots',
  version: 1,
  description: 'Training curves (accuracy, loss, learning rate, accuracy vs time) as Vega-Lite, SVG and PNG',
  schema: readSchema('plots'),
  requires: ['train'],
  async run(ctx): Promise<JsonObject> {
    const train = upstreamOfKind(ctx, 'train');
    const rows = parseMetricsJsonl(await readFile(join(train.dir, 'metrics.jsonl'), 'utf8'));
    if (rows.length === 0) throw new Error(`${train.name}/metrics.jsonl has no epochs to plot`);
    const files: string[] = [];
    for (const name of ctx.settings.charts) {
      ctx.progress({ message: `plotting ${name}` });
      const spec = chartSpec(name, rows, { width: ctx.settings.width, height: ctx.settings.height });
      files.push(...(await writeChart(ctx.outDir, name, spec, ctx.settings.formats, ctx.settings.scale)));
    }
    return { epochs: rows.length, files };
  },
};
