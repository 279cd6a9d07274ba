// The ViT's parameters and dropout sites, written once for TypeScript. Everything else derives
// from here: the Vit's variables and their order (model.ts), the Layers-model weights of
// checkpoints (layers.ts), the dropout site numbers (vit.ts), and the check of what the native
// kernels expect: native.ts compares the addon's names and dropout sites with nativeLayout() and
// its shapes (native/src/layout.cc, the C++ side's one description) with parameterSpecs() on
// every config of LAYOUT_PROBES, and refuses the addon at load when anything differs.
import { completeConfig, convLayerChannels, type FullVitConfig, tokenCount, type VitConfig } from './config.js';

export type Init = { kind: 'normal' } | { kind: 'uniform'; bound: number } | { kind: 'ones' } | { kind: 'zeros' };

export interface ParamDef<K extends string> {
  /** Property name in code, e.g. params.blocks[i].toQ. */
  key: K;
  /** Weight name inside its layer; the stable name is "<layer>/<name>", e.g. "block_0/attn/to_q". */
  name: string;
  shape: (c: FullVitConfig) => number[];
  init: (c: FullVitConfig) => Init;
  /** Whether a model of this config has the parameter (absent: always). */
  when?: (c: FullVitConfig) => boolean;
}

const def = <K extends string>(
  key: K,
  name: string,
  shape: ParamDef<K>['shape'],
  init: ParamDef<K>['init'],
  when?: ParamDef<K>['when'],
): ParamDef<K> => ({
  key,
  name,
  shape,
  init,
  when,
});
const patchDim = (c: VitConfig) => tokenCount(c).patchDim;
const inner = (c: VitConfig) => c.heads * c.dimHead;
// PyTorch's nn.Linear and nn.Conv2d default: weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
const fanIn =
  (f: (c: FullVitConfig) => number) =>
  (c: FullVitConfig): Init => ({ kind: 'uniform', bound: 1 / Math.sqrt(f(c)) });
const normal = (): Init => ({ kind: 'normal' });
const ones = (): Init => ({ kind: 'ones' });
const zeros = (): Init => ({ kind: 'zeros' });
const dim = (c: VitConfig) => c.dim;
const mlp = (c: VitConfig) => c.mlpDim;
const patchTokens = (c: FullVitConfig) => c.tokenizer === 'patch';
/** The most conv tokenizer layers a config may ask for (each halves the image). */
export const MAX_CONV_LAYERS = 4;
/** Conv tokenizer layer l: a 3x3 kernel [3, 3, in, out] (HWIO, as tf.conv2d), no bias (as CCT). */
const convDef = (l: number) =>
  def(
    `conv${l}` as `conv${0 | 1 | 2 | 3}`,
    `conv_${l}/kernel`,
    (c) => {
      const { cin, cout } = convLayerChannels(c, l);
      return [3, 3, cin, cout];
    },
    fanIn((c) => 9 * convLayerChannels(c, l).cin),
    (c) => c.tokenizer === 'conv' && l < c.convLayers,
  );

/** Layer "embedding": images -> tokens. Which of these a model has depends on its config (`when`). */
export const STEM_PARAMS = [
  def('patchW', 'patch/kernel', (c) => [patchDim(c), c.dim], fanIn(patchDim), patchTokens),
  def('patchB', 'patch/bias', (c) => [c.dim], fanIn(patchDim), patchTokens),
  convDef(0),
  convDef(1),
  convDef(2),
  convDef(3),
  def(
    'clsToken',
    'cls_token',
    (c) => [1, c.dim],
    normal,
    (c) => c.pool === 'cls',
  ),
  def(
    'posEmbedding',
    'pos_embedding',
    (c) => [tokenCount(c).tokens, c.dim],
    normal,
    (c) => c.posEmbedding === 'learned',
  ),
] as const;

/** Layers "block_<i>": one pre-LN transformer block each. */
export const BLOCK_PARAMS = [
  def('attnNormGamma', 'attn_norm/gamma', (c) => [c.dim], ones),
  def('attnNormBeta', 'attn_norm/beta', (c) => [c.dim], zeros),
  def('toQ', 'attn/to_q', (c) => [c.dim, inner(c)], fanIn(dim)),
  def('toK', 'attn/to_k', (c) => [c.dim, inner(c)], fanIn(dim)),
  def('toV', 'attn/to_v', (c) => [c.dim, inner(c)], fanIn(dim)),
  def('toOutW', 'attn/to_out/kernel', (c) => [inner(c), c.dim], fanIn(inner)),
  def('toOutB', 'attn/to_out/bias', (c) => [c.dim], fanIn(inner)),
  def('mlpNormGamma', 'mlp_norm/gamma', (c) => [c.dim], ones),
  def('mlpNormBeta', 'mlp_norm/beta', (c) => [c.dim], zeros),
  def('fc1W', 'mlp/fc1/kernel', (c) => [c.dim, c.mlpDim], fanIn(dim)),
  def('fc1B', 'mlp/fc1/bias', (c) => [c.mlpDim], fanIn(dim)),
  def('fc2W', 'mlp/fc2/kernel', (c) => [c.mlpDim, c.dim], fanIn(mlp)),
  def('fc2B', 'mlp/fc2/bias', (c) => [c.dim], fanIn(mlp)),
] as const;

/** Layer "head": tokens -> pooled vector (class token, mean, or sequence pooling) -> LayerNorm -> logits. */
export const HEAD_PARAMS = [
  def(
    'poolW',
    'pool/kernel',
    (c) => [c.dim, 1],
    fanIn(dim),
    (c) => c.pool === 'seq',
  ),
  def(
    'poolB',
    'pool/bias',
    () => [1],
    fanIn(dim),
    (c) => c.pool === 'seq',
  ),
  def('headNormGamma', 'norm/gamma', (c) => [c.dim], ones),
  def('headNormBeta', 'norm/beta', (c) => [c.dim], zeros),
  def('headW', 'kernel', (c) => [c.dim, c.classes], fanIn(dim)),
  def('headB', 'bias', (c) => [c.classes], fanIn(dim)),
] as const;

export const STEM_LAYER = 'embedding';
export const HEAD_LAYER = 'head';
export const blockLayer = (i: number): string => `block_${i}`;

export type StemKey = (typeof STEM_PARAMS)[number]['key'];
export type BlockKey = (typeof BLOCK_PARAMS)[number]['key'];
export type HeadKey = (typeof HEAD_PARAMS)[number]['key'];
export type BlockParams<T> = Record<BlockKey, T>;
/** Stem and head parameters a config may lack are undefined there (see `when`). */
export type StemParams<T> = Partial<Record<StemKey, T>>;
export type HeadParams<T> = Record<Exclude<HeadKey, 'poolW' | 'poolB'>, T> & Partial<Record<'poolW' | 'poolB', T>>;
/** Every parameter of a ViT, by role. */
export type VitParams<T> = StemParams<T> & HeadParams<T> & { blocks: BlockParams<T>[] };

export interface ParamSpec {
  name: string;
  shape: number[];
  init: Init;
}

/** The definitions of a list that a model of this config has, in list order. */
export function presentParams<D extends ParamDef<string>>(defs: readonly D[], cfg: VitConfig): D[] {
  const full = completeConfig(cfg);
  return defs.filter((d) => !d.when || d.when(full));
}

/** Every parameter in model order (stem, blocks, head), with its stable name, shape and initialiser. */
export function parameterSpecs(cfg: VitConfig): ParamSpec[] {
  const full = completeConfig(cfg);
  const spec =
    (layer: string) =>
    (p: ParamDef<string>): ParamSpec => ({ name: `${layer}/${p.name}`, shape: p.shape(full), init: p.init(full) });
  return [
    ...presentParams(STEM_PARAMS, full).map(spec(STEM_LAYER)),
    ...Array.from({ length: cfg.depth }, (_, i) => BLOCK_PARAMS.map(spec(blockLayer(i)))).flat(),
    ...presentParams(HEAD_PARAMS, full).map(spec(HEAD_LAYER)),
  ];
}

function byKey<K extends string, T>(defs: readonly ParamDef<K>[], values: T[]): Record<K, T> {
  return Object.fromEntries(defs.map((d, i) => [d.key, values[i]])) as Record<K, T>;
}

/** The role-keyed view of values given in model order (as parameterSpecs lists them). */
export function groupParams<T>(values: T[], cfg: VitConfig): VitParams<T> {
  const stem = presentParams(STEM_PARAMS, cfg);
  const head = presentParams(HEAD_PARAMS, cfg);
  const nb = BLOCK_PARAMS.length;
  const expected = stem.length + cfg.depth * nb + head.length;
  if (values.length !== expected) throw new Error(`internal: ${values.length} ViT parameters, expected ${expected}`);
  const headStart = stem.length + cfg.depth * nb;
  return {
    ...byKey(stem, values.slice(0, stem.length)),
    blocks: Array.from({ length: cfg.depth }, (_, i) =>
      byKey(BLOCK_PARAMS, values.slice(stem.length + i * nb, stem.length + (i + 1) * nb)),
    ),
    ...(byKey(head, values.slice(headStart)) as HeadParams<T>),
  };
}

// Dropout sites. Each draws its own mask from (seed, site, element); the native kernels use the
// same numbers, so both paths drop the same elements.
export const EMBEDDING_DROPOUT_SITE = 0;
/** Per block, in this order: attention weights, attention output, MLP hidden, MLP output. */
export const BLOCK_DROPOUT_SITES = ['attn/weights', 'attn/out', 'mlp/hidden', 'mlp/out'] as const;
export type BlockDropoutSite = (typeof BLOCK_DROPOUT_SITES)[number];

export function dropoutSite(block: number, site: BlockDropoutSite): number {
  return EMBEDDING_DROPOUT_SITE + 1 + BLOCK_DROPOUT_SITES.length * block + BLOCK_DROPOUT_SITES.indexOf(site);
}

/** The layout as the native addon reports it (names within layers, dropout site numbering). */
export interface NativeLayout {
  stem: string[];
  block: string[];
  head: string[];
  blockDropoutSites: string[];
  embeddingDropoutSite: number;
}

/** What the native kernels must report to be used. */
export function nativeLayout(): NativeLayout {
  return {
    stem: STEM_PARAMS.map((p) => `${STEM_LAYER}/${p.name}`),
    block: BLOCK_PARAMS.map((p) => p.name),
    head: HEAD_PARAMS.map((p) => `${HEAD_LAYER}/${p.name}`),
    blockDropoutSites: [...BLOCK_DROPOUT_SITES],
    embeddingDropoutSite: EMBEDDING_DROPOUT_SITE,
  };
}

/** Null when `reported` is the layout tfpipe expects, else what differs first. */
export function layoutMismatch(reported: Partial<NativeLayout> | undefined): string | null {
  const want = nativeLayout();
  if (!reported) return 'the addon reports no parameter layout';
  for (const part of ['stem', 'block', 'head', 'blockDropoutSites'] as const) {
    const got = reported[part] ?? [];
    for (let i = 0; i < Math.max(got.length, want[part].length); i++) {
      if (got[i] !== want[part][i]) {
        return `${part}[${i}] is ${got[i] === undefined ? 'missing' : `"${got[i]}"`} in the addon, "${want[part][i] ?? '(nothing)'}" in tfpipe`;
      }
    }
  }
  if (reported.embeddingDropoutSite !== want.embeddingDropoutSite) {
    return `embedding dropout site is ${reported.embeddingDropoutSite} in the addon, ${want.embeddingDropoutSite} in tfpipe`;
  }
  return null;
}

/**
 * The configs the shapes are compared on at load. In the first, every size it gives a parameter
 * (1, dim 7, mlpDim 13, 17 tokens, 19 classes, heads x dimHead 22, 45 patch values) differs from
 * every other, so the addon's shapes can only equal tfpipe's if every formula does, transposes
 * included. The second takes the other branches: a 3-layer conv tokenizer (5 -> 6 -> 6 -> 12
 * channels on a 16 -> 2 grid), sequence pooling (no class token), no learned positions.
 */
export const LAYOUT_PROBE: VitConfig = {
  imageSize: 12,
  channels: 5,
  classes: 19,
  patchSize: 3,
  dim: 7,
  depth: 2,
  heads: 2,
  dimHead: 11,
  mlpDim: 13,
  dropout: 0,
};
export const LAYOUT_PROBES: readonly VitConfig[] = [
  LAYOUT_PROBE,
  {
    imageSize: 16,
    channels: 5,
    classes: 19,
    patchSize: 3,
    dim: 12,
    depth: 1,
    heads: 2,
    dimHead: 11,
    mlpDim: 13,
    dropout: 0,
    tokenizer: 'conv',
    convLayers: 3,
    convChannels: 6,
    pool: 'seq',
    posEmbedding: 'sincos',
  },
];

/** Null when `reported` (the addon's shapes for `probe`, in model order) are tfpipe's, else the first difference. */
export function shapeMismatch(
  reported: readonly (readonly number[])[] | undefined,
  probe: VitConfig = LAYOUT_PROBE,
): string | null {
  if (!reported) return 'the addon reports no parameter shapes';
  const want = parameterSpecs(probe);
  if (reported.length !== want.length)
    return `the addon has ${reported.length} weight arrays for a depth-${probe.depth} model, tfpipe ${want.length}`;
  for (const [i, spec] of want.entries()) {
    const got = reported[i];
    if (got.length !== spec.shape.length || got.some((d, k) => d !== spec.shape[k]))
      return `the shape of ${spec.name} is [${got.join(', ')}] in the addon, [${spec.shape.join(', ')}] in tfpipe`;
  }
  return null;
}
