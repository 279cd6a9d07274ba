// tfpipe kinds [KIND] [--json]: every kind's description, required upstream kinds, settings
// (types, defaults, docs) from its schema, and what it writes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { packageRoot } from '../src/ground/paths.js';
import { describeType, type KindDoc, type SettingDoc } from '../src/stage-kind/describe.js';
import { loadRegistry } from '../src/kinds/index.js';
import type { JsonObject } from '../src/stage-kind/types.js';
import { CHILD_TIMEOUT_MS } from '../harness/system.js';

const BIN = resolve(packageRoot, 'bin/tfpipe.js');
const PICTURE_PLUGIN = resolve(packageRoot, 'dist/test/fixtures/picture-kind.js');

function tfpipe(args: string[], extraEnv: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    env: { ...process.env, NO_COLOR: '1', ...extraEnv },
    encoding: 'utf8',
    timeout: CHILD_TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const setting = (d: KindDoc, name: string): SettingDoc => {
  const s = d.settings.find((x) => x.name === name);
  assert.ok(s, `${d.kind} has no setting ${name}: ${d.settings.map((x) => x.name).join(', ')}`);
  return s;
};

test('kinds --json lists every registered kind with every schema setting and its default', async () => {
  const r = tfpipe(['kinds', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const docs = (JSON.parse(r.stdout) as { kinds: KindDoc[] }).kinds;
  const registry = await loadRegistry({});
  assert.deepEqual(
    docs.map((d) => d.kind),
    registry.names(),
  );
  for (const kind of registry.all()) {
    const d = docs.find((x) => x.kind === kind.kind)!;
    assert.equal(d.description, kind.description);
    assert.deepEqual(d.requires, kind.requires ?? []);
    // Walk the schema independently: every property but kind/needs, nested objects by dotted path.
    const walk = (props: JsonObject, prefix: string): void => {
      for (const [key, sub] of Object.entries(props)) {
        if (!prefix && (key === 'kind' || key === 'needs')) continue;
        const s = sub as JsonObject;
        const doc = setting(d, prefix + key);
        assert.equal(doc.description, s.description, `${kind.kind}.${prefix + key} description`);
        assert.deepEqual(doc.default, s.default, `${kind.kind}.${prefix + key} default`);
        if (s.type === 'object' && s.properties) walk(s.properties as JsonObject, `${prefix}${key}.`);
      }
    };
    walk(kind.schema.properties as JsonObject, '');
    assert.ok(d.writes.files.length + d.writes.pictures.length > 0, `${kind.kind} declares what it writes`);
  }
  const train = docs.find((d) => d.kind === 'train')!;
  assert.deepEqual(train.requires, ['cifar10', 'augmentation', 'vit']);
  assert.equal(train.uses_tensorflow, true);
  assert.equal(train.resumable, true);
  assert.deepEqual(setting(train, 'optimizer.lr'), {
    name: 'optimizer.lr',
    type: 'number > 0',
    required: false,
    default: 0.001,
    description: 'Base learning rate.',
  });
  assert.equal(setting(train, 'schedule.name').type, 'constant | multistep | cosine');
  assert.deepEqual(
    train.writes.files.map((f) => f.file),
    ['metrics.jsonl', 'best/', 'last/'],
  );
  const data = docs.find((d) => d.kind === 'cifar10')!;
  assert.deepEqual(data.writes.pictures, [{ file: 'samples.png', title: 'CIFAR-10 samples', section: 'Data' }]);
  assert.equal(setting(data, 'limit_train').type, 'integer ≥ 10 or null');
  // A list of tagged ops: each op with its own settings.
  const ops = setting(docs.find((d) => d.kind === 'augmentation')!, 'ops');
  assert.deepEqual(
    ops.variants?.map((v) => v.tag),
    [
      'random_horizontal_flip',
      'random_resized_crop',
      'random_crop',
      'normalize',
      'rand_augment',
      'trivial_augment',
      'random_erasing',
      'mixup',
      'cutmix',
    ],
  );
  const crop = ops.variants!.find((v) => v.tag === 'random_crop')!;
  assert.deepEqual(
    crop.settings.map((s) => [s.name, s.default]),
    [
      ['size', 32],
      ['padding', 4],
    ],
  );
});

test('kinds KIND prints one kind as text: settings with types, defaults and docs, and what it writes', () => {
  const r = tfpipe(['kinds', 'train']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^train — Train the ViT with checkpoints every epoch/);
  assert.match(r.stdout, /needs stages of kind: cifar10, augmentation, vit/);
  assert.match(r.stdout, /\n {4}optimizer\.lr: number > 0 = 0\.001\n {8}Base learning rate\.\n/);
  assert.match(r.stdout, /\n {4}batch_size: integer in \[1, 4096\] = 128\n/);
  assert.match(r.stdout, /\n {4}metrics\.jsonl {2}one JSON object per epoch/);
  assert.match(r.stdout, /report: "Training metrics" section/);
  assert.doesNotMatch(r.stdout, /^cifar10 —/m, 'only the kind asked for');
  const all = tfpipe(['kinds']);
  assert.equal(all.code, 0, all.stderr);
  const headers = [...all.stdout.matchAll(/^([a-z0-9_]+) — /gm)].map((m) => m[1]);
  assert.deepEqual(headers, [
    'cifar10',
    'augmentation',
    'vit',
    'train',
    'evaluate',
    'plots',
    'attention_rollout',
    'report',
  ]);
});

test('a plugin kind is listed with its picture; an unknown kind is a usage error', () => {
  const r = tfpipe(['kinds', 'picture'], { TFPIPE_PLUGINS: PICTURE_PLUGIN });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /colour: string matching \^#\[0-9a-f\]\{6\}\$ = "#3182bd"/);
  assert.match(r.stdout, /square\.png {2}picture "A square" in the report's "Squares" section/);
  const bad = tfpipe(['kinds', 'evaluat']);
  assert.equal(bad.code, 2);
  assert.equal(bad.stdout, '');
  assert.match(
    bad.stderr,
    /no stage kind "evaluat" \(did you mean "evaluate"\?\); kinds: cifar10, augmentation, vit, train/,
  );
});

test('kinds and schema name their own extra arguments as the usage error', () => {
  const kinds = tfpipe(['kinds', 'train', 'vit']);
  assert.equal(kinds.code, 2);
  assert.equal(kinds.stdout, '');
  assert.match(kinds.stderr, /^tfpipe: kinds takes at most one KIND, got 2: train vit\n/);
  const schema = tfpipe(['schema', 'extra']);
  assert.equal(schema.code, 2);
  assert.equal(schema.stdout, '');
  assert.match(schema.stderr, /^tfpipe: schema takes no arguments, got: extra\n/);
});

test('describeType words what a schema accepts', () => {
  assert.equal(describeType({ type: 'integer', minimum: 1 }), 'integer ≥ 1');
  assert.equal(describeType({ type: 'number', exclusiveMinimum: 0, maximum: 8 }), 'number in (0, 8]');
  assert.equal(describeType({ type: 'number', exclusiveMaximum: 1 }), 'number < 1');
  assert.equal(describeType({ enum: ['best', 'last'] }), 'best | last');
  assert.equal(
    describeType({ anyOf: [{ type: 'number', minimum: 0, maximum: 1 }, { type: 'null' }] }),
    'number in [0, 1] or null',
  );
  assert.equal(describeType({ type: ['string', 'null'], pattern: '^x$' }), 'string matching ^x$ or null');
  assert.equal(describeType({ type: 'array', items: { type: 'number' }, minItems: 2, maxItems: 2 }), '2 numbers');
  assert.equal(
    describeType({ type: 'array', items: { enum: ['svg', 'png'] }, uniqueItems: true }),
    'list of (svg | png), no repeats',
  );
  assert.equal(describeType({ type: 'string', 'x-path': true }), 'path or URL (relative to the pipeline file)');
  assert.equal(describeType({ const: 'train' }), '"train"');
});
