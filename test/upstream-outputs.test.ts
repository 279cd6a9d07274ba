// Issue 11 item 1: a result is reused only while its upstream stages hold the outputs it read.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { counted, run, states, status, tempProject } from './helpers.js';

/** draw (a new random number on every run) → e → f, and a deterministic a → b. */
const NOISY = `name: noisy
stages:
  n:
    kind: draw
  e:
    kind: emit
    needs: [n]
    value: 1
  f:
    kind: emit
    needs: [e]
    value: 2
  a:
    kind: emit
    value: 3
  b:
    kind: emit
    needs: [a]
    value: 4
`;

const total = (dir: string) => (JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as { total: number }).total;

test('forcing a stage whose outputs change reruns everything downstream of it', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', NOISY);
  const first = await run(file, p.outputs);
  const dir = (s: { stages: { name: string; dir: string }[] }, name: string) =>
    s.stages.find((x) => x.name === name)!.dir;
  const old = total(dir(first, 'n'));
  const r = await counted(() => run(file, p.outputs, [], { force: ['n'] }));
  assert.deepEqual(r.ran.sort(), ['e', 'f', 'n'], 'n changed, so e and f rerun; a and b do not');
  assert.deepEqual(states(r.value), { n: 'ran', e: 'ran', f: 'ran', a: 'cached', b: 'cached' });
  assert.notEqual(total(dir(r.value, 'n')), old);
  assert.equal(total(dir(r.value, 'f')), total(dir(r.value, 'n')) + 3, 'f is built on the new n, not the old one');
  const after = await status(file, p.outputs);
  assert.ok(
    Object.values(after).every((s) => s.state === 'cached' && s.pending.length === 0),
    JSON.stringify(after),
  );
});

test('forcing a stage whose outputs come out identical reruns nothing downstream', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', NOISY);
  await run(file, p.outputs);
  const r = await counted(() => run(file, p.outputs, [], { force: ['a'] }));
  assert.deepEqual(r.ran, ['a']);
  assert.deepEqual(states(r.value), { n: 'cached', e: 'cached', f: 'cached', a: 'ran', b: 'cached' });
});

test('status explains a result built on outputs its upstream no longer holds, and run repairs it', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', NOISY);
  await run(file, p.outputs);
  const before = await status(file, p.outputs);
  // Rerun only n: its downstream is left built on n's previous outputs.
  await run(file, p.outputs, [], { force: ['n'], until: 'n' });
  const st = await status(file, p.outputs);
  assert.equal(st.n.state, 'cached');
  assert.equal(st.e.state, 'stale');
  assert.equal(st.e.key, before.e.key, 'the key is a function of the definition and stays');
  assert.match(st.e.reasons[0], /^upstream stage "n"'s outputs changed \(digest [0-9a-f]{12} → [0-9a-f]{12}\)$/);
  assert.equal(st.e.reasons.length, 1);
  assert.equal(st.f.state, 'cached', 'f read e, which is unchanged so far');
  assert.deepEqual(st.f.pending, ['e']);
  assert.match(st.f.reasons[0], /^upstream stage "e" runs first; kept if its outputs come out unchanged$/);
  const lock = parse(readFileSync(join(p.outputs, 'noisy', 'tfpipe.lock'), 'utf8'));
  assert.match(lock.stages.e.upstream_outputs.n, /^[0-9a-f]{16}$/, 'the lock records what e read');
  const r = await counted(() => run(file, p.outputs));
  assert.deepEqual(r.ran.sort(), ['e', 'f']);
});

test('a --force plan marks what waits on the forced stage', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', NOISY);
  await run(file, p.outputs);
  const st = await status(file, p.outputs, [], ['n']);
  assert.deepEqual([st.n.state, st.e.state, st.f.state], ['cached', 'cached', 'cached']);
  assert.deepEqual([st.e.pending, st.f.pending, st.b.pending], [['n'], ['e'], []]);
});

test('results recorded before upstream digests existed are judged by time', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', NOISY);
  const first = await run(file, p.outputs);
  const manifestOf = (name: string) => join(first.stages.find((s) => s.name === name)!.dir, 'tfpipe-manifest.json');
  const strip = (name: string) => {
    const m = JSON.parse(readFileSync(manifestOf(name), 'utf8'));
    delete m.upstreamOutputs;
    writeFileSync(manifestOf(name), JSON.stringify(m));
  };
  for (const s of ['e', 'f', 'b']) strip(s);
  const st = await status(file, p.outputs);
  assert.deepEqual(
    [st.e.state, st.f.state, st.b.state],
    ['cached', 'cached', 'cached'],
    'upstream finished before they started: they read it',
  );
  await run(file, p.outputs, [], { force: ['a'], until: 'a' });
  const after = await status(file, p.outputs);
  assert.equal(after.b.state, 'stale', 'a was made again after b');
  assert.match(after.b.reasons[0], /^upstream stage "a" ran again after this result was made/);
  assert.equal(after.e.state, 'cached');
});
