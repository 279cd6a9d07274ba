// The kernels a model stage runs the ViT on: runtime.kernels resolved for this model and batch
// (and, on the GPU, precision), logged, shared by train, evaluate and attention_rollout.
import { join } from 'node:path';
import type { KernelDecision } from '../../ml/vit/choose-kernels.js';
import type { VitConfig } from '../../ml/vit/config.js';
import type { Precision } from '../../ml/vit/gpu.js';
import type { StageContext } from '../../stage-kind/types.js';

export async function stageKernels(
  ctx: StageContext<unknown>,
  cfg: VitConfig,
  batch: number,
  purpose: 'train' | 'infer',
  precision: Precision = 'fp32',
): Promise<KernelDecision> {
  // Loaded here, not at start-up: it brings tfjs, which commands that run no model never need.
  const { chooseKernels } = await import('../../ml/vit/choose-kernels.js');
  const decision = await chooseKernels({
    request: ctx.runtime.kernels ?? 'auto',
    cfg,
    batch,
    purpose,
    precision,
    cacheDir: join(ctx.cacheDir, 'kernels'),
  });
  ctx.log(`kernels: ${decision.detail}`);
  return decision;
}
