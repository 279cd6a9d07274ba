/** Hyper-parameters of a ViT (names as in the ViT paper and lucidrains/vit-pytorch). */
export interface VitConfig {
  imageSize: number;
  channels: number;
  classes: number;
  patchSize: number;
  dim: number;
  depth: number;
  heads: number;
  dimHead: number;
  mlpDim: number;
  dropout: number;
}

/** Number of patches N and tokens T = 1 + N (the class token). */
export function tokenCount(cfg: VitConfig): { patches: number; tokens: number; patchDim: number } {
  const grid = cfg.imageSize / cfg.patchSize;
  return { patches: grid * grid, tokens: grid * grid + 1, patchDim: cfg.channels * cfg.patchSize * cfg.patchSize };
}

/** Throws a readable error for a configuration that cannot build a model. */
export function validateConfig(cfg: VitConfig): void {
  const positive: (keyof VitConfig)[] = ['imageSize', 'channels', 'classes', 'patchSize', 'dim', 'depth', 'heads', 'dimHead', 'mlpDim'];
  for (const key of positive) {
    const v = cfg[key];
    if (!Number.isInteger(v) || v < 1) throw new Error(`ViT ${key} must be a positive integer, got ${v}`);
  }
  if (cfg.imageSize % cfg.patchSize !== 0) {
    throw new Error(`ViT patch size ${cfg.patchSize} must divide the image size ${cfg.imageSize}`);
  }
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) throw new Error(`ViT dropout must be in [0, 1), got ${cfg.dropout}`);
}
