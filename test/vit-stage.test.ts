// The vit stage: config from the cifar10 stage's data.json, artefacts, validation messages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { SCHEMA_KEYWORDS } from '../src/config/validate.js';
import { stage } from '../src/kinds/vit.js';
import type { VitSettings } from '../src/kinds/settings.js';
import type { StageContext } from '../src/stage-kind/types.js';
import { initBackend } from '../src/ml/backend.js';
import { loadCheckpoint } from '../src/ml/vit/checkpoint.js';

// The runner initialises the backend before a kind that uses TensorFlow runs; here the test does.
await initBackend('wasm', 1);

const root = mkdtempSync(join(tmpdir(), 'tfpipe-vit-stage-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const dataDir = join(root, 'data');
mkdirSync(dataDir);
writeFileSync(
  join(dataDir, 'data.json'),
  JSON.stringify({
    classes: ['a', 'b', 'c'],
    imageSize: 16,
    channels: 3,
    mean: [0, 0, 0],
    std: [1, 1, 1],
    counts: { train: 1, val: 1, test: 1 },
  }),
);

/** Settings with the schema's defaults applied, as the runner does. */
function settings(over: Partial<VitSettings>): VitSettings {
  const ajv = new Ajv({ strict: true, useDefaults: true, allErrors: true });
  for (const keyword of SCHEMA_KEYWORDS) ajv.addKeyword({ keyword });
  const s = { kind: 'vit', ...over };
  assert.ok(ajv.validate(stage.schema, s), JSON.stringify(ajv.errors));
  return s as VitSettings;
}

function context(s: VitSettings, name: string): StageContext<VitSettings> {
  const outDir = join(root, name);
  mkdirSync(outDir);
  return {
    pipeline: 'p',
    name,
    kind: 'vit',
    key: 'k',
    settings: s,
    seed: 1,
    runtime: { backend: 'wasm', threads: 1 },
    outDir,
    inputs: { data: { name: 'data', kind: 'cifar10', key: 'd', dir: dataDir, settings: {}, result: {} } },
    pipelineDir: root,
    cacheDir: root,
    resolveInput: (p) => p,
    progress: () => {},
    log: () => {},
    signal: new AbortController().signal,
  };
}

test('schema defaults describe the documented default model', () => {
  assert.deepEqual(settings({}), {
    kind: 'vit',
    patch_size: 4,
    dim: 128,
    depth: 6,
    heads: 4,
    dim_head: 32,
    mlp_dim: 256,
    dropout: 0.1,
    activation: 'gelu_tanh',
    tokenizer: 'patch',
    conv_layers: 2,
    conv_channels: 64,
    pool: 'cls',
    position_embedding: 'learned',
  });
});

test('writes model/, params.json, graph.svg and graph.png for the data it is given', async () => {
  const ctx = context(settings({ dim: 16, depth: 1, heads: 2, dim_head: 8, mlp_dim: 32 }), 'ok');
  const result = await stage.run(ctx);
  assert.deepEqual(readdirSync(ctx.outDir).sort(), ['graph.png', 'graph.svg', 'model', 'params.json']);
  const params = JSON.parse(readFileSync(join(ctx.outDir, 'params.json'), 'utf8'));
  assert.equal(
    params.total,
    params.parameters.reduce((s: number, r: { count: number }) => s + r.count, 0),
  );
  assert.equal(result.parameters, params.total);
  assert.equal(result.tokens, 17); // (16 / 4)^2 patches + class token
  const model = await loadCheckpoint(join(ctx.outDir, 'model'));
  assert.equal(model.config.classes, 3);
  assert.equal(model.config.activation, 'gelu_tanh');
  assert.equal(model.config.imageSize, 16);
  model.dispose();
  assert.match(readFileSync(join(ctx.outDir, 'graph.svg'), 'utf8'), /B×17×16/);
  assert.deepEqual([...readFileSync(join(ctx.outDir, 'graph.png')).subarray(1, 4)], [...Buffer.from('PNG')]);
});

test('the activation setting reaches the checkpoint, the summary and the graph', async () => {
  const ctx = context(
    settings({ dim: 16, depth: 1, heads: 2, dim_head: 8, mlp_dim: 32, activation: 'gelu' }),
    'exact-gelu',
  );
  await stage.run(ctx);
  const model = await loadCheckpoint(join(ctx.outDir, 'model'));
  assert.equal(model.config.activation, 'gelu');
  model.dispose();
  assert.equal(JSON.parse(readFileSync(join(ctx.outDir, 'params.json'), 'utf8')).config.activation, 'gelu');
  assert.match(readFileSync(join(ctx.outDir, 'graph.svg'), 'utf8'), /GELU \(exact\)/);
});

test('a patch size that does not divide the image size fails with a clear message', async () => {
  await assert.rejects(
    stage.run(context(settings({ patch_size: 5 }), 'bad')),
    /vit settings: patch size 5 must divide the image size 16/,
  );
});
