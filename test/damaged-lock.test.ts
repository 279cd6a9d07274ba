// Issue 11 item 5: tfpipe.lock is a record, the manifests are the truth. A damaged lock never
// crashes `run` or `status`: a bad entry is ignored with a warning naming it.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse, stringify } from 'yaml';
import { loadPipeline } from '../src/config/load.js';
import { makePlan } from '../src/runner/plan.js';
import { CHAIN, counted, run, tempProject, testRegistry } from './helpers.js';

async function plan(file: string, outputs: string, sets: string[] = []) {
  const registry = testRegistry();
  return makePlan(loadPipeline(file, registry, sets), registry, { outputs });
}

test('an entry without inputs is ignored with a warning naming it; status still explains the others', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  await run(file, p.outputs);
  const lockPath = join(p.outputs, 'chain', 'tfpipe.lock');
  const lock = parse(readFileSync(lockPath, 'utf8'));
  delete lock.stages.b.inputs;
  lock.stages.c.needs = 'not a map';
  writeFileSync(lockPath, stringify(lock));

  const pl = await plan(file, p.outputs, ['b.value=11', 'c.lr=0.25']);
  assert.deepEqual(pl.warnings, [
    `${lockPath}: the entry of stage "b" is damaged (missing or malformed: inputs); ignoring it`,
    `${lockPath}: the entry of stage "c" is damaged (missing or malformed: needs); ignoring it`,
  ]);
  const byName = Object.fromEntries(pl.stages.map((s) => [s.stage.name, s]));
  assert.equal(byName.b.state, 'missing');
  assert.deepEqual(byName.b.reasons, ['no usable record of an earlier run (its tfpipe.lock entry is damaged)']);
  assert.equal(byName.c.state, 'missing');
  // A run goes ahead and rewrites the entries it ran.
  const again = await counted(() => run(file, p.outputs, ['b.value=11', 'c.lr=0.25']));
  assert.deepEqual(again.ran.sort(), ['b', 'c']);
  assert.deepEqual((await plan(file, p.outputs, ['b.value=11', 'c.lr=0.25'])).warnings, []);
});

test('a truncated or garbage lock file counts as empty, with one warning; cached results stay cached', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  await run(file, p.outputs);
  const lockPath = join(p.outputs, 'chain', 'tfpipe.lock');
  const text = readFileSync(lockPath, 'utf8');
  for (const damaged of [
    text.slice(0, Math.floor(text.length * 0.6)),
    'stages: [1, 2\n  :: {{',
    '\u0000\u0001garbage',
    '- just\n- a list\n',
  ]) {
    writeFileSync(lockPath, damaged);
    const pl = await plan(file, p.outputs);
    assert.ok(pl.warnings.length <= 4 && pl.warnings.every((w) => w.startsWith(lockPath)), JSON.stringify(pl.warnings));
    assert.ok(pl.warnings.length >= 1, `warned about ${JSON.stringify(damaged.slice(0, 20))}`);
    assert.deepEqual(
      pl.stages.map((s) => s.state),
      ['cached', 'cached', 'cached', 'cached'],
      'the manifests decide',
    );
    const r = await counted(() => run(file, p.outputs));
    assert.deepEqual(r.ran, []);
  }
});
