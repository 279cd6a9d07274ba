// One training step of the ViT, split as the train stage times it: gradients, then the optimizer
// update. On the tfjs kernels that is computeGradients plus the tfjs Optimizer (src/ml/optim.ts).
// On the native kernels both run in the addon on plain arrays: the gradients never become
// tensors and the update needs no tfjs op per parameter (~1,000 per step otherwise), only the new
// weights are written back to the model's variables. The CPU and GPU trainers hand the
// optimizer's constant settings to the addon once; an update passes the learning rate and step. On the GPU (CudaTrainer) weights, gradients
// and optimizer state stay there: a step sends the batch and gets the metrics, and the weights
// come back to the model's variables only when syncModel() asks (validation, checkpoints). All
// keep the same OptimizerState, so a run can resume on any of them.
import * as tf from '@tensorflow/tfjs';
import { decays, Optimizer, type OptimizerSettings, type OptimizerState } from '../optim.js';
import { GpuModel, gpuOptimizerSettings, setTrainedCopy, type Precision } from './gpu.js';
import { computeGradients, float32, type GradientOptions, type Kernels } from './kernels.js';
import type { Vit } from './model.js';
import { NativeOptimizer, nativeRun } from './native.js';

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
  /**
   * Brings the model's variables up to date with the trainer's weights, where it keeps them
   * elsewhere (the GPU); call before reading the model (validation, checkpoints). A no-op for the
   * trainers that update the variables themselves.
   */
  syncModel(): void;
  /** The trained weights after the last update, model order, to read only (what train's EMA averages). */
  weights(): Float32Array[];
  /** How many steps apart weights() is worth reading: 1 where it costs little next to a step. */
  readonly weightsEvery: number;
  getState(): OptimizerState;
  setState(state: OptimizerState): void;
  dispose(): void;
}

/**
 * A trainer for `model` on `kernels`. `batch` is the largest batch a step will take (the GPU
 * allocates for it; a larger one later moves the model to a larger allocation).
 */
export function createTrainer(
  model: Vit,
  kernels: Kernels,
  settings: OptimizerSettings,
  opts: { batch?: number } = {},
): Trainer {
  if (kernels.path === 'cuda') return new CudaTrainer(model, kernels, settings, opts.batch ?? 1);
  return kernels.path === 'native'
    ? new NativeTrainer(model, kernels.isa, settings)
    : new TfjsTrainer(model, kernels, settings);
}

/** Weight decay per weight (decays() of optim.ts), as the addon takes it. */
function decayFlags(model: Vit): Uint8Array {
  return Uint8Array.from(model.variables, (v, i) => (decays(model.names[i], v.shape) ? 1 : 0));
}

/** The model's variables as arrays (the backend's own where it has them: to read only). */
function variableWeights(model: Vit): Float32Array[] {
  return model.variables.map((v) => v.dataSync() as Float32Array);
}

/** Throws unless `state` has the slots (count and sizes) of `expected`. */
function checkState(state: OptimizerState, expected: { length: number }[]): void {
  if (state.slots.length !== expected.length)
    throw new Error(`optimizer state has ${state.slots.length} slots, expected ${expected.length}`);
  state.slots.forEach((s, i) => {
    if (s.length !== expected[i].length)
      throw new Error(`optimizer slot ${i} has ${s.length} values, expected ${expected[i].length}`);
  });
}

class TfjsTrainer implements Trainer {
  readonly weightsEvery = 1;
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

  syncModel(): void {}

  weights(): Float32Array[] {
    return variableWeights(this.model);
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
  readonly weightsEvery = 1;
  private step = 0;
  private slots: Float32Array[];
  /** The addon's optimizer: the constant settings and the decays went over once. */
  private readonly optimizer: NativeOptimizer;
  private pending: { weights: Float32Array[]; grads: Float32Array[] } | undefined;

  constructor(
    private readonly model: Vit,
    private readonly isa: string,
    settings: OptimizerSettings,
  ) {
    const per = settings.name === 'sgd' ? 1 : 2;
    this.slots = model.variables.flatMap((v) => Array.from({ length: per }, () => new Float32Array(v.size)));
    this.optimizer = new NativeOptimizer(settings, decayFlags(model));
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
    this.step += 1;
    const { weights, grads } = this.pending;
    this.optimizer.update(lr, this.step, weights, grads, this.slots);
    tf.tidy(() =>
      this.model.variables.forEach((v, i) => {
        v.assign(tf.tensor(weights[i], v.shape, 'float32'));
      }),
    );
    this.pending = undefined;
  }

  syncModel(): void {}

  weights(): Float32Array[] {
    return variableWeights(this.model);
  }

  getState(): OptimizerState {
    return { step: this.step, slots: this.slots.map((s) => s.slice()) };
  }

  setState(state: OptimizerState): void {
    checkState(state, this.slots);
    this.slots = state.slots.map((s) => Float32Array.from(s));
    this.step = state.step;
  }

  dispose(): void {
    this.pending = undefined;
  }
}

/**
 * Training on the GPU: the model's weights, gradients and optimizer state live on the GPU
 * (GpuModel); a step uploads the batch and returns loss and correct count, an update runs there,
 * and the model's variables are written only by syncModel(). While it lives, inference on the GPU
 * (predict, forward) uses its copy of the weights.
 */
class CudaTrainer implements Trainer {
  /**
   * Reading the weights back stalls the GPU: for cifar-vit.yaml (6 M weights) the copy and a pass
   * over them on the CPU take longer than its ~7 ms bf16 step, so they are read every 32 steps.
   */
  readonly weightsEvery = 32;
  private gpu: GpuModel;
  private step = 0;
  private pending = false;
  /** The GPU's weights are newer than the model's variables. */
  private ahead = false;
  private readonly decays: Uint8Array;

  constructor(
    private readonly model: Vit,
    private readonly on: { precision: Precision; host?: boolean },
    private readonly settings: OptimizerSettings,
    batch: number,
  ) {
    this.decays = decayFlags(model);
    this.gpu = this.open(batch);
  }

  /** A GPU copy for batches up to `batch`: the model's weights and fresh state, or `from`'s. */
  private open(batch: number, from?: GpuModel): GpuModel {
    const gpu = new GpuModel(this.model.config, { batch, precision: this.on.precision, host: this.on.host });
    try {
      gpu.setWeights(from ? from.getWeights() : this.model.variables.map((v) => v.dataSync() as Float32Array));
      gpu.setOptimizer(gpuOptimizerSettings(this.settings), this.decays);
      if (from) gpu.setSlots(from.getSlots());
    } catch (err) {
      gpu.release();
      throw err;
    }
    setTrainedCopy(this.model, gpu);
    return gpu;
  }

  gradients(x: tf.Tensor4D, targets: tf.Tensor2D, opts: GradientOptions): { loss: number; correct: number } {
    const batch = x.shape[0];
    if (batch > this.gpu.maxBatch) {
      const old = this.gpu;
      this.gpu = this.open(batch, old);
      old.release();
    }
    const r = this.gpu.step(float32(x), float32(targets), batch, opts.seed, opts.gradClipNorm ?? 0);
    this.pending = true;
    return { loss: r.loss, correct: r.correct };
  }

  update(lr: number): void {
    if (!this.pending) throw new Error('update() before gradients()');
    this.step += 1;
    this.gpu.update(lr, this.step);
    this.pending = false;
    this.ahead = true;
  }

  syncModel(): void {
    if (!this.ahead) return;
    const weights = this.gpu.getWeights();
    tf.tidy(() =>
      this.model.variables.forEach((v, i) => {
        v.assign(tf.tensor(weights[i], v.shape, 'float32'));
      }),
    );
    this.ahead = false;
  }

  weights(): Float32Array[] {
    return this.gpu.getWeights();
  }

  getState(): OptimizerState {
    return { step: this.step, slots: this.gpu.getSlots() };
  }

  setState(state: OptimizerState): void {
    const per = this.settings.name === 'sgd' ? 1 : 2;
    checkState(
      state,
      this.model.variables.flatMap((v) => Array.from({ length: per }, () => ({ length: v.size }))),
    );
    this.gpu.setSlots(state.slots);
    this.step = state.step;
  }

  dispose(): void {
    setTrainedCopy(this.model, undefined);
    this.gpu.release();
    this.pending = false;
  }
}
