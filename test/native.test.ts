// The native kernels must give what the tfjs implementation gives, on every ISA variant this CPU
// runs: loss, correct count, every gradient (with dropout), eval logits and attention maps, for
// both activations. Also: the addon's load-time checks (variant forcing, parameter layout, config
// by name, no shared symbols between variants). Skipped when the optional addon is not built.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/ml/backend.js';
import { createVit, computeGradients, forward, predict, tfjsKernels, type Kernels } from '../src/ml/vit/index.js';
import { nativeAddonPath, nativeAvailability, nativeInfo, nativeRun, runnableVariants } from '../src/ml/vit/native.js';
import { createTrainer } from '../src/ml/vit/trainer.js';
import type { OptimizerSettings, OptimizerState } from '../src/ml/optim.js';
import { ODD_VIT } from './fixtures/vit-configs.js';

const built = existsSync(nativeAddonPath);
const skip = built ? false : 'native addon not built (node native/build.mjs)';
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

function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 1e-3;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  let m = a.length === b.length ? 0 : Infinity;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m / scale;
}

const variants = built ? runnableVariants() : [];

test('the addon reports every variant it holds, runs the best this CPU supports, and this CPU runs at least one', {
  skip,
}, () => {
  const info = nativeInfo();
  assert.ok(info, nativeAvailability().detail);
  assert.ok(variants.length >= 1);
  assert.equal(info.isa, variants[0]);
  assert.equal(nativeAvailability().isa, variants[0]);
  assert.ok(info.cpu.length > 0);
  // What this build holds on this architecture (native/variants.conf).
  const names = info.variants.map((v) => v.name);
  if (process.arch === 'x64') assert.deepEqual(names, ['avx512', 'avx2', 'baseline']);
  if (process.arch === 'arm64') assert.deepEqual(names, ['neon']);
  // Every x86-64 CPU runs the baseline; the wider variants only where the CPU has the features.
  if (process.arch === 'x64') assert.ok(variants.includes('baseline'));
  for (const v of info.variants)
    assert.equal(
      v.supported,
      v.requires
        .split(' ')
        .filter(Boolean)
        .every((f) => info.features.split(' ').includes(f)),
      v.name,
    );
  const lanes = Object.fromEntries(info.variants.map((v) => [v.name, v.lanes]));
  if (process.arch === 'x64') assert.deepEqual(lanes, { avx512: 16, avx2: 8, baseline: 4 });
});

for (const isa of variants) {
  const native: Kernels = { path: 'native', isa };
  for (const activation of ['gelu_tanh', 'gelu'] as const) {
    test(`native ${isa} training step equals the tfjs one (${activation}): loss, correct, all gradients, dropout`, () => {
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

  test(`native ${isa} predict and attention equal the tfjs ones, also across batch boundaries`, () => {
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

test('an addon that expects another parameter layout is refused with a clear message', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tfpipe-fake-addon-'));
  const fake = join(dir, 'fake.cjs');
  // The real layout with two block weights swapped, as an addon built from older sources might have.
  writeFileSync(
    fake,
    `const block = ['attn_norm/gamma','attn_norm/beta','attn/to_k','attn/to_q','attn/to_v','attn/to_out/kernel','attn/to_out/bias','mlp_norm/gamma','mlp_norm/beta','mlp/fc1/kernel','mlp/fc1/bias','mlp/fc2/kernel','mlp/fc2/bias'];
     module.exports = { info: () => ({ isa: 'baseline', error: null, cpu: 'fake', features: '', variants: [], layout: {
       stem: ['embedding/patch/kernel','embedding/patch/bias','embedding/cls_token','embedding/pos_embedding'], block,
       head: ['head/norm/gamma','head/norm/beta','head/kernel','head/bias'],
       blockDropoutSites: ['attn/weights','attn/out','mlp/hidden','mlp/out'], embeddingDropoutSite: 0 } }),
       run: () => { throw new Error('must not run'); } };`,
  );
  const r = inChild({ TFPIPE_NATIVE_ADDON: fake }, 'console.log(JSON.stringify(n.nativeAvailability()))');
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

test('a failing native build exits 0 with a note, so npm install goes on without the addon', () => {
  const script = join(root, 'native/build.mjs');
  const r = spawnSync(process.execPath, [script], {
    encoding: 'utf8',
    env: { ...process.env, CXX: '/nonexistent/c++' },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /native kernels not built .*using tfjs kernels/);
});
