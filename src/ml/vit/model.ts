// The ViT's trainable state: tf.Variables for the parameters of layout.ts.
import * as tf from '@tensorflow/tfjs';
import { completeConfig, type FullVitConfig, validateConfig, type VitConfig } from './config.js';
import { groupParams, parameterSpecs, type VitParams } from './layout.js';

let instances = 0;

/** A ViT's trainable state. `names[i]` is the stable name of `variables[i]` (used in checkpoints). */
export class Vit {
  /** The config, every field filled (completeConfig): the model's boundary. */
  readonly config: FullVitConfig;
  /** Trainable variables in model order (layout.ts); their tf names are unique per instance. */
  readonly variables: tf.Variable[];
  /** Stable parameter names, e.g. "block_0/attn/to_q", aligned with `variables` (= checkpoint weight names). */
  readonly names: string[];
  readonly params: VitParams<tf.Variable>;
  private disposed = false;
  private readonly disposers: (() => void)[] = [];

  constructor(config: VitConfig, values: Map<string, tf.Tensor>) {
    validateConfig(config);
    this.config = completeConfig({ ...config });
    const prefix = `vit${instances++}/`;
    const specs = parameterSpecs(config);
    this.names = specs.map((s) => s.name);
    this.variables = specs.map((spec) => {
      const value = values.get(spec.name);
      if (!value) throw new Error(`ViT parameter "${spec.name}" is missing`);
      if (value.shape.join(',') !== spec.shape.join(',')) {
        throw new Error(`ViT parameter "${spec.name}" has shape [${value.shape}], expected [${spec.shape}]`);
      }
      return tf.variable(value, true, prefix + spec.name, 'float32');
    });
    this.params = groupParams(this.variables, config);
  }

  /** tf variable name (unique per instance) -> stable parameter name. */
  stableName(variableName: string): string {
    const i = this.variables.findIndex((v) => v.name === variableName);
    if (i < 0) throw new Error(`variable ${variableName} does not belong to this ViT`);
    return this.names[i];
  }

  /** Runs `fn` when the model is disposed (e.g. to free a copy of its weights on the GPU). */
  onDispose(fn: () => void): void {
    this.disposers.push(fn);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const fn of this.disposers.splice(0)) fn();
    for (const v of this.variables) v.dispose();
  }
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

/** A ViT holding copies of `weights` (model order, as Vit.variables), e.g. an average of another's. */
export function vitWithWeights(cfg: VitConfig, weights: readonly Float32Array[]): Vit {
  const specs = parameterSpecs(cfg);
  if (weights.length !== specs.length)
    throw new Error(`${weights.length} weight arrays for ${specs.length} parameters`);
  // Copies: tfjs's CPU backend keeps the array it is given, and the caller's may change later.
  const values = new Map(specs.map((spec, i) => [spec.name, tf.tensor(weights[i].slice(), spec.shape, 'float32')]));
  try {
    return new Vit(cfg, values);
  } finally {
    for (const t of values.values()) t.dispose();
  }
}
