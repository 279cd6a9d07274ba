// Shared by the tests and benches that train: where CIFAR-10 is, and a tiny pipeline around it.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { packageRoot } from '../src/ground/paths.js';

export const ARCHIVE = process.env.TFPIPE_CIFAR10 ?? resolve(packageRoot, '../shared/data/cifar-10-binary.tar.gz');
export const noArchive: string | false = existsSync(ARCHIVE)
  ? false
  : `CIFAR-10 archive not found at ${ARCHIVE} (set TFPIPE_CIFAR10)`;

/** The shipped quick pipeline, shrunk to a few hundred images and a one-block model: `--set`s for the CLI. */
export const QUICK_SMALL_SETS = [
  `data.source=${ARCHIVE}`,
  'data.limit_train=300',
  'data.limit_val=60',
  'data.limit_test=200',
  'model.dim=32',
  'model.depth=1',
  'model.mlp_dim=64',
  'train.epochs=1',
  'rollout.images=8',
].flatMap((s) => ['--set', s]);

/** A few hundred real images, a two-block ViT, three short epochs; `extra` adds stages or top-level keys. */
export function tinyPipeline(name: string, extra = '', runtime = '{ backend: wasm }'): string {
  return `name: ${name}
seed: 3
runtime: ${runtime}
stages:
  data:
    kind: cifar10
    source: ${ARCHIVE}
    limit_train: 320
    limit_val: 64
    limit_test: 128
    samples_per_class: 1
  augmentation:
    kind: augmentation
    needs: [data]
    preview_images: 2
    preview_versions: 2
    ops:
      - { op: random_horizontal_flip, p: 0.5 }
      - { op: random_crop, size: 32, padding: 4 }
      - { op: normalize, from: data }
  model:
    kind: vit
    needs: [data]
    dim: 32
    depth: 2
    heads: 2
    dim_head: 16
    mlp_dim: 64
    dropout: 0.1
  train:
    kind: train
    needs: [data, augmentation, model]
    epochs: 3
    batch_size: 64
    optimizer: { name: adamw, lr: 0.003, weight_decay: 0.05 }
    schedule: { name: cosine, warmup_epochs: 1 }
    label_smoothing: 0.1
    grad_clip_norm: 1.0
${extra}`;
}

/** A train stage's per-epoch metrics (its metrics.jsonl), one object per epoch. */
export const metricsOf = (dir: string): Record<string, number>[] =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>);
