// One training step of the ViT, split as the train stage times it: gradients, then the optimizer
// update. On the tfjs kernels that is computeGradients plus the tfjs Optimizer (src/ml/optim.ts).
// On the native kernels both run in the addon on plain arrays: the gradients never become
// tensors and the update needs no tfjs op per parameter (~1,000 per step otherwise), only the new
// weights are written back to the model's variables. Both keep the same OptimizerState, so a run
// can resume on either.
import * as tf from '@tensorflow/tfjs';
import { decays, Optimizer, type OptimizerSettings, type OptimizerState } from '../optim.js';
import { computeGradients, float32, type GradientOptions, type Kernels } from './kernels.js';
import type { Vit } from './model.js';
import { nativeOptimize, nativeRun } from './native.js';

/** Plain Adam at 1e-3 (torch defaults), for timing steps. */
export const ADAM: OptimizerSettings = {
  name: 'adam',
  lr: 1e-3,
  weight_decay: 0,
  momentum: 0,
  betas: [0.9, 0.999],
  eps: 1e-8,
};

export interface Trainer {
  /** Loss and correct count of one batch; keeps its gradients for update(). */
  gradients(x: tf.Tensor4D, targets: tf.Tensor2D, opts: GradientOptions): { loss: number; correct: number };
  /** Applies the kept gradients with learning rate lr. */
  update(lr: number): void;
  getState(): OptimizerState;
  setState(state: OptimizerState): void;
  dispose(): void;
}

export function createTrainer(model: Vit, kernels: Kernels, settings: OptimizerSettings): Trainer {
  return kernels.path === 'native'
    ? new NativeTrainer(model, kernels.isa, settings)
    : new TfjsTrainer(model, kernels, settings);
}

class TfjsTrainer implements Trainer {
  private readonly optimizer: Optimizer;
  private grads: tf.NamedTensorMap | undefined;

  constructor(
    private readonly model: Vit,
    private readonly kernels: Kernels,
    settings: OptimizerSettings,
  ) {
    this.optimizer = new Optimizer(settings, model.variables, model.names);
  }

  gradients(x: tf.Tensor4D, targets: tf.Tensor2D, opts: GradientOptions): { loss: number; correct: number } {
    this.dropGrads();
    const r = computeGradients(this.model, x, targets, opts, this.kernels);
    this.grads = r.grads;
    return { loss: r.loss, correct: r.correct };
  }

  update(lr: number): void {
    if (!this.grads) throw new Error('update() before gradients()');
    this.optimizer.apply(this.grads, lr);
    this.dropGrads();
  }

  getState(): OptimizerState {
    return this.optimizer.getState();
  }

  setState(state: OptimizerState): void {
    this.optimizer.setState(state);
  }

  dispose(): void {
    this.dropGrads();
    this.optimizer.dispose();
  }

  private dropGrads(): void {
    if (this.grads) tf.dispose(this.grads);
    this.grads = undefined;
  }
}

class NativeTrainer implements Trainer {
  private step = 0;
  private slots: Float32Array[];
  private readonly decays: Uint8Array;
  private pending: { weights: Float32Array[]; grads: Float32Array[] } | undefined;

  constructor(
    private readonly model: Vit,
    private readonly isa: string,
    private readonly settings: OptimizerSettings,
  ) {
    const per = settings.name === 'sgd' ? 1 : 2;
    this.slots = model.variables.flatMap((v) => Array.from({ length: per }, () => new Float32Array(v.size)));
    this.decays = Uint8Array.from(model.variables, (v, i) => (decays(model.names[i], v.shape) ? 1 : 0));
  }

  gradients(x: tf.Tensor4D, targets: tf.Tensor2D, opts: GradientOptions): { loss: number; correct: number } {
    // Copies: the update writes into them before they go back to the variables.
    const weights = this.model.variables.map((v) => Float32Array.from(v.dataSync() as Float32Array));
    const r = nativeRun(this.isa, this.model.config, weights, float32(x), x.shape[0], float32(targets), opts.seed, {
      clipNorm: opts.gradClipNorm ?? 0,
    });
    this.pending = { weights, grads: r.grads as Float32Array[] };
    return { loss: r.loss as number, correct: r.correct as number };
  }

  update(lr: number): void {
    if (!this.pending) throw new Error('update() before gradients()');
    const s = this.settings;
    this.step += 1;
    const { weights, grads } = this.pending;
    nativeOptimize(
      {
        name: s.name,
        lr,
        beta1: s.betas[0],
        beta2: s.betas[1],
        eps: s.eps,
        weightDecay: s.weight_decay,
        momentum: s.momentum,
        step: this.step,
      },
      weights,
      grads,
      this.slots,
      this.decays,
    );
    tf.tidy(() =>
      this.model.variables.forEach((v, i) => {
        v.assign(tf.tensor(weights[i], v.shape, 'float32'));
      }),
    );
    this.pending = undefined;
  }

  getState(): OptimizerState {
    return { step: this.step, slots: this.slots.map((s) => s.slice()) };
  }

  setState(state: OptimizerState): void {
    if (state.slots.length !== this.slots.length)
      throw new Error(`optimizer state has ${state.slots.length} slots, expected ${this.slots.length}`);
    state.slots.forEach((s, i) => {
      if (s.length !== this.slots[i].length)
        throw new Error(`optimizer slot ${i} has ${s.length} values, expected ${this.slots[i].length}`);
    });
    this.slots = state.slots.map((s) => Float32Array.from(s));
    this.step = state.step;
  }

  dispose(): void {
    this.pending = undefined;
  }
}
