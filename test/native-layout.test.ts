// One model description across TypeScript and C++. src/ml/vit/layout.ts describes the parameters
// for TypeScript, native/src/layout.cc for C++ (param_shape: what the kernels read). At load the
// addon reports its names and dropout sites (info().layout) and its shapes for a probe config
// (shapes()); tfpipe refuses the addon, and with it the CPU kernels and the GPU model, when any of
// them differs from its own.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../src/ground/paths.js';
import type { VitConfig } from '../src/ml/vit/config.js';
import { LAYOUT_PROBE, LAYOUT_PROBES, nativeLayout, parameterSpecs } from '../src/ml/vit/layout.js';
import { nativeConfig, nativeModule } from '../src/ml/vit/native.js';
import { ODD_VIT, TINY_VIT } from './fixtures/vit-configs.js';
import { noAddon } from './native-helpers.js';

const dist = (m: string) => JSON.stringify(pathToFileURL(join(packageRoot, 'dist/src/ml/vit', m)).href);

/** Runs `code` in a fresh Node with layout.js as `l`, native.js as `n` and gpu.js as `g`; `code` may patch `l` first. */
function inChild(env: Record<string, string>, code: string) {
  const script = `const l = await import(${dist('layout.js')}); ${code}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const REPORT = `const n = await import(${dist('native.js')}); const g = await import(${dist('gpu.js')});
  console.log(JSON.stringify({ native: n.nativeAvailability(), gpu: g.gpuAvailability() }));`;

test("the addon's shapes are layout.ts's for every config, not only the probe", { skip: noAddon }, () => {
  const m = nativeModule();
  assert.ok('addon' in m);
  const addon = m.addon as { shapes(config: object): number[][] };
  const cifar: VitConfig = {
    ...TINY_VIT,
    imageSize: 32,
    classes: 10,
    dim: 192,
    depth: 9,
    heads: 12,
    dimHead: 16,
    mlpDim: 384,
  };
  // Every option: each conv layer count, each pool, each kind of positions.
  const options: VitConfig[] = [
    { ...cifar, tokenizer: 'conv', convLayers: 1, convChannels: 32, pool: 'mean', posEmbedding: 'none' },
    { ...cifar, tokenizer: 'conv', convLayers: 2, pool: 'seq', posEmbedding: 'learned' },
    { ...ODD_VIT, imageSize: 16, tokenizer: 'conv', convLayers: 4, convChannels: 9, posEmbedding: 'sincos' },
    { ...ODD_VIT, pool: 'seq', posEmbedding: 'none' },
  ];
  for (const cfg of [...LAYOUT_PROBES, TINY_VIT, ODD_VIT, cifar, ...options]) {
    assert.deepEqual(
      addon.shapes(nativeConfig(cfg, 1)),
      parameterSpecs(cfg).map((s) => s.shape),
      JSON.stringify(cfg),
    );
  }
});

test('a shape changed in layout.ts makes the native path refuse the addon at load', { skip: noAddon }, () => {
  // block_0/attn/to_q as [inner, dim] instead of [dim, inner]: same size, another shape.
  const r = inChild(
    { TFPIPE_NATIVE: '1' },
    `const q = l.BLOCK_PARAMS.find((p) => p.key === 'toQ'); q.shape = (c) => [c.heads * c.dimHead, c.dim]; ${REPORT}`,
  );
  assert.equal(r.status, 0, r.stderr);
  const { native, gpu } = JSON.parse(r.stdout.trim());
  assert.equal(native.isa, undefined, 'the CPU kernels are not used');
  assert.match(
    native.detail,
    /refused: .*vit_kernels\.node expects another parameter layout \(the shape of block_0\/attn\/to_q is \[7, 22\] in the addon, \[22, 7\] in tfpipe\); rebuild it/,
  );
  assert.equal(gpu.ok, false, 'nor the GPU model');
  assert.match(gpu.detail, /the native addon is refused: .*the shape of block_0\/attn\/to_q/);
  // Unpatched, the same addon passes.
  const ok = inChild({ TFPIPE_NATIVE: '1' }, REPORT);
  assert.equal(ok.status, 0, ok.stderr);
  assert.ok(JSON.parse(ok.stdout.trim()).native.isa);
});

test('an addon that reports other shapes, or none, is refused with a clear message', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tfpipe-fake-shapes-'));
  const shapes = parameterSpecs(LAYOUT_PROBE).map((s) => s.shape);
  const headKernel = parameterSpecs(LAYOUT_PROBE).findIndex((s) => s.name === 'head/kernel');
  const fake = (name: string, shapesFn: string) => {
    const file = join(dir, name);
    writeFileSync(
      file,
      `module.exports = { info: () => ({ isa: 'baseline', error: null, cpu: 'fake', features: '', variants: [],
         layout: ${JSON.stringify(nativeLayout())} }),${shapesFn}
         run: () => { throw new Error('must not run'); } };`,
    );
    return file;
  };
  const swapped = shapes.map((s, i) => (i === headKernel ? [...s].reverse() : s));
  const cases = [
    {
      addon: fake('swapped.cjs', ` shapes: () => (${JSON.stringify(swapped)}),`),
      why: /\(the shape of head\/kernel is \[19, 7\] in the addon, \[7, 19\] in tfpipe\)/,
    },
    {
      addon: fake('shallow.cjs', ` shapes: () => (${JSON.stringify(shapes.slice(0, -4))}),`),
      why: /\(the addon has \d+ weight arrays for a depth-2 model, tfpipe \d+\)/,
    },
    { addon: fake('none.cjs', ''), why: /\(the addon reports no parameter shapes\)/ },
  ];
  for (const { addon, why } of cases) {
    const r = inChild({ TFPIPE_NATIVE_ADDON: addon, TFPIPE_NATIVE: '1' }, REPORT);
    assert.equal(r.status, 0, r.stderr);
    const { native } = JSON.parse(r.stdout.trim());
    assert.equal(native.isa, undefined);
    assert.match(native.detail, /refused: .*\.cjs expects another parameter layout/);
    assert.match(native.detail, why);
  }
});
