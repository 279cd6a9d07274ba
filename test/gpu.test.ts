// The GPU path through Node (native/cuda/ behind native/src/addon_gpu.cc, src/ml/vit/gpu.ts):
//  - parity: the GPU model's code on the host executor (gpuCreate with host: true, the same model
//    code and formulas as the CUDA kernels, a reference GEMM that rounds as TF32/bf16 tensor cores
//    do) against the CPU kernels (nativeRun, nativeOptimize) on an odd-sized model with dropout
//    and clipping: loss, correct, gradient norm, every gradient, weights and slots after Adam,
//    AdamW and SGD updates, eval logits and attention. Tolerances (max |difference| over the
//    array's largest |value|): fp32 1e-5 on the host (1e-4 on a GPU, whose sums run in another
//    order), tf32 1e-2, bf16 5e-2;
//  - the GPU trainer and inference (CudaTrainer, predict/forward) on the host executor against
//    the native ones;
//  - the choice (auto, cuda, TFPIPE_CUDA=0), the cuBLASLt fallback, the precision setting, the
//    build's fallback when nvcc fails, and the argument checks of the API.
// Tests that need a CUDA device are registered and skipped by name with the reason.
import { tfpipe } from './cli-helpers.js';
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/ml/backend.js';
import { decays, type OptimizerSettings } from '../src/ml/optim.js';
import {
  gpuAddon,
  gpuAvailability,
  GpuModel,
  gpuOptimizerSettings,
  type GpuAddon,
  type GpuHandle,
  type HostExecutor,
  type Precision,
} from '../src/ml/vit/gpu.js';
import {
  computeGradients,
  createVit,
  forward,
  predict,
  type Kernels,
  type Vit,
  type VitConfig,
} from '../src/ml/vit/index.js';
import { nativeAddonPath, nativeAvailability, nativeOptimize, nativeRun } from '../src/ml/vit/native.js';
import { createTrainer } from '../src/ml/vit/trainer.js';
import { packageRoot } from '../src/ground/paths.js';
import { ODD_VIT, TINY_VIT } from './fixtures/vit-configs.js';
import { completeConfig } from '../src/ml/vit/config.js';
import { tempProject } from './helpers.js';
import { noArchive, tinyPipeline } from '../harness/ml-helpers.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

const isa = nativeAvailability().isa;
const g = gpuAddon();
const addon: GpuAddon | undefined = 'addon' in g ? g.addon : undefined;
const noAddon = isa && addon ? false : `native addon with GPU functions not built (${nativeAvailability().detail})`;
const gpu = gpuAvailability();
const noDevice = gpu.ok ? false : `no CUDA device: ${gpu.info?.error ?? gpu.detail}`;
const cudaBuild = addon?.gpuInfo().cudaBuild ?? false;

before(async () => {
  await initBackend('wasm', 2);
});

/** Max |a - b| over max |b| (at least 1e-3), as native.test.ts measures. */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 1e-3;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  let m = a.length === b.length ? 0 : Number.POSITIVE_INFINITY;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m / scale;
}

const TOLERANCE: Record<Precision, number> = { fp32: 1e-5, tf32: 1e-2, bf16: 5e-2 };
const tolerance = (p: Precision, host: HostExecutor) => (p === 'fp32' && !host ? 1e-4 : TOLERANCE[p]);

const cfg = completeConfig({ ...ODD_VIT, activation: 'gelu' as const });
/**
 * For the emulated lanes (one OS thread per GPU lane: slow): 8x8 images, 5 tokens, and 12 floats
 * per head, which the attention's row sums split into 3 groups of 4 lanes, not a power of two.
 */
const SIMT_VIT: VitConfig = { ...TINY_VIT, classes: 5, depth: 1, dimHead: 12, dropout: 0.2, activation: 'gelu' };

/** Images [n, size, size, 3] and soft targets [n, classes] (label smoothing-like rows). */
function problem(n: number, c: VitConfig, seed = 3): { images: Float32Array; targets: Float32Array } {
  const images = tf.tidy(
    () => tf.randomNormal([n, c.imageSize, c.imageSize, 3], 0, 1, 'float32', seed).dataSync() as Float32Array,
  );
  const targets = new Float32Array(n * c.classes).fill(0.02);
  for (let i = 0; i < n; i++) targets[i * c.classes + ((i * 3) % c.classes)] = 1 - 0.02 * (c.classes - 1);
  return { images, targets };
}

const weightsOf = (m: Vit) => m.variables.map((v) => (v.dataSync() as Float32Array).slice());
const decayFlags = (m: Vit) => Uint8Array.from(m.variables, (v, i) => (decays(m.names[i], v.shape) ? 1 : 0));

const OPTIMIZERS: OptimizerSettings[] = [
  { name: 'adam', lr: 0.01, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01, momentum: 0 },
  { name: 'adamw', lr: 0.01, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.05, momentum: 0 },
  { name: 'sgd', lr: 0.05, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01, momentum: 0.9 },
];

/**
 * The GPU model (host executor, or the GPU) against the CPU kernels on one batch: every array
 * that a step, two updates of each optimizer and an eval forward produce. Returns the worst
 * relative difference per array name.
 */
function parity(precision: Precision, host: HostExecutor, c: VitConfig = cfg, N = 7): Record<string, number> {
  const model = createVit(c, 5);
  const W = weightsOf(model);
  const { images, targets } = problem(N, c);
  const clip = 0.5;
  const seed = 42; // dropout 0.2 at every site
  const cpu = nativeRun(isa as string, c, W, images, N, targets, seed, { clipNorm: clip, threads: 1 });
  const gm = new GpuModel(c, { batch: N, precision, host });
  const errors: Record<string, number> = {};
  const note = (name: string, e: number) => {
    errors[name] = Math.max(errors[name] ?? 0, e);
  };
  try {
    gm.setWeights(W);
    const r = gm.step(images, targets, N, seed, clip);
    note('loss', Math.abs(r.loss - (cpu.loss as number)) / Math.max(1, Math.abs(cpu.loss as number)));
    note('grad_norm', Math.abs(r.gradNorm - (cpu.gradNorm as number)) / (cpu.gradNorm as number));
    errors.correct_difference = Math.abs(r.correct - (cpu.correct as number));
    assert.ok((cpu.gradNorm as number) > clip, 'the test clips');
    const G = gm.getGrads();
    G.forEach((gr, i) => {
      note(`grad/${model.names[i].replace(/^block_\d+\//, 'block/')}`, relDiff(gr, (cpu.grads as Float32Array[])[i]));
    });
    const ev = nativeRun(isa as string, c, W, images, N, null, undefined, { attention: true, threads: 1 });
    const f = gm.forward(images, N, true);
    note('eval_logits', relDiff(f.logits, ev.logits));
    note('attention', relDiff(f.attention as Float32Array, ev.attention as Float32Array));
    // The same gradients (the GPU model's) into both optimizers: Adam's g / (sqrt(v) + eps) turns
    // rounding-level differences of near-zero gradients into full steps.
    const dec = decayFlags(model);
    for (const s of OPTIMIZERS) {
      const w = W.map((a) => a.slice());
      const per = s.name === 'sgd' ? 1 : 2;
      const slots = W.flatMap((a) => Array.from({ length: per }, () => new Float32Array(a.length)));
      gm.setWeights(W);
      gm.setOptimizer(gpuOptimizerSettings(s), dec);
      for (let step = 1; step <= 2; step++) {
        const lr = s.lr * step;
        nativeOptimize({ ...gpuOptimizerSettings(s), lr, step }, w, G, slots, dec);
        gm.update(lr, step);
      }
      gm.getWeights().forEach((a, i) => {
        note(`${s.name}/weights`, relDiff(a, w[i]));
      });
      gm.getSlots().forEach((a, i) => {
        note(`${s.name}/slots`, relDiff(a, slots[i]));
      });
    }
  } finally {
    gm.release();
    model.dispose();
  }
  return errors;
}

function assertParity(errors: Record<string, number>, precision: Precision, host: HostExecutor): void {
  const tol = tolerance(precision, host);
  const { correct_difference: dc, ...arrays } = errors;
  assert.ok(dc <= (precision === 'fp32' ? 0 : 1), `correct count differs by ${dc}`);
  const bad = Object.entries(arrays).filter(([, e]) => !(e <= tol));
  assert.deepEqual(bad, [], `over the ${precision} tolerance ${tol}: ${JSON.stringify(errors)}`);
  assert.ok(Object.keys(arrays).length >= 13 + 4 + 3 + 6, 'every array compared');
}

for (const precision of ['fp32', 'tf32', 'bf16'] as const) {
  test(`host executor = CPU kernels (${precision}, tolerance ${TOLERANCE[precision]}): loss, correct, grad norm, every gradient (dropout, clipping), Adam/AdamW/SGD weights and slots, eval logits and attention`, {
    skip: noAddon,
  }, () => {
    assertParity(parity(precision, true), precision, true);
  });
}

test("the GPU's lane arithmetic (warp shuffles, lane splits, barriers), emulated one thread per lane, = CPU kernels (fp32 1e-5, bf16 5e-2)", {
  skip: noAddon,
}, () => {
  // The plain host executor gives a warp one lane, so only this runs the GPU kernels' lane logic
  // as the GPU does: with the attention's old lane split (3 groups of 4 taken as a power of two)
  // the gradients were off by 100%.
  for (const precision of ['fp32', 'bf16'] as const)
    assertParity(parity(precision, 'simt', SIMT_VIT, 3), precision, 'simt');
});

test('GPU (CUDA executor) = CPU kernels through Node, fp32 (1e-4), tf32, bf16: step, gradients, optimizers, eval', {
  skip: noAddon || noDevice,
}, () => {
  for (const precision of ['fp32', 'tf32', 'bf16'] as const) assertParity(parity(precision, false), precision, false);
});

const hostKernels = (precision: Precision = 'fp32'): Kernels => ({ path: 'cuda', precision, host: true });

test('the GPU trainer (host executor) follows the native one: Adam, AdamW, SGD; weights reach the model only on syncModel; state resumes across paths', {
  skip: noAddon,
}, () => {
  const x = tf.randomNormal([6, 20, 20, 3], 0, 1, 'float32', 4) as tf.Tensor4D;
  const t = tf.tensor2d(problem(6, cfg).targets, [6, 5]);
  for (const settings of OPTIMIZERS) {
    const runs = ([{ path: 'native', isa: isa as string }, hostKernels()] as Kernels[]).map((kernels) => {
      const model = createVit(cfg, 2);
      const initial = weightsOf(model);
      // A smaller batch at creation: the first step moves the model to a larger allocation.
      const trainer = createTrainer(model, kernels, settings, { batch: 4 });
      const losses: number[] = [];
      for (let i = 0; i < 4; i++) {
        losses.push(trainer.gradients(x, t, { seed: i, gradClipNorm: 1 }).loss);
        trainer.update(settings.lr * (1 - i / 10));
      }
      const before = weightsOf(model);
      trainer.syncModel();
      const weights = weightsOf(model);
      const state = trainer.getState();
      trainer.dispose();
      model.dispose();
      return { losses, initial, before, weights, state };
    });
    const [n, c] = runs;
    assert.deepEqual(
      c.before,
      c.initial,
      `${settings.name}: the GPU trainer leaves the variables alone until syncModel`,
    );
    assert.notDeepEqual(c.weights, c.initial);
    c.losses.forEach((l, i) => {
      assert.ok(
        Math.abs(l - n.losses[i]) < 1e-5 * Math.max(1, n.losses[i]),
        `${settings.name} step ${i}: ${l} vs ${n.losses[i]}`,
      );
    });
    // Four steps on independently computed gradients: Adam turns their rounding-level differences
    // near zero into full steps (the parity tests above feed both optimizers the same gradients).
    c.weights.forEach((w, i) => {
      assert.ok(relDiff(w, n.weights[i]) < 1e-3, `${settings.name} weight ${i}: ${relDiff(w, n.weights[i])}`);
    });
    assert.equal(c.state.step, 4);
    assert.equal(c.state.slots.length, n.state.slots.length);
    c.state.slots.forEach((s, i) => {
      assert.ok(relDiff(s, n.state.slots[i]) < 1e-3, `${settings.name} slot ${i}: ${relDiff(s, n.state.slots[i])}`);
    });
  }
  // A state saved on one path resumes on the other, both ways.
  const settings = OPTIMIZERS[0];
  const model = createVit(cfg, 2);
  const native = createTrainer(model, { path: 'native', isa: isa as string }, settings);
  native.gradients(x, t, { seed: 1 });
  native.update(0.01);
  const saved = native.getState();
  native.dispose();
  const onGpu = createTrainer(model, hostKernels(), settings, { batch: 6 });
  onGpu.setState(saved);
  assert.deepEqual(onGpu.getState(), saved);
  assert.throws(() => onGpu.setState({ step: 1, slots: [] }), /optimizer state has 0 slots, expected \d+/);
  assert.throws(
    () => onGpu.setState({ step: 1, slots: saved.slots.map((s, i) => (i === 3 ? s.subarray(1) : s)) }),
    /optimizer slot 3 has \d+ values, expected \d+/,
  );
  onGpu.gradients(x, t, { seed: 2 });
  onGpu.update(0.01);
  const back = createTrainer(model, { path: 'native', isa: isa as string }, settings);
  back.setState(onGpu.getState());
  assert.equal(back.getState().step, 2);
  onGpu.dispose();
  back.dispose();
  model.dispose();
  tf.dispose([x, t]);
});

test('predict and forward on the cuda kernels (host executor) equal the native ones, across batch boundaries; while a trainer runs they see its newest weights', {
  skip: noAddon,
}, () => {
  const model = createVit(cfg, 8);
  const x = tf.randomNormal([9, 20, 20, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
  const native: Kernels = { path: 'native', isa: isa as string };
  const cuda = hostKernels();
  const a = predict(model, x, 4, cuda);
  const b = predict(model, x, 9, native);
  assert.ok(relDiff(a.dataSync(), b.dataSync()) < 1e-5);
  const fa = forward(model, x, { training: false, returnAttention: true }, cuda);
  const fb = forward(model, x, { training: false, returnAttention: true }, native);
  assert.ok(relDiff(fa.logits.dataSync(), fb.logits.dataSync()) < 1e-5);
  assert.equal(fa.attention?.length, cfg.depth);
  fa.attention?.forEach((att, l) => {
    assert.deepEqual(att.shape, [9, 3, 26, 26]);
    assert.ok(relDiff(att.dataSync(), (fb.attention as tf.Tensor[])[l].dataSync()) < 1e-5, `block ${l} attention`);
  });
  // Training moves the weights on the GPU; inference on the GPU sees them before any sync.
  const trainer = createTrainer(model, cuda, OPTIMIZERS[1], { batch: 9 });
  const t = tf.tensor2d(problem(9, cfg).targets, [9, 5]);
  trainer.gradients(x, t, { seed: 1 });
  trainer.update(0.05);
  const during = predict(model, x, 9, cuda);
  assert.ok(relDiff(during.dataSync(), a.dataSync()) > 1e-4, 'the trained weights changed the logits');
  trainer.syncModel();
  const after = predict(model, x, 9, native);
  assert.ok(relDiff(during.dataSync(), after.dataSync()) < 1e-5, 'the GPU copy and the synced model agree');
  trainer.dispose();
  // Training steps on the GPU go through its trainer, never through these.
  assert.throws(
    () => forward(model, x, { training: true, seed: 1 }, cuda),
    /training steps on the GPU run through its trainer/,
  );
  assert.throws(
    () => computeGradients(model, x, t, { seed: 1 }, cuda),
    /training steps on the GPU run through its trainer/,
  );
  tf.dispose([x, t, a, b, during, after, fa.logits, fb.logits, ...(fa.attention ?? []), ...(fb.attention ?? [])]);
  model.dispose();
});

test('a model with options the CUDA kernels lack stays on the CPU: auto runs it there, cuda is an error with the reason', {
  skip: noAddon,
}, () => {
  const why = 'the CUDA kernels implement tokenizer patch, pool cls and position_embedding learned only';
  const options: VitConfig[] = [
    { ...cfg, depth: 1, tokenizer: 'conv', convLayers: 1, convChannels: 4 },
    { ...cfg, depth: 1, pool: 'mean' },
    { ...cfg, depth: 1, posEmbedding: 'sincos' },
  ];
  for (const model of options) {
    // TFPIPE_CUDA=host: a GPU model that would otherwise be taken first.
    const r = choose({ TFPIPE_CUDA: 'host' }, ['auto', 'cuda'], model);
    assert.equal(r.status, 0, r.stderr);
    const line = r.stdout.split('\n').find((l) => l.startsWith('AUTO ')) as string;
    assert.match(line, /^AUTO \{"path":"(native|tfjs)"/, JSON.stringify(model));
    assert.ok(line.includes(`not considered: ${why}`), line);
    assert.ok(r.stdout.includes(`CUDA ERR runtime.kernels is "cuda" but ${why}`), r.stdout);
  }
  // The default options still go to the GPU model.
  assert.match(choose({ TFPIPE_CUDA: 'host' }, ['auto']).stdout, /AUTO \{"path":"cuda"/);
  const a = addon as GpuAddon;
  assert.throws(() => a.gpuCreate({ ...cfg, batch: 3, pool: 'seq' }, { host: true }), new RegExp(`gpuCreate: ${why}`));
});

test('the API checks every argument, and its errors name the call', { skip: noAddon }, () => {
  const a = addon as GpuAddon;
  const nc = { ...cfg, batch: 3 };
  assert.throws(
    () => a.gpuCreate(nc, { precision: 'fp16' as Precision, host: true }),
    /gpuCreate: precision must be "fp32", "tf32" or "bf16"/,
  );
  assert.throws(
    () => a.gpuCreate({ ...nc, dim: undefined as unknown as number }, { host: true }),
    /config\.dim must be a number/,
  );
  assert.throws(() => a.gpuCreate({ ...nc, patchSize: 3 }, { host: true }), /patchSize must divide imageSize/);
  const h = a.gpuCreate(nc, { host: true });
  const model = createVit(cfg, 1);
  const W = weightsOf(model);
  const { images, targets } = problem(3, cfg);
  // Not a handle, or one of another kind.
  assert.throws(
    () => a.gpuGetWeights({} as GpuHandle),
    /gpuGetWeights: the first argument must be a handle from gpuCreate/,
  );
  assert.throws(
    () => a.gpuStep(null as unknown as GpuHandle, images, targets, 3, -1, 0),
    /gpuStep: the first argument must be a handle/,
  );
  // Weights: count, type, size (layout.cc's param_size).
  assert.throws(() => a.gpuSetWeights(h, W.slice(1)), /gpuSetWeights: expected \d+ weight arrays, got \d+/);
  assert.throws(
    () => a.gpuSetWeights(h, W.map((w, i) => (i === 2 ? Array.from(w) : w)) as Float32Array[]),
    /weight 2 must be a Float32Array/,
  );
  assert.throws(
    () =>
      a.gpuSetWeights(
        h,
        W.map((w, i) => (i === 5 ? w.subarray(1) : w)),
      ),
    /gpuSetWeights: weight 5 has \d+ values, expected \d+/,
  );
  a.gpuSetWeights(h, W);
  // A step: batch within the allocation, images and targets of that batch.
  assert.throws(() => a.gpuStep(h, images, targets, 4, -1, 0), /gpuStep: batch must be an integer in 1\.\.3/);
  assert.throws(
    () => a.gpuStep(h, images.subarray(1), targets, 3, -1, 0),
    /gpuStep: images has \d+ values, expected 3600/,
  );
  assert.throws(
    () => a.gpuStep(h, images, targets.subarray(5), 3, -1, 0),
    /gpuStep: targets has 10 values, expected 15/,
  );
  assert.throws(() => a.gpuStep(h, images, targets, 3, -1, -1), /clipNorm must be >= 0/);
  const r = a.gpuStep(h, images, targets, 3, 7, 0);
  assert.ok(Number.isFinite(r.loss) && r.correct >= 0 && r.gradNorm > 0);
  // The optimizer: state and updates need it first.
  assert.throws(() => a.gpuGetSlots(h), /gpuGetSlots: optimizer slots before gpuSetOptimizer/);
  assert.throws(() => a.gpuUpdate(h, 0.1, 1), /gpuUpdate: update before gpuSetOptimizer/);
  const settings = gpuOptimizerSettings(OPTIMIZERS[0]);
  assert.throws(
    () => a.gpuSetOptimizer(h, { ...settings, name: 'lion' as 'adam' }, decayFlags(model)),
    /unknown optimizer "lion"/,
  );
  assert.throws(
    () => a.gpuSetOptimizer(h, settings, new Uint8Array(2)),
    /gpuSetOptimizer: decays has 2 values, expected \d+/,
  );
  a.gpuSetOptimizer(h, settings, decayFlags(model));
  assert.equal(a.gpuGetSlots(h).length, 2 * W.length);
  assert.throws(() => a.gpuSetSlots(h, W), /gpuSetSlots: expected \d+ slot arrays, got \d+/);
  assert.throws(() => a.gpuUpdate(h, 0.1, 0), /gpuUpdate: step must be an integer in 1\.\./);
  a.gpuUpdate(h, 0.1, 1);
  // Forward: any n, images of that n.
  assert.throws(() => a.gpuForward(h, images, 2, false), /gpuForward: images has 3600 values, expected 2400/);
  assert.equal(a.gpuForward(h, problem(8, cfg).images, 8, false).logits.length, 40);
  // Released: every call says so; releasing again is harmless.
  a.gpuRelease(h);
  a.gpuRelease(h);
  assert.throws(() => a.gpuGetWeights(h), /gpuGetWeights: the handle was released/);
  // The wrapper: the GPU itself only where it works.
  if (!gpu.ok)
    assert.throws(
      () => new GpuModel(cfg, { batch: 2 }),
      new RegExp(`the GPU model cannot run: ${escapeRegExp(gpu.detail)}`),
    );
  const gm = new GpuModel(cfg, { batch: 2, host: true });
  gm.release();
  assert.throws(() => gm.getWeights(), /GpuModel: used after release\(\)/);
  assert.throws(() => new GpuModel(cfg, { batch: 0, host: true }), /batch must be a positive integer/);
  model.dispose();
});

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** chooseKernels (and gpuAvailability) in a fresh process on wasm, with extra environment. */
function choose(
  env: Record<string, string>,
  requests: string[],
  model: VitConfig = { ...cfg, depth: 1 },
): { status: number | null; stdout: string; stderr: string } {
  const mod = (p: string) => JSON.stringify(pathToFileURL(join(root, 'dist/src', p)).href);
  const script = `const b = await import(${mod('ml/backend.js')});
    const c = await import(${mod('ml/vit/choose-kernels.js')});
    const g = await import(${mod('ml/vit/gpu.js')});
    await b.initBackend('wasm', 1);
    console.log('GPU ' + JSON.stringify(g.gpuAvailability()));
    for (const request of ${JSON.stringify(requests)}) {
      try {
        const d = await c.chooseKernels({ request, cfg: ${JSON.stringify(model)}, batch: 4, purpose: 'infer', precision: 'bf16' });
        console.log(request.toUpperCase() + ' ' + JSON.stringify(d.kernels) + ' ' + d.detail);
      } catch (e) {
        console.log(request.toUpperCase() + ' ERR ' + e.message);
      }
    }`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('auto without a working GPU runs the CPU kernels and the log says why the GPU was not taken', {
  skip: noAddon || (gpu.ok ? 'a CUDA GPU works here: auto takes it (tested below)' : false),
}, () => {
  const r = choose({}, ['auto']);
  assert.equal(r.status, 0, r.stderr);
  const line = r.stdout.split('\n').find((l) => l.startsWith('AUTO ')) as string;
  assert.doesNotMatch(line, /^AUTO \{"path":"cuda"/);
  assert.ok(line.includes(`not considered: ${gpu.detail}`), line);
  assert.match(
    gpu.detail,
    cudaBuild ? /^no usable CUDA GPU: .+/ : /^no usable CUDA GPU: this build has no CUDA kernels \(.+\)/,
  );
});

test('kernels: cuda without a working GPU is an error that says why, not a fallback', {
  skip: noAddon || (gpu.ok ? 'a CUDA GPU works here' : false),
}, () => {
  const r = choose({}, ['cuda', 'native']);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stdout.includes(`CUDA ERR runtime.kernels is "cuda" but ${gpu.detail}`), r.stdout);
  assert.match(r.stdout, /NATIVE \{"path":"native"/);
});

test('TFPIPE_CUDA=0 hides the GPU: auto runs the CPU and says so, cuda is an error, native is the CPU', {
  skip: noAddon,
}, () => {
  const r = choose({ TFPIPE_CUDA: '0' }, ['auto', 'cuda', 'native']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /GPU \{"ok":false,"detail":"CUDA GPU hidden \(TFPIPE_CUDA=0\)"\}/);
  assert.match(r.stdout, /AUTO \{"path":"(native|tfjs)".*not considered: CUDA GPU hidden \(TFPIPE_CUDA=0\)/);
  assert.match(r.stdout, /CUDA ERR runtime\.kernels is "cuda" but CUDA GPU hidden \(TFPIPE_CUDA=0\)/);
  assert.match(r.stdout, /NATIVE \{"path":"native"/);
});

test('with a working GPU, auto takes it without timing, names it, and runs the asked precision', {
  skip: noAddon || noDevice,
}, () => {
  const r = choose({}, ['auto', 'cuda']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(
    r.stdout,
    /AUTO \{"path":"cuda","precision":"bf16"\} CUDA kernels on .+ \(compute capability \d+\.\d+.*driver .*CUDA runtime .*cuBLASLt .*without timing/,
  );
  assert.match(r.stdout, /CUDA \{"path":"cuda","precision":"bf16"\} CUDA kernels on .*\(runtime\.kernels: cuda\)/);
});

test('no cuBLASLt (TFPIPE_CUBLASLT=/nonexistent): the GPU is refused with where it looked, and the CPU runs', {
  skip: noAddon || (cudaBuild ? false : `this addon never loads cuBLASLt: ${addon?.gpuInfo().error}`),
}, () => {
  const r = choose({ TFPIPE_CUBLASLT: '/nonexistent/libcublasLt.so.13' }, ['auto', 'cuda']);
  assert.equal(r.status, 0, r.stderr);
  const availability = JSON.parse((r.stdout.split('\n').find((l) => l.startsWith('GPU ')) as string).slice(4));
  assert.equal(availability.ok, false);
  assert.match(
    availability.info.cublasLtError,
    /^cuBLASLt not found \(set TFPIPE_CUBLASLT to libcublasLt\.so\.13\); tried \/nonexistent\/libcublasLt\.so\.13: .*No such file/,
  );
  assert.match(availability.detail, /tried \/nonexistent\/libcublasLt\.so\.13/);
  assert.match(r.stdout, /AUTO \{"path":"(native|tfjs)".*not considered: .*cuBLASLt not found/);
  assert.match(r.stdout, /CUDA ERR runtime\.kernels is "cuda" but no usable CUDA GPU: .*cuBLASLt not found/);
  // Without the variable it looks in the dynamic linker's path and the usual folders, and names each.
  const info = (addon as GpuAddon).gpuInfo();
  if (!info.cublasLt) assert.match(info.cublasLtError ?? '', /tried libcublasLt\.so\.13: /);
});

test('train.precision is validated and part of the train stage key (and only its); runtime.kernels takes cuda', () => {
  const outputs = mkdtempSync(join(tmpdir(), 'tfpipe-precision-'));
  const file = join(packageRoot, 'pipelines', 'cifar-vit-quick.yaml');
  const keys = (sets: string[]) => {
    const r = tfpipe(['status', file, '--json', ...sets.flatMap((s) => ['--set', s])], outputs);
    assert.equal(r.code, 0, r.stderr);
    return Object.fromEntries(
      (JSON.parse(r.stdout).stages as { name: string; key: string }[]).map((s) => [s.name, s.key]),
    );
  };
  const fp32 = keys([]);
  assert.deepEqual(keys(['train.precision=fp32']), fp32, 'fp32 is the default');
  const bf16 = keys(['train.precision=bf16']);
  const tf32 = keys(['train.precision=tf32']);
  assert.notEqual(bf16.train, fp32.train);
  assert.notEqual(tf32.train, fp32.train);
  assert.notEqual(tf32.train, bf16.train);
  for (const stage of ['data', 'augmentation', 'model']) assert.equal(bf16[stage], fp32[stage], stage);
  assert.notEqual(bf16.evaluate, fp32.evaluate, 'downstream of train');
  assert.deepEqual(keys(['runtime.kernels=cuda']), fp32, 'runtime is not part of keys');
  // Both problems at once.
  const bad = tfpipe(['status', file, '--set', 'train.precision=fp16', '--set', 'runtime.kernels=gpu'], outputs);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /stages\.train\.precision: must be one of: "fp32", "tf32", "bf16"/);
  assert.match(bad.stderr, /runtime\.kernels: must be one of: "auto", "cuda", "native", "tfjs"/);
});

test('a train stage asked for bf16 on the CPU runs fp32, and its log and result.json say so', {
  skip: noArchive,
}, () => {
  const p = tempProject();
  const file = p.write('p.yaml', tinyPipeline('precision-cpu', '', '{ backend: wasm, kernels: native }'));
  const r = tfpipe(
    ['run', file, '--json', '--until', 'train', '--set', 'train.epochs=1', '--set', 'train.precision=bf16'],
    p.outputs,
  );
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const train = (JSON.parse(r.stdout).stages as { name: string; dir: string }[]).find((s) => s.name === 'train');
  const result = JSON.parse(readFileSync(join(resolve(train?.dir as string), 'result.json'), 'utf8'));
  assert.equal(result.precision, 'fp32');
  assert.match(result.precision_note, /^bf16 asked; native\/\w+ computes in fp32$/);
  assert.equal(result.gpu, null);
  assert.match(r.stderr, /precision: bf16 asked, but native\/\w+ computes in fp32, so this run is fp32/);
});

test('the whole pipeline on the GPU path without a GPU (TFPIPE_CUDA=host): train, validation, evaluate and rollout run on the GPU model and learn', {
  skip: noArchive || noAddon,
  timeout: 300_000,
}, () => {
  // The GPU path's TypeScript end to end (CudaTrainer, syncModel before validation and
  // checkpoints, predict and attention maps on the GPU model, batches made by workers) with the
  // host executor standing in for the device.
  const p = tempProject();
  const extra = `  evaluate:
    kind: evaluate
    needs: [train, data, augmentation]
  rollout:
    kind: attention_rollout
    needs: [train, data, augmentation]
    images: 4
`;
  const file = p.write('p.yaml', tinyPipeline('host-gpu', extra, '{ backend: wasm, kernels: cuda }'));
  const r = tfpipe(['run', file, '--json'], p.outputs, { env: { TFPIPE_CUDA: 'host', TFPIPE_BATCH_WORKERS: '2' } });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stderr + r.stdout, /the GPU model on the host executor/);
  assert.match(r.stderr + r.stdout, /batches: made ahead by 2 worker thread\(s\)/);
  const stages = JSON.parse(r.stdout).stages as { name: string; dir: string; state: string }[];
  const dirOf = (name: string) => resolve(stages.find((s) => s.name === name)?.dir as string);
  const result = JSON.parse(readFileSync(join(dirOf('train'), 'result.json'), 'utf8'));
  assert.equal(result.kernels, 'cuda-host/fp32');
  assert.equal(result.gpu.name, 'host executor (TFPIPE_CUDA=host)');
  const metrics = readFileSync(join(dirOf('train'), 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.ok(metrics[metrics.length - 1].train_loss < metrics[0].train_loss, 'it learns');
  assert.ok(
    metrics.every((m) => m.val_accuracy > 0.1),
    `validation on the GPU model beats chance: ${metrics.map((m) => m.val_accuracy)}`,
  );
  const evaluation = JSON.parse(readFileSync(join(dirOf('evaluate'), 'result.json'), 'utf8'));
  assert.ok(evaluation.test_accuracy > 0.1, `test accuracy ${evaluation.test_accuracy}`);
  assert.ok(stages.find((s) => s.name === 'rollout')?.state === 'ran');
});

test('a tiny train run on the GPU: result.json records the GPU, the precision and the cuda kernels', {
  skip: noArchive || noAddon || noDevice,
}, () => {
  const p = tempProject();
  const file = p.write('p.yaml', tinyPipeline('precision-gpu', '', '{ backend: wasm, kernels: cuda }'));
  const r = tfpipe(['run', file, '--json', '--until', 'train', '--set', 'train.precision=bf16'], p.outputs);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const train = (JSON.parse(r.stdout).stages as { name: string; dir: string }[]).find((s) => s.name === 'train');
  const dir = resolve(train?.dir as string);
  const result = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8'));
  assert.equal(result.kernels, 'cuda/bf16');
  assert.equal(result.precision, 'bf16');
  assert.equal(result.gpu.name, gpu.info?.name);
  assert.match(result.gpu.compute_capability, /^\d+\.\d+$/);
  assert.match(result.gpu.driver, /^\d+\.\d+$/);
  assert.match(result.gpu.cuda_runtime, /^\d+\.\d+$/);
  assert.ok(result.gpu.cublaslt_version);
  const metrics = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.ok(metrics[metrics.length - 1].train_loss < metrics[0].train_loss, 'it learns');
  assert.ok(existsSync(join(dir, 'last', 'model.json')));
});

test('an nvcc that fails does not fail the build: the addon is built without the CUDA kernels and says why', {
  skip: isa ? false : 'native addon not built (no C++ compiler?)',
}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'tfpipe-nvcc-'));
  const nvcc = join(dir, 'nvcc');
  writeFileSync(nvcc, '#!/bin/sh\necho "nvcc: this one always fails" >&2\nexit 1\n');
  chmodSync(nvcc, 0o755);
  const build = join(dir, 'build');
  const r = spawnSync(process.execPath, [join(root, 'native/build.mjs')], {
    encoding: 'utf8',
    // -O0: this checks what is built, not how fast it runs.
    env: { ...process.env, NVCC: nvcc, TFPIPE_NATIVE_BUILD_DIR: build, TFPIPE_NATIVE_CFLAGS: '-O0' },
    timeout: 300_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(
    r.stdout,
    /CUDA kernels not built \(nvcc, device_exec\.cu: nvcc: this one always fails\); the addon is built without them/,
  );
  assert.match(r.stdout, /built native kernels .*no CUDA kernels/);
  const probe = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const g = await import(${JSON.stringify(pathToFileURL(join(root, 'dist/src/ml/vit/gpu.js')).href)});
       console.log(JSON.stringify(g.gpuAvailability()));`,
    ],
    { encoding: 'utf8', env: { ...process.env, TFPIPE_NATIVE_ADDON: join(build, 'vit_kernels.node') } },
  );
  assert.equal(probe.status, 0, probe.stderr);
  const a = JSON.parse(probe.stdout.trim());
  assert.equal(a.ok, false);
  assert.equal(a.info.cudaBuild, false);
  assert.equal(
    a.detail,
    'no usable CUDA GPU: this build has no CUDA kernels (nvcc failed on device_exec.cu when native/ was built)',
  );
  assert.ok(existsSync(nativeAddonPath), 'the real addon is untouched');
});
