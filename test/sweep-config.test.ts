// Issue 10, declaring a sweep: the sweep: block and -m --set lists, typed and validated like --set
// values, problems at the value's file:line:col; the Cartesian product; --variant.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, type Problem } from '../src/ground/errors.js';
import { loadSweep, shortNames, type SweepOptions } from '../src/sweep/variants.js';
import { CHAIN, tempProject, testRegistry } from './helpers.js';

const SWEPT = CHAIN.replace('stages:\n', 'sweep:\n  c.lr: [0.5, 0.25]\n  stages.b.value: [10, 20]\nstages:\n');

function problems(text: string, opts: SweepOptions = {}): Problem[] {
  const p = tempProject();
  try {
    loadSweep(p.write('p.yaml', text), testRegistry(), opts);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems.map((x) => ({ ...x, where: x.where.replace(/^.*p\.yaml/, 'p.yaml') }));
  }
  assert.fail('expected a ConfigError');
}

test('the sweep is the Cartesian product, last axis fastest, each variant a resolved pipeline', () => {
  const p = tempProject();
  const def = loadSweep(p.write('p.yaml', SWEPT), testRegistry());
  assert.deepEqual(
    def.axes.map((a) => [a.setting, a.short]),
    [
      ['c.lr', 'lr'],
      ['b.value', 'value'],
    ],
  );
  assert.deepEqual(
    def.variants.map((v) => v.name),
    ['lr=0.5,value=10', 'lr=0.5,value=20', 'lr=0.25,value=10', 'lr=0.25,value=20'],
  );
  for (const v of def.variants) {
    const settings = Object.fromEntries(v.pipeline.stages.map((s) => [s.name, s.settings]));
    assert.equal(settings.c.lr, v.values.lr);
    assert.equal(settings.b.value, v.values.value);
    assert.equal(settings.a.lr, 0.1, 'defaults applied in every variant');
    assert.equal(v.pipeline.document.sweep, undefined, 'the sweep block is not part of a variant');
  }
  assert.equal(def.selected.length, 4);
});

test('bad sweep values are reported once each, at their own file:line:col', () => {
  const ps = problems(
    CHAIN.replace(
      'stages:\n',
      `sweep:
  c.lr: [0.5, -1, abc]
  b.value: [10, "x"]
  nosuch.lr: [1]
  runtime.threads: [1, 2]
  d.value: []
stages:
`,
    ),
  );
  const got = ps.map((x) => `${x.where} ${x.path}: ${x.message}`).sort();
  assert.deepEqual(got, [
    'p.yaml:5:15 stages.c.lr: must be > 0',
    'p.yaml:5:19 stages.c.lr: must be number',
    'p.yaml:6:17 stages.b.value: must be number',
    'p.yaml:7:3 sweep.nosuch.lr: no stage or top-level key "nosuch" (stages: a, b, c, d)',
    'p.yaml:8:3 runtime.threads: cannot be swept: runtime settings change how stages run, not what they compute, so they are not part of stage keys',
    'p.yaml:9:12 sweep.d.value: must NOT have fewer than 1 items',
  ]);
});

test('-m turns --set KEY=a,b into an axis, typed by the schema; without -m it is one value', () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const def = loadSweep(file, testRegistry(), { sets: ['c.lr=1e-3,2e-3', 'd.value=5'], multirun: true });
  assert.deepEqual(
    def.variants.map((v) => v.name),
    ['lr=0.001', 'lr=0.002'],
  );
  assert.ok(def.variants.every((v) => v.pipeline.stages.find((s) => s.name === 'd')?.settings.value === 5));
  const plain = problems(CHAIN, { sets: ['c.lr=1e-3,2e-3'] });
  assert.deepEqual(
    plain.map((x) => `${x.where} ${x.path}`),
    ['--set c.lr=1e-3,2e-3 stages.c.lr'],
  );
  const bad = problems(CHAIN, { sets: ['c.lr=1e-3,abc'], multirun: true });
  assert.deepEqual(
    bad.map((x) => `${x.where} ${x.path}: ${x.message}`),
    ['--set c.lr=1e-3,abc (value 2: abc) stages.c.lr: must be number'],
  );
  // A comma inside brackets does not split (note is a string setting, so each value stays as typed).
  const lists = loadSweep(file, testRegistry(), { sets: ['c.note=[1,2],[3]'], multirun: true });
  assert.deepEqual(
    lists.variants.map((v) => v.values.note),
    ['[1,2]', '[3]'],
  );
});

test('the command line wins over the file: a --set list replaces an axis, a single --set fixes it', () => {
  const p = tempProject();
  const file = p.write('p.yaml', SWEPT);
  const replaced = loadSweep(file, testRegistry(), { sets: ['c.lr=0.1,0.2,0.3'], multirun: true });
  assert.deepEqual(
    replaced.axes.map((a) => [a.setting, a.values.length]),
    [
      ['b.value', 2],
      ['c.lr', 3],
    ],
  );
  assert.equal(replaced.variants.length, 6);
  const fixed = loadSweep(file, testRegistry(), { sets: ['c.lr=0.3'] });
  assert.deepEqual(
    fixed.variants.map((v) => v.name),
    ['value=10', 'value=20'],
  );
  assert.ok(fixed.variants.every((v) => v.pipeline.stages.find((s) => s.name === 'c')?.settings.lr === 0.3));
});

test('--variant picks by index, or by the values of some or all axes, compared as typed values', () => {
  const p = tempProject();
  const file = p.write('p.yaml', SWEPT);
  const pick = (...texts: string[]) => loadSweep(file, testRegistry(), { pick: texts }).selected.map((v) => v.index);
  assert.deepEqual(pick('3'), [3]);
  assert.deepEqual(pick('lr=0.25,value=20'), [3]);
  assert.deepEqual(pick('c.lr=2.5e-1'), [2, 3], 'a partial choice selects every variant that matches');
  assert.deepEqual(pick('value=10', '3'), [0, 2, 3]);
  const errs = (text: string) => {
    try {
      loadSweep(file, testRegistry(), { pick: [text] });
    } catch (err) {
      return (err as ConfigError).problems.map((x) => `${x.where}: ${x.message}`).join('\n');
    }
    return '';
  };
  assert.match(errs('4'), /^--variant 4: there are 4 variants, numbered 0 to 3$/);
  assert.match(
    errs('value=30'),
    /no variant has these values; the sweep has lr in \{0\.5, 0\.25\}; value in \{10, 20\}/,
  );
  assert.match(errs('depth=4'), /is not a swept setting/);
});

test('short names are the shortest unambiguous tails of the setting paths', () => {
  assert.deepEqual(shortNames(['train.optimizer.lr', 'model.depth']), ['lr', 'depth']);
  assert.deepEqual(shortNames(['a.opt.lr', 'b.opt.lr', 'a.depth']), ['a.opt.lr', 'b.opt.lr', 'depth']);
  assert.deepEqual(shortNames(['seed']), ['seed']);
});
