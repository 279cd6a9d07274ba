// kind: vit — defines the ViT for the upstream data and writes its initial weights and a summary.
import { writeFile } from '../cache/atomic.js';
import { join } from 'node:path';
import { readSchema } from '../ground/paths.js';
import { readDataInfo, type DataInfo } from '../ml/dataset.js';
import { type FullVitConfig, validateConfig } from '../ml/vit/config.js';
import { modelGraphSvg } from '../ml/vit/graph.js';
import type { VitSettings } from './settings.js';
import { upstreamOfKind, type Picture, type StageKind } from '../stage-kind/types.js';

/** The initial weights: a tf.io Layers-model folder (loadCheckpoint), where training starts. */
export const MODEL_DIR = 'model';
const PARAMS_FILE = 'params.json';
const GRAPH_SVG = 'graph.svg';
const graph: Picture = { file: 'graph.png', title: 'Model graph' };

/** The model config from the stage settings (defaults applied) and the data description. */
export function vitConfigFor(s: VitSettings, data: DataInfo): FullVitConfig {
  const cfg: FullVitConfig = {
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
    activation: s.activation,
    tokenizer: s.tokenizer,
    convLayers: s.conv_layers,
    convChannels: s.conv_channels,
    pool: s.pool,
    posEmbedding: s.position_embedding,
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
  writes: {
    files: {
      [`${MODEL_DIR}/`]: 'initial weights as a tf.io Layers model (model.json + weights.bin)',
      [PARAMS_FILE]: 'parameter count, model config and a table of every weight',
      [GRAPH_SVG]: 'the model graph (graph.png is its picture)',
    },
    report: [{ section: 'model', title: 'Model', order: 30, pictures: [graph] }],
  },
  async run(ctx) {
    const cfg = vitConfigFor(ctx.settings, await readDataInfo(upstreamOfKind(ctx, 'cifar10').dir));
    const [{ default: sharp }, { saveCheckpoint }, { createVit, parameterTable }] = await Promise.all([
      import('sharp'),
      import('../ml/vit/checkpoint.js'),
      import('../ml/vit/model.js'),
    ]);
    const model = createVit(cfg, ctx.seed);
    try {
      await saveCheckpoint(model, join(ctx.outDir, MODEL_DIR), { stage: ctx.name, seed: ctx.seed });
      const table = parameterTable(model);
      const total = table.reduce((sum, row) => sum + row.count, 0);
      await writeFile(
        join(ctx.outDir, PARAMS_FILE),
        `${JSON.stringify({ total, config: cfg, parameters: table }, null, 2)}\n`,
      );
      const svg = modelGraphSvg(cfg);
      await writeFile(join(ctx.outDir, GRAPH_SVG), svg);
      await writeFile(join(ctx.outDir, graph.file), await sharp(Buffer.from(svg), { density: 144 }).png().toBuffer());
      ctx.log(`vit: ${total.toLocaleString('en')} parameters, ${cfg.depth} blocks of dim ${cfg.dim}`);
      return { parameters: total, tokens: (cfg.imageSize / cfg.patchSize) ** 2 + 1, config: { ...cfg } };
    } finally {
      model.dispose();
    }
  },
};
