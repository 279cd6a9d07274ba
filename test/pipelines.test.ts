import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadPipeline } from '../src/config/load.js';
import { buildPipelineSchema } from '../src/config/pipeline-schema.js';
import { packageRoot } from '../src/ground/paths.js';
import { loadRegistry } from '../src/kinds/index.js';

const dir = join(packageRoot, 'pipelines');

test('every shipped pipeline validates, in dependency order, with the editor schema comment', async () => {
  const registry = await loadRegistry({});
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
  assert.ok(files.length >= 3);
  for (const f of files) {
    const text = readFileSync(join(dir, f), 'utf8');
    assert.match(text, /^# yaml-language-server: \$schema=\.\.\/schemas\/pipeline\.schema\.json$/m, f);
    const p = loadPipeline(join(dir, f), registry);
    const seen = new Set<string>();
    for (const s of p.stages) {
      for (const n of s.needs) assert.ok(seen.has(n), `${f}: ${s.name} runs after ${n}`);
      seen.add(s.name);
    }
  }
});

test('the reference pipeline encodes the report: split, augmentation, multistep 100/150 x 0.1 over 200 epochs', async () => {
  const p = loadPipeline(join(dir, 'cifar-vit-reference.yaml'), await loadRegistry({}));
  const by = Object.fromEntries(p.stages.map((s) => [s.kind, s.settings]));
  assert.equal(by.cifar10.validation_fraction, 0.1);
  assert.deepEqual(by.augmentation.ops, [
    { op: 'random_horizontal_flip', p: 0.5 },
    { op: 'random_resized_crop', size: 32, scale: [0.8, 1.0], ratio: [0.9, 1.1] },
    { op: 'normalize', from: 'data' },
  ]);
  assert.equal(by.train.epochs, 200);
  assert.deepEqual(by.train.schedule, {
    name: 'multistep',
    milestones: [100, 150],
    gamma: 0.1,
    warmup_epochs: 0,
    min_lr: 0,
  });
  assert.equal(by.vit.patch_size, 4);
  assert.equal(by.vit.activation, 'gelu'); // nn.GELU(), exact
  assert.equal(by.attention_rollout.method, 'report');
});

test('schemas/pipeline.schema.json is what `tfpipe schema` generates from the registry', async () => {
  const committed = JSON.parse(readFileSync(join(packageRoot, 'schemas', 'pipeline.schema.json'), 'utf8'));
  assert.deepEqual(
    committed,
    buildPipelineSchema(await loadRegistry({})),
    'run: npx tfpipe schema > schemas/pipeline.schema.json',
  );
});

test('every stage kind schema documents each setting', async () => {
  for (const k of (await loadRegistry({})).all()) {
    const props = k.schema.properties as Record<string, { description?: string }>;
    for (const [name, prop] of Object.entries(props)) {
      if (name === 'kind') continue;
      assert.ok(prop.description, `${k.kind}.${name} has a description`);
    }
  }
});
