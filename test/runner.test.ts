import assert from 'node:assert/strict';
import { readFileSync, readdirSync, existsSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { CHAIN, counted, run, states, status, tempProject } from './helpers.js';

test('first run runs everything, second run reuses everything', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const first = await counted(() => run(file, p.outputs));
  assert.deepEqual(states(first.value), { a: 'ran', b: 'ran', c: 'ran', d: 'ran' });
  assert.deepEqual(first.ran.sort(), ['a', 'b', 'c', 'd']);
  const c = first.value.stages.find((s) => s.name === 'c')!;
  assert.equal(
    JSON.parse(readFileSync(join(c.dir, 'out.json'), 'utf8')).total,
    111,
    'c sees a and b through its needs',
  );
  const second = await counted(() => run(file, p.outputs));
  assert.deepEqual(states(second.value), { a: 'cached', b: 'cached', c: 'cached', d: 'cached' });
  assert.deepEqual(second.ran, [], 'no stage code executed');
  const st = await status(file, p.outputs);
  assert.ok(Object.values(st).every((s) => s.state === 'cached'));
});

test('a leaf change reruns only that stage; an upstream change reruns it and everything downstream', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  await run(file, p.outputs);
  const leaf = await status(file, p.outputs, ['c.lr=0.25']);
  assert.equal(leaf.c.state, 'stale');
  assert.deepEqual(leaf.c.reasons, ['setting lr changed: 0.5 → 0.25']);
  assert.deepEqual([leaf.a.state, leaf.b.state, leaf.d.state], ['cached', 'cached', 'cached']);
  const r1 = await counted(() => run(file, p.outputs, ['c.lr=0.25']));
  assert.deepEqual(r1.ran, ['c']);

  const up = await status(file, p.outputs, ['c.lr=0.25', 'a.value=2']);
  assert.equal(up.a.state, 'stale');
  assert.deepEqual(up.a.reasons, ['setting value changed: 1 → 2']);
  assert.equal(up.b.state, 'stale');
  assert.match(up.b.reasons[0], /^upstream stage "a" changed \(key [0-9a-f]{16} → [0-9a-f]{16}\)$/);
  assert.match(up.c.reasons[0], /^upstream stage "b" changed/);
  assert.equal(up.d.state, 'cached');
  const r2 = await counted(() => run(file, p.outputs, ['c.lr=0.25', 'a.value=2']));
  assert.deepEqual(r2.ran.sort(), ['a', 'b', 'c']);
  const c = r2.value.stages.find((s) => s.name === 'c')!;
  assert.equal(JSON.parse(readFileSync(join(c.dir, 'out.json'), 'utf8')).total, 112);
});

test('reverting a change hits the run cache and says so', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  await run(file, p.outputs);
  await run(file, p.outputs, ['b.value=20']);
  const back = await status(file, p.outputs);
  assert.equal(back.b.state, 'cached');
  assert.match(back.b.reasons[0], /run cache.*setting value changed: 20 → 10/);
  const r = await counted(() => run(file, p.outputs));
  assert.deepEqual(r.ran, []);
});

test('key ignores formatting, key order and comments, but not the seed or the kind version', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const before = await status(file, p.outputs);
  const reordered = p.write(
    'q.yaml',
    CHAIN.replace('    value: 100\n    lr: 0.5\n', '    lr: 0.50   # tuned\n    value: 1.0e+2\n'),
  );
  const after = await status(reordered, p.outputs);
  assert.equal(after.c.key, before.c.key);
  const seeded = await status(file, p.outputs, ['seed=8']);
  assert.notEqual(seeded.a.key, before.a.key);
  await run(file, p.outputs);
  process.env.TFPIPE_TEST_EMIT_VERSION = '2';
  try {
    const { emit } = await import('./fixtures/kinds.js');
    (emit as { version: number }).version = 2;
    const bumped = await status(file, p.outputs);
    assert.equal(bumped.a.state, 'stale');
    assert.deepEqual(bumped.a.reasons, ['implementation of kind "emit" changed: version 1 → 2']);
    (emit as { version: number }).version = 1;
  } finally {
    delete process.env.TFPIPE_TEST_EMIT_VERSION;
  }
});

test('a changed input file changes the key and is named', async () => {
  const p = tempProject();
  p.write('data.txt', 'hello');
  const file = p.write(
    'p.yaml',
    'name: inp\nstages:\n  r:\n    kind: read_input\n    path: data.txt\n  e:\n    kind: emit\n    needs: [r]\n    value: 1\n',
  );
  await run(file, p.outputs);
  assert.equal((await status(file, p.outputs)).r.state, 'cached');
  writeFileSync(join(p.dir, 'data.txt'), 'hello, world');
  const st = await status(file, p.outputs);
  assert.equal(st.r.state, 'stale');
  assert.match(
    st.r.reasons[0],
    /^input file data.txt \(setting path\) changed \(content hash [0-9a-f]{12} → [0-9a-f]{12}\)$/,
  );
  assert.equal(st.e.state, 'stale');
});

test('a tampered artefact is detected and the stage reruns', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const first = await run(file, p.outputs);
  const b = first.stages.find((s) => s.name === 'b')!;
  appendFileSync(join(b.dir, 'out.json'), ' ');
  const st = await status(file, p.outputs);
  assert.equal(st.b.state, 'missing');
  assert.match(st.b.reasons[0], /out\.json .* was modified/);
  assert.equal(st.c.state, 'cached', 'same key downstream: its own artefacts are fine');
  const again = await counted(() => run(file, p.outputs));
  assert.deepEqual(again.ran, ['b']);
  assert.equal((await status(file, p.outputs)).b.state, 'cached');
});

test('a failed stage leaves no trusted artefact, skips its dependants, and others still run', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const r = await run(file, p.outputs, ['b.fail=true']);
  assert.deepEqual(states(r), { a: 'ran', b: 'failed', c: 'skipped', d: 'ran' });
  const b = r.stages.find((s) => s.name === 'b')!;
  assert.match(b.error ?? '', /failed on purpose/);
  assert.equal(existsSync(b.dir), false, 'no finished directory for a failed stage');
  assert.equal((await status(file, p.outputs, ['b.fail=true'])).b.state, 'missing');
});

test('lock file records key, resolved settings, upstream keys and artefact hashes', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const r = await run(file, p.outputs);
  const lock = parse(readFileSync(join(p.outputs, 'chain', 'tfpipe.lock'), 'utf8'));
  const a = r.stages.find((s) => s.name === 'a')!;
  assert.equal(lock.stages.b.needs.a, a.key);
  assert.equal(lock.stages.c.settings.lr, 0.5);
  assert.equal(lock.stages.a.settings.fail, false, 'defaults recorded');
  assert.match(lock.stages.c.outs['out.json'], /^[0-9a-f]{64}$/);
  assert.equal(typeof lock.stages.c.seconds, 'number');
});

test('--until runs only the named stage and what it needs; --force reruns a cached stage', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const r = await counted(() => run(file, p.outputs, [], { until: 'b' }));
  assert.deepEqual(r.ran.sort(), ['a', 'b']);
  const f = await counted(() => run(file, p.outputs, [], { force: ['a'] }));
  assert.deepEqual(f.ran.sort(), ['a', 'c', 'd']);
  assert.equal(readdirSync(join(p.outputs, 'chain', 'a')).length, 1, 'forced rerun replaced the same key');
});
