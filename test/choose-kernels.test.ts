// runtime.kernels / runtime.backend auto: a real GPU first; otherwise every CPU path that loads
// is timed and the fastest kept, the decision remembered per machine. tfjs-node cannot be
// installed here, so "tensorflow" is a stub backend (the cpu backend's kernels under that name)
// and the timings are injected; one scenario times real steps on wasm. Each scenario runs in a
// fresh process because a process initialises its backend once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend, loadBackend, type BackendLoader } from '../src/ml/backend.js';
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

/** A stand-in for tfjs-node: the cpu backend's kernels registered as "tensorflow". */
function registerFakeTensorflow(): void {
  if (tf.findBackendFactory('tensorflow')) return;
  const cpu = tf.findBackendFactory('cpu');
  tf.registerBackend('tensorflow', () => cpu() as tf.KernelBackend, 1);
  tf.copyRegisteredKernels('cpu', 'tensorflow');
}

const stubLoader =
  (gpu: boolean): BackendLoader =>
  async (name, threads) => {
    if (name === 'tensorflow-gpu' && !gpu) throw new Error('@tensorflow/tfjs-node-gpu: no GPU here (stub)');
    if (name === 'tensorflow' || name === 'tensorflow-gpu') {
      registerFakeTensorflow();
      if (!(await tf.setBackend('tensorflow'))) throw new Error('stub backend failed');
      return;
    }
    return loadBackend(name, threads);
  };

const summary = (d: KernelDecision) => ({ label: candidateLabel(d), detail: d.detail, measured: d.measured ?? null });

async function scenario(name: string): Promise<unknown> {
  const cacheDir = mkdtempSync(join(tmpdir(), 'tfpipe-kernels-'));
  // runtime.kernels: auto for training, with invented timings in place of real ones.
  const auto = (measure: (c: Candidate) => Promise<number>, batch = 8) =>
    chooseKernels({ request: 'auto', cfg, batch, purpose: 'train', cacheDir, measure });
  if (name === 'cpu') {
    const info = await initBackend('auto', 1, stubLoader(false));
    const list = candidates(cfg, 8, 'train').list.map(candidateLabel);
    // Invented speeds: tfjs on "tensorflow" fastest, so auto must leave wasm + native.
    const speed = (label: string) => ({ 'tfjs@tensorflow': 500, 'tfjs@wasm': 100 })[label] ?? 300;
    const calls: string[] = [];
    const first = await auto(async (c) => {
      calls.push(candidateLabel(c));
      return speed(candidateLabel(c));
    });
    const backendAfter = tf.getBackend();
    const again = await auto(async () => {
      throw new Error('measured again');
    });
    const otherBatch = await auto(async (c) => (candidateLabel(c) === 'tfjs@wasm' ? 900 : 1), 16);
    return {
      info,
      list,
      calls,
      first: summary(first),
      backendAfter,
      again: summary(again),
      otherBatch: summary(otherBatch),
      backendAtEnd: tf.getBackend(),
      files: readdirSync(cacheDir).length,
    };
  }
  if (name === 'gpu') {
    const info = await initBackend('auto', 1, stubLoader(true));
    const calls: string[] = [];
    const d = await auto(async (c) => {
      calls.push(candidateLabel(c));
      return 1;
    });
    return { info, calls, decision: summary(d) };
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
  assert.match(r.info.detail, /skipped tensorflow-gpu: .*no GPU here/);
  const expected = nativeIsa
    ? [`native/${nativeIsa}@tensorflow`, 'tfjs@tensorflow', `native/${nativeIsa}@wasm`, 'tfjs@wasm']
    : ['tfjs@tensorflow', 'tfjs@wasm'];
  assert.deepEqual(r.list, expected);
  assert.deepEqual(r.calls, expected, 'each candidate timed once');
  assert.equal(r.first.label, 'tfjs@tensorflow');
  assert.equal(r.backendAfter, 'tensorflow');
  for (const label of expected)
    assert.ok(
      r.first.detail.includes(`${label} ${r.first.measured[label].toFixed(1)} img/s`),
      `${label} in: ${r.first.detail}`,
    );
  assert.match(r.first.detail, /measured now/);
});

test('auto remembers its decision per machine and shape: the same run does not time again; another batch does', () => {
  const r = run('cpu') as {
    again: { label: string; detail: string };
    otherBatch: { label: string };
    backendAtEnd: string;
    files: number;
  };
  assert.equal(r.again.label, 'tfjs@tensorflow');
  assert.match(r.again.detail, /measured earlier on this machine, remembered in .*\.json/);
  assert.equal(r.otherBatch.label, 'tfjs@wasm');
  assert.equal(r.backendAtEnd, 'wasm');
  assert.equal(r.files, 2);
});

test('a backend that really runs on a GPU comes first, without timing', () => {
  const r = run('gpu') as {
    info: { name: string; cpuCandidates?: string[] };
    calls: string[];
    decision: { label: string; detail: string };
  };
  assert.equal(r.info.name, 'tensorflow-gpu');
  assert.equal(r.info.cpuCandidates, undefined);
  assert.deepEqual(r.calls, []);
  assert.equal(r.decision.label, 'tfjs@tensorflow-gpu');
  assert.match(r.decision.detail, /GPU/);
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
