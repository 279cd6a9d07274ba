// kind: cifar10 — the data stage: CIFAR-10 downloaded or read locally, verified, split into
// train/val/test, normalisation statistics, compact uint8 splits (see src/ml/dataset.ts).
import { writeFile } from '../cache/atomic.js';
import { join } from 'node:path';
import { readSchema } from '../ground/paths.js';
import { DownloadError, isUrl } from '../ml/cifar10/download.js';
import { DATA_INFO_FILE, splitFiles, SPLITS } from '../ml/dataset.js';
import type { Cifar10Settings } from './settings.js';
import type { Picture, StageKind } from '../stage-kind/types.js';

const samples: Picture = { file: 'samples.png', title: 'CIFAR-10 samples' };

export const stage: StageKind<Cifar10Settings> = {
  kind: 'cifar10',
  version: 1,
  description: 'CIFAR-10: download or read, verify md5s, split train/val/test, channel statistics, samples.png',
  schema: readSchema('cifar10'),
  writes: {
    files: {
      [DATA_INFO_FILE]:
        'class names, image size, channels, per-channel mean/std, image count per split (DataInfo in src/ml/dataset.ts)',
      ...Object.fromEntries(
        SPLITS.flatMap((split) => [
          [splitFiles(split).images, `${split} images: N x 32 x 32 x 3 bytes, NHWC, RGB, no header`],
          [splitFiles(split).labels, `${split} labels: N bytes, class ids 0..9`],
        ]),
      ),
    },
    report: [{ section: 'data', title: 'Data', order: 10, pictures: [samples] }],
  },
  async run(ctx) {
    const [{ prepareCifar10 }, { renderSamples }] = await Promise.all([
      import('../ml/cifar10/prepare.js'),
      import('../ml/cifar10/samples.js'),
    ]);
    const s = ctx.settings;
    const source = isUrl(s.source) ? s.source : ctx.resolveInput(s.source);
    const { info, splits } = await prepareCifar10({
      source,
      md5: s.md5 ?? undefined,
      validationFraction: s.validation_fraction,
      limitTrain: s.limit_train ?? undefined,
      limitVal: s.limit_val ?? undefined,
      limitTest: s.limit_test ?? undefined,
      statsOver: s.stats_over,
      seed: ctx.seed,
      cacheDir: ctx.cacheDir,
      outDir: ctx.outDir,
      signal: ctx.signal,
      progress: (message, fraction) => ctx.progress({ message, fraction }),
    }).catch((err: unknown) => {
      if (!(err instanceof DownloadError)) throw err;
      throw new Error(
        `${err.message}. Offline? Fetch the file elsewhere and give the local copy: --set ${ctx.name}.source=PATH/cifar-10-binary.tar.gz`,
      );
    });
    ctx.progress({ message: `rendering ${samples.file}` });
    await writeFile(
      join(ctx.outDir, samples.file),
      await renderSamples(splits.train, info.classes, s.samples_per_class),
    );
    ctx.log(
      `cifar10: ${info.counts.train} train, ${info.counts.val} val, ${info.counts.test} test; mean ${info.mean.map((m) => m.toFixed(4)).join(', ')}`,
    );
    return { counts: info.counts, mean: info.mean, std: info.std, stats_over: s.stats_over, classes: info.classes };
  },
};
