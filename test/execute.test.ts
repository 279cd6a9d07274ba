// Issue 12 item 3: deciding, running and recording are separate; each reporter only shows.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import type { Manifest } from '../src/cache/store.js';
import { outputsDigest } from '../src/cache/upstream.js';
import { decide, type Outcome } from '../src/runner/decide.js';
import type { PlannedStage } from '../src/runner/plan.js';
import { packageRoot } from '../src/ground/paths.js';
import { CHAIN, tempProject } from './helpers.js';
import { CHILD_TIMEOUT_MS } from '../harness/system.js';

function manifest(key: string, files: Record<string, string>, upstreamOutputs?: Record<string, string>): Manifest {
  return {
    format: 1,
    pipeline: 'p',
    stage: 's',
    key,
    inputs: { kind: 'k', version: 1, settings: {}, needs: {}, inputs: {}, seed: 0 },
    ...(upstreamOutputs ? { upstreamOutputs } : {}),
    files: Object.fromEntries(Object.entries(files).map(([f, sha256]) => [f, { sha256, size: 1, mtimeMs: 0 }])),
    result: {},
    seconds: 1,
    finishedAt: '2025-01-01T00:00:10.000Z',
  };
}

const up = manifest('u', { 'out.json': 'aa' });
const planned = (over: Partial<PlannedStage>): PlannedStage => ({
  stage: { name: 's', kind: 'k', needs: ['u'], settings: {} },
  impl: {} as PlannedStage['impl'],
  inputs: up.inputs,
  key: 's1',
  state: 'cached',
  reasons: [],
  forced: false,
  pendingUpstream: [],
  manifest: manifest('s1', { 'out.json': 'bb' }, { u: outputsDigest(up.files) }),
  ...over,
});
const ran = (m: Manifest): Outcome => ({ state: 'ran', manifest: m, seconds: 1 });

test('decide: reuse while the upstream outputs it read are unchanged', () => {
  assert.equal(decide(planned({}), new Map([['u', ran(up)]]), false).action, 'reuse');
});

test('decide: run when an upstream now holds other outputs, and say which', () => {
  const changed = manifest('u', { 'out.json': 'cc' });
  const d = decide(planned({}), new Map([['u', ran(changed)]]), false);
  assert.equal(d.action, 'run');
  assert.deepEqual(d.action === 'run' && d.reasons, [
    `upstream stage "u"'s outputs changed (digest ${outputsDigest(up.files).slice(0, 12)} → ${outputsDigest(changed.files).slice(0, 12)})`,
  ]);
});

test('decide: skips after an interrupt or a failed upstream; runs when forced or not cached', () => {
  const ok = new Map([['u', ran(up)]]);
  assert.deepEqual(decide(planned({}), ok, true), { action: 'skip', reason: 'interrupted' });
  assert.deepEqual(
    decide(planned({}), new Map<string, Outcome>([['u', { state: 'failed', error: 'x', seconds: 0 }]]), false),
    { action: 'skip', reason: 'upstream stage "u" did not finish' },
  );
  assert.deepEqual(decide(planned({ forced: true }), ok, false), { action: 'run', reasons: ['forced with --force'] });
  assert.deepEqual(
    decide(planned({ state: 'stale', manifest: undefined, reasons: ['setting x changed'] }), ok, false),
    { action: 'run', reasons: ['setting x changed'] },
  );
});

test('the listr reporter shows what the runner decided, failures and skips included', () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  // The CLI picks the listr reporter only on a TTY; this child uses it directly. Its output is
  // listr2's line renderer (stdout is not a TTY).
  const mod = (path: string) => JSON.stringify(pathToFileURL(resolve(packageRoot, 'dist', path)).href);
  const script = `
    import { loadPipeline } from ${mod('src/config/load.js')};
    import { runPipeline } from ${mod('src/sweep/run.js')};
    import { ListrReporter } from ${mod('src/runner/listr-reporter.js')};
    import { KindRegistry } from ${mod('src/stage-kind/registry.js')};
    import { stageKinds } from ${mod('test/fixtures/kinds.js')};
    const [file, outputs, until, ...sets] = process.argv.slice(1);
    const registry = new KindRegistry(stageKinds);
    const summary = await runPipeline(loadPipeline(file, registry, sets), registry, { reporter: new ListrReporter(), outputs, until: until || undefined });
    console.log('STATES ' + JSON.stringify(Object.fromEntries(summary.stages.map((s) => [s.name, s.state]))));`;
  const listr = (until: string, ...sets: string[]) => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, file, p.outputs, until, ...sets], {
      encoding: 'utf8',
      env: { ...process.env, NO_COLOR: '1' },
      timeout: CHILD_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    });
    assert.equal(r.status, 0, r.stderr);
    const states = JSON.parse(/^STATES (.*)$/m.exec(r.stdout)?.[1] ?? 'null');
    return { states, text: r.stdout + r.stderr };
  };
  const first = listr('', 'b.fail=true');
  assert.deepEqual(first.states, { a: 'ran', b: 'failed', c: 'skipped', d: 'ran' });
  assert.match(first.text, /b \(emit\) \[FAILED: stage b failed on purpose\]/);
  assert.match(first.text, /c skipped: upstream stage "b" did not finish/);
  const second = listr('b');
  assert.deepEqual(second.states, { a: 'cached', b: 'ran' });
  assert.match(second.text, /a \(cached\)/);
  assert.doesNotMatch(second.text, /[cd] \(emit\)/, 'stages outside --until are not listed');
});
