// kind: evaluate — test accuracy of the chosen checkpoint, per class, confusion matrix, prediction grid.
import { writeFile } from '../cache/atomic.js';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createRng, deriveSeed } from '../ml/rng.js';
import { readSchema } from '../ground/paths.js';
import type { EvaluateSettings } from './settings.js';
import { withTrainedModel } from './shared/trained-model.js';
import type { Picture, SectionContent, StageContext, StageKind, UpstreamArtefacts } from '../stage-kind/types.js';
import type { JsonObject } from '../ground/json.js';

const TEST_METRICS_FILE = 'metrics.json';
const predictionsPicture: Picture = { file: 'predictions.png', title: 'Predictions on test images' };
const confusionPicture: Picture = { file: 'confusion.png', title: 'Confusion matrix' };

/** What metrics.json holds. */
interface TestMetrics {
  checkpoint: EvaluateSettings['checkpoint'];
  test_images: number;
  test_accuracy: number;
  test_loss: number;
  /** Class name -> accuracy, in class order. */
  per_class_accuracy: Record<string, number>;
  confusion: number[][];
}

/** Accuracy per class and the confusion matrix (rows: true class, columns: predicted). */
export function confusion(
  labels: ArrayLike<number>,
  predictions: ArrayLike<number>,
  classes: number,
): { matrix: number[][]; perClass: number[] } {
  const matrix = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  for (let i = 0; i < labels.length; i++) matrix[labels[i]][predictions[i]] += 1;
  const perClass = matrix.map((row, c) => {
    const total = row.reduce((a, b) => a + b, 0);
    return total ? row[c] / total : 0;
  });
  return { matrix, perClass };
}

async function evaluate(ctx: StageContext<EvaluateSettings>): Promise<JsonObject> {
  const [{ evaluateSplit }, { confusionPng }, { renderGrid }] = await Promise.all([
    import('../ml/evaluation.js'),
    import('../render/confusion.js'),
    import('../render/image-grid.js'),
  ]);
  const s = ctx.settings;
  const { test, info, result } = await withTrainedModel(ctx, s.checkpoint, s.batch_size, (m) => ({
    test: m.test,
    info: m.info,
    result: evaluateSplit(m.model, m.augmenter, m.test, {
      batchSize: s.batch_size,
      imageSize: m.info.imageSize,
      channels: m.info.channels,
      kernels: m.kernels,
      onBatch: (done) =>
        ctx.progress({ message: `test images ${done}/${m.test.count}`, fraction: done / m.test.count }),
    }),
  }));
  const { matrix, perClass } = confusion(test.labels, result.predictions, info.classes.length);
  const metrics: TestMetrics = {
    checkpoint: s.checkpoint,
    test_images: test.count,
    test_accuracy: result.accuracy,
    test_loss: result.loss,
    per_class_accuracy: Object.fromEntries(info.classes.map((c, i) => [c, perClass[i]])),
    confusion: matrix,
  };
  await writeFile(join(ctx.outDir, TEST_METRICS_FILE), `${JSON.stringify(metrics, null, 2)}\n`);
  await writeFile(join(ctx.outDir, confusionPicture.file), await confusionPng(matrix, info.classes));

  const pick = createRng(deriveSeed(ctx.seed, 'evaluate-grid'))
    .permutation(test.count)
    .slice(0, Math.min(s.grid_images, test.count));
  const per = info.imageSize * info.imageSize * info.channels;
  const cells = Array.from(pick, (i) => {
    const ok = result.predictions[i] === test.labels[i];
    return {
      pixels: test.images.subarray(i * per, (i + 1) * per),
      width: info.imageSize,
      height: info.imageSize,
      caption: `${info.classes[result.predictions[i]]}\n(${ok ? 'correct' : `true: ${info.classes[test.labels[i]]}`})`,
      captionColor: ok ? '#1a7f37' : '#cf222e',
      border: ok ? '#1a7f37' : '#cf222e',
    };
  });
  const title = `Predictions on test images (${(result.accuracy * 100).toFixed(2)}% test accuracy; red = wrong)`;
  await writeFile(
    join(ctx.outDir, predictionsPicture.file),
    await renderGrid(cells, { columns: s.grid_columns, scale: 3, title }),
  );
  ctx.log(`test accuracy ${(result.accuracy * 100).toFixed(2)}% on ${test.count} images (${s.checkpoint} checkpoint)`);
  return { test_accuracy: result.accuracy, test_loss: result.loss, test_images: test.count };
}

/** The report's headline: test accuracy, per class, confusion matrix. */
async function evaluationOf(u: UpstreamArtefacts): Promise<SectionContent> {
  const file = join(u.dir, TEST_METRICS_FILE);
  if (!existsSync(file)) return {};
  const m = JSON.parse(await readFile(file, 'utf8')) as Partial<TestMetrics>;
  if (typeof m.test_accuracy !== 'number') return {};
  const confusion = Array.isArray(m.confusion) ? m.confusion : undefined;
  return {
    evaluation: { testAccuracy: m.test_accuracy, perClass: Object.entries(m.per_class_accuracy ?? {}), confusion },
  };
}

export const stage: StageKind<EvaluateSettings> = {
  kind: 'evaluate',
  version: 1,
  description: 'Test accuracy, per-class accuracy, confusion matrix and prediction grid of a trained model.',
  schema: readSchema('evaluate'),
  usesTensorflow: true,
  requires: ['train', 'cifar10', 'augmentation'],
  headline: ['test_accuracy'],
  writes: {
    files: {
      [TEST_METRICS_FILE]:
        'checkpoint, test images, test accuracy and loss, accuracy per class, confusion matrix (rows: true class)',
    },
    report: [
      { section: 'evaluation', title: 'Evaluation', order: 5, content: evaluationOf },
      { section: 'predictions', title: 'Predictions', order: 50, pictures: [predictionsPicture, confusionPicture] },
    ],
  },
  run: evaluate,
};
