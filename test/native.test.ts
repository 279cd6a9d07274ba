// The native kernels must give what the tfjs implementation gives, on every ISA variant this CPU
// runs: loss, correct count, every gradient (with dropout), eval logits and attention maps, for
// both activations. Also: the addon's load-time checks (variant forcing, parameter layout, config
// by name, no shared symbols between variants), and what it says about the CPU against
// /proc/cpuinfo. Without the addon (or on a CPU that cannot run a variant) each test reports
// itself skipped with the reason; under TFPIPE_NATIVE_REQUIRED=1 (CI) a missing addon fails.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/ml/backend.js';
import { createVit, computeGradients, forward, predict, tfjsKernels, type Kernels } from '../src/ml/vit/index.js';
import { nativeAvailability, nativeInfo, nativeRun, runnableVariants } from '../src/ml/vit/native.js';
import { createTrainer } from '../src/ml/vit/trainer.js';
import { nativeLayout } from '../src/ml/vit/layout.js';
import type { OptimizerSettings, OptimizerState } from '../src/ml/optim.js';
import { ODD_VIT } from './fixtures/vit-configs.js';
import { expectedVariants, isaCases, nativeRequired, noAddon, relDiff } from './native-helpers.js';

const skip = noAddon;
const root = fileURLToPath(new URL('../../', import.meta.url));

before(async () => {
  await initBackend('wasm', 2);
});

const cfg = ODD_VIT;

function data(n: number): { x: tf.Tensor4D; t: tf.Tensor2D } {
  const x = tf.randomNormal([n, 20, 20, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
  // Soft targets (label smoothing-like) to exercise the soft cross-entropy.
  const hard = tf
    .oneHot(
      tf.tensor1d(
        Array.from({ length: n }, (_, i) => (i * 3) % 5),
        'int32',
      ),
      5,
    )
    .toFloat();
  const t = tf.add(tf.mul(hard, 0.9), 0.02) as tf.Tensor2D;
  hard.dispose();
  return { x, t };
}

const variants = runnableVariants();

test('the addon is built, with every variant native/variants.conf lists for this architecture', {
  skip: !nativeRequired && noAddon ? `${noAddon} (set TFPIPE_NATIVE_REQUIRED=1 to make this a failure)` : false,
}, () => {
  const info = nativeInfo();
  assert.ok(info, `TFPIPE_NATIVE_REQUIRED=1 but the ${noAddon}`);
  assert.deepEqual(
    info.variants.map((v) => v.name),
    expectedVariants,
  );
  const lanes = Object.fromEntries(info.variants.map((v) => [v.name, v.lanes]));
  if (process.arch === 'x64') assert.deepEqual(lanes, { avx512: 16, avx2: 8, baseline: 4 });
  if (process.arch === 'arm64') assert.deepEqual(lanes, { neon: 4 });
  // It runs the best variant this CPU supports, and every x86-64 CPU runs the baseline.
  assert.ok(variants.length >= 1);
  assert.equal(info.isa, variants[0]);
  assert.equal(nativeAvailability().isa, variants[0]);
  if (process.arch === 'x64') assert.ok(variants.includes('baseline'));
});

/** The CPU flags the Linux kernel reports (it leaves out AVX-512 when the OS does not save its registers). */
function cpuinfo(): { family: string; model: string; flags: Set<string> } | undefined {
  if (!existsSync('/proc/cpuinfo')) return undefined;
  const text = readFileSync('/proc/cpuinfo', 'utf8');
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(text)?.[1].trim();
  const flags = field('flags');
  return flags === undefined
    ? undefined
    : { family: field('cpu family') ?? '?', model: field('model') ?? '?', flags: new Set(flags.split(/\s+/)) };
}
const cpu = cpuinfo();

test("the addon's CPU model, features and runnable variants agree with /proc/cpuinfo, not with themselves", {
  skip:
    noAddon ||
    (process.arch !== 'x64' || !cpu ? 'needs an x86-64 Linux CPU (flags in /proc/cpuinfo) to compare against' : false),
}, () => {
  const info = nativeInfo();
  assert.ok(info && cpu);
  // The features the dispatch looks at (native/src/dispatch.cc), as the kernel names them.
  const looked = ['avx512f', 'avx512bw', 'avx512dq', 'avx512vl', 'avx2', 'fma'];
  const has = looked.filter((f) => cpu.flags.has(f));
  assert.equal(info.features, has.length ? has.join(' ') : 'sse2');
  const needs: Record<string, string[]> = {
    avx512: ['avx512f', 'avx512bw', 'avx512dq', 'avx512vl', 'avx2', 'fma'],
    avx2: ['avx2', 'fma'],
    baseline: [],
  };
  for (const v of info.variants)
    assert.equal(
      v.supported,
      needs[v.name].every((f) => cpu.flags.has(f)),
      `${v.name} runnable here`,
    );
  // The brand string may be a hypervisor's invention; family and model come from cpuid leaf 1 as
  // the kernel's do.
  assert.match(info.cpu, new RegExp(`\\(family ${cpu.family}, model ${cpu.model}\\)$`));
});

for (const { isa, skip } of isaCases()) {
  const native: Kernels = { path: 'native', isa };
  for (const activation of ['gelu_tanh', 'gelu'] as const) {
    test(`native ${isa} training step equals the tfjs one (${activation}): loss, correct, all gradients, dropout`, {
      skip,
    }, () => {
      const model = createVit({ ...cfg, activation }, 5);
      const { x, t } = data(7);
      const n = computeGradients(model, x, t, { seed: 42 }, native);
      const j = computeGradients(model, x, t, { seed: 42 }, tfjsKernels);
      assert.ok(Math.abs(n.loss - j.loss) < 1e-4, `loss ${n.loss} vs ${j.loss}`);
      assert.equal(n.correct, j.correct);
      for (const name of Object.keys(j.grads)) {
        const d = relDiff(n.grads[name].dataSync(), j.grads[name].dataSync());
        assert.ok(d < 1e-4, `${model.stableName(name)}: relative difference ${d}`);
      }
      tf.dispose([x, t, n.grads, j.grads]);
      model.dispose();
    });
  }

  test(`native ${isa} predict and attention equal the tfjs ones, also across batch boundaries`, { skip }, () => {
    const model = createVit({ ...cfg, activation: 'gelu' }, 8);
    const { x, t } = data(9);
    const n = predict(model, x, 4, native);
    const j = predict(model, x, 9, tfjsKernels);
    assert.ok(relDiff(n.dataSync(), j.dataSync()) < 1e-4);
    const fn = forward(model, x, { training: false, returnAttention: true }, native);
    const fj = forward(model, x, { training: false, returnAttention: true }, tfjsKernels);
    assert.ok(relDiff(fn.logits.dataSync(), fj.logits.dataSync()) < 1e-4);
    assert.equal(fn.attention?.length, cfg.depth);
    fn.attention?.forEach((a, l) => {
      assert.deepEqual(a.shape, [9, 3, 26, 26]);
      assert.ok(relDiff(a.dataSync(), (fj.attention as tf.Tensor[])[l].dataSync()) < 1e-4, `block ${l} attention`);
    });
    tf.dispose([x, t, n, j, fn.logits, fj.logits, ...(fn.attention ?? []), ...(fj.attention ?? [])]);
    model.dispose();
  });
}

test('native gradient clipping equals clipByGlobalNorm on the tfjs gradients', { skip }, () => {
  const native: Kernels = { path: 'native', isa: variants[0] };
  const model = createVit(cfg, 4);
  const { x, t } = data(5);
  for (const clip of [0.01, 1e9]) {
    const n = computeGradients(model, x, t, { seed: 3, gradClipNorm: clip }, native);
    const j = computeGradients(model, x, t, { seed: 3, gradClipNorm: clip }, tfjsKernels);
    let sq = 0;
    for (const name of Object.keys(j.grads)) {
      const g = n.grads[name].dataSync();
      for (const v of g) sq += v * v;
      const d = relDiff(g, j.grads[name].dataSync());
      assert.ok(d < 1e-4, `clip ${clip} ${model.stableName(name)}: relative difference ${d}`);
    }
    if (clip < 1) assert.ok(Math.abs(Math.sqrt(sq) - clip) < 1e-4 * clip, `clipped norm ${Math.sqrt(sq)}`);
    else assert.ok(Math.sqrt(sq) > 0.01, 'a large bound leaves the gradients alone');
    tf.dispose([n.grads, j.grads]);
  }
  tf.dispose([x, t]);
  model.dispose();
});

test('the native trainer (gradients + optimizer in the addon) follows the tfjs one: Adam, AdamW, SGD, weights and state', {
  skip,
}, () => {
  const native: Kernels = { path: 'native', isa: variants[0] };
  const base = { lr: 3e-3, betas: [0.9, 0.999] as [number, number], eps: 1e-8, momentum: 0.9 };
  const cases: OptimizerSettings[] = [
    { name: 'adam', weight_decay: 0.01, ...base },
    { name: 'adamw', weight_decay: 0.05, ...base },
    { name: 'sgd', weight_decay: 0.01, ...base, lr: 0.05 },
  ];
  const { x, t } = data(6);
  for (const settings of cases) {
    const runs: { losses: number[]; weights: Float32Array[]; state: OptimizerState }[] = [native, tfjsKernels].map(
      (kernels) => {
        const model = createVit({ ...cfg, dropout: 0.1 }, 2);
        const trainer = createTrainer(model, kernels, settings);
        const losses: number[] = [];
        for (let i = 0; i < 6; i++) {
          losses.push(trainer.gradients(x, t, { seed: i, gradClipNorm: 1 }).loss);
          trainer.update(settings.lr * (1 - i / 10));
        }
        const weights = model.variables.map((v) => (v.dataSync() as Float32Array).slice());
        const state = trainer.getState();
        trainer.dispose();
        model.dispose();
        return { losses, weights, state };
      },
    );
    const [n, j] = runs;
    assert.equal(n.state.step, 6);
    assert.equal(n.state.slots.length, j.state.slots.length);
    n.losses.forEach((l, i) => {
      assert.ok(
        Math.abs(l - j.losses[i]) < 1e-4 * Math.max(1, j.losses[i]),
        `${settings.name} step ${i} loss ${l} vs ${j.losses[i]}`,
      );
    });
    n.weights.forEach((w, i) => {
      assert.ok(relDiff(w, j.weights[i]) < 1e-4, `${settings.name} weight ${i}: ${relDiff(w, j.weights[i])}`);
    });
    n.state.slots.forEach((s, i) => {
      assert.ok(relDiff(s, j.state.slots[i]) < 1e-3, `${settings.name} slot ${i}: ${relDiff(s, j.state.slots[i])}`);
    });
  }
  // A state saved by one resumes on the other: load the tfjs trainer's state into a native one.
  const model = createVit(cfg, 2);
  const trainer = createTrainer(model, native, cases[0]);
  trainer.setState({ step: 3, slots: trainer.getState().slots.map((s) => s.fill(0.5)) });
  assert.equal(trainer.getState().step, 3);
  assert.ok(trainer.getState().slots.every((s) => s.every((v) => v === 0.5)));
  assert.throws(() => trainer.setState({ step: 1, slots: [] }), /optimizer state has 0 slots/);
  trainer.dispose();
  model.dispose();
  tf.dispose([x, t]);
});

test('native training on one batch with Adam drives the loss down like tfjs does, without leaks', { skip }, () => {
  const losses: Record<string, number[]> = {};
  const kernels: Record<string, Kernels> = { native: { path: 'native', isa: variants[0] }, tfjs: tfjsKernels };
  for (const mode of ['native', 'tfjs']) {
    const model = createVit({ ...cfg, dropout: 0 }, 1);
    const opt: tf.Optimizer = tf.train.adam(3e-3);
    const { x, t } = data(8);
    losses[mode] = [];
    let tensors = 0;
    for (let i = 0; i < 25; i++) {
      const r = computeGradients(model, x, t, { seed: i }, kernels[mode]);
      opt.applyGradients(r.grads);
      tf.dispose(r.grads);
      losses[mode].push(r.loss);
      if (i === 1) tensors = tf.memory().numTensors; // Adam's slots exist from step 1
      if (i > 1) assert.equal(tf.memory().numTensors, tensors, `${mode} step ${i} leaked tensors`);
    }
    tf.dispose([x, t]);
    opt.dispose();
    model.dispose();
  }
  assert.ok(losses.native[24] < 0.5 * losses.native[0], `native loss ${losses.native[0]} -> ${losses.native[24]}`);
  // Same trajectory within float drift.
  for (let i = 0; i < 25; i++)
    assert.ok(Math.abs(losses.native[i] - losses.tfjs[i]) < 1e-3 * Math.max(1, losses.tfjs[i]), `step ${i}`);
});

test('the config goes by name: a missing field is a clear error, not a misread', { skip }, () => {
  const model = createVit(cfg, 1);
  const weights = model.variables.map((v) => v.dataSync() as Float32Array);
  const images = new Float32Array(2 * 20 * 20 * 3);
  assert.throws(
    () =>
      nativeRun(variants[0], { ...cfg, mlpDim: undefined as unknown as number }, weights, images, 2, null, undefined),
    /config\.mlpDim must be a number/,
  );
  assert.throws(
    () => nativeRun(variants[0], { ...cfg, activation: 'relu' as 'gelu' }, weights, images, 2, null, undefined),
    /unknown activation "relu"/,
  );
  // A weight of the wrong size is refused before anything reads it.
  const short = weights.map((w, i) => (i === 5 ? w.subarray(1) : w));
  assert.throws(
    () => nativeRun(variants[0], cfg, short, images, 2, null, undefined),
    /weight 5 has \d+ values, expected \d+/,
  );
  model.dispose();
});

/** nativeAvailability() (and chooseKernels) in a fresh process with extra environment. */
function inChild(env: Record<string, string>, code: string): { status: number | null; stdout: string; stderr: string } {
  const native = pathToFileURL(join(root, 'dist/src/ml/vit/native.js')).href;
  const choose = pathToFileURL(join(root, 'dist/src/ml/vit/choose-kernels.js')).href;
  const script = `const n = await import(${JSON.stringify(native)}); const c = await import(${JSON.stringify(choose)}); ${code}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('TFPIPE_NATIVE_ISA forces a variant; one this build lacks is a clear error, not a fallback', { skip }, () => {
  const last = variants[variants.length - 1];
  const forced = inChild({ TFPIPE_NATIVE_ISA: last }, 'console.log(JSON.stringify(n.nativeAvailability()))');
  assert.equal(forced.status, 0, forced.stderr);
  const a = JSON.parse(forced.stdout.trim());
  assert.equal(a.isa, last);
  assert.match(a.detail, new RegExp(`${last} variant, forced by TFPIPE_NATIVE_ISA`));

  const bogus = inChild(
    { TFPIPE_NATIVE_ISA: 'avx1024' },
    `console.log(JSON.stringify(n.nativeAvailability()));
     await c.chooseKernels({ request: 'auto', cfg: ${JSON.stringify(cfg)}, batch: 4, purpose: 'train' }).catch((e) => { console.log('ERR ' + e.message); });`,
  );
  const b = JSON.parse(bogus.stdout.split('\n')[0]);
  assert.equal(b.isa, undefined);
  assert.match(b.forcedError, /TFPIPE_NATIVE_ISA=avx1024: no such kernel variant in this build \(built: /);
  assert.match(bogus.stdout, /ERR TFPIPE_NATIVE_ISA=avx1024: no such kernel variant/);
});

// A variant this CPU cannot run: one that really cannot run here, or else avx512 with the CPU's
// AVX-512 hidden from the dispatch (TFPIPE_NATIVE_HIDE_FEATURES, native/src/dispatch.cc).
const unrunnable = nativeInfo()?.variants.find((v) => !v.supported);
const hideable = nativeInfo()?.variants.find((v) => v.name === 'avx512');
test('TFPIPE_NATIVE_ISA naming a variant this CPU cannot run is an error naming what it lacks; unforced, the next best runs', {
  skip:
    noAddon ||
    (!unrunnable && !hideable
      ? 'every variant of this build runs here and none needs a feature the dispatch can hide (no avx512 variant)'
      : false),
}, () => {
  const target = unrunnable ?? hideable;
  assert.ok(target);
  const env: Record<string, string> = unrunnable ? {} : { TFPIPE_NATIVE_HIDE_FEATURES: 'avx512f' };
  const forced = inChild(
    { ...env, TFPIPE_NATIVE_ISA: target.name },
    `console.log(JSON.stringify(n.nativeAvailability()));
     await c.chooseKernels({ request: 'auto', cfg: ${JSON.stringify(cfg)}, batch: 4, purpose: 'train' }).catch((e) => { console.log('ERR ' + e.message); });
     await c.chooseKernels({ request: 'native', cfg: ${JSON.stringify(cfg)}, batch: 4, purpose: 'train' }).catch((e) => { console.log('ERR ' + e.message); });`,
  );
  assert.equal(forced.status, 0, forced.stderr);
  const a = JSON.parse(forced.stdout.split('\n')[0]);
  assert.equal(a.isa, undefined, 'no silent fallback');
  const why = new RegExp(
    `TFPIPE_NATIVE_ISA=${target.name}: this CPU \\(.+\\) cannot run the ${target.name} kernels \\(they need ${target.requires}; it has: [^)]*\\)`,
  );
  assert.match(a.forcedError, why);
  if (!unrunnable) assert.doesNotMatch(a.forcedError, /it has: [^)]*avx512f/, 'the hidden feature is not claimed');
  const errors = forced.stdout.split('\n').filter((l) => l.startsWith('ERR '));
  assert.equal(errors.length, 2, forced.stdout);
  for (const e of errors) assert.match(e, why);
  // Not forced: the best variant the (masked) CPU runs.
  const unforced = inChild(env, 'console.log(JSON.stringify(n.nativeAvailability()))');
  const best = nativeInfo()?.variants.find((v) => v.name !== target.name && (unrunnable ? v.supported : true));
  assert.equal(JSON.parse(unforced.stdout.trim()).isa, best?.name);
});

test('an addon that expects another parameter layout is refused with a clear message', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tfpipe-fake-addon-'));
  const fake = join(dir, 'fake.cjs');
  // The real layout with two block weights swapped, as an addon built from older sources might have.
  writeFileSync(
    fake,
    `const block = ['attn_norm/gamma','attn_norm/beta','attn/to_k','attn/to_q','attn/to_v','attn/to_out/kernel','attn/to_out/bias','mlp_norm/gamma','mlp_norm/beta','mlp/fc1/kernel','mlp/fc1/bias','mlp/fc2/kernel','mlp/fc2/bias'];
     module.exports = { info: () => ({ isa: 'baseline', error: null, cpu: 'fake', features: '', variants: [], layout: {
       stem: ${JSON.stringify(nativeLayout().stem)}, block, head: ${JSON.stringify(nativeLayout().head)},
       blockDropoutSites: ['attn/weights','attn/out','mlp/hidden','mlp/out'], embeddingDropoutSite: 0 } }),
       run: () => { throw new Error('must not run'); } };`,
  );
  const r = inChild(
    { TFPIPE_NATIVE_ADDON: fake, TFPIPE_NATIVE: '1' },
    'console.log(JSON.stringify(n.nativeAvailability()))',
  );
  assert.equal(r.status, 0, r.stderr);
  const a = JSON.parse(r.stdout.trim());
  assert.equal(a.isa, undefined);
  assert.match(
    a.detail,
    /refused: .*fake\.cjs expects another parameter layout \(block\[2\] is "attn\/to_k" in the addon, "attn\/to_q" in tfpipe\)/,
  );
});

test('the variant objects define no symbols another variant could share (no SIGILL through the linker)', {
  skip,
}, async () => {
  const { foreignSymbols } = (await import(pathToFileURL(join(root, 'native/check-symbols.mjs')).href)) as {
    foreignSymbols: (object: string, isa: string) => string[] | null;
  };
  const objDir = join(root, 'native/build/obj');
  const objects = readdirSync(objDir).filter((f) => /^model-.*\.o$/.test(f));
  assert.ok(objects.length >= 1);
  for (const o of objects) assert.deepEqual(foreignSymbols(join(objDir, o), o.slice(6, -2)), [], o);
  // The check itself catches an inline function from a shared header.
  const dir = mkdtempSync(join(tmpdir(), 'tfpipe-symbols-'));
  writeFileSync(
    join(dir, 'x.cc'),
    'inline int shared(int x) { return x + 1; }\nnamespace tfpipe { namespace avx2 { int f(int x) { return shared(x); } } }\n',
  );
  execFileSync(process.env.CXX || 'g++', ['-O0', '-c', join(dir, 'x.cc'), '-o', join(dir, 'x.o')]);
  assert.deepEqual(foreignSymbols(join(dir, 'x.o'), 'avx2'), ['_Z6sharedi']);
});

test('a failing native build exits 0 with a note for npm install, and 1 with TFPIPE_NATIVE_REQUIRED=1 (CI)', () => {
  const script = join(root, 'native/build.mjs');
  const build = (required: boolean) => {
    const env: NodeJS.ProcessEnv = { ...process.env, CXX: '/nonexistent/c++' };
    if (required) env.TFPIPE_NATIVE_REQUIRED = '1';
    else delete env.TFPIPE_NATIVE_REQUIRED;
    return spawnSync(process.execPath, [script], { encoding: 'utf8', env, timeout: 60_000 });
  };
  const addon = join(root, 'native/build/vit_kernels.node');
  const before = existsSync(addon) ? statSync(addon).mtimeMs : undefined;
  const optional = build(false);
  assert.equal(optional.status, 0, optional.stderr);
  assert.match(optional.stdout, /native kernels not built .*using tfjs kernels/);
  const required = build(true);
  assert.equal(required.status, 1, required.stdout);
  assert.match(required.stderr, /native \w+ kernels not built \(.*\/nonexistent\/c\+\+/);
  assert.match(required.stderr, /TFPIPE_NATIVE_REQUIRED=1, so this is an error/);
  assert.equal(existsSync(addon) ? statSync(addon).mtimeMs : undefined, before, 'the built addon was left alone');
});
