// kind: attention_rollout — which image patches the trained ViT attends to (src/ml/rollout.ts).
import { writeFile } from '../cache/atomic.js';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Tensor4D } from '@tensorflow/tfjs';
import { readSchema } from '../ground/paths.js';
import type { Augmenter } from '../ml/augment/index.js';
import { createRng, deriveSeed } from '../ml/rng.js';
import { rolloutMask } from '../ml/rollout.js';
import type { Kernels, Vit } from '../ml/vit/index.js';
import type { FullVitConfig } from '../ml/vit/config.js';
import { heatmapPixels, maskedPixels } from '../render/heatmap.js';
import type { GridCell } from '../render/image-grid.js';
import { writeNpy } from '../render/npy.js';
import type { AttentionRolloutSettings } from './settings.js';
import { type TrainedModel, withTrainedModel } from './shared/trained-model.js';
import type { Picture, SectionContent, StageContext, StageKind, UpstreamArtefacts } from '../stage-kind/types.js';
import type { JsonObject } from '../ground/json.js';

const rolloutPicture: Picture = {
  file: 'rollout.png',
  title: 'Attention rollout',
  caption: 'image, rollout heatmap, image × mask',
};
const META_FILE = 'meta.json';
const ATTENTION_FILE = 'attention.npy';
const ROLLOUT_FILE = 'rollout.npy';

/** TensorFlow.js and the ViT's forward passes, loaded when a rollout runs. */
interface Libs {
  tf: typeof import('@tensorflow/tfjs');
  vit: typeof import('../ml/vit/index.js');
}

export interface PickedImage {
  index: number;
  predicted: number;
}

/**
 * Choose `count` test images at random (seeded). With `includeMisclassified`, at least
 * ceil(count / 4) of them are misclassified when the test set has that many: the first `count`
 * of the shuffled order are taken as they are, and if too few are wrong, further images are
 * classified chunk by chunk and wrong ones replace the last correct picks.
 */
export async function pickImages(o: {
  count: number;
  labels: Uint8Array;
  seed: number;
  includeMisclassified: boolean;
  chunk: number;
  classify: (indices: number[]) => Promise<ArrayLike<number>>;
}): Promise<PickedImage[]> {
  const total = o.labels.length;
  const order = Array.from(createRng(deriveSeed(o.seed, 'attention_rollout', 'pick')).permutation(total));
  const want = Math.min(o.count, total);
  const first = order.slice(0, want);
  const firstPred = await o.classify(first);
  const picks: PickedImage[] = first.map((index, k) => ({ index, predicted: firstPred[k] }));
  if (!o.includeMisclassified) return picks;
  const isWrong = (p: PickedImage) => p.predicted !== o.labels[p.index];
  const needWrong = Math.ceil(want / 4);
  const wrongAlready = picks.filter(isWrong).length;
  const extra: PickedImage[] = [];
  for (let pos = want; wrongAlready + extra.length < needWrong && pos < total; pos += o.chunk) {
    const indices = order.slice(pos, pos + o.chunk);
    const pred = await o.classify(indices);
    indices.forEach((index, k) => {
      const p = { index, predicted: pred[k] };
      if (isWrong(p) && wrongAlready + extra.length < needWrong) extra.push(p);
    });
  }
  let drop = extra.length;
  const kept: PickedImage[] = [];
  for (let k = picks.length - 1; k >= 0; k--) {
    if (drop > 0 && !isWrong(picks[k])) drop--;
    else kept.unshift(picks[k]);
  }
  return [...kept, ...extra];
}

/** Gather the images at `indices` into one NHWC uint8 buffer. */
function gather(images: Uint8Array, indices: number[], per: number): Uint8Array {
  const out = new Uint8Array(indices.length * per);
  indices.forEach((idx, k) => {
    out.set(images.subarray(idx * per, (idx + 1) * per), k * per);
  });
  return out;
}

function argmaxRows(logits: Float32Array, classes: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < logits.length / classes; r++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[r * classes + c] > logits[r * classes + best]) best = c;
    out.push(best);
  }
  return out;
}

interface ModelInputs {
  libs: Libs;
  model: Vit;
  /** One choice for picking images and recording their predictions and attention. */
  kernels: Kernels;
  augmenter: Augmenter;
  images: Uint8Array;
  imageSize: number;
  channels: number;
}

function inputTensor(m: ModelInputs, indices: number[]): Tensor4D {
  const { tf } = m.libs;
  const per = m.imageSize * m.imageSize * m.channels;
  return tf.tidy(() => {
    const raw = tf.tensor4d(
      gather(m.images, indices, per),
      [indices.length, m.imageSize, m.imageSize, m.channels],
      'int32',
    );
    return m.augmenter.eval(raw);
  });
}

async function classify(m: ModelInputs, indices: number[], batchSize: number): Promise<number[]> {
  const x = inputTensor(m, indices);
  const logits = m.libs.vit.predict(m.model, x, batchSize, m.kernels);
  const data = (await logits.data()) as Float32Array;
  x.dispose();
  logits.dispose();
  return argmaxRows(data, m.model.config.classes);
}

/**
 * Eval-mode logits, post-softmax attention [B, layers, heads, T, T] and the head's pooling weights
 * [B, T] for a few images.
 */
async function attentionOf(
  m: ModelInputs,
  indices: number[],
): Promise<{
  predicted: number[];
  attention: Float32Array;
  pool: Float32Array;
  layers: number;
  heads: number;
  tokens: number;
}> {
  const { tf, vit } = m.libs;
  const x = inputTensor(m, indices);
  const { logits, attention, pool } = vit.forward(m.model, x, { training: false, returnAttention: true }, m.kernels);
  if (!attention || attention.length === 0 || !pool) throw new Error('the model returned no attention maps');
  const stacked = tf.stack(attention, 1);
  const [, layers, heads, tokens] = stacked.shape;
  const data = (await stacked.data()) as Float32Array;
  const poolData = Float32Array.from(await pool.data());
  const predicted = argmaxRows((await logits.data()) as Float32Array, m.model.config.classes);
  tf.dispose([x, logits, stacked, pool, ...attention]);
  return { predicted, attention: data, pool: poolData, layers, heads, tokens };
}

/** How the rollout is read out and put on pixels for this model, in words for the report. */
export function readoutWords(cfg: FullVitConfig): string {
  const to =
    cfg.pool === 'cls'
      ? 'to the class token'
      : cfg.pool === 'mean'
        ? 'to the mean of the tokens (no class token: each token weighted 1/T, as the head pools them)'
        : "to the sequence pooling's weights (no class token: each token weighted as the head pools it)";
  const on =
    cfg.tokenizer === 'conv'
      ? `each token spread over its receptive field through the ${cfg.convLayers}-layer conv tokenizer (a pixel gets the mean of the tokens that see it)`
      : 'the patch grid upsampled to pixels';
  return `Rolled out ${to}; ${on}.`;
}

/** Everything after loading: pick images, run the model, write rollout.png, the .npy dumps and meta.json. */
export async function writeRollout(
  src: TrainedModel,
  s: AttentionRolloutSettings,
  seed: number,
  outDir: string,
  ctx: Pick<StageContext, 'progress' | 'signal'>,
): Promise<JsonObject> {
  const [tf, vit, { renderGrid }] = await Promise.all([
    import('@tensorflow/tfjs'),
    import('../ml/vit/index.js'),
    import('../render/image-grid.js'),
  ]);
  const { info, test } = src;
  const m: ModelInputs = {
    libs: { tf, vit },
    model: src.model,
    kernels: src.kernels,
    augmenter: src.augmenter,
    images: test.images,
    imageSize: info.imageSize,
    channels: info.channels,
  };

  ctx.progress({ message: 'choosing test images' });
  const picks = await pickImages({
    count: s.images,
    labels: test.labels,
    seed,
    includeMisclassified: s.include_misclassified,
    chunk: Math.max(s.batch_size, 64),
    classify: (indices) => classify(m, indices, s.batch_size),
  });
  const indices = picks.map((p) => p.index);

  // Attention for a few images at a time: 32 x layers x heads x 65 x 65 floats stays small.
  const parts: Float32Array[] = [];
  const pools: Float32Array[] = [];
  const predicted: number[] = [];
  const cfg = src.model.config;
  let dims = { layers: 0, heads: 0, tokens: 0, classToken: cfg.pool === 'cls' };
  for (let i = 0; i < indices.length; i += 32) {
    if (ctx.signal.aborted) throw new Error('aborted');
    ctx.progress({ message: 'attention maps', fraction: i / indices.length });
    const r = await attentionOf(m, indices.slice(i, i + 32));
    parts.push(r.attention);
    pools.push(r.pool);
    predicted.push(...r.predicted);
    dims = { ...dims, layers: r.layers, heads: r.heads, tokens: r.tokens };
  }
  const perImage = dims.layers * dims.heads * dims.tokens * dims.tokens;
  const attention = new Float32Array(indices.length * perImage);
  let off = 0;
  for (const p of parts) {
    attention.set(p, off);
    off += p.length;
  }

  const pool = new Float32Array(indices.length * dims.tokens);
  pools.reduce((at, p) => {
    pool.set(p, at);
    return at + p.length;
  }, 0);
  const patches = dims.tokens - (dims.classToken ? 1 : 0);
  const rollout = new Float32Array(indices.length * patches);
  const cells: GridCell[] = [];
  const per = info.imageSize * info.imageSize * info.channels;
  const misclassified: boolean[] = [];
  indices.forEach((idx, k) => {
    const r = rolloutMask(attention.subarray(k * perImage, (k + 1) * perImage), dims, {
      method: s.method,
      headFusion: s.head_fusion,
      discardRatio: s.discard_ratio,
      upsample: s.upsample,
      imageSize: info.imageSize,
      // The class token's row is the one-hot case of the pooled read-out; it keeps its exact path.
      pool: dims.classToken ? undefined : pool.subarray(k * dims.tokens, (k + 1) * dims.tokens),
      tokenizer: cfg.tokenizer === 'conv' ? { kind: 'conv', layers: cfg.convLayers } : { kind: 'patch' },
    });
    rollout.set(r.raw, k * patches);
    const label = test.labels[idx];
    const wrong = predicted[k] !== label;
    misclassified.push(wrong);
    const pixels = test.images.slice(idx * per, (idx + 1) * per);
    const colour = wrong ? '#c62828' : '#2e7d32';
    const size = { width: info.imageSize, height: info.imageSize };
    cells.push(
      {
        pixels,
        ...size,
        caption: `pred ${info.classes[predicted[k]]}\ntrue ${info.classes[label]}`,
        captionColor: colour,
        border: colour,
      },
      { pixels: heatmapPixels(r.mask, s.colormap), ...size, caption: 'rollout' },
      { pixels: maskedPixels(pixels, r.mask), ...size, caption: 'image × mask' },
    );
  });

  ctx.progress({ message: `writing ${rolloutPicture.file} and dumps` });
  const png = await renderGrid(cells, {
    columns: 3 * Math.min(s.columns, indices.length),
    scale: s.scale,
    title: `Attention rollout (${s.method}, heads ${s.head_fusion}, discard ${s.discard_ratio})`,
  });
  await writeFile(join(outDir, rolloutPicture.file), png);
  await writeNpy(join(outDir, ATTENTION_FILE), attention, [
    indices.length,
    dims.layers,
    dims.heads,
    dims.tokens,
    dims.tokens,
  ]);
  await writeNpy(join(outDir, ROLLOUT_FILE), rollout, [indices.length, patches]);
  const meta = {
    method: s.method,
    head_fusion: s.head_fusion,
    discard_ratio: s.discard_ratio,
    upsample: s.upsample,
    readout: readoutWords(cfg),
    checkpoint: s.checkpoint,
    indices,
    true_labels: indices.map((i) => test.labels[i]),
    predicted_labels: predicted,
    misclassified,
    classes: info.classes,
    attention_shape: [indices.length, dims.layers, dims.heads, dims.tokens, dims.tokens],
    rollout_shape: [indices.length, patches],
  };
  await writeFile(join(outDir, META_FILE), `${JSON.stringify(meta, null, 2)}\n`);
  return { images: indices.length, misclassified: misclassified.filter(Boolean).length };
}

/** The report's note on how the maps were made and how many images are wrong. */
async function rolloutNotes(u: UpstreamArtefacts): Promise<SectionContent> {
  const file = join(u.dir, META_FILE);
  if (!existsSync(file)) return {};
  const meta = JSON.parse(await readFile(file, 'utf8')) as JsonObject;
  const wrong = Array.isArray(meta.misclassified) ? meta.misclassified.filter((v) => v === true).length : undefined;
  const n = Array.isArray(meta.indices) ? meta.indices.length : undefined;
  const notes = [
    `Method ${String(meta.method)}, head fusion ${String(meta.head_fusion)}, discard ratio ${String(meta.discard_ratio)}, upsampling ${String(meta.upsample)}.`,
  ];
  if (typeof meta.readout === 'string') notes.push(meta.readout);
  if (n !== undefined && wrong !== undefined)
    notes.push(`${n} test images, ${wrong} misclassified (red captions and borders).`);
  return { notes };
}

export const stage: StageKind<AttentionRolloutSettings> = {
  kind: 'attention_rollout',
  version: 1,
  description:
    'Attention rollout of the trained ViT on test images: picture grid plus raw attention/rollout .npy dumps',
  schema: readSchema('attention_rollout'),
  requires: ['train', 'cifar10', 'augmentation'],
  usesTensorflow: true,
  writes: {
    files: {
      [ATTENTION_FILE]:
        "float32 [images, layers, heads, tokens, tokens]: every block's post-softmax attention (NumPy .npy)",
      [ROLLOUT_FILE]:
        "float32 [images, patches]: the class token's rollout over the patches, before upsampling (NumPy .npy)",
      [META_FILE]: 'method and settings, test image indices, true and predicted labels, class names, array shapes',
    },
    report: [
      { section: 'rollout', title: 'Attention rollout', order: 60, pictures: [rolloutPicture], content: rolloutNotes },
    ],
  },
  run: (ctx) =>
    withTrainedModel(ctx, ctx.settings.checkpoint, ctx.settings.batch_size, (m) =>
      writeRollout(m, ctx.settings, ctx.seed, ctx.outDir, ctx),
    ),
};
