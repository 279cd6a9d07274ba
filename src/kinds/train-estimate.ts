// How long a train stage will take on this machine, said before the long work starts: the speed
// comes from the kernel timing (runtime.kernels auto times every path it may take; a lone path is
// timed the same way), remembered under outputs/.cache/kernels/ per model shape, batch, threads,
// CPU and runtime settings, so that `tfpipe status` and `run --dry-run` (which load no
// TensorFlow.js and time nothing) state the same estimate. When the estimate is far beyond an hour
// and the chosen kernels are not on a GPU, it names the pipeline made for CPUs and the time budget.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../cache/atomic.js';
import type { Plan, PlannedStage } from '../runner/plan.js';
import { formatDuration } from '../runner/format.js';
import type { Cifar10Settings, TrainSettings, VitSettings } from './settings.js';
import type { RuntimeSettings } from '../stage-kind/types.js';

/** "Far beyond an hour": more than twice the hour. */
export const FAR_BEYOND_SECONDS = 2 * 3600;
/** The shipped pipeline made for CPUs. */
export const CPU_PIPELINE = 'pipelines/cifar-vit-cpu-hour.yaml';
/** Kernel paths that run on a GPU (the cuda kernels, where built); the tensorflow-gpu backend counts too. */
const GPU_KERNEL_PATHS = new Set<string>(['cuda']);
/** A validation pass runs the model forward only: about three times the training speed. */
const EVAL_SPEEDUP = 3;

/** A measured training speed, as remembered. */
export interface TrainSpeed {
  images_per_second: number;
  /** The path that runs, e.g. native/avx512@wasm. */
  kernels: string;
  on_gpu: boolean;
}

export function onGpu(backend: string, kernelsPath: string): boolean {
  return backend === 'tensorflow-gpu' || GPU_KERNEL_PATHS.has(kernelsPath);
}

/** The file a speed is remembered in: what determines it, and nothing a status cannot know. */
export function speedFile(
  cacheDir: string,
  o: { model: VitSettings; batch: number; threads: number; runtime: RuntimeSettings },
): string {
  const m = o.model;
  const what = {
    model: [m.patch_size, m.dim, m.depth, m.heads, m.dim_head, m.mlp_dim, m.activation, m.dropout > 0],
    batch: o.batch,
    threads: o.threads,
    cpu: cpus()[0]?.model ?? 'unknown CPU',
    backend: o.runtime.backend,
    kernels: o.runtime.kernels ?? 'auto',
  };
  const hash = createHash('sha256').update(JSON.stringify(what)).digest('hex').slice(0, 24);
  return join(cacheDir, 'kernels', `train-speed-${hash}.json`);
}

export async function readSpeed(file: string): Promise<TrainSpeed | undefined> {
  try {
    const s = JSON.parse(await readFile(file, 'utf8')) as TrainSpeed;
    return typeof s.images_per_second === 'number' && s.images_per_second > 0 ? s : undefined;
  } catch {
    return undefined;
  }
}

export function rememberSpeed(file: string, speed: TrainSpeed): Promise<void> {
  return writeFileAtomic(file, `${JSON.stringify({ ...speed, at: new Date().toISOString() }, null, 2)}\n`);
}

export interface Estimate {
  seconds: number;
  /** Epochs that fit (max_minutes) or all of them. */
  epochs: number;
  images_per_second: number;
  kernels: string;
  /** The lines to show: the estimate, and the advice when it is far beyond an hour on a CPU. */
  lines: string[];
}

/** The time `epochs` epochs of `images` (+ `valImages` validated) take at `speed`, within max_minutes. */
export function estimateTraining(o: {
  stage: string;
  images: number;
  valImages: number;
  epochs: number;
  /** Epochs already done (a resumed run). */
  done?: number;
  maxMinutes: number;
  speed: TrainSpeed;
}): Estimate {
  const ips = o.speed.images_per_second;
  const perEpoch = o.images / ips + o.valImages / (ips * EVAL_SPEEDUP);
  const left = Math.max(0, o.epochs - (o.done ?? 0));
  const budget = o.maxMinutes > 0 ? o.maxMinutes * 60 : Number.POSITIVE_INFINITY;
  const fit = Math.min(left, Math.max(1, Math.floor(budget / perEpoch)));
  const seconds = Math.min(left * perEpoch, Math.max(budget, perEpoch));
  const lines = [
    `estimated time on this machine: ${formatDuration(seconds)} for ${left < o.epochs ? `the ${left} remaining of ` : ''}${o.epochs} epochs ` +
      `of ${o.images.toLocaleString('en-US')} images${o.valImages ? ` (+${o.valImages.toLocaleString('en-US')} validated)` : ''} ` +
      `at ~${ips.toFixed(0)} img/s (${o.speed.kernels}, from the kernel timing)` +
      (fit < left ? `; max_minutes ${o.maxMinutes} lets about ${fit} of them run` : ''),
  ];
  if (seconds > FAR_BEYOND_SECONDS && !o.speed.on_gpu) {
    lines.push(
      `that is far beyond an hour, and the chosen kernels are not on a GPU: ${CPU_PIPELINE} is the pipeline made for CPUs ` +
        `(it beats the reference report within an hour on 2 cores), or cap this run with --set ${o.stage}.max_minutes=60 ` +
        '(the schedule is then fitted to the epochs that fit)',
    );
  }
  return { seconds, epochs: fit, images_per_second: ips, kernels: o.speed.kernels, lines };
}

/** Images per epoch of a cifar10 stage's settings: train and validation counts (cifar10 splits 50,000). */
function cifarCounts(s: Cifar10Settings): { train: number; val: number } {
  const all = 50_000;
  const val = Math.round(all * s.validation_fraction);
  const train = Math.min(s.limit_train ?? all - val, all - val);
  const limitVal =
    s.limit_val ??
    (s.limit_train != null && s.validation_fraction < 1
      ? Math.round((s.limit_train * s.validation_fraction) / (1 - s.validation_fraction))
      : null);
  return { train, val: Math.min(limitVal ?? val, val) };
}

/**
 * For `status` and `--dry-run`: the estimate of a train stage that would run, from a speed an
 * earlier run remembered on this machine; null when none did; undefined for other stages.
 */
export async function plannedEstimate(plan: Plan, p: PlannedStage): Promise<Estimate | null | undefined> {
  if (p.stage.kind !== 'train' || (p.state === 'cached' && !p.forced)) return undefined;
  const upstream = (kind: string) =>
    plan.stages.find((u) => p.stage.needs.includes(u.stage.name) && u.stage.kind === kind)?.stage.settings;
  const model = upstream('vit') as VitSettings | undefined;
  const data = upstream('cifar10') as Cifar10Settings | undefined;
  if (!model || !data) return undefined;
  const runtime = plan.pipeline.runtime;
  const s = p.stage.settings as unknown as TrainSettings;
  const threads = runtime.threads > 0 ? runtime.threads : availableParallelism();
  const cacheDir = join(plan.store.outputsRoot, '.cache');
  const speed = await readSpeed(speedFile(cacheDir, { model, batch: s.batch_size, threads, runtime }));
  if (!speed) return null;
  const counts = cifarCounts(data);
  return estimateTraining({
    stage: p.stage.name,
    images: counts.train,
    valImages: counts.val,
    epochs: s.epochs,
    maxMinutes: s.max_minutes,
    speed,
  });
}

/** An estimate as `--json` shows it. */
export function estimateDoc(e: Estimate | null): object | null {
  return (
    e && {
      seconds: Math.round(e.seconds),
      epochs: e.epochs,
      images_per_second: e.images_per_second,
      kernels: e.kernels,
      lines: e.lines,
    }
  );
}

/** A train stage that would run: `estimate` (null when no run has timed its model here yet). */
export async function estimateField(plan: Plan, s: PlannedStage): Promise<{ estimate?: object | null }> {
  const e = await plannedEstimate(plan, s);
  return e === undefined ? {} : { estimate: estimateDoc(e) };
}

/** The estimate's lines for the text output, or the note that there is none yet. */
export function estimateLines(s: { estimate?: object | null }): string[] {
  if (s.estimate === undefined) return [];
  return s.estimate === null ? [NOT_TIMED] : (s.estimate as { lines: string[] }).lines;
}

/** The line status shows when no run has timed this model on this machine yet. */
export const NOT_TIMED =
  'no time estimate yet: this model has not been timed on this machine (a run times it before training starts)';
