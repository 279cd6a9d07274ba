// What the model-consuming stages (train, evaluate, attention_rollout) read from their cifar10
// and augmentation upstreams: the data folder, its data.json, and the augmenter built from the
// augmentation stage's resolved ops (train uses its random ops, the others only eval()).
import type { Augmenter } from '../../ml/augment/index.js';
import { readDataInfo, type DataInfo } from '../../ml/dataset.js';
import type { AugmentationSettings } from '../settings.js';
import { upstreamOfKind, type StageContext } from '../../stage-kind/types.js';

export interface UpstreamData {
  dir: string;
  info: DataInfo;
  augmenter: Augmenter;
}

export async function upstreamData(ctx: StageContext<unknown>): Promise<UpstreamData> {
  const { createAugmenter } = await import('../../ml/augment/index.js');
  const data = upstreamOfKind(ctx, 'cifar10');
  const aug = upstreamOfKind(ctx, 'augmentation');
  const info = await readDataInfo(data.dir);
  return {
    dir: data.dir,
    info,
    augmenter: createAugmenter((aug.settings as unknown as AugmentationSettings).ops, info),
  };
}
