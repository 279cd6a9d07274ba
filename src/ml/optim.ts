// Adam, AdamW and SGD with momentum, with torch's semantics, a learning rate given per step, and
// state that can be saved and restored exactly (resume must end where an uninterrupted run ends).
import * as tf from '@tensorflow/tfjs';

/**
 * What the optimizer reads. The train kind hands over its `optimizer` settings
 * (schemas/train.schema.json), which the compiler checks against this shape.
 */
export interface OptimizerSettings {
  name: 'adam' | 'adamw' | 'sgd';
  lr: number;
  /** Decoupled for adamw, coupled L2 for adam and sgd; weight matrices only (decays()). */
  weight_decay: number;
  /** sgd only. */
  momentum: number;
  /** adam and adamw. */
  betas: [number, number];
  eps: number;
}

export interface OptimizerState {
  step: number;
  /** Slot tensors' values in a fixed order (m then v per variable for Adam; momentum for SGD). */
  slots: Float32Array[];
}

/**
 * Weight decay applies to weight matrices only: biases, LayerNorm scales, the class token and the
 * position embedding are left alone, the usual choice for transformers.
 */
export function decays(name: string, shape: readonly number[]): boolean {
  return shape.length >= 2 && !/cls_token|pos_embedding/.test(name);
}

export class Optimizer {
  private stepCount = 0;
  private readonly slots: tf.Variable[][];

  constructor(
    readonly settings: OptimizerSettings,
    private readonly variables: tf.Variable[],
    private readonly names: string[],
  ) {
    const perVar = settings.name === 'sgd' ? 1 : 2;
    // tf.variable keeps its own reference to the data: the zeros tensor itself must go.
    this.slots = variables.map((v) =>
      Array.from({ length: perVar }, () => tf.tidy(() => tf.variable(tf.zerosLike(v), false))),
    );
  }

  get step(): number {
    return this.stepCount;
  }

  /** One update with learning rate `lr`; grads keyed by variable name. Does not dispose grads. */
  apply(grads: tf.NamedTensorMap, lr: number): void {
    const s = this.settings;
    this.stepCount += 1;
    const t = this.stepCount;
    const [b1, b2] = s.betas;
    this.variables.forEach((v, i) => {
      const g0 = grads[v.name];
      if (!g0) throw new Error(`no gradient for ${this.names[i]}`);
      const wd = decays(this.names[i], v.shape) ? s.weight_decay : 0;
      tf.tidy(() => {
        let g: tf.Tensor = g0;
        if (wd > 0 && s.name !== 'adamw') g = tf.add(g, tf.mul(v, wd)); // coupled L2, as torch Adam/SGD
        let w: tf.Tensor = v;
        if (wd > 0 && s.name === 'adamw') w = tf.mul(v, 1 - lr * wd); // decoupled, as torch AdamW
        if (s.name === 'sgd') {
          const buf = this.slots[i][0];
          const next = s.momentum > 0 ? (t === 1 ? g : tf.add(tf.mul(buf, s.momentum), g)) : g;
          if (s.momentum > 0) buf.assign(next);
          v.assign(tf.sub(w, tf.mul(next, lr)));
          return;
        }
        const [m, vv] = this.slots[i];
        const m1 = tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1));
        const v1 = tf.add(tf.mul(vv, b2), tf.mul(tf.square(g), 1 - b2));
        m.assign(m1);
        vv.assign(v1);
        const mHat = tf.div(m1, 1 - b1 ** t);
        const vHat = tf.div(v1, 1 - b2 ** t);
        v.assign(tf.sub(w, tf.mul(tf.div(mHat, tf.add(tf.sqrt(vHat), s.eps)), lr)));
      });
    });
  }

  getState(): OptimizerState {
    return { step: this.stepCount, slots: this.slots.flat().map((s) => s.dataSync() as Float32Array) };
  }

  setState(state: OptimizerState): void {
    const flat = this.slots.flat();
    if (state.slots.length !== flat.length)
      throw new Error(`optimizer state has ${state.slots.length} slots, expected ${flat.length}`);
    tf.tidy(() =>
      flat.forEach((s, i) => {
        s.assign(tf.tensor(state.slots[i], s.shape, 'float32'));
      }),
    );
    this.stepCount = state.step;
  }

  dispose(): void {
    for (const s of this.slots.flat()) s.dispose();
  }
}
