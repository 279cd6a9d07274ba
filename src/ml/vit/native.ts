// The optional native kernels (native/, built at install time by native/build.mjs into one addon
// holding a variant per ISA). This module loads the addon, checks that it expects tfpipe's
// parameter layout (names, dropout sites and shapes: layout.ts), and runs it; which kernels a run
// uses is decided elsewhere (choose-kernels.ts).
// TFPIPE_NATIVE=0 hides the addon; TFPIPE_NATIVE_ISA=<variant> forces a variant.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../ground/paths.js';
import { backendThreads } from '../backend.js';
import type { OptimizerSettings } from '../optim.js';
import { completeConfig, type FullVitConfig, type VitConfig } from './config.js';
import { LAYOUT_PROBES, layoutMismatch, type NativeLayout, shapeMismatch } from './layout.js';

export interface NativeRunResult {
  /** The variant that ran. */
  isa: string;
  logits: Float32Array;
  /** [depth, B, heads, T, T] post-softmax weights, when asked for. */
  attention?: Float32Array;
  /** [B, T] the head's pooling weights (vit.ts pool), with the attention. */
  pool?: Float32Array;
  loss?: number;
  correct?: number;
  /** Global L2 norm of the gradients before clipping. */
  gradNorm?: number;
  grads?: Float32Array[];
}

export interface NativeVariant {
  name: string;
  /** This CPU can run it. */
  supported: boolean;
  /** The CPU features it needs. */
  requires: string;
  /** Floats per vector register. */
  lanes: number;
  /** The main GEMM register tile, rows x columns. */
  tile: [number, number];
}

export interface NativeInfo {
  /** The variant chosen at load: TFPIPE_NATIVE_ISA or the best this CPU runs; null with `error`. */
  isa: string | null;
  error: string | null;
  cpu: string;
  features: string;
  /** Every variant in this build, best first. */
  variants: NativeVariant[];
  layout: NativeLayout;
}

/** The config as the addon reads it: the ViT's settings by name, every one filled, plus the batch. */
export type NativeConfig = FullVitConfig & { batch: number };

interface RunOptions {
  isa?: string;
  attention?: boolean;
  /** Scale the gradients so that their global L2 norm is at most this (0: no clipping). */
  clipNorm?: number;
}

/** The optimizer's constant settings as the addon reads them (src/ml/optim.ts semantics). */
export interface OptimizerConstants {
  name: 'adam' | 'adamw' | 'sgd';
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  momentum: number;
}

/** One optimizer step's settings as the addon's one-shot optimize() reads them. */
export interface NativeOptimizerSettings extends OptimizerConstants {
  lr: number;
  /** 1 for the first update. */
  step: number;
}

/** The optimizer settings of src/ml/optim.ts as the addon reads them, once per trainer (the CPU's and the GPU's). */
export function optimizerConstants(s: OptimizerSettings): OptimizerConstants {
  return {
    name: s.name,
    beta1: s.betas[0],
    beta2: s.betas[1],
    eps: s.eps,
    weightDecay: s.weight_decay,
    momentum: s.momentum,
  };
}

declare const optimizerBrand: unique symbol;
/** The addon's optimizer with its constant settings (an N-API external). */
type OptimizerHandle = { readonly [optimizerBrand]: true };

interface NativeAddon {
  info(): NativeInfo;
  /** The shape of every weight array for a config, in model order (native/src/layout.cc). */
  shapes?(config: NativeConfig): number[][];
  profile(): Record<string, number>;
  run(
    config: NativeConfig,
    weights: Float32Array[],
    images: Float32Array,
    targets: Float32Array | null,
    seed: number,
    threads: number,
    opts: RunOptions,
  ): NativeRunResult;
  optimize(
    settings: NativeOptimizerSettings,
    weights: Float32Array[],
    grads: Float32Array[],
    slots: Float32Array[],
    decays: Uint8Array,
  ): void;
  optimizerCreate(settings: OptimizerConstants, decays: Uint8Array): OptimizerHandle;
  optimizerUpdate(
    h: OptimizerHandle,
    lr: number,
    step: number,
    weights: Float32Array[],
    grads: Float32Array[],
    slots: Float32Array[],
  ): void;
}

// TFPIPE_NATIVE_ADDON points at another build (tests of a rebuilt or a fake addon).
export const nativeAddonPath =
  process.env.TFPIPE_NATIVE_ADDON || join(packageRoot, 'native', 'build', 'vit_kernels.node');

let loaded: { addon: NativeAddon; info: NativeInfo } | { error: string } | undefined;

function load(): { addon: NativeAddon; info: NativeInfo } | { error: string } {
  loaded ??= open();
  return loaded;
}

function open(): { addon: NativeAddon; info: NativeInfo } | { error: string } {
  if (process.env.TFPIPE_NATIVE === '0') return { error: 'disabled (TFPIPE_NATIVE=0)' };
  if (!existsSync(nativeAddonPath))
    return { error: `not built (${nativeAddonPath} missing; run "node native/build.mjs")` };
  try {
    const addon = createRequire(import.meta.url)(nativeAddonPath) as NativeAddon;
    const info = typeof addon.info === 'function' ? addon.info() : undefined;
    const mismatch =
      layoutMismatch(info?.layout) ??
      LAYOUT_PROBES.reduce<string | null>(
        (found, probe) =>
          found ??
          shapeMismatch(typeof addon.shapes === 'function' ? addon.shapes(nativeConfig(probe, 1)) : undefined, probe),
        null,
      );
    if (!info || mismatch) {
      return {
        error: `refused: ${nativeAddonPath} expects another parameter layout (${mismatch}); rebuild it with "node native/build.mjs"`,
      };
    }
    return { addon, info };
  } catch (err) {
    return { error: `failed to load: ${(err as Error).message.split('\n')[0]}` };
  }
}

export interface NativeAvailability {
  /** The variant native runs use, when they can run. */
  isa?: string;
  /** Why not, or what runs. */
  detail: string;
  /** TFPIPE_NATIVE_ISA named a variant this build or CPU cannot run: an error, not a fallback. */
  forcedError?: string;
}

/** Whether the native kernels can run here, with which variant, and why not. */
export function nativeAvailability(): NativeAvailability {
  const l = load();
  if ('error' in l) return { detail: `native kernels ${l.error}` };
  if (!l.info.isa) {
    const detail = `native kernels unusable: ${l.info.error}`;
    return process.env.TFPIPE_NATIVE_ISA ? { detail, forcedError: l.info.error ?? detail } : { detail };
  }
  const forced = process.env.TFPIPE_NATIVE_ISA ? `, forced by TFPIPE_NATIVE_ISA` : '';
  return {
    isa: l.info.isa,
    detail: `native kernels, ${l.info.isa} variant${forced} (${nativeThreads()} thread(s)) on ${l.info.cpu}`,
  };
}

/** The loaded addon as a plain module (gpu.ts types its GPU functions), or why there is none. */
export function nativeModule(): { addon: object } | { error: string } {
  const l = load();
  return 'error' in l ? { error: l.error } : { addon: l.addon };
}

/** The config object the addon reads for a model at `batch`: the addon's boundary. */
export function nativeConfig(cfg: VitConfig, batch: number): NativeConfig {
  return { ...completeConfig(cfg), batch };
}

/** The addon's description of itself and this CPU, or null without an addon. */
export function nativeInfo(): NativeInfo | null {
  const l = load();
  return 'error' in l ? null : l.info;
}

/** The variants this CPU can run, best first (empty without the addon). */
export function runnableVariants(): string[] {
  return (
    nativeInfo()
      ?.variants.filter((v) => v.supported)
      .map((v) => v.name) ?? []
  );
}

/** The CPU's model name, from the addon (cpuid) or else from Node. */
export function cpuModel(): string {
  return nativeInfo()?.cpu ?? cpus()[0]?.model ?? 'unknown CPU';
}

export function nativeThreads(): number {
  const t = backendThreads();
  return t > 0 ? t : availableParallelism();
}

function addon(): NativeAddon {
  const l = load();
  if ('error' in l) throw new Error(`tfpipe native kernels ${l.error}`);
  return l.addon;
}

/**
 * Runs the whole model on variant `isa`; with targets also loss, correct count and gradients (model
 * order). `threads` overrides the backend's thread count (tests of thread invariance).
 */
export function nativeRun(
  isa: string,
  cfg: VitConfig,
  weights: Float32Array[],
  images: Float32Array,
  batch: number,
  targets: Float32Array | null,
  seed: number | undefined,
  opts: { attention?: boolean; clipNorm?: number; threads?: number } = {},
): NativeRunResult {
  const config = nativeConfig(cfg, batch);
  const { threads = nativeThreads(), ...rest } = opts;
  return addon().run(config, weights, images, targets, seed ?? -1, threads, { isa, ...rest });
}

/**
 * One optimizer update in place: `weights` and `slots` (per weight [m, v] for Adam/AdamW, [momentum]
 * for SGD) change; decays[i] says whether weight decay applies to weight i.
 */
export function nativeOptimize(
  settings: NativeOptimizerSettings,
  weights: Float32Array[],
  grads: Float32Array[],
  slots: Float32Array[],
  decays: Uint8Array,
): void {
  addon().optimize(settings, weights, grads, slots, decays);
}

/**
 * The addon's optimizer for one trainer: the constant settings and which weights decay go over
 * once (as gpuSetOptimizer takes them for the GPU); an update passes the learning rate and step.
 */
export class NativeOptimizer {
  private readonly handle: OptimizerHandle;

  constructor(settings: OptimizerSettings, decays: Uint8Array) {
    const a = addon();
    if (typeof a.optimizerCreate !== 'function')
      throw new Error(
        'the native addon has no optimizerCreate (built from older sources; run "node native/build.mjs")',
      );
    this.handle = a.optimizerCreate(optimizerConstants(settings), decays);
  }

  /** One update in place of `weights` and `slots` (as nativeOptimize), step counting from 1. */
  update(lr: number, step: number, weights: Float32Array[], grads: Float32Array[], slots: Float32Array[]): void {
    addon().optimizerUpdate(this.handle, lr, step, weights, grads, slots);
  }
}

/** Native CPU milliseconds per named section since the last call (then reset); {} without the addon. */
export function nativeProfile(): Record<string, number> {
  const l = load();
  return 'error' in l ? {} : l.addon.profile();
}
