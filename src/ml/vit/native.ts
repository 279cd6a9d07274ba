// Optional native kernels (native/vit_kernels.cc, built at install time by native/build.mjs).
// When present and the backend is a CPU one (wasm or cpu), training steps and inference run the
// whole ViT in one native call; otherwise everything stays on tfjs ops. TFPIPE_NATIVE=0 turns it off.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { packageRoot } from '../../paths.js';
import { backendThreads } from '../backend.js';
import { tokenCount, type VitConfig } from './config.js';

export interface NativeRunResult {
  logits: Float32Array;
  loss?: number;
  correct?: number;
  grads?: Float32Array[];
}

interface NativeAddon {
  profile(): Record<string, number>;
  run(
    config: Int32Array,
    dropout: number,
    weights: Float32Array[],
    images: Float32Array,
    targets: Float32Array | null,
    seed: number,
    threads: number,
  ): NativeRunResult;
}

// TFPIPE_NATIVE_ADDON points at another build (tests of a rebuilt addon while a run uses this one).
export const nativeAddonPath = process.env.TFPIPE_NATIVE_ADDON || join(packageRoot, 'native', 'build', 'vit_kernels.node');

let addon: NativeAddon | null | undefined;
let loadError = '';
let enabled = process.env.TFPIPE_NATIVE !== '0';

function load(): NativeAddon | null {
  if (addon !== undefined) return addon;
  addon = null;
  if (!existsSync(nativeAddonPath)) {
    loadError = `not built (${nativeAddonPath} missing; run "node native/build.mjs")`;
    return addon;
  }
  try {
    addon = createRequire(import.meta.url)(nativeAddonPath) as NativeAddon;
  } catch (err) {
    loadError = `failed to load: ${(err as Error).message.split('\n')[0]}`;
  }
  return addon;
}

/** Turn the native path on or off for this process (tests compare both). */
export function setNativeEnabled(on: boolean): void {
  enabled = on;
}

/** Whether training and inference currently go through the native kernels, and why not. */
export function nativeStatus(): { active: boolean; detail: string } {
  if (!enabled) return { active: false, detail: 'native kernels disabled' };
  const backend = tf.getBackend();
  if (backend !== 'wasm' && backend !== 'cpu') return { active: false, detail: `native kernels unused on the ${backend} backend` };
  const a = load();
  return a ? { active: true, detail: `native kernels (${nativeThreads()} thread(s))` } : { active: false, detail: `native kernels ${loadError}` };
}

export function nativeThreads(): number {
  const t = backendThreads();
  return t > 0 ? t : availableParallelism();
}

/** Runs the whole model natively; with targets also loss, correct count and gradients (model order). */
export function nativeRun(cfg: VitConfig, weights: Float32Array[], images: Float32Array, batch: number, targets: Float32Array | null, seed: number | undefined): NativeRunResult {
  const a = load();
  if (!a) throw new Error(`tfpipe native kernels ${loadError}`);
  tokenCount(cfg);
  const config = Int32Array.from([batch, cfg.imageSize, cfg.channels, cfg.classes, cfg.patchSize, cfg.dim, cfg.depth, cfg.heads, cfg.dimHead, cfg.mlpDim]);
  return a.run(config, cfg.dropout, weights, images, targets, seed ?? -1, nativeThreads());
}

/** Native CPU milliseconds per named section since the last call (then reset); {} without the addon. */
export function nativeProfile(): Record<string, number> {
  return load()?.profile() ?? {};
}
