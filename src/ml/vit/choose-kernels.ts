// runtime.kernels -> the kernels (and CPU backend) that run the ViT. `cuda`, `native` and `tfjs`
// are taken as asked (`cuda` is an error where the GPU cannot run, `native` forces the CPU
// kernels). `auto` takes a working CUDA GPU first, without timing; otherwise it must never pick a
// slower path: where more than one can run, it times a few steps of each on throwaway models (so
// trained weights never depend on the timing), keeps the fastest, logs every figure, and
// remembers the decision per CPU, ISA, model shape, batch and threads under outputs/.cache/kernels/,
// so a machine makes the same choice every time; the log says why the GPU was not taken. A tfjs
// GPU backend that really runs on a GPU is taken without timing too.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { writeFileAtomic } from '../../cache/atomic.js';
import { backendInfo, backendRegistryName, type BackendName } from '../backend.js';
import { completeConfig, type FullVitConfig, SHAPE_FIELDS, tokenCount, type VitConfig } from './config.js';
import { describeKernels, predict, tfjsKernels, type Kernels } from './kernels.js';
import { gpuAvailabilityFor, type Precision } from './gpu.js';
import { createVit } from './model.js';
import { cpuModel, nativeAvailability, nativeThreads } from './native.js';
import { ADAM, createTrainer } from './trainer.js';

export type KernelsRequest = 'auto' | 'cuda' | 'native' | 'tfjs';

/** One way to run the model: kernels on a backend. */
export interface Candidate {
  backend: BackendName;
  kernels: Kernels;
}

export interface KernelDecision extends Candidate {
  /** One line for the log: what runs and why. */
  detail: string;
  /** Images per second per candidate label, when auto compared several. */
  measured?: Record<string, number>;
}

export interface ChooseOptions {
  request: KernelsRequest;
  cfg: VitConfig;
  batch: number;
  /** What will run: training steps (gradients + optimizer) or inference. */
  purpose: 'train' | 'infer';
  /** The matrix products' precision on the GPU (default fp32); the CPU paths compute in fp32. */
  precision?: Precision;
  /** Where decisions are remembered (outputs/.cache/kernels); omit to measure every time. */
  cacheDir?: string;
  /** Images per second of a candidate; defaults to timing real steps. Injectable for tests. */
  measure?: (c: Candidate) => Promise<number>;
}

export const candidateLabel = (c: Candidate): string => `${describeKernels(c.kernels)}@${c.backend}`;

// Bump when the kernels change speed enough that old decisions should be re-measured.
const DECISION_VERSION = 2;
// The tfjs ops keep every activation of a step on the backend; above this estimate the wasm
// backend's 4 GB heap overflows and the process aborts (the cifar-vit.yaml model at batch 128).
const WASM_TFJS_BYTES_LIMIT = 1.5e9;

/** Rough bytes of activations the tfjs ops hold for one training step. */
export function tfjsStepBytes(cfg: VitConfig, batch: number): number {
  const t = tokenCount(cfg).tokens;
  return 4 * batch * t * cfg.depth * (12 * cfg.dim + 3 * cfg.mlpDim + 4 * cfg.heads * t);
}

/** The paths that can run here, best guess first, and why others cannot. */
export function candidates(
  cfg: VitConfig,
  batch: number,
  purpose: 'train' | 'infer',
): { list: Candidate[]; excluded: string[] } {
  const info = backendInfo();
  const current = (info?.name ?? (tf.getBackend() as BackendName)) as BackendName;
  const backends = info?.cpuCandidates ?? [current];
  const native = nativeAvailability();
  const list: Candidate[] = [];
  const excluded: string[] = [];
  for (const b of backends) {
    if (native.isa) list.push({ backend: b, kernels: { path: 'native', isa: native.isa } });
    if (b === 'wasm' && purpose === 'train' && tfjsStepBytes(cfg, batch) > WASM_TFJS_BYTES_LIMIT) {
      excluded.push(`tfjs@wasm: a training step of this model at batch ${batch} would overflow the 4 GB wasm heap`);
    } else {
      list.push({ backend: b, kernels: tfjsKernels });
    }
  }
  if (!native.isa) excluded.push(native.detail);
  return { list, excluded };
}

/** Resolves runtime.kernels for a model; switches the tfjs backend to the chosen one. */
export async function chooseKernels(given: ChooseOptions): Promise<KernelDecision> {
  const opts = { ...given, cfg: completeConfig(given.cfg) };
  const info = backendInfo();
  const current = (info?.name ?? (tf.getBackend() as BackendName)) as BackendName;
  const gpu = gpuAvailabilityFor(opts.cfg);
  const cuda: Kernels = { path: 'cuda', precision: opts.precision ?? 'fp32', ...(gpu.host ? { host: true } : {}) };
  // On the GPU the tfjs backend only prepares batches (augmentation): it stays where it is.
  if (opts.request === 'cuda') {
    if (!gpu.ok) throw new Error(`runtime.kernels is "cuda" but ${gpu.detail}`);
    return { backend: current, kernels: cuda, detail: `${gpu.detail}, ${cuda.precision} (runtime.kernels: cuda)` };
  }
  const native = nativeAvailability();
  if (native.forcedError && opts.request !== 'tfjs') throw new Error(native.forcedError);
  if (opts.request === 'tfjs')
    return { backend: current, kernels: tfjsKernels, detail: `tfjs ops on ${current} (runtime.kernels: tfjs)` };
  if (opts.request === 'native') {
    if (!native.isa) throw new Error(`runtime.kernels is "native" but ${native.detail}`);
    return {
      backend: current,
      kernels: { path: 'native', isa: native.isa },
      detail: `${native.detail} (runtime.kernels: native)`,
    };
  }
  if (gpu.ok)
    return {
      backend: current,
      kernels: cuda,
      detail: `${gpu.detail}, ${cuda.precision} (a working CUDA GPU comes first, without timing)`,
    };
  if (current === 'tensorflow-gpu')
    return {
      backend: current,
      kernels: tfjsKernels,
      detail: `tfjs ops on the GPU (tensorflow-gpu); not considered: ${gpu.detail}`,
    };

  const { list, excluded } = candidates(opts.cfg, opts.batch, opts.purpose);
  // Why the GPU was not taken, last.
  const notes = `; not considered: ${[...excluded, gpu.detail].join('; ')}`;
  if (list.length === 1) {
    const only = list[0];
    await switchBackend(only.backend);
    const what = only.kernels.path === 'native' ? native.detail : `tfjs ops on ${only.backend}`;
    return { ...only, detail: `${what} (the only path here${notes})` };
  }

  const key = decisionKey(opts, list);
  const file = opts.cacheDir ? join(opts.cacheDir, `${key}.json`) : undefined;
  const cached = file ? await readDecision(file, list) : undefined;
  let measured: Record<string, number>;
  let source: string;
  if (cached) {
    measured = cached;
    source = `measured earlier on this machine, remembered in ${file}`;
  } else {
    measured = {};
    for (const c of list) {
      await switchBackend(c.backend);
      measured[candidateLabel(c)] = await (opts.measure ?? ((x) => timeCandidate(x, opts)))(c);
    }
    source = 'measured now';
    if (file) await writeDecision(file, measured);
  }
  const best = list.reduce((a, b) => (measured[candidateLabel(b)] > measured[candidateLabel(a)] ? b : a));
  await switchBackend(best.backend);
  const figures = list.map((c) => `${candidateLabel(c)} ${measured[candidateLabel(c)].toFixed(1)} img/s`).join(', ');
  const what = best.kernels.path === 'native' ? native.detail : `tfjs ops on ${best.backend}`;
  return {
    ...best,
    measured,
    detail: `${what}: the fastest ${opts.purpose === 'train' ? 'training' : 'inference'} path here (${figures}; ${source})${notes}`,
  };
}

async function switchBackend(b: BackendName): Promise<void> {
  const name = backendRegistryName(b);
  if (tf.getBackend() === name) return;
  if (!(await tf.setBackend(name))) throw new Error(`cannot switch to the ${b} backend`);
  await tf.ready();
}

function decisionKey(opts: ChooseOptions & { cfg: FullVitConfig }, list: Candidate[]): string {
  const c = opts.cfg;
  const what = {
    version: DECISION_VERSION,
    cpu: cpuModel(),
    candidates: list.map(candidateLabel),
    // What decides the speed: the shape, the activation, the options, and whether dropout runs at all.
    model: [
      ...SHAPE_FIELDS.map((f) => c[f]),
      c.activation,
      c.tokenizer,
      c.convLayers,
      c.convChannels,
      c.pool,
      c.posEmbedding,
      c.dropout > 0,
    ],
    batch: opts.batch,
    threads: nativeThreads(),
    purpose: opts.purpose,
  };
  return createHash('sha256').update(JSON.stringify(what)).digest('hex').slice(0, 24);
}

async function readDecision(file: string, list: Candidate[]): Promise<Record<string, number> | undefined> {
  try {
    const d = JSON.parse(await readFile(file, 'utf8')) as { measured?: Record<string, number> };
    return list.every((c) => typeof d.measured?.[candidateLabel(c)] === 'number') ? d.measured : undefined;
  } catch {
    return undefined;
  }
}

function writeDecision(file: string, measured: Record<string, number>): Promise<void> {
  return writeFileAtomic(
    file,
    `${JSON.stringify({ measured, cpu: cpuModel(), at: new Date().toISOString() }, null, 2)}\n`,
  );
}

/**
 * Images per second of real steps of a throwaway model with random inputs: one untimed warm-up
 * step, then timed steps until about a second has passed (at least one).
 */
export async function timeCandidate(
  c: Candidate,
  opts: Pick<ChooseOptions, 'cfg' | 'batch' | 'purpose'>,
): Promise<number> {
  const { cfg, batch } = opts;
  const model = createVit(cfg, 7);
  const x = tf.randomNormal([batch, cfg.imageSize, cfg.imageSize, cfg.channels], 0, 1, 'float32', 1) as tf.Tensor4D;
  const y = tf.tidy(() =>
    tf.oneHot(tf.randomUniform([batch], 0, cfg.classes, 'int32', 2) as tf.Tensor1D, cfg.classes).toFloat(),
  ) as tf.Tensor2D;
  const trainer = createTrainer(model, c.kernels, ADAM, { batch });
  const step = (i: number) => {
    if (opts.purpose === 'train') {
      trainer.gradients(x, y, { seed: i });
      trainer.update(1e-3);
    } else {
      const logits = predict(model, x, batch, c.kernels);
      logits.dataSync();
      logits.dispose();
    }
  };
  try {
    step(0);
    const start = performance.now();
    let steps = 0;
    while (steps < 1 || (performance.now() - start < 1000 && steps < 20)) {
      step(++steps);
      await new Promise<void>((r) => setImmediate(r));
    }
    return (steps * batch) / ((performance.now() - start) / 1000);
  } finally {
    tf.dispose([x, y]);
    trainer.dispose();
    model.dispose();
  }
}
