// runtime.kernels / runtime.backend auto: a real GPU first; otherwise every CPU path that loads
// is timed and the fastest kept, the decision remembered per machine. tfjs-node cannot be
// installed here, so "tensorflow" is a stand-in backend (the cpu backend's kernels under that
// name, with a binding that says whether TensorFlow sees a GPU) loaded through the real
// loadBackend, and the timings are injected; the assertions compare with the injected speeds,
// never with what the code under test reports back. One scenario times real steps on wasm. Each
// scenario runs in a fresh process because a process initialises its backend once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend, loadBackend, type BackendLoader, type OptionalImport } from '../src/ml/backend.js';
import {
  type Candidate,
  candidateLabel,
  candidates,
  chooseKernels,
  type KernelDecision,
} from '../src/ml/vit/choose-kernels.js';
import type { VitConfig } from '../src/ml/vit/index.js';
import { nativeAvailability } from '../src/ml/vit/native.js';
import { TINY_VIT } from './fixtures/vit-configs.js';

const SCENARIO = 'TFPIPE_CHOOSE_SCENARIO';
const cfg: VitConfig = { ...TINY_VIT, depth: 1 };

/** Invented training speeds (img/s) by candidate label: tfjs on "tensorflow" fastest, so auto must leave wasm + native. */
const SPEEDS: Record<string, number> = { 'tfjs@tensorflow': 500, 'tfjs@wasm': 100 };
const speedOf = (label: string) => SPEEDS[label] ?? 300;
/** For the second batch size: tfjs on wasm fastest. */
const otherSpeedOf = (label: string) => (label === 'tfjs@wasm' ? 900 : 1);

/**
 * A stand-in for importing tfjs-node(-gpu): registers the cpu backend's kernels as "tensorflow",
 * with a native binding whose isUsingGpuDevice() answers `gpu` (and counts its calls); tfjs-node-gpu
 * is "not installed" when `gpu` is undefined.
 */
function fakeTfjsNode(gpu: boolean | undefined, calls: { gpuChecks: number }): OptionalImport {
  return async (specifier) => {
    if (specifier === '@tensorflow/tfjs-node-gpu' && gpu === undefined)
      throw new Error('@tensorflow/tfjs-node-gpu is not installed (stub)');
    if (!tf.findBackendFactory('tensorflow')) {
      const cpu = tf.findBackendFactory('cpu');
      tf.registerBackend(
        'tensorflow',
        () => {
          const backend = cpu() as tf.KernelBackend & { binding?: unknown };
          backend.binding = {
            isUsingGpuDevice: () => {
              calls.gpuChecks += 1;
              return gpu === true;
            },
          };
          return backend;
        },
        1,
      );
      tf.copyRegisteredKernels('cpu', 'tensorflow');
    }
    return {};
  };
}

/** The real loadBackend, with the tfjs-node packages replaced by the stand-in. */
const loaderWith =
  (importModule: OptionalImport): BackendLoader =>
  (name, threads) =>
    loadBackend(name, threads, importModule);

const summary = (d: KernelDecision) => ({ label: candidateLabel(d), detail: d.detail, measured: d.measured ?? null });

async function scenario(name: string): Promise<unknown> {
  const cacheDir = mkdtempSync(join(tmpdir(), 'tfpipe-kernels-'));
  // runtime.kernels: auto for training, with invented timings in place of real ones.
  const auto = (measure: (c: Candidate) => Promise<number>, batch = 8) =>
    chooseKernels({ request: 'auto', cfg, batch, purpose: 'train', cacheDir, measure });
  const calls = { gpuChecks: 0 };
  if (name === 'cpu') {
    const info = await initBackend('auto', 1, loaderWith(fakeTfjsNode(undefined, calls)));
    const list = candidates(cfg, 8, 'train').list.map(candidateLabel);
    const timed: string[] = [];
    const first = await auto(async (c) => {
      timed.push(candidateLabel(c));
      return speedOf(candidateLabel(c));
    });
    const backendAfter = tf.getBackend();
    const again = await auto(async () => {
      throw new Error('measured again');
    });
    const otherBatch = await auto(async (c) => otherSpeedOf(candidateLabel(c)), 16);
    return {
      info,
      list,
      calls: timed,
      first: summary(first),
      backendAfter,
      again: summary(again),
      otherBatch: summary(otherBatch),
      backendAtEnd: tf.getBackend(),
      files: readdirSync(cacheDir).length,
    };
  }
  if (name === 'gpu' || name === 'gpu-package-without-gpu') {
    const gpu = name === 'gpu';
    const info = await initBackend('auto', 1, loaderWith(fakeTfjsNode(gpu, calls)));
    const timed: string[] = [];
    const d = await auto(async (c) => {
      timed.push(candidateLabel(c));
      return speedOf(candidateLabel(c));
    });
    return { info, calls: timed, gpuChecks: calls.gpuChecks, decision: summary(d) };
  }
  // Real timing on wasm: both paths measured on throwaway models, nothing left behind.
  await initBackend('wasm', 1);
  const before = tf.memory().numTensors;
  const d = await chooseKernels({ request: 'auto', cfg, batch: 8, purpose: 'train', cacheDir });
  const infer = await chooseKernels({ request: 'auto', cfg, batch: 8, purpose: 'infer', cacheDir });
  const big: VitConfig = { ...cfg, imageSize: 32, dim: 384, depth: 7, heads: 12, dimHead: 32, mlpDim: 384 };
  return {
    decision: summary(d),
    infer: summary(infer),
    leaked: tf.memory().numTensors - before,
    files: readdirSync(cacheDir).length,
    bigExcluded: candidates(big, 128, 'train').excluded,
  };
}

if (process.env[SCENARIO]) {
  const out = await scenario(process.env[SCENARIO] as string);
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
}

function run(name: string, env: Record<string, string> = {}): Record<string, unknown> {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url)], {
    encoding: 'utf8',
    // The CPU paths and tfjs's GPU backend: a CUDA GPU, which auto would take first, is hidden
    // (its choice is tested in gpu.test.ts).
    env: { ...process.env, NODE_TEST_CONTEXT: undefined, TFPIPE_CUDA: '0', [SCENARIO]: name, ...env },
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string);
}

const nativeIsa = nativeAvailability().isa;

test('auto on CPUs: every CPU backend that loads is a candidate; the fastest path wins, its backend becomes current, all figures logged', () => {
  const r = run('cpu') as {
    info: { name: string; cpuCandidates: string[]; detail: string };
    list: string[];
    calls: string[];
    first: { label: string; detail: string; measured: Record<string, number> };
    backendAfter: string;
  };
  assert.deepEqual(r.info.cpuCandidates, ['tensorflow', 'wasm']);
  assert.match(r.info.detail, /skipped tensorflow-gpu: @tensorflow\/tfjs-node-gpu is not installed/);
  const expected = nativeIsa
    ? [`native/${nativeIsa}@tensorflow`, 'tfjs@tensorflow', `native/${nativeIsa}@wasm`, 'tfjs@wasm']
    : ['tfjs@tensorflow', 'tfjs@wasm'];
  assert.deepEqual(r.list, expected);
  assert.deepEqual(r.calls, expected, 'each candidate timed once');
  // The winner and every figure are the injected ones.
  const fastest = expected.reduce((a, b) => (speedOf(b) > speedOf(a) ? b : a));
  assert.equal(fastest, 'tfjs@tensorflow');
  assert.equal(r.first.label, fastest);
  assert.equal(r.backendAfter, 'tensorflow');
  assert.deepEqual(r.first.measured, Object.fromEntries(expected.map((l) => [l, speedOf(l)])));
  for (const label of expected)
    assert.ok(r.first.detail.includes(`${label} ${speedOf(label).toFixed(1)} img/s`), `${label} in: ${r.first.detail}`);
  assert.match(r.first.detail, /measured now/);
});

test('auto remembers its decision per machine and shape: the same run does not time again; another batch does', () => {
  const r = run('cpu') as {
    again: { label: string; detail: string };
    otherBatch: { label: string; detail: string };
    backendAtEnd: string;
    files: number;
  };
  assert.equal(r.again.label, 'tfjs@tensorflow');
  assert.match(r.again.detail, /measured earlier on this machine, remembered in .*\.json/);
  assert.ok(r.again.detail.includes(`tfjs@tensorflow ${speedOf('tfjs@tensorflow').toFixed(1)} img/s`), r.again.detail);
  assert.equal(r.otherBatch.label, 'tfjs@wasm');
  assert.ok(r.otherBatch.detail.includes(`tfjs@wasm ${otherSpeedOf('tfjs@wasm').toFixed(1)} img/s`));
  assert.equal(r.backendAtEnd, 'wasm');
  assert.equal(r.files, 2);
});

test('a backend that really runs on a GPU (isUsingGpuDevice) comes first, without timing', () => {
  const r = run('gpu') as {
    info: { name: string; cpuCandidates?: string[] };
    calls: string[];
    gpuChecks: number;
    decision: { label: string; detail: string };
  };
  assert.ok(r.gpuChecks >= 1, 'loadBackend asked TensorFlow whether it runs on a GPU');
  assert.equal(r.info.name, 'tensorflow-gpu');
  assert.equal(r.info.cpuCandidates, undefined);
  assert.deepEqual(r.calls, []);
  assert.equal(r.decision.label, 'tfjs@tensorflow-gpu');
  assert.match(r.decision.detail, /GPU/);
});

test('tfjs-node-gpu that loads but sees no GPU is skipped with the reason; the CPU paths are timed', () => {
  const r = run('gpu-package-without-gpu') as {
    info: { name: string; cpuCandidates?: string[]; detail: string };
    calls: string[];
    gpuChecks: number;
    decision: { label: string };
  };
  assert.ok(r.gpuChecks >= 1);
  assert.match(r.info.detail, /skipped tensorflow-gpu: @tensorflow\/tfjs-node-gpu loaded but TensorFlow sees no GPU/);
  assert.deepEqual(r.info.cpuCandidates, ['tensorflow', 'wasm']);
  assert.ok(r.calls.length >= 2, 'CPU paths timed');
  assert.equal(r.decision.label, 'tfjs@tensorflow');
});

test('real timing on wasm: both paths measured on throwaway models, no tensors left, decision cached; too-big tfjs runs excluded', () => {
  const r = run('real') as {
    decision: { label: string; measured: Record<string, number> | null; detail: string };
    infer: { label: string };
    leaked: number;
    files: number;
    bigExcluded: string[];
  };
  assert.equal(r.leaked, 0);
  if (nativeIsa) {
    assert.deepEqual(Object.keys(r.decision.measured ?? {}).sort(), [`native/${nativeIsa}@wasm`, 'tfjs@wasm']);
    for (const v of Object.values(r.decision.measured ?? {})) assert.ok(v > 0);
    const best = Object.entries(r.decision.measured ?? {}).sort((a, b) => b[1] - a[1])[0][0];
    assert.equal(r.decision.label, best);
    assert.equal(r.files, 2, 'train and infer decisions remembered separately');
  } else {
    assert.equal(r.decision.label, 'tfjs@wasm');
    assert.match(r.decision.detail, /the only path here/);
  }
  assert.ok(r.bigExcluded.some((e) => /tfjs@wasm: .*overflow the 4 GB wasm heap/.test(e)));
});

test('kernels: native without the addon is an error; auto then runs the tfjs ops and says why', () => {
  const r = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const b = await import(${JSON.stringify(new URL('../src/ml/backend.js', import.meta.url).href)});
       const c = await import(${JSON.stringify(new URL('../src/ml/vit/choose-kernels.js', import.meta.url).href)});
       await b.initBackend('wasm', 1);
       const cfg = ${JSON.stringify(cfg)};
       await c.chooseKernels({ request: 'native', cfg, batch: 4, purpose: 'train' }).catch((e) => console.log('ERR ' + e.message));
       const d = await c.chooseKernels({ request: 'auto', cfg, batch: 4, purpose: 'train' });
       console.log('AUTO ' + d.kernels.path + ' ' + d.detail);`,
    ],
    { encoding: 'utf8', env: { ...process.env, TFPIPE_NATIVE: '0' } },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /ERR runtime\.kernels is "native" but native kernels disabled \(TFPIPE_NATIVE=0\)/);
  assert.match(r.stdout, /AUTO tfjs tfjs ops on wasm \(the only path here; not considered: native kernels disabled/);
});
