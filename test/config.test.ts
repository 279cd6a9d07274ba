import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadPipeline } from '../src/config/load.js';
import { didYouMean } from '../src/config/problems.js';
import { ConfigError, type Problem } from '../src/ground/errors.js';
import { CHAIN, tempProject, testRegistry } from './helpers.js';

function problems(text: string, sets: string[] = []): Problem[] {
  const p = tempProject();
  const file = p.write('p.yaml', text);
  try {
    loadPipeline(file, testRegistry(), sets);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems.map((x) => ({ ...x, where: x.where.replace(/^.*p\.yaml/, 'p.yaml') }));
  }
  assert.fail('expected a ConfigError');
}

test('a valid file resolves with defaults applied and stages in dependency order', () => {
  const p = tempProject();
  const pipe = loadPipeline(
    p.write('p.yaml', `${CHAIN.replace(/ {2}a:\n[\s\S]*?value: 1\n/, '')}  a:\n    kind: emit\n    value: 1\n`),
    testRegistry(),
  );
  const order = pipe.stages.map((s) => s.name);
  assert.ok(order.indexOf('a') < order.indexOf('b') && order.indexOf('b') < order.indexOf('c'), order.join());
  assert.equal(pipe.stages.find((s) => s.name === 'a')?.settings.lr, 0.1, 'schema default applied');
  assert.equal(pipe.runtime.backend, 'auto');
  assert.equal(pipe.seed, 7);
});

test('every problem is reported at once with file:line:col, key path and expectation', () => {
  const ps = problems(`name: x
stages:
  a:
    kind: emit
    value: 1
    lr: -2
  b:
    kind: emit
    value: "ten"
    lrr: 0.1
`);
  const byPath = Object.fromEntries(ps.map((p) => [p.path, p]));
  assert.equal(byPath['stages.a.lr']?.where, 'p.yaml:6:9');
  assert.match(byPath['stages.a.lr'].message, /> 0/);
  assert.equal(byPath['stages.b.value']?.where, 'p.yaml:9:12');
  assert.match(byPath['stages.b.value'].message, /number/);
  assert.equal(byPath['stages.b.lrr']?.where, 'p.yaml:10:5');
  assert.match(byPath['stages.b.lrr'].message, /did you mean "lr"/);
  assert.equal(ps.length, 3, JSON.stringify(ps));
});

test('unknown kinds get a suggestion and no oneOf noise', () => {
  const ps = problems('name: x\nstages:\n  a:\n    kind: emitt\n    value: 1\n');
  assert.equal(ps.length, 1, JSON.stringify(ps));
  assert.equal(ps[0].path, 'stages.a.kind');
  assert.equal(ps[0].where, 'p.yaml:4:11');
  assert.match(ps[0].message, /unknown stage kind "emitt" \(did you mean "emit"\?\)/);
});

test('YAML syntax errors and duplicate keys are positioned', () => {
  const dup = problems('name: x\nstages:\n  a:\n    kind: emit\n    value: 1\n    value: 2\n');
  assert.equal(dup.length, 1);
  assert.equal(dup[0].where, 'p.yaml:6:5');
  assert.match(dup[0].message, /duplicate key/);
  const syntax = problems('name: x\nstages:\n  a: [1, 2\n');
  assert.ok(syntax.length >= 1);
  assert.match(syntax[0].where, /^p\.yaml:\d+:\d+$/);
});

test('needs naming a missing stage, and cycles, are errors naming the culprits', () => {
  const missing = problems(
    'name: x\nstages:\n  a:\n    kind: emit\n    value: 1\n    needs: [b, zz]\n  b:\n    kind: emit\n    value: 2\n',
  );
  assert.equal(missing.length, 1);
  assert.equal(missing[0].path, 'stages.a.needs[1]');
  assert.equal(missing[0].where, 'p.yaml:6:16');
  assert.match(missing[0].message, /no stage named "zz"/);
  const cycle = problems(
    'name: x\nstages:\n  a:\n    kind: emit\n    value: 1\n    needs: [c]\n  b:\n    kind: emit\n    value: 2\n    needs: [a]\n  c:\n    kind: emit\n    value: 3\n    needs: [b]\n',
  );
  assert.equal(cycle.length, 1);
  assert.match(cycle[0].message, /dependency cycle: a -> c -> b -> a/);
});

test('overrides are typed by the schema and validated like file values', () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const pipe = loadPipeline(file, testRegistry(), ['c.lr=3e-4', 'stages.a.note=0.5', 'seed=3']);
  const c = pipe.stages.find((s) => s.name === 'c');
  assert.equal(c?.settings.lr, 3e-4);
  assert.equal(pipe.stages.find((s) => s.name === 'a')?.settings.note, '0.5', 'string-typed keys keep the text');
  assert.equal(pipe.seed, 3);

  const bad = problems(CHAIN, ['c.lr=abc', 'b.lr=-1', 'nosuch.lr=1', 'c.lrr=1']);
  const where = bad.map((x) => x.where).sort();
  assert.deepEqual(where, ['--set b.lr=-1', '--set c.lr=abc', '--set c.lrr=1', '--set nosuch.lr=1']);
  assert.match(bad.find((x) => x.where === '--set c.lr=abc')!.message, /number/);
  assert.match(bad.find((x) => x.where === '--set c.lrr=1')!.message, /did you mean "lr"/);
});

test('stage names cannot carry path separators', () => {
  const ps = problems('name: x\nstages:\n  ../evil:\n    kind: emit\n    value: 1\n');
  assert.ok(
    ps.some((x) => x.path === 'stages.../evil' && /must match/.test(x.message)),
    JSON.stringify(ps),
  );
});

test('didYouMean only suggests plausible typos', () => {
  assert.equal(didYouMean('epochz', ['epochs', 'batch_size']), 'epochs');
  assert.equal(didYouMean('zzz', ['epochs', 'batch_size']), undefined);
});
