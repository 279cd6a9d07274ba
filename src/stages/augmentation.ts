// kind: augmentation — the training-time augmentation ops. Training builds its augmenter from this
// stage's resolved `ops` (createAugmenter); this stage checks them against the data and draws
// preview.png and patches.png.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { readSchema } from '../paths.js';
import { createAugmenter } from '../ml/augment/index.js';
import { renderPatches, renderPreview } from '../ml/augment/preview.js';
import { loadSplit, readDataInfo } from '../ml/dataset.js';
import type { AugmentationSettings } from './settings.js';
import { upstreamOfKind, type StageKind } from './types.js';

export const stage: StageKind<AugmentationSettings> = {
  kind: 'augmentation',
  version: 1,
  description: 'Training-time augmentation ops (flip, crops, RandAugment, erasing, mixup/cutmix, normalize); preview.png, patches.png',
  schema: readSchema('augmentation'),
  requires: ['cifar10'],
  usesTensorflow: true,
  async run(ctx) {
    const s = ctx.settings;
    const data = upstreamOfKind(ctx, 'cifar10');
    const info = await readDataInfo(data.dir);
    if (info.imageSize % s.preview_patch_size !== 0) {
      throw new Error(`preview_patch_size ${s.preview_patch_size} does not divide the image size ${info.imageSize}`);
    }
    // createAugmenter rejects inconsistent ops (normalize with mean but no std, mixup + cutmix p > 1).
    const aug = createAugmenter(s.ops, info);
    const train = await loadSplit(data.dir, 'train');
    const batch = { ...train, imageSize: info.imageSize, channels: info.channels };
    ctx.progress({ message: 'rendering preview.png' });
    await writeFile(
      join(ctx.outDir, 'preview.png'),
      await renderPreview(aug, batch, info.classes, { images: s.preview_images, versions: s.preview_versions, seed: ctx.seed }),
    );
    ctx.progress({ message: 'rendering patches.png' });
    await writeFile(join(ctx.outDir, 'patches.png'), await renderPatches(aug, batch, info.classes, { patch: s.preview_patch_size, seed: ctx.seed }));
    ctx.log(`augmentation: ${aug.ops.map((o) => o.op).join(' -> ')} (backend ${tf.getBackend()})`);
    return {
      ops: aug.ops.map((o) => o.op),
      normalization: aug.normalization ?? null,
    };
  },
};
