// kind: augmentation — the training-time augmentation ops. Training builds its augmenter from this
// stage's resolved `ops` (createAugmenter); this stage checks them against the data and draws
// preview.png and patches.png.
import { writeFile } from '../cache/atomic.js';
import { join } from 'node:path';
import { readSchema } from '../ground/paths.js';
import { loadSplit, readDataInfo } from '../ml/dataset.js';
import type { AugmentationSettings } from './settings.js';
import { upstreamOfKind, type Picture, type StageKind } from '../stage-kind/types.js';

const preview: Picture = {
  file: 'preview.png',
  title: 'Augmentation preview',
  caption: 'training-time augmentation applied to a batch',
};
const patches: Picture = {
  file: 'patches.png',
  title: 'Patches',
  caption: 'the same images cut into the patch grid the ViT sees',
};

export const stage: StageKind<AugmentationSettings> = {
  kind: 'augmentation',
  version: 1,
  description:
    'Training-time augmentation ops (flip, crops, RandAugment, erasing, mixup/cutmix, normalize); preview.png, patches.png',
  schema: readSchema('augmentation'),
  requires: ['cifar10'],
  usesTensorflow: true,
  writes: {
    // Training reads this stage's resolved `ops` setting, not a file.
    files: {},
    report: [{ section: 'augmentation', title: 'Augmentation and patches', order: 20, pictures: [preview, patches] }],
  },
  async run(ctx) {
    const [tf, { createAugmenter }, { renderPatches, renderPreview }] = await Promise.all([
      import('@tensorflow/tfjs'),
      import('../ml/augment/index.js'),
      import('../ml/augment/preview.js'),
    ]);
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
    ctx.progress({ message: `rendering ${preview.file}` });
    await writeFile(
      join(ctx.outDir, preview.file),
      await renderPreview(aug, batch, info.classes, {
        images: s.preview_images,
        versions: s.preview_versions,
        seed: ctx.seed,
      }),
    );
    ctx.progress({ message: `rendering ${patches.file}` });
    await writeFile(
      join(ctx.outDir, patches.file),
      await renderPatches(aug, batch, info.classes, { patch: s.preview_patch_size, seed: ctx.seed }),
    );
    ctx.log(`augmentation: ${aug.ops.map((o) => o.op).join(' -> ')} (backend ${tf.getBackend()})`);
    return {
      ops: aug.ops.map((o) => o.op),
      normalization: aug.normalization ?? null,
    };
  },
};
