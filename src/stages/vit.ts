// kind: vit — defines the ViT for the upstream data and writes its initial weights and a summary.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { readSchema } from '../paths.js';
import { initBackend } from '../ml/backend.js';
import { saveCheckpoint } from '../ml/vit/checkpoint.js';
import { validateConfig, type VitConfig } from '../ml/vit/config.js';
import { modelGraphSvg } from '../ml/vit/graph.js';
import { createVit, parameterTable } from '../ml/vit/model.js';
import type { VitSettings } from './settings.js';
import { upstreamOfKind, type StageKind } from './types.js';

interface DataInfo {
  classes: string[];
  imageSize: number;
  channels: number;
}

/** The model config from the stage settings and the data description. */
export function vitConfigFor(s: VitSettings, data: DataInfo): VitConfig {
  const cfg: VitConfig = {
    imageSize: data.imageSize,
    channels: data.channels,
    classes: data.classes.length,
    patchSize: s.patch_size,
    dim: s.dim,
    depth: s.depth,
    heads: s.heads,
    dimHead: s.dim_head,
    mlpDim: s.mlp_dim,
    dropout: s.dropout,
  };
  try {
    validateConfig(cfg);
  } catch (err) {
    throw new Error(`vit settings: ${(err as Error).message.replace(/^ViT /, '')}`);
  }
  return cfg;
}

export const stage: StageKind<VitSettings> = {
  kind: 'vit',
  version: 1,
  description: 'Vision Transformer definition: initial weights (model/), parameter table, model graph',
  schema: readSchema('vit'),
  requires: ['cifar10'],
  usesTensorflow: true,
  async run(ctx) {
    const data = JSON.parse(await readFile(join(upstreamOfKind(ctx, 'cifar10').dir, 'data.json'), 'utf8')) as DataInfo;
    const cfg = vitConfigFor(ctx.settings, data);
    await initBackend(ctx.runtime.backend, ctx.runtime.threads);
    const model = createVit(cfg, ctx.seed);
    try {
      await saveCheckpoint(model, join(ctx.outDir, 'model'), { stage: ctx.name, seed: ctx.seed });
      const table = parameterTable(model);
      const total = table.reduce((sum, row) => sum + row.count, 0);
      await writeFile(join(ctx.outDir, 'params.json'), JSON.stringify({ total, config: cfg, parameters: table }, null, 2) + '\n');
      const svg = modelGraphSvg(cfg);
      await writeFile(join(ctx.outDir, 'graph.svg'), svg);
      await writeFile(join(ctx.outDir, 'graph.png'), await sharp(Buffer.from(svg), { density: 144 }).png().toBuffer());
      ctx.log(`vit: ${total.toLocaleString('en')} parameters, ${cfg.depth} blocks of dim ${cfg.dim}`);
      return { parameters: total, tokens: (cfg.imageSize / cfg.patchSize) ** 2 + 1, config: { ...cfg } };
    } finally {
      model.dispose();
    }
  },
};
