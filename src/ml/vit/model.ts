// The ViT's parameters: what exists, how it is initialised, how it is named.
import * as tf from '@tensorflow/tfjs';
import { tokenCount, validateConfig, type VitConfig } from './config.js';

export interface BlockParams {
  attnNormGamma: tf.Variable; // [dim]
  attnNormBeta: tf.Variable; // [dim]
  toQ: tf.Variable; // [dim, heads*dimHead], no bias
  toK: tf.Variable; // [dim, heads*dimHead], no bias
  toV: tf.Variable; // [dim, heads*dimHead], no bias
  toOutW: tf.Variable; // [heads*dimHead, dim]
  toOutB: tf.Variable; // [dim]
  mlpNormGamma: tf.Variable; // [dim]
  mlpNormBeta: tf.Variable; // [dim]
  fc1W: tf.Variable; // [dim, mlpDim]
  fc1B: tf.Variable; // [mlpDim]
  fc2W: tf.Variable; // [mlpDim, dim]
  fc2B: tf.Variable; // [dim]
}

export interface VitParams {
  patchW: tf.Variable; // [channels*p*p, dim]
  patchB: tf.Variable; // [dim]
  clsToken: tf.Variable; // [1, dim]
  posEmbedding: tf.Variable; // [1 + N, dim]
  blocks: BlockParams[];
  headNormGamma: tf.Variable; // [dim]
  headNormBeta: tf.Variable; // [dim]
  headW: tf.Variable; // [dim, classes]
  headB: tf.Variable; // [classes]
}

type Init = { kind: 'normal' } | { kind: 'uniform'; bound: number } | { kind: 'ones' } | { kind: 'zeros' };

interface ParamSpec {
  name: string;
  shape: number[];
  init: Init;
}

let instances = 0;

/** A ViT's trainable state. `names[i]` is the stable name of `variables[i]` (used in checkpoints). */
export class Vit {
  readonly config: VitConfig;
  /** Trainable variables in a fixed order; their tf names are unique per instance. */
  readonly variables: tf.Variable[];
  /** Stable parameter names, e.g. "block_0/attn/to_q", aligned with `variables` (= checkpoint weight names). */
  readonly names: string[];
  readonly params: VitParams;
  private disposed = false;

  constructor(config: VitConfig, values: Map<string, tf.Tensor>) {
    validateConfig(config);
    this.config = { ...config };
    const prefix = `vit${instances++}/`;
    const specs = parameterSpecs(config);
    const byName = new Map<string, tf.Variable>();
    for (const spec of specs) {
      const value = values.get(spec.name);
      if (!value) throw new Error(`ViT parameter "${spec.name}" is missing`);
      if (value.shape.join(',') !== spec.shape.join(',')) {
        throw new Error(`ViT parameter "${spec.name}" has shape [${value.shape}], expected [${spec.shape}]`);
      }
      byName.set(spec.name, tf.variable(value, true, prefix + spec.name, 'float32'));
    }
    this.names = specs.map((s) => s.name);
    this.variables = this.names.map((n) => byName.get(n) as tf.Variable);
    const v = (n: string): tf.Variable => byName.get(n) as tf.Variable;
    this.params = {
      patchW: v('embedding/patch/kernel'),
      patchB: v('embedding/patch/bias'),
      clsToken: v('embedding/cls_token'),
      posEmbedding: v('embedding/pos_embedding'),
      blocks: Array.from({ length: config.depth }, (_, i) => {
        const b = `block_${i}/`;
        return {
          attnNormGamma: v(b + 'attn_norm/gamma'),
          attnNormBeta: v(b + 'attn_norm/beta'),
          toQ: v(b + 'attn/to_q'),
          toK: v(b + 'attn/to_k'),
          toV: v(b + 'attn/to_v'),
          toOutW: v(b + 'attn/to_out/kernel'),
          toOutB: v(b + 'attn/to_out/bias'),
          mlpNormGamma: v(b + 'mlp_norm/gamma'),
          mlpNormBeta: v(b + 'mlp_norm/beta'),
          fc1W: v(b + 'mlp/fc1/kernel'),
          fc1B: v(b + 'mlp/fc1/bias'),
          fc2W: v(b + 'mlp/fc2/kernel'),
          fc2B: v(b + 'mlp/fc2/bias'),
        };
      }),
      headNormGamma: v('head/norm/gamma'),
      headNormBeta: v('head/norm/beta'),
      headW: v('head/kernel'),
      headB: v('head/bias'),
    };
  }

  /** tf variable name (unique per instance) -> stable parameter name. */
  stableName(variableName: string): string {
    const i = this.variables.findIndex((v) => v.name === variableName);
    if (i < 0) throw new Error(`variable ${variableName} does not belong to this ViT`);
    return this.names[i];
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of this.variables) v.dispose();
  }
}

/** Every parameter in model order, with its shape and initialiser. */
export function parameterSpecs(cfg: VitConfig): ParamSpec[] {
  const { tokens, patchDim } = tokenCount(cfg);
  const inner = cfg.heads * cfg.dimHead;
  // PyTorch's nn.Linear default: weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  const lin = (name: string, fanIn: number, fanOut: number, bias: boolean): ParamSpec[] => {
    const u: Init = { kind: 'uniform', bound: 1 / Math.sqrt(fanIn) };
    const w = { name: bias ? `${name}/kernel` : name, shape: [fanIn, fanOut], init: u };
    return bias ? [w, { name: `${name}/bias`, shape: [fanOut], init: u }] : [w];
  };
  const norm = (name: string): ParamSpec[] => [
    { name: `${name}/gamma`, shape: [cfg.dim], init: { kind: 'ones' } },
    { name: `${name}/beta`, shape: [cfg.dim], init: { kind: 'zeros' } },
  ];
  const specs: ParamSpec[] = [
    ...lin('embedding/patch', patchDim, cfg.dim, true),
    { name: 'embedding/cls_token', shape: [1, cfg.dim], init: { kind: 'normal' } },
    { name: 'embedding/pos_embedding', shape: [tokens, cfg.dim], init: { kind: 'normal' } },
  ];
  for (let i = 0; i < cfg.depth; i++) {
    const b = `block_${i}/`;
    specs.push(
      ...norm(b + 'attn_norm'),
      ...lin(b + 'attn/to_q', cfg.dim, inner, false),
      ...lin(b + 'attn/to_k', cfg.dim, inner, false),
      ...lin(b + 'attn/to_v', cfg.dim, inner, false),
      ...lin(b + 'attn/to_out', inner, cfg.dim, true),
      ...norm(b + 'mlp_norm'),
      ...lin(b + 'mlp/fc1', cfg.dim, cfg.mlpDim, true),
      ...lin(b + 'mlp/fc2', cfg.mlpDim, cfg.dim, true),
    );
  }
  specs.push(...norm('head/norm'), ...lin('head', cfg.dim, cfg.classes, true));
  return specs;
}

/** A freshly initialised ViT; the same seed gives the same weights on every backend. */
export function createVit(cfg: VitConfig, seed: number): Vit {
  validateConfig(cfg);
  const values = new Map<string, tf.Tensor>();
  parameterSpecs(cfg).forEach((spec, i) => {
    const s = seed * 1009 + i; // one stream per parameter, stable when others are added later
    const init = spec.init;
    const t =
      init.kind === 'normal'
        ? tf.randomNormal(spec.shape, 0, 1, 'float32', s)
        : init.kind === 'uniform'
          ? tf.randomUniform(spec.shape, -init.bound, init.bound, 'float32', s)
          : init.kind === 'ones'
            ? tf.ones(spec.shape)
            : tf.zeros(spec.shape);
    values.set(spec.name, t);
  });
  try {
    return new Vit(cfg, values);
  } finally {
    for (const t of values.values()) t.dispose();
  }
}

/** Parameter names, shapes and counts in model order. */
export function parameterTable(model: Vit): { name: string; shape: number[]; count: number }[] {
  return model.variables.map((v, i) => ({ name: model.names[i], shape: [...v.shape], count: v.size }));
}
