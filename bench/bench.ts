// Training and inference throughput of the ViT on random CIFAR-shaped batches, through the same
// code path the train stage uses (the trainer: gradients + Adam update; predict), for every
// native kernel variant this CPU runs, the tfjs ops, the CUDA kernels per precision where a GPU
// works (else one row says why not), and the PyTorch peer (on the CPU, and on the GPU where torch
// sees one).
//
//   npm run bench                 every case below, then a side-by-side table
//   node dist/bench/bench.js --backend wasm --threads 1 [--models small,default,cpu_hour]
//        [--kernels native,tfjs,plain,cuda] [--isa avx2,baseline] [--steps 6] [--batch 128] [--peer] [--profile]
//                                 one process, one backend
//
// The full run (no --backend) starts one child process per thread count (a process initialises
// its tfjs backend once) and runs the PyTorch peer for the same models and threads when torch
// imports. The peer script is $TFPIPE_TORCH_PEER, else the project's own
// bench/peers/torch_vit_bench.py, else shared/peers/torch_vit_bench.py in the package root or a
// folder above it; it runs with $TFPIPE_PYTHON (default /usr/bin/python3, the Debian python with
// python3-torch). The GPU rows run in one more process, and the GPU peer is
// bench/peers/torch_gpu_cases.py (eager and torch.compile, the same models, batch and precisions). Every case is one JSON line in outputs/bench/bench.jsonl and
// on stdout (outputs/ is $TFPIPE_OUTPUTS when set), with the CPU model and the ISA variant; `auto_choice: true` marks the path that
// `tfpipe run` (runtime.kernels: auto) takes given these figures.
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend, type BackendName } from '../src/ml/backend.js';
import { candidateLabel, chooseKernels } from '../src/ml/vit/choose-kernels.js';
import {
  createVit,
  predict,
  referenceKernels,
  tfjsKernels,
  type Kernels,
  type VitConfig,
} from '../src/ml/vit/index.js';
import { ADAM, createTrainer } from '../src/ml/vit/trainer.js';
import { gpuAvailability, PRECISIONS } from '../src/ml/vit/gpu.js';
import { cpuModel, nativeAvailability, nativeProfile, runnableVariants } from '../src/ml/vit/native.js';
import { packageRoot } from '../src/ground/paths.js';

interface ModelSize {
  patch_size: number;
  dim: number;
  depth: number;
  heads: number;
  mlp_dim: number;
}

/**
 * "small" is the findings note's model; "default" is the vit stage's default settings;
 * "cifar_vit" is the model of pipelines/cifar-vit.yaml, "cpu_hour" that of cifar-vit-cpu-hour.yaml.
 * cifar_vit takes seconds per step: run it with --models cifar_vit.
 */
export const MODELS: Record<string, ModelSize> = {
  small: { patch_size: 4, dim: 64, depth: 4, heads: 4, mlp_dim: 128 },
  default: { patch_size: 4, dim: 128, depth: 6, heads: 4, mlp_dim: 256 },
  cifar_vit: { patch_size: 4, dim: 384, depth: 7, heads: 12, mlp_dim: 384 },
  cpu_hour: { patch_size: 4, dim: 64, depth: 6, heads: 4, mlp_dim: 256 },
};

interface Row {
  cpu: string;
  /** The native variant that ran (avx512, avx2, baseline, neon); null for other paths. */
  isa: string | null;
  backend: string;
  kernels?: string;
  /** GPU rows: the GPU, and the matrix products' precision. */
  gpu?: string | null;
  precision?: string;
  model: ModelSize;
  model_label: string;
  batch: number;
  threads: number;
  train_img_s?: number;
  infer_img_s?: number;
  /** The path runtime.kernels: auto takes with these figures. */
  auto_choice?: boolean;
  note?: string;
  profile_cpu_ms_per_step?: Record<string, number>;
}

// outputs/bench of the package, or of $TFPIPE_OUTPUTS as for tfpipe run.
const outDir = join(process.env.TFPIPE_OUTPUTS ?? join(packageRoot, 'outputs'), 'bench');
const outFile = join(outDir, 'bench.jsonl');

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

function emit(row: Row): void {
  const line = JSON.stringify(row);
  console.log(line);
  mkdirSync(outDir, { recursive: true });
  appendFileSync(outFile, `${line}\n`);
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

function vitConfig(m: ModelSize): VitConfig {
  // dropout 0.1 as in the PyTorch peer, so both pay for it; GELU exact as nn.GELU().
  return {
    imageSize: 32,
    channels: 3,
    classes: 10,
    patchSize: m.patch_size,
    dim: m.dim,
    depth: m.depth,
    heads: m.heads,
    dimHead: m.dim / m.heads,
    mlpDim: m.mlp_dim,
    dropout: 0.1,
    activation: 'gelu',
  };
}

/** Images per second over `steps` timed training steps after one untimed step. */
function trainRate(cfg: VitConfig, batch: number, steps: number, kernels: Kernels, settings = ADAM): number {
  const model = createVit(cfg, 0);
  const trainer = createTrainer(model, kernels, settings, { batch });
  const x = tf.randomNormal([batch, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  const labels = tf.randomUniform([batch], 0, 10, 'int32', 2) as tf.Tensor1D;
  const y = tf.oneHot(labels, 10).toFloat() as tf.Tensor2D;
  let start = 0;
  for (let i = 0; i <= steps; i++) {
    if (i === 1) start = performance.now();
    trainer.gradients(x, y, { seed: i });
    trainer.update(1e-3);
  }
  const rate = (steps * batch) / ((performance.now() - start) / 1000);
  tf.dispose([x, labels, y]);
  trainer.dispose();
  model.dispose();
  return rate;
}

function inferRate(cfg: VitConfig, batch: number, steps: number, kernels: Kernels): number {
  const model = createVit(cfg, 0);
  const x = tf.randomNormal([batch, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  let start = 0;
  for (let i = 0; i <= steps; i++) {
    if (i === 1) start = performance.now();
    const logits = predict(model, x, batch, kernels);
    logits.dataSync();
    logits.dispose();
  }
  const rate = (steps * batch) / ((performance.now() - start) / 1000);
  x.dispose();
  model.dispose();
  return rate;
}

/**
 * The peer script: $TFPIPE_TORCH_PEER, else the project's own bench/peers/torch_vit_bench.py, else
 * shared/peers/torch_vit_bench.py in the package root or above.
 */
function peerScript(): string | null {
  if (process.env.TFPIPE_TORCH_PEER) return process.env.TFPIPE_TORCH_PEER;
  const own = join(packageRoot, 'bench', 'peers', 'torch_vit_bench.py');
  if (existsSync(own)) return own;
  for (let dir = packageRoot; ; dir = dirname(dir)) {
    const candidate = join(dir, 'shared', 'peers', 'torch_vit_bench.py');
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) return null;
  }
}

const python = (): string =>
  process.env.TFPIPE_PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');

/** Why the PyTorch peer cannot run, or null when it can. */
function peerUnavailable(): string | null {
  const script = peerScript();
  if (!script)
    return 'peer script not found (set TFPIPE_TORCH_PEER, or put shared/peers/torch_vit_bench.py next to the package)';
  if (!existsSync(script)) return `peer script not found at ${script}`;
  const r = spawnSync(python(), ['-c', 'import torch'], { encoding: 'utf8' });
  return r.status === 0 ? null : `${python()} cannot import torch`;
}

/**
 * The PyTorch peer at `threads`. torch.set_num_threads does not bound the BLAS (Debian's torch uses
 * OpenBLAS's own pthreads): `pinned` also sets OPENBLAS/OMP/MKL_NUM_THREADS, so the peer uses the
 * same number of cores as tfpipe; unpinned it is PyTorch as a user gets it by default (on 1
 * "thread" it then uses up to two cores).
 */
function runPeer(label: string, m: ModelSize, threads: number, batch: number, steps: number, pinned: boolean): Row {
  const base: Row = {
    cpu: cpuModel(),
    isa: null,
    backend: pinned ? 'pytorch' : 'pytorch-blas-unpinned',
    model: m,
    model_label: label,
    batch,
    threads,
  };
  const env = pinned
    ? {
        ...process.env,
        OPENBLAS_NUM_THREADS: String(threads),
        OMP_NUM_THREADS: String(threads),
        MKL_NUM_THREADS: String(threads),
      }
    : process.env;
  const why = peerUnavailable();
  if (why) return { ...base, note: why };
  try {
    const out = execFileSync(
      python(),
      [
        peerScript() as string,
        '--patch',
        String(m.patch_size),
        '--dim',
        String(m.dim),
        '--depth',
        String(m.depth),
        '--heads',
        String(m.heads),
        '--mlp',
        String(m.mlp_dim),
        '--threads',
        String(threads),
        '--batch',
        String(batch),
        '--steps',
        String(steps),
      ],
      { encoding: 'utf8', env },
    );
    const train = /train_img_s=([\d.]+)/.exec(out);
    const infer = /infer_img_s=([\d.]+)/.exec(out);
    if (!train || !infer) return { ...base, note: `unexpected peer output: ${out.trim()}` };
    return { ...base, train_img_s: Number(train[1]), infer_img_s: Number(infer[1]) };
  } catch (err) {
    return { ...base, note: `peer failed: ${(err as Error).message.split('\n')[0]}` };
  }
}

/** The GPU peer's cases (bench/peers/torch_gpu_cases.py) for these models at `batch`, or one row saying why not. */
function runGpuPeer(labels: string[], batch: number): Row[] {
  const script = join(packageRoot, 'bench', 'peers', 'torch_gpu_cases.py');
  const first = MODELS[labels[0]];
  const base: Row = {
    cpu: cpuModel(),
    isa: null,
    backend: 'pytorch-cuda',
    model: first,
    model_label: labels[0],
    batch,
    threads: 0,
  };
  const probe = spawnSync(python(), ['-c', 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)'], {
    encoding: 'utf8',
  });
  if (probe.status !== 0)
    return [
      {
        ...base,
        note: `no PyTorch peer on the GPU: ${probe.status === 3 ? 'torch sees no CUDA device' : `${python()} cannot import torch`}`,
      },
    ];
  // The cases the peer knows (it has no "default" model).
  const known = labels.filter((l) => ['cifar_vit', 'cpu_hour', 'small'].includes(l));
  if (!known.length) return [{ ...base, note: `no PyTorch GPU case for ${labels.join(', ')}` }];
  const r = spawnSync(
    python(),
    [
      script,
      '--models',
      known.join(','),
      '--batches',
      String(batch),
      '--precisions',
      PRECISIONS.join(','),
      '--attn',
      'sdpa',
      '--compile',
      `tf32:${batch},bf16:${batch}`,
    ],
    { encoding: 'utf8', timeout: 900_000 },
  );
  const rows: Row[] = [];
  for (const line of (r.stdout ?? '').split('\n')) {
    if (!line.startsWith('{')) continue;
    const c = JSON.parse(line) as Record<string, string | number | boolean | undefined>;
    const label = String(c.model);
    rows.push({
      ...base,
      model: MODELS[label] ?? first,
      model_label: label,
      kernels: c.compile ? 'torch.compile' : 'eager',
      precision: String(c.precision),
      ...(typeof c.train_img_s === 'number' ? { train_img_s: c.train_img_s, infer_img_s: Number(c.infer_img_s) } : {}),
      ...(c.error || c.skipped ? { note: String(c.error ?? c.skipped) } : {}),
    });
  }
  if (r.status !== 0)
    rows.push({ ...base, note: `GPU peer failed: ${(r.stderr || String(r.error ?? '')).split('\n')[0]}` });
  return rows;
}

function models(): [string, ModelSize][] {
  return arg('models', 'small,default,cpu_hour')
    .split(',')
    .map((name) => {
      const m = MODELS[name];
      if (!m) throw new Error(`unknown model ${name}; choose from ${Object.keys(MODELS).join(', ')}`);
      return [name, m];
    });
}

/** One backend in this process: every model x kernel implementation (native once per ISA variant). */
async function runBackend(backend: BackendName): Promise<void> {
  const threads = Number(arg('threads', '1'));
  const batch = Number(arg('batch', '128'));
  const steps = Number(arg('steps', '6'));
  const info = await initBackend(backend, threads);
  const cpu = cpuModel();
  const isas = arg('isa', runnableVariants().join(',')).split(',').filter(Boolean);
  for (const [label, model] of models()) {
    const cfg = vitConfig(model);
    const rows: Row[] = [];
    for (const k of arg('kernels', 'native,tfjs').split(',')) {
      // native: whole model in the optional addon, once per variant; tfjs: the fast custom-gradient
      // ops on the backend; plain: stock tfjs ops and autodiff (what the tfjs ops are checked
      // against); cuda: the GPU model through its trainer, once per precision.
      const runs: [Kernels, string | null][] =
        k === 'native'
          ? isas.map((isa) => [{ path: 'native', isa }, isa])
          : k === 'cuda'
            ? PRECISIONS.map((precision) => [{ path: 'cuda', precision }, null])
            : [[k === 'plain' ? referenceKernels : tfjsKernels, null]];
      if (k === 'cuda' && !gpuAvailability().ok) {
        emit(gpuNote(label, model, batch));
        continue;
      }
      if (k === 'native' && !isas.length) {
        emit({
          cpu,
          isa: null,
          backend: info.name,
          kernels: k,
          model,
          model_label: label,
          batch,
          threads,
          note: nativeAvailability().detail,
        });
        continue;
      }
      for (const [kernels, isa] of runs) {
        const base: Row = { cpu, isa, backend: info.name, kernels: k, model, model_label: label, batch, threads };
        if (kernels.path === 'cuda') {
          rows.push({ ...base, ...gpuRow(kernels.precision), ...gpuRates(cfg, batch, steps, kernels) });
          continue;
        }
        // Measured: the tfjs ops' backward of the cifar-vit.yaml model at batch 128 exceeds wasm's
        // 4 GB heap and aborts the process, so that case is reported, not run.
        if (k !== 'native' && model.dim >= 384 && batch >= 128 && info.name === 'wasm') {
          rows.push({
            ...base,
            note: 'skipped: tfjs ops exceed the 4 GB wasm heap for this model at this batch (the process aborts)',
          });
          continue;
        }
        // tfjs kernels on the larger models take seconds per step: fewer steps keep the run short.
        const s = k !== 'native' && label !== 'small' ? Math.max(1, Math.floor(steps / 3)) : steps;
        // The first nativeProfile() call switches the addon's section clocks on (a few thousand
        // clock reads a step, ~1-2%), so only a --profile run pays for them.
        const profiling = process.argv.includes('--profile') && k === 'native';
        if (profiling) nativeProfile();
        const train = trainRate(cfg, batch, s, kernels);
        const profile = profiling
          ? Object.fromEntries(Object.entries(nativeProfile()).map(([name, ms]) => [name, round(ms / (s + 1))]))
          : undefined;
        rows.push({
          ...base,
          train_img_s: round(train),
          infer_img_s: round(inferRate(cfg, batch, s * 2, kernels)),
          ...(profile ? { profile_cpu_ms_per_step: profile } : {}),
        });
      }
    }
    await markAutoChoice(rows, cfg, batch);
    rows.forEach(emit);
    // The peer's default model takes seconds per step with two contended threads: fewer steps.
    if (process.argv.includes('--peer'))
      for (const pinned of [true, false])
        emit(runPeer(label, model, threads, batch, label === 'small' ? 10 : 4, pinned));
  }
}

/** The GPU's part of a row. */
function gpuRow(precision: string): Pick<Row, 'gpu' | 'precision'> {
  return { gpu: gpuAvailability().info?.name ?? null, precision };
}

/**
 * Training and inference img/s on the GPU, through its trainer as the train stage runs it, for
 * the GPU peer's case (bench/peers/torch_gpu_cases.py): dropout 0, AdamW. Steps are milliseconds
 * there, so at least 20 are timed.
 */
function gpuRates(
  cfg: VitConfig,
  batch: number,
  steps: number,
  kernels: Kernels,
): Pick<Row, 'train_img_s' | 'infer_img_s' | 'note'> {
  const c = { ...cfg, dropout: 0 };
  const s = Math.max(20, steps);
  const adamw = { ...ADAM, name: 'adamw' as const, weight_decay: 0.05 };
  return {
    train_img_s: round(trainRate(c, batch, s, kernels, adamw)),
    infer_img_s: round(inferRate(c, batch, s, kernels)),
    note: 'trainer step + AdamW update, dropout 0, batches from the tfjs backend each step',
  };
}

/** The one row that says why there are no GPU rows. */
function gpuNote(label: string, model: ModelSize, batch: number): Row {
  return {
    cpu: cpuModel(),
    isa: null,
    backend: 'cuda',
    kernels: 'cuda',
    model,
    model_label: label,
    batch,
    threads: 0,
    gpu: null,
    note: `no GPU rows: ${gpuAvailability().detail}`,
  };
}

/** The row's path as candidateLabel() names it ("native/avx2@wasm", "cuda/bf16@wasm"). */
function rowLabel(r: Row): string {
  const path = r.kernels === 'native' ? `native/${r.isa}` : r.kernels === 'cuda' ? `cuda/${r.precision}` : r.kernels;
  return `${path}@${r.backend}`;
}

/** Marks the row runtime.kernels: auto would take: the same decision code, fed these figures. */
async function markAutoChoice(rows: Row[], cfg: VitConfig, batch: number): Promise<void> {
  const rate = (label: string) => rows.find((r) => rowLabel(r) === label)?.train_img_s;
  try {
    const decision = await chooseKernels({
      request: 'auto',
      cfg,
      batch,
      purpose: 'train',
      measure: async (c) => rate(candidateLabel(c)) ?? Number.NaN,
    });
    const chosen = candidateLabel(decision);
    for (const r of rows) r.auto_choice = rowLabel(r) === chosen;
  } catch (err) {
    for (const r of rows) r.note = [r.note, `auto: ${(err as Error).message}`].filter(Boolean).join('; ');
  }
}

/** Runs this script with `args` in a child process; its rows. */
function child(args: string[], what: string): Row[] {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  process.stdout.write(r.stdout);
  const rows = r.stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Row);
  if (r.status !== 0) throw new Error(`bench ${what} failed with status ${r.status}`);
  return rows;
}

/** Every case, each thread count in its own process, the GPU in one more, then a table. */
function runAll(): void {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(outFile, '');
  const rows: Row[] = [];
  const passOn = [
    ...['models', 'steps', 'batch', 'isa'].flatMap((n) =>
      process.argv.includes(`--${n}`) ? [`--${n}`, arg(n, '')] : [],
    ),
    ...(process.argv.includes('--profile') ? ['--profile'] : []),
  ];
  const kernels = arg('kernels', 'native,tfjs,cuda').split(',');
  const cpuKernels = kernels.filter((k) => k !== 'cuda');
  if (cpuKernels.length)
    for (const threads of arg('thread-counts', '1,2').split(',').map(Number))
      rows.push(
        ...child(
          ['--backend', 'wasm', '--threads', String(threads), '--peer', '--kernels', cpuKernels.join(','), ...passOn],
          `for ${threads} thread(s)`,
        ),
      );
  if (kernels.includes('cuda')) {
    const labels = models().map(([label]) => label);
    if (gpuAvailability().ok)
      rows.push(...child(['--backend', 'wasm', '--threads', '1', '--kernels', 'cuda', ...passOn], 'on the GPU'));
    else {
      const note = gpuNote(labels[0], MODELS[labels[0]], Number(arg('batch', '128')));
      emit(note);
      rows.push(note);
    }
    for (const row of runGpuPeer(labels, Number(arg('batch', '128')))) {
      emit(row);
      rows.push(row);
    }
  }
  // The pure-JS cpu backend trains at ~1-3 img/s (findings note) and, with native kernels present,
  // would run the very same native code as the wasm rows.
  emit({
    cpu: cpuModel(),
    isa: null,
    backend: 'cpu',
    model: MODELS.small,
    model_label: 'small',
    batch: 128,
    threads: 1,
    note: 'skipped: pure-JS kernels train at ~1-3 img/s; with native kernels it runs the same code as the wasm rows',
  });
  printTable(rows);
}

function printTable(rows: Row[]): void {
  const cpu = rows.find((r) => r.cpu)?.cpu ?? cpuModel();
  const lines = [
    '',
    `CPU: ${cpu}    (* = the path runtime.kernels: auto takes; pytorch = BLAS pinned to the same threads, unpinned = as installed)`,
    'model     threads  path                    train img/s  infer img/s   vs pytorch train/infer   vs unpinned train/infer',
  ];
  const ratio = (r: Row, peer: Row | undefined) =>
    peer?.train_img_s && peer.infer_img_s && r.train_img_s && r.infer_img_s
      ? `${(r.train_img_s / peer.train_img_s).toFixed(1)}x / ${(r.infer_img_s / peer.infer_img_s).toFixed(1)}x`
      : '';
  for (const r of rows) {
    if (r.backend.startsWith('pytorch') || r.train_img_s === undefined) continue;
    const peer = (backend: string) =>
      rows.find((p) => p.backend === backend && p.model_label === r.model_label && p.threads === r.threads);
    const path = `${r.auto_choice ? '*' : ' '}${r.kernels === 'native' ? `native/${r.isa}` : `${r.backend}+${r.kernels}`}`;
    const cells = (x: Row, label: string) =>
      `${x.model_label.padEnd(10)}${String(x.threads).padEnd(9)}${label.padEnd(22)}${String(x.train_img_s ?? '-').padStart(13)}${String(x.infer_img_s ?? '-').padStart(13)}`;
    lines.push(
      `${cells(r, path)}   ${ratio(r, peer('pytorch')).padEnd(23)}  ${ratio(r, peer('pytorch-blas-unpinned'))}`,
    );
    if (r.kernels === 'tfjs') {
      for (const [backend, label] of [
        ['pytorch', ' pytorch'],
        ['pytorch-blas-unpinned', ' pytorch (unpinned)'],
      ]) {
        const p = peer(backend);
        if (p) lines.push(`${cells(p, label)}   ${p.note ?? ''}`);
      }
    }
  }
  const gpuRows = rows.filter((r) => r.kernels === 'cuda' && r.train_img_s !== undefined);
  if (gpuRows.length) {
    lines.push(
      '',
      `GPU: ${gpuRows[0].gpu}    (batch from the tfjs backend each step; pytorch = bench/peers/torch_gpu_cases.py)`,
      'model     precision  path              train img/s  infer img/s   vs pytorch eager   vs torch.compile',
    );
    for (const r of gpuRows) {
      const peer = (k: string) =>
        rows.find(
          (p) =>
            p.backend === 'pytorch-cuda' &&
            p.kernels === k &&
            p.model_label === r.model_label &&
            p.precision === r.precision &&
            p.batch === r.batch,
        );
      lines.push(
        `${r.model_label.padEnd(10)}${String(r.precision).padEnd(11)}${`${r.auto_choice ? '*' : ' '}cuda`.padEnd(16)}` +
          `${String(r.train_img_s).padStart(13)}${String(r.infer_img_s ?? '-').padStart(13)}   ` +
          `${ratio(r, peer('eager')).padEnd(19)}${ratio(r, peer('torch.compile'))}`,
      );
    }
  } else {
    const note = rows.find((r) => r.kernels === 'cuda' && r.note);
    if (note) lines.push('', `GPU: ${note.note}`);
  }
  console.log(lines.join('\n'));
}

const backend = arg('backend', '');
(backend ? runBackend(backend as BackendName) : Promise.resolve(runAll())).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
