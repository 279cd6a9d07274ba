// What the stages that run a trained ViT on the test split (evaluate, attention_rollout) start
// from: the train upstream's chosen checkpoint, the kernels to run it on, the test split and the
// augmenter whose eval() prepares its images.
import type { Augmenter } from '../../ml/augment/index.js';
import { loadSplit, type DataInfo, type Split } from '../../ml/dataset.js';
import type { Kernels, Vit } from '../../ml/vit/index.js';
import { stageKernels } from './kernels.js';
import { type Checkpoint, checkpointDir } from '../train.js';
import { upstreamOfKind, type StageContext } from '../../stage-kind/types.js';
import { upstreamData } from './upstream-data.js';

export interface TrainedModel {
  model: Vit;
  kernels: Kernels;
  augmenter: Augmenter;
  test: Split;
  info: DataInfo;
}

/** Load the checkpoint, choose inference kernels for `batchSize`, run `use`, and free the model after. */
export async function withTrainedModel<T>(
  ctx: StageContext<unknown>,
  checkpoint: Checkpoint,
  batchSize: number,
  use: (m: TrainedModel) => T | Promise<T>,
): Promise<T> {
  const { loadCheckpoint } = await import('../../ml/vit/checkpoint.js');
  const train = upstreamOfKind(ctx, 'train');
  const { dir, info, augmenter } = await upstreamData(ctx);
  const test = await loadSplit(dir, 'test');
  const model = await loadCheckpoint(checkpointDir(train.dir, checkpoint));
  try {
    const { kernels } = await stageKernels(ctx, model.config, batchSize, 'infer');
    return await use({ model, kernels, augmenter, test, info });
  } finally {
    model.dispose();
  }
}
