/** The MLP's nonlinearity: exact GELU, x Φ(x) (PyTorch's nn.GELU()), or its tanh approximation. */
export type Activation = 'gelu' | 'gelu_tanh';
export const ACTIVATIONS: readonly Activation[] = ['gelu', 'gelu_tanh'];
/** Images -> tokens: a linear embedding of p x p patches (ViT), or conv 3x3 + ReLU + max-pool layers (CCT). */
export type Tokenizer = 'patch' | 'conv';
export const TOKENIZERS: readonly Tokenizer[] = ['patch', 'conv'];
/** What the head reads: the class token, the mean of the tokens, or their attention-weighted mean (CCT's sequence pooling). */
export type Pool = 'cls' | 'mean' | 'seq';
export const POOLS: readonly Pool[] = ['cls', 'mean', 'seq'];
/** Position embedding added to the tokens: learned, fixed 2-D sin-cos, or none. */
export type PosEmbedding = 'learned' | 'sincos' | 'none';
export const POS_EMBEDDINGS: readonly PosEmbedding[] = ['learned', 'sincos', 'none'];

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
  // The fields below are absent in checkpoints written before they existed, which were all a
  // patch tokenizer, a class token and learned positions.
  tokenizer?: Tokenizer;
  /** conv tokenizer: number of conv + pool layers; each halves the grid (32 -> 8 with 2). */
  convLayers?: number;
  /** conv tokenizer: output channels of every conv layer but the last (which gives dim). */
  convChannels?: number;
  pool?: Pool;
  posEmbedding?: PosEmbedding;
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
  return {
    ...cfg,
    activation: cfg.activation ?? 'gelu_tanh',
    tokenizer: cfg.tokenizer ?? 'patch',
    convLayers: cfg.convLayers ?? 2,
    convChannels: cfg.convChannels ?? 64,
    pool: cfg.pool ?? 'cls',
    posEmbedding: cfg.posEmbedding ?? 'learned',
  };
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

/**
 * The token grid's side, the number of image tokens N (grid²), the tokens T the blocks see (N + 1
 * with a class token, else N), and the values per patch of a patch tokenizer.
 */
export function tokenCount(cfg: VitConfig): { grid: number; patches: number; tokens: number; patchDim: number } {
  const conv = (cfg.tokenizer ?? 'patch') === 'conv';
  const grid = conv ? cfg.imageSize / 2 ** (cfg.convLayers ?? 2) : cfg.imageSize / cfg.patchSize;
  const cls = (cfg.pool ?? 'cls') === 'cls' ? 1 : 0;
  return {
    grid,
    patches: grid * grid,
    tokens: grid * grid + cls,
    patchDim: cfg.channels * cfg.patchSize * cfg.patchSize,
  };
}

/** Channels in and out of conv tokenizer layer l (the last gives dim). */
export function convLayerChannels(cfg: FullVitConfig, l: number): { cin: number; cout: number } {
  return {
    cin: l === 0 ? cfg.channels : cfg.convChannels,
    cout: l === cfg.convLayers - 1 ? cfg.dim : cfg.convChannels,
  };
}

/** Throws a readable error for a configuration that cannot build a model. */
export function validateConfig(cfg: VitConfig): void {
  for (const key of SHAPE_FIELDS) {
    const v = cfg[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
      throw new Error(`ViT ${key} must be a positive integer, got ${v}`);
  }
  const full = completeConfig(cfg);
  if (full.tokenizer === 'patch' && cfg.imageSize % cfg.patchSize !== 0) {
    throw new Error(`ViT patch size ${cfg.patchSize} must divide the image size ${cfg.imageSize}`);
  }
  if (!TOKENIZERS.includes(full.tokenizer))
    throw new Error(`ViT tokenizer must be one of ${TOKENIZERS.join(', ')}, got ${full.tokenizer}`);
  if (!POOLS.includes(full.pool)) throw new Error(`ViT pool must be one of ${POOLS.join(', ')}, got ${full.pool}`);
  if (!POS_EMBEDDINGS.includes(full.posEmbedding)) {
    throw new Error(`ViT position embedding must be one of ${POS_EMBEDDINGS.join(', ')}, got ${full.posEmbedding}`);
  }
  if (full.tokenizer === 'conv') {
    for (const key of ['convLayers', 'convChannels'] as const) {
      const v = full[key];
      if (!Number.isInteger(v) || v < 1) throw new Error(`ViT ${key} must be a positive integer, got ${v}`);
    }
    if (cfg.imageSize % 2 ** full.convLayers !== 0) {
      throw new Error(
        `ViT conv tokenizer: ${full.convLayers} layers halve the image ${full.convLayers} times; ${cfg.imageSize} is not divisible by ${2 ** full.convLayers}`,
      );
    }
  }
  if (full.posEmbedding === 'sincos' && cfg.dim % 4 !== 0) {
    throw new Error(`ViT sin-cos position embedding needs dim divisible by 4, got ${cfg.dim}`);
  }
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) throw new Error(`ViT dropout must be in [0, 1), got ${cfg.dropout}`);
  if (cfg.activation !== undefined && !ACTIVATIONS.includes(cfg.activation)) {
    throw new Error(`ViT activation must be one of ${ACTIVATIONS.join(', ')}, got ${cfg.activation}`);
  }
}

/**
 * The fixed 2-D sin-cos position embedding of a grid x grid token grid, [grid², dim] row-major, in
 * token order (row-major over the grid). With w = dim / 4 and ω_i = 10000^(-i / w), the token at
 * (row y, column x) gets sin(x ω_i), cos(x ω_i), sin(y ω_i), cos(y ω_i) in four blocks of w.
 * Computed in double and rounded once, as native/src/layers.h does (MAE's get_2d_sincos_pos_embed,
 * with the column first).
 */
export function sincosPositions(grid: number, dim: number): Float32Array {
  const w = dim / 4;
  const out = new Float32Array(grid * grid * dim);
  for (let y = 0; y < grid; y++)
    for (let x = 0; x < grid; x++) {
      const row = (y * grid + x) * dim;
      for (let i = 0; i < w; i++) {
        const omega = Math.pow(10000, -i / w);
        out[row + i] = Math.sin(x * omega);
        out[row + w + i] = Math.cos(x * omega);
        out[row + 2 * w + i] = Math.sin(y * omega);
        out[row + 3 * w + i] = Math.cos(y * omega);
      }
    }
  return out;
}
