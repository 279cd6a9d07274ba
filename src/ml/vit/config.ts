/** The MLP's nonlinearity: exact GELU, x Φ(x) (PyTorch's nn.GELU()), or its tanh approximation. */
export type Activation = 'gelu' | 'gelu_tanh';
export const ACTIVATIONS: readonly Activation[] = ['gelu', 'gelu_tanh'];

/**
 * Hyper-parameters of a ViT (names as in the ViT paper and lucidrains/vit-pytorch), as written: by
 * the vit kind (from its settings, defaults applied), in a checkpoint, or in code.
 */
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
  /** Absent in checkpoints written before the setting existed, which all used gelu_tanh. */
  activation?: Activation;
}

/** A config with every field filled: what the model, the kernels and the addon read. */
export type FullVitConfig = Required<VitConfig>;

/**
 * The config with what an absent field means filled in: configs and checkpoints from before the
 * activation setting used gelu_tanh. Called where a config enters (the Vit and its layers, the
 * addon, the kernel choice, a checkpoint read), so that nothing further in reads a gap. (A
 * pipeline's activation comes from schemas/vit.schema.json, which has its own default.)
 */
export function completeConfig<C extends VitConfig>(cfg: C): C & FullVitConfig {
  return { ...cfg, activation: cfg.activation ?? 'gelu_tanh' };
}

/** The fields that fix the model's shape: whole numbers ≥ 1, in declaration order. */
export const SHAPE_FIELDS = [
  'imageSize',
  'channels',
  'classes',
  'patchSize',
  'dim',
  'depth',
  'heads',
  'dimHead',
  'mlpDim',
] as const satisfies readonly (keyof VitConfig)[];

/** Number of patches N and tokens T = 1 + N (the class token). */
export function tokenCount(cfg: VitConfig): { patches: number; tokens: number; patchDim: number } {
  const grid = cfg.imageSize / cfg.patchSize;
  return { patches: grid * grid, tokens: grid * grid + 1, patchDim: cfg.channels * cfg.patchSize * cfg.patchSize };
}

/** Throws a readable error for a configuration that cannot build a model. */
export function validateConfig(cfg: VitConfig): void {
  for (const key of SHAPE_FIELDS) {
    const v = cfg[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
      throw new Error(`ViT ${key} must be a positive integer, got ${v}`);
  }
  if (cfg.imageSize % cfg.patchSize !== 0) {
    throw new Error(`ViT patch size ${cfg.patchSize} must divide the image size ${cfg.imageSize}`);
  }
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) throw new Error(`ViT dropout must be in [0, 1), got ${cfg.dropout}`);
  if (cfg.activation !== undefined && !ACTIVATIONS.includes(cfg.activation)) {
    throw new Error(`ViT activation must be one of ${ACTIVATIONS.join(', ')}, got ${cfg.activation}`);
  }
}
