// Backend selection: named backends load or fail loudly; auto falls through to what loads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/ml/backend.js';
import { CHILD_TIMEOUT_MS } from '../harness/system.js';

const hasTfjsNode = existsSync(
  fileURLToPath(new URL('../../node_modules/@tensorflow/tfjs-node/package.json', import.meta.url)),
);
const backendModule = pathToFileURL(fileURLToPath(new URL('../src/ml/backend.js', import.meta.url))).href;

/** initBackend in a fresh process (a process initialises its backend only once). */
function initInChild(requested: string): { name: string; detail: string } {
  const code = `import(${JSON.stringify(backendModule)}).then((m) => m.initBackend(${JSON.stringify(requested)}, 1)).then((i) => console.log(JSON.stringify(i)))`;
  return JSON.parse(
    execFileSync(process.execPath, ['--input-type=module', '-e', code], {
      encoding: 'utf8',
      timeout: CHILD_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    })
      .trim()
      .split('\n')
      .pop() as string,
  );
}

test('naming an uninstalled tensorflow backend throws a clear error instead of falling back', {
  skip: hasTfjsNode && 'tfjs-node is installed here',
}, async () => {
  await assert.rejects(
    initBackend('tensorflow', 1),
    /backend "tensorflow" was requested but cannot be used: @tensorflow\/tfjs-node is not installed/,
  );
  await assert.rejects(
    initBackend('tensorflow-gpu', 1),
    /backend "tensorflow-gpu" was requested but cannot be used: @tensorflow\/tfjs-node-gpu is not installed/,
  );
});

test('wasm loads, runs ops, and a second call returns the same backend', async () => {
  const info = await initBackend('wasm', 1);
  assert.equal(info.name, 'wasm');
  assert.equal(tf.getBackend(), 'wasm');
  assert.deepEqual(Array.from(tf.add(tf.tensor1d([1, 2]), 1).dataSync()), [2, 3]);
  assert.deepEqual(await initBackend('wasm', 1), info);
  assert.deepEqual(await initBackend('auto', 1), info);
  await assert.rejects(initBackend('cpu', 1), /already initialised as "wasm"/);
});

test('cpu loads by name (fresh process)', () => {
  assert.equal(initInChild('cpu').name, 'cpu');
});

test('auto takes the first backend that loads and says why the others were skipped', {
  skip: hasTfjsNode && 'tfjs-node is installed here',
}, () => {
  const info = initInChild('auto');
  assert.equal(info.name, 'wasm');
  assert.match(info.detail, /skipped tensorflow-gpu: @tensorflow\/tfjs-node-gpu is not installed/);
  assert.match(info.detail, /tensorflow: @tensorflow\/tfjs-node is not installed/);
});
