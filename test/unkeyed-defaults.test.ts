// Settings added to a kind later (x-unkeyed-default) leave stage keys as they were at their default.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { unkeyedDefaults } from '../src/config/unkeyed-defaults.js';
import { tfpipe } from './cli-helpers.js';

test('only marked settings at their default are left out of the key', () => {
  const schema = {
    properties: {
      old: { type: 'integer', default: 1 },
      added: { type: 'string', default: 'a', 'x-unkeyed-default': true },
      obj: {
        type: 'object',
        default: {},
        'x-unkeyed-default': true,
        properties: { decay: { default: 0 }, warmup: { default: true } },
      },
    },
  };
  // An object default compares with its properties' defaults filled in, as validation leaves it.
  assert.deepEqual(unkeyedDefaults(schema, { old: 1, added: 'a', obj: { decay: 0, warmup: true } }), [
    ['added'],
    ['obj'],
  ]);
  assert.deepEqual(unkeyedDefaults(schema, { old: 1, added: 'a', obj: { decay: 0, warmup: false } }), [['added']]);
  assert.deepEqual(unkeyedDefaults(schema, { old: 1, added: 'b', obj: { decay: 0.9 } }), []);
});

test('the vit options and train.ema at their defaults keep the keys the stages had without them; another value changes them', () => {
  const outputs = mkdtempSync(join(tmpdir(), 'tfpipe-keys-'));
  try {
    const keyOf = (...sets: string[]) => keysOf(...sets).model;
    const keysOf = (...sets: string[]) => {
      const r = tfpipe(
        ['status', 'pipelines/cifar-vit-quick.yaml', '--json', ...sets.flatMap((s) => ['--set', s])],
        outputs,
      );
      assert.equal(r.code, 0, r.stderr);
      const stages = (JSON.parse(r.stdout) as { stages: { name: string; key: string }[] }).stages;
      return Object.fromEntries(stages.map((s) => [s.name, s.key]));
    };
    const plain = keyOf();
    assert.equal(plain, 'd9af4b1d1ac00902'); // the quick pipeline's model key at commit 24b5f2b, before the options
    // Written out at their defaults, the options leave the key as when they are absent.
    assert.equal(plain, keyOf('model.tokenizer=patch', 'model.pool=cls', 'model.position_embedding=learned'));
    assert.equal(plain, keyOf('model.conv_layers=2', 'model.conv_channels=64'));
    assert.notEqual(plain, keyOf('model.pool=seq'));
    assert.notEqual(plain, keyOf('model.tokenizer=conv'));
    // train.ema, an object setting: off (decay 0, with or without its warm-up flag) keeps the train key,
    // the one the quick pipeline's train stage had before the setting existed (commit 24b5f2b).
    const train = keysOf().train;
    assert.equal(train, '1889c504021f2ff9');
    assert.equal(train, keysOf('train.ema.decay=0').train);
    assert.equal(train, keysOf('train.ema.decay=0', 'train.ema.warmup=true').train);
    assert.notEqual(train, keysOf('train.ema.decay=0.999').train);
  } finally {
    rmSync(outputs, { recursive: true, force: true });
  }
});
