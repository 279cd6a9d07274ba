// The GPU path: the ViT of native/cuda/ (CUDA kernels, matrix products through cuBLASLt), reached
// through the same addon as the CPU kernels (native/src/addon_gpu.cc). A model lives on the GPU
// behind a handle: weights, gradients and optimizer state stay there between steps, batches go up
// and metrics come down. This module says whether the GPU can run here and why not, wraps the
// handle (GpuModel), and keeps track of which copy of a model's weights is the newest.
// TFPIPE_CUDA=0 hides the GPU; TFPIPE_CUDA=host stands the host executor in for it (the GPU path's
// code end to end without a GPU, slowly: tests); TFPIPE_CUBLASLT names the cuBLASLt library to load.
import { completeConfig, type VitConfig } from './config.js';
import type { Vit } from './model.js';
import {
  nativeConfig,
  nativeModule,
  type NativeConfig,
  type OptimizerConstants,
  optimizerConstants,
} from './native.js';

/** How the matrix products treat fp32: exactly, on TF32 tensor cores, or on bf16 tensor cores (fp32 sums). */
export type Precision = 'fp32' | 'tf32' | 'bf16';
export const PRECISIONS: readonly Precision[] = ['fp32', 'tf32', 'bf16'];

/** The CUDA device and cuBLASLt as the addon found them (strings are null when unknown). */
export interface GpuInfo {
  /** A kernel ran on the device and cuBLASLt loaded and started. */
  ok: boolean;
  /** Why not: the device's problem first, else cuBLASLt's. */
  error: string | null;
  /** This addon was built with the CUDA kernels (nvcc was found). */
  cudaBuild: boolean;
  name: string | null;
  /** e.g. "9.0". */
  computeCapability: string | null;
  sms: number;
  memoryBytes: number;
  /** The CUDA versions of the driver and of the runtime built in, e.g. "13.0". */
  driver: string | null;
  runtime: string | null;
  /** The cuBLASLt file loaded and its version, e.g. "13.1.0". */
  cublasLt: string | null;
  cublasLtVersion: string | null;
  /** Why cuBLASLt did not load or start, with every place it looked. */
  cublasLtError: string | null;
}

declare const handleBrand: unique symbol;
/** A model on the executor (an N-API external); freed by GpuModel.release() or when collected. */
export type GpuHandle = { readonly [handleBrand]: true };

/** The optimizer's constant settings as the addon reads them (lr and step go with each update). */
export type GpuOptimizerSettings = OptimizerConstants;

export interface GpuStepResult {
  loss: number;
  correct: number;
  /** Global L2 norm of the gradients before clipping. */
  gradNorm: number;
}

/** The addon's GPU functions (native/src/addon_gpu.cc). */
export interface GpuAddon {
  gpuInfo(): GpuInfo;
  gpuCreate(config: NativeConfig, opts?: { precision?: Precision; host?: HostExecutor }): GpuHandle;
  gpuRelease(h: GpuHandle): void;
  gpuSetWeights(h: GpuHandle, weights: Float32Array[]): void;
  gpuGetWeights(h: GpuHandle): Float32Array[];
  gpuGetGrads(h: GpuHandle): Float32Array[];
  gpuSetOptimizer(h: GpuHandle, settings: GpuOptimizerSettings, decays: Uint8Array): void;
  gpuSetSlots(h: GpuHandle, slots: Float32Array[]): void;
  gpuGetSlots(h: GpuHandle): Float32Array[];
  gpuStep(
    h: GpuHandle,
    images: Float32Array,
    targets: Float32Array,
    batch: number,
    seed: number,
    clipNorm: number,
  ): GpuStepResult;
  gpuUpdate(h: GpuHandle, lr: number, step: number): void;
  gpuForward(
    h: GpuHandle,
    images: Float32Array,
    n: number,
    wantAttention: boolean,
  ): { logits: Float32Array; attention?: Float32Array };
}

/** The addon's GPU functions, or why there are none. */
export function gpuAddon(): { addon: GpuAddon } | { error: string } {
  const m = nativeModule();
  if ('error' in m) return { error: `the native addon is ${m.error}` };
  const a = m.addon as Partial<GpuAddon>;
  if (typeof a.gpuInfo !== 'function' || typeof a.gpuCreate !== 'function')
    return { error: 'the native addon has no GPU functions (built from older sources; run "node native/build.mjs")' };
  return { addon: a as GpuAddon };
}

export interface GpuAvailability {
  /** The GPU runs the model here. */
  ok: boolean;
  /** What runs, or why the GPU cannot: one line for the log. */
  detail: string;
  /** What the addon reported (absent when the GPU is hidden or the addon has no GPU functions). */
  info?: GpuInfo;
  /** TFPIPE_CUDA=host: the host executor stands in for the GPU. */
  host?: boolean;
}

let probed: GpuAvailability | undefined;

/** Whether the CUDA kernels can run here, on which GPU, and why not. */
export function gpuAvailability(): GpuAvailability {
  if (process.env.TFPIPE_CUDA === '0') return { ok: false, detail: 'CUDA GPU hidden (TFPIPE_CUDA=0)' };
  if (process.env.TFPIPE_CUDA === 'host')
    return 'error' in gpuAddon()
      ? { ok: false, detail: `the GPU model cannot run on the host: ${(gpuAddon() as { error: string }).error}` }
      : { ok: true, host: true, detail: 'the GPU model on the host executor (TFPIPE_CUDA=host: slow, for tests)' };
  probed ??= probe();
  return probed;
}

/** Why the CUDA kernels cannot run a model of this config (native/cuda/host_exec.cc says the same), or null. */
export function cudaUnsupported(cfg: VitConfig): string | null {
  const c = completeConfig(cfg);
  return c.tokenizer === 'patch' && c.pool === 'cls' && c.posEmbedding === 'learned'
    ? null
    : 'the CUDA kernels implement tokenizer patch, pool cls and position_embedding learned only';
}

/** gpuAvailability() for a model of this config: not ok where the CUDA kernels lack one of its options. */
export function gpuAvailabilityFor(cfg: VitConfig): GpuAvailability {
  const gpu = gpuAvailability();
  const why = cudaUnsupported(cfg);
  return gpu.ok && why ? { ok: false, detail: why, ...(gpu.info ? { info: gpu.info } : {}) } : gpu;
}

function probe(): GpuAvailability {
  const g = gpuAddon();
  if ('error' in g) return { ok: false, detail: `CUDA kernels unavailable: ${g.error}` };
  const info = g.addon.gpuInfo();
  if (!info.ok) {
    const lt = info.cublasLtError && info.cublasLtError !== info.error ? `; ${info.cublasLtError}` : '';
    return { ok: false, detail: `no usable CUDA GPU: ${info.error}${lt}`, info };
  }
  return { ok: true, detail: describeGpu(info), info };
}

/** "CUDA kernels on NVIDIA H200 (compute capability 9.0, 132 SMs, 140 GiB; driver 13.0, CUDA runtime 13.0, cuBLASLt 13.1.0)". */
export function describeGpu(i: GpuInfo): string {
  const gib = (i.memoryBytes / 2 ** 30).toFixed(0);
  return (
    `CUDA kernels on ${i.name} (compute capability ${i.computeCapability}, ${i.sms} SMs, ${gib} GiB; ` +
    `driver ${i.driver}, CUDA runtime ${i.runtime}, cuBLASLt ${i.cublasLtVersion} from ${i.cublasLt})`
  );
}

/** The GPU as train's result.json records it (null when the GPU did not run). */
export function gpuRecord(): Record<string, string | number | null> | null {
  if (gpuAvailability().host) return { name: 'host executor (TFPIPE_CUDA=host)' };
  const i = gpuAvailability().info;
  if (!i?.ok) return null;
  return {
    name: i.name,
    compute_capability: i.computeCapability,
    sms: i.sms,
    memory_bytes: i.memoryBytes,
    driver: i.driver,
    cuda_runtime: i.runtime,
    cublaslt_version: i.cublasLtVersion,
    cublaslt: i.cublasLt,
  };
}

/** The optimizer settings of src/ml/optim.ts as the addon reads them (native.ts optimizerConstants). */
export const gpuOptimizerSettings = optimizerConstants;

/**
 * Where a GpuModel runs instead of the GPU: true = the host executor (the same model code on plain
 * loops), 'simt' = the host with the GPU's lanes emulated, one thread per lane (native/cuda/api.h
 * Executor). Both slow: what tests check against the CPU kernels where there is no GPU.
 */
export type HostExecutor = boolean | 'simt';

/**
 * A ViT on the GPU, or with `host` on a host executor (HostExecutor). Arrays in and out are
 * in layout order (layout.ts). `batch` is the largest batch a step takes; forward() takes any n.
 */
export class GpuModel {
  readonly config: VitConfig;
  readonly maxBatch: number;
  readonly precision: Precision;
  readonly host: HostExecutor;
  private readonly addon: GpuAddon;
  private handle: GpuHandle | undefined;

  constructor(cfg: VitConfig, opts: { batch: number; precision?: Precision; host?: HostExecutor }) {
    const g = gpuAddon();
    if ('error' in g) throw new Error(`the GPU model cannot run: ${g.error}`);
    if (!opts.host) {
      const a = gpuAvailability();
      if (!a.ok) throw new Error(`the GPU model cannot run: ${a.detail}`);
    }
    if (!Number.isInteger(opts.batch) || opts.batch < 1)
      throw new RangeError(`GpuModel: batch must be a positive integer, got ${opts.batch}`);
    this.addon = g.addon;
    this.config = { ...cfg };
    this.maxBatch = opts.batch;
    this.precision = opts.precision ?? 'fp32';
    this.host = opts.host ?? false;
    this.handle = g.addon.gpuCreate(nativeConfig(cfg, opts.batch), { precision: this.precision, host: this.host });
  }

  private get h(): GpuHandle {
    if (!this.handle) throw new Error('GpuModel: used after release()');
    return this.handle;
  }

  setWeights(weights: Float32Array[]): void {
    this.addon.gpuSetWeights(this.h, weights);
  }

  getWeights(): Float32Array[] {
    return this.addon.gpuGetWeights(this.h);
  }

  /** The last step's gradients (clipped when it clipped). */
  getGrads(): Float32Array[] {
    return this.addon.gpuGetGrads(this.h);
  }

  /** The optimizer and which weights decay (decays[i] for weight i); zeroes its state. */
  setOptimizer(settings: GpuOptimizerSettings, decays: Uint8Array): void {
    this.addon.gpuSetOptimizer(this.h, settings, decays);
  }

  /** Optimizer state as OptimizerState.slots: per weight [m, v] (Adam, AdamW) or [momentum] (SGD). */
  setSlots(slots: Float32Array[]): void {
    this.addon.gpuSetSlots(this.h, slots);
  }

  getSlots(): Float32Array[] {
    return this.addon.gpuGetSlots(this.h);
  }

  /**
   * Forward, loss, backward and clipping (clipNorm 0: none) of `batch` images [B, H, W, C] against
   * soft targets [B, classes]; dropout masks from `seed` (undefined or < 0: no dropout).
   */
  step(
    images: Float32Array,
    targets: Float32Array,
    batch: number,
    seed: number | undefined,
    clipNorm = 0,
  ): GpuStepResult {
    return this.addon.gpuStep(this.h, images, targets, batch, seed ?? -1, clipNorm);
  }

  /** One optimizer update with the last step's gradients; `step` counts from 1. */
  update(lr: number, step: number): void {
    this.addon.gpuUpdate(this.h, lr, step);
  }

  /** Eval-mode logits [n, classes] and, when asked, attention [depth, n, heads, T, T]. */
  forward(images: Float32Array, n: number, attention = false): { logits: Float32Array; attention?: Float32Array } {
    return this.addon.gpuForward(this.h, images, n, attention);
  }

  /** Frees the model's memory now (the handle's finalizer would, when collected). */
  release(): void {
    if (this.handle) this.addon.gpuRelease(this.handle);
    this.handle = undefined;
  }

  get released(): boolean {
    return this.handle === undefined;
  }
}

// A model's GPU copy held by a trainer (CudaTrainer): its weights are newer than the model's
// variables until the trainer syncs them, so inference on the GPU uses it as it is.
const trained = new WeakMap<Vit, GpuModel>();
// A model's GPU copy for inference only (evaluate, rollout), freed when the model is disposed.
const inference = new WeakMap<Vit, GpuModel>();

/** Marks `gpu` as the newest copy of `model` (a trainer's), or forgets it (undefined). */
export function setTrainedCopy(model: Vit, gpu: GpuModel | undefined): void {
  if (gpu) trained.set(model, gpu);
  else trained.delete(model);
}

/**
 * The GPU copy of `model` to run inference on, for batches of up to `batch`: a trainer's (as it
 * is), else one kept for inference with the model's current weights uploaded.
 */
export function gpuCopy(model: Vit, batch: number, on: { precision: Precision; host?: boolean }): GpuModel {
  const { precision } = on;
  const host = !!on.host;
  const same = (g: GpuModel) => g.precision === precision && g.host === host;
  const t = trained.get(model);
  if (t && !t.released && same(t)) return t;
  let g = inference.get(model);
  if (g && (!same(g) || g.maxBatch < batch)) {
    g.release();
    g = undefined;
  }
  if (!g) {
    const created = new GpuModel(model.config, { batch, precision, host });
    if (!inference.has(model)) model.onDispose(() => inference.get(model)?.release());
    inference.set(model, created);
    g = created;
  }
  // The variables may have changed since the last call: upload them every time (as the CPU
  // kernels read them every call).
  g.setWeights(model.variables.map((v) => v.dataSync() as Float32Array));
  return g;
}
