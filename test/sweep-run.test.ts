// Issue 10: one DAG for all variants (equal keys run once), per-variant records, the union in
// status/dag/--dry-run, -j N in separate processes, and the per-key lock.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { makePlan } from '../src/runner/plan.js';
import { acquireLock } from '../src/cache/run-lock.js';
import { InProcessExecutor } from '../src/executors/in-process.js';
import { StageRunner, stageLockPath } from '../src/runner/stage-runner.js';
import type { StageExecutor } from '../src/runner/walk.js';
import { runSweep } from '../src/sweep/run.js';
import { loadSweep, type SweepOptions } from '../src/sweep/variants.js';
import { tfpipe } from './cli-helpers.js';
import { CHAIN, counted, run, silentReporter, tempProject, testRegistry } from './helpers.js';

const SWEPT = CHAIN.replace('stages:\n', 'sweep:\n  c.lr: [0.5, 0.25]\n  b.value: [10, 20]\nstages:\n');

function sweep(file: string, outputs: string, opts: SweepOptions = {}) {
  const registry = testRegistry();
  return runSweep(loadSweep(file, registry, opts), registry, { reporter: silentReporter(), outputs });
}

test('equal keys run once: a and d once, b once per value, c once per variant', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', SWEPT);
  const first = await counted(() => sweep(file, p.outputs));
  assert.deepEqual(first.ran.sort(), ['a', 'b', 'b', 'c', 'c', 'c', 'c', 'd']);
  assert.equal(first.value.instances.length, 8);
  // Every variant sees its own values through the shared instances.
  const totals = first.value.summaries.map(
    (s) => JSON.parse(readFileSync(join(s.stages.find((x) => x.name === 'c')!.dir, 'out.json'), 'utf8')).total,
  );
  assert.deepEqual(totals, [111, 121, 111, 121]);
  // Each variant keeps its own lock file with its own settings.
  for (const v of first.value.variants) {
    const lock = parse(readFileSync(join(p.outputs, 'chain', 'variants', v.name, 'tfpipe.lock'), 'utf8'));
    assert.equal(lock.stages.c.settings.lr, v.values.lr);
    assert.equal(lock.stages.b.settings.value, v.values.value);
  }
  assert.equal(
    existsSync(join(p.outputs, 'chain', 'tfpipe.lock')),
    false,
    'a sweep does not touch the plain pipeline lock',
  );
  const again = await counted(() => sweep(file, p.outputs));
  assert.deepEqual(again.ran, []);
  assert.ok(again.value.summaries.every((s) => s.stages.every((x) => x.state === 'cached')));
});

test('a variant run alone, and the plain pipeline, share their results with the sweep', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', SWEPT);
  const plain = p.write('plain.yaml', CHAIN);
  assert.deepEqual(
    (await counted(() => run(plain, p.outputs))).ran.sort(),
    ['a', 'b', 'c', 'd'],
    'b.value=10, c.lr=0.5: variant 0',
  );
  const one = await counted(() => sweep(file, p.outputs, { pick: ['lr=0.25,value=20'] }));
  assert.deepEqual(one.ran.sort(), ['b', 'c']);
  const all = await counted(() => sweep(file, p.outputs));
  assert.deepEqual(all.ran.sort(), ['c', 'c'], 'only c of lr=0.5,value=20 and of lr=0.25,value=10 were never computed');
});

test('a failed instance skips what needs it in every variant that uses it; the others finish', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', SWEPT.replace('    value: 10\n', '    value: 10\n    fail: false\n'));
  const r = await sweep(file, p.outputs, { sets: ['b.fail=true,false'], multirun: true });
  const failed = r.summaries.filter((s) => s.stages.find((x) => x.name === 'b')?.state === 'failed');
  assert.equal(failed.length, 4, 'b fails in the four fail=true variants');
  assert.ok(failed.every((s) => s.stages.find((x) => x.name === 'c')?.state === 'skipped'));
  const ok = r.summaries.filter((s) => s.stages.every((x) => x.state === 'ran'));
  assert.equal(ok.length, 4);
});

test('status --json and dag show the union graph and which variants use each instance; --dry-run counts runs', () => {
  const p = tempProject();
  const file = p.write('p.yaml', SWEPT);
  const st = tfpipe(['status', file, '--json'], p.outputs);
  assert.equal(st.code, 0, st.stderr);
  const doc = JSON.parse(st.stdout);
  assert.deepEqual(
    doc.sweep.variants.map((v: { name: string }) => v.name),
    ['lr=0.5,value=10', 'lr=0.5,value=20', 'lr=0.25,value=10', 'lr=0.25,value=20'],
  );
  const byStage = (name: string) => doc.stages.filter((s: { name: string }) => s.name === name);
  assert.equal(byStage('a').length, 1);
  assert.equal(byStage('a')[0].variants.length, 4);
  assert.deepEqual(
    byStage('b').map((s: { variants: string[] }) => s.variants.length),
    [2, 2],
  );
  assert.deepEqual(
    byStage('c').map((s: { variants: string[] }) => s.variants.length),
    [1, 1, 1, 1],
  );
  const b10 = byStage('b').find((s: { variants: string[] }) => s.variants.includes('lr=0.5,value=10'));
  assert.deepEqual(b10.variants, ['lr=0.5,value=10', 'lr=0.25,value=10']);
  assert.deepEqual(
    byStage('c').map((s: { needs: string[] }) => s.needs.length),
    [1, 1, 1, 1],
  );
  assert.ok(
    byStage('c').every((s: { needs: string[] }) => byStage('b').some((b: { id: string }) => b.id === s.needs[0])),
  );
  assert.deepEqual(doc.stage_runs, { instances: 8, without_sharing: 16 });

  const dag = tfpipe(['dag', file], p.outputs);
  assert.match(dag.stdout, /^a@[0-9a-f]{8} \(emit\) {2}\[all 4 variants\]$/m);
  assert.match(dag.stdout, /^c@[0-9a-f]{8} \(emit\) {2}<- b@[0-9a-f]{8} {2}\[lr=0\.25,value=20\]$/m);
  assert.match(
    tfpipe(['dag', file, '--format', 'mermaid'], p.outputs).stdout,
    /b@[0-9a-f]{8}<br\/><i>emit<\/i><br\/>value=10, 2 variants/,
  );

  const dry = JSON.parse(tfpipe(['run', file, '--dry-run', '--json'], p.outputs).stdout);
  assert.deepEqual(dry.stage_runs, { instances: 8, would_run: 8, without_sharing: 16 });
  assert.equal(existsSync(p.outputs), false, 'status, dag and --dry-run write nothing');
  tfpipe(['run', file, '--variant', '0'], p.outputs);
  const later = JSON.parse(tfpipe(['run', file, '--dry-run', '--json'], p.outputs).stdout);
  assert.deepEqual(later.stage_runs, { instances: 8, would_run: 4, without_sharing: 16 });
  assert.match(
    tfpipe(['run', file, '--dry-run'], p.outputs).stdout,
    /sweep of 4 variants: 8 stage runs with sharing \(4 not cached now\), against 16 without sharing/,
  );
});

test('-j 2 runs instances side by side in their own processes, with the same results as one at a time', () => {
  const p = tempProject();
  const file = p.write('p.yaml', SWEPT);
  const spans = join(p.dir, 'spans.txt');
  const par = tfpipe(['run', file, '-j', '2', '--json'], p.outputs, {
    env: { TFPIPE_TEST_SPANS: spans, TFPIPE_TEST_SLEEP: 'c:1500' },
  });
  assert.equal(par.code, 0, par.stderr);
  const rows = readFileSync(spans, 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const [name, key, start, end, pid] = l.split(' ');
      return { name, key, start: Number(start), end: Number(end), pid: Number(pid) };
    });
  assert.equal(rows.length, 8, 'each instance ran once');
  const pids = new Set(rows.map((r) => r.pid));
  assert.ok(
    pids.size <= 2 && !pids.has(par.pid!),
    `in two stage processes, not the coordinator: ${[...pids]} (coordinator ${par.pid})`,
  );
  const cs = rows.filter((r) => r.name === 'c');
  const overlaps = cs.filter((x) => cs.some((y) => y !== x && x.start < y.end && y.start < x.end && y.pid !== x.pid));
  assert.ok(overlaps.length >= 2, `two c instances ran at the same time, in two processes: ${JSON.stringify(cs)}`);
  const keysPar = JSON.parse(par.stdout)
    .instances.map((i: { id: string; key: string }) => `${i.id} ${i.key}`)
    .sort();

  const q = tempProject();
  const seqSpans = join(q.dir, 'spans.txt');
  const seq = tfpipe(['run', file, '--json'], q.outputs, { env: { TFPIPE_TEST_SPANS: seqSpans } });
  assert.equal(seq.code, 0, seq.stderr);
  const seqRows = readFileSync(seqSpans, 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(' '));
  assert.equal(new Set(seqRows.map((r) => r[4])).size, 1, 'without -j everything runs in the coordinating process');
  assert.deepEqual(
    JSON.parse(seq.stdout)
      .instances.map((i: { id: string; key: string }) => `${i.id} ${i.key}`)
      .sort(),
    keysPar,
  );
  for (const i of JSON.parse(seq.stdout).instances as { name: string; key: string }[]) {
    const out = (root: string) => readFileSync(join(root, 'chain', i.name, i.key, 'out.json'), 'utf8');
    assert.equal(out(q.outputs), out(p.outputs));
  }
});

test('-j: the instance with the longest chain of stages below it starts first, whatever the file order', async () => {
  const p = tempProject();
  // Two lone stages first in the file, then a chain of three.
  const file = p.write(
    'p.yaml',
    `name: order\nstages:\n  lone1: { kind: emit, value: 1 }\n  lone2: { kind: emit, value: 2 }\n` +
      `  a: { kind: emit, value: 3 }\n  b: { kind: emit, value: 4, needs: [a] }\n  c: { kind: emit, value: 5, needs: [b] }\n`,
  );
  const registry = testRegistry();
  const started: string[] = [];
  const inner = new InProcessExecutor();
  const executor: StageExecutor = {
    run: (inst, needs, io) => {
      started.push(inst.planned.stage.name);
      return inner.run(inst, needs, io);
    },
    close: () => inner.close(),
  };
  const { loadPipeline } = await import('../src/config/load.js');
  const { runPipeline } = await import('../src/sweep/run.js');
  const pipeline = loadPipeline(file, registry);
  assert.deepEqual(
    pipeline.stages.map((x) => x.name),
    ['lone1', 'lone2', 'a', 'b', 'c'],
    'graph order puts the lone stages first',
  );
  await runPipeline(pipeline, registry, { reporter: silentReporter(), outputs: p.outputs, jobs: 2, executor });
  // a (3 stages in its chain) before lone1 and lone2 (1 each), which keep their file order.
  assert.deepEqual(started.slice(0, 2), ['a', 'lone1']);
  assert.equal(started.length, 5);
});

test('-j N gives each job cores / N backend threads unless runtime.threads says; -j 1 leaves it to the backend', () => {
  const p = tempProject();
  const pipeline = (threads?: number) =>
    `name: threads\nruntime: { backend: wasm${threads ? `, threads: ${threads}` : ''} }\nstages:\n` +
    '  t1: { kind: threads, sleep_ms: 300 }\n  t2: { kind: threads, sleep_ms: 300 }\n';
  const read = (outputs: string, name: string) => {
    const dir = join(outputs, 'threads', name);
    const key = readdirSync(dir).find((k) => !k.includes('.'));
    return JSON.parse(readFileSync(join(dir, key as string, 'out.json'), 'utf8')) as { threads: number; pid: number };
  };
  const cores = availableParallelism();
  const file = p.write('p.yaml', pipeline());
  const two = tfpipe(['run', file, '-j', '2'], p.outputs);
  assert.equal(two.code, 0, two.stderr + two.stdout);
  for (const t of ['t1', 't2']) assert.equal(read(p.outputs, t).threads, Math.max(1, Math.floor(cores / 2)), t);
  assert.notEqual(read(p.outputs, 't1').pid, read(p.outputs, 't2').pid, 'in two stage processes');
  // runtime.threads wins over the share.
  const q = tempProject();
  const pinned = q.write('p.yaml', pipeline(3));
  assert.equal(tfpipe(['run', pinned, '-j', '2'], q.outputs).code, 0);
  for (const t of ['t1', 't2']) assert.equal(read(q.outputs, t).threads, 3, t);
  // One at a time, in the coordinating process: 0, the backend's own choice (every core).
  const r = tempProject();
  const one = r.write('p.yaml', pipeline());
  assert.equal(tfpipe(['run', one], r.outputs).code, 0);
  for (const t of ['t1', 't2']) assert.equal(read(r.outputs, t).threads, 0, t);
});

test('runs groups the variants of a sweep run', () => {
  const p = tempProject();
  const file = p.write('p.yaml', SWEPT);
  tfpipe(['run', file, '--set', 'c.lr=0.5', '--set', 'b.value=10'], p.outputs);
  tfpipe(['run', file], p.outputs);
  const doc = JSON.parse(tfpipe(['runs', file, '--json'], p.outputs).stdout);
  assert.equal(doc.runs.length, 5);
  assert.equal(doc.runs[0].sweep, undefined, 'the first run had no sweep (both axes fixed)');
  assert.equal(doc.sweeps.length, 1);
  assert.deepEqual(doc.sweeps[0].runs, [2, 3, 4, 5]);
  assert.deepEqual(
    doc.runs.slice(1).map((r: { sweep: { variant: string } }) => r.sweep.variant),
    ['lr=0.5,value=10', 'lr=0.5,value=20', 'lr=0.25,value=10', 'lr=0.25,value=20'],
  );
  assert.deepEqual(
    doc.runs[4].changed,
    { 'b.value': { from: '10', to: '20' }, 'c.lr': { from: '0.5', to: '0.25' } },
    'compared with the first variant',
  );
  const text = tfpipe(['runs', file], p.outputs).stdout;
  assert.match(text, /^sweep of 4 variants over lr × value \(runs 2, 3, 4, 5\):$/m);
});

test('a stage lock shared across machines: a holder elsewhere keeps it while it refreshes it, and loses it when it stops', async () => {
  const p = tempProject();
  const path = join(p.dir, 'locks', 'x.lock');
  mkdirSync(join(p.dir, 'locks'));
  // A holder on another host: its pid cannot be checked here, its heartbeat can.
  writeFileSync(path, JSON.stringify({ pid: 1, host: 'elsewhere', token: 't', since: 'then' }));
  const told: string[] = [];
  const waiting = acquireLock(path, { onWait: (m) => told.push(m), pollMs: 20, remoteStaleMs: 60_000 });
  const stillWaiting = await Promise.race([
    waiting.then(() => false),
    new Promise((r) => setTimeout(() => r(true), 300)),
  ]);
  assert.equal(stillWaiting, true, 'a fresh holder on another host keeps the lock');
  assert.match(told[0], /pid 1 on elsewhere; taken over if it stops refreshing the file for 60 s/);
  utimesSync(path, new Date(Date.now() - 61_000), new Date(Date.now() - 61_000));
  const release = await waiting;
  assert.match(told[1], /pid 1 on elsewhere\) has not refreshed it for 61 s; its lock was taken over/);
  await release();
  assert.equal(existsSync(path), false);
  // A holder refreshes its lock (every twelfth of remoteStaleMs).
  const beating = await acquireLock(path, { remoteStaleMs: 12_000 });
  const old = Date.now() - 30_000;
  utimesSync(path, new Date(old), new Date(old));
  await new Promise((r) => setTimeout(r, 1_800));
  assert.ok(statSync(path).mtimeMs > old + 25_000, 'the holder refreshed the lock file');
  await beating();
});

test('a stage whose key another process finished while it waited for the lock uses that result', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const registry = testRegistry();
  await run(file, p.outputs, [], { until: 'a' });
  const { loadPipeline } = await import('../src/config/load.js');
  const plan = await makePlan(loadPipeline(file, registry), registry, { outputs: p.outputs });
  const b = plan.stages.find((s) => s.stage.name === 'b')!;
  const a = plan.stages.find((s) => s.stage.name === 'a')!;
  const hold = await acquireLock(stageLockPath(plan.store, 'b', b.key));
  const logs: string[] = [];
  const waiting = counted(() =>
    new StageRunner().run(plan, b, { a: a.manifest! }, { progress: () => {}, log: (m) => logs.push(m) }),
  );
  await new Promise((r) => setTimeout(r, 300));
  // Meanwhile "another process" finishes b: here, a plain run that does not take the key lock's turn.
  const other = await makePlan(loadPipeline(file, registry), registry, { outputs: p.outputs });
  const ob = other.stages.find((s) => s.stage.name === 'b')!;
  await other.store.prepareWorkDir('b', ob.key, false);
  writeFileSync(join(other.store.workDir('b', ob.key), 'out.json'), JSON.stringify({ total: 11, seed: 7 }));
  const { outputsDigest } = await import('../src/cache/upstream.js');
  await other.store.commit('b', ob.key, {
    pipeline: 'chain',
    stage: 'b',
    key: ob.key,
    inputs: ob.inputs,
    upstreamOutputs: { a: outputsDigest(a.manifest!.files) },
    result: { total: 11 },
    seconds: 0,
    finishedAt: new Date().toISOString(),
  });
  await hold();
  const r = await waiting;
  assert.equal(r.value.reused, true);
  assert.deepEqual(r.ran, [], 'the waiting runner did not run the stage again');
  assert.ok(
    logs.some((m) => /another tfpipe process \(pid \d+\) holds .*\.lock; waiting/.test(m)) &&
      logs.some((m) => /another process finished key/.test(m)),
    logs.join('\n'),
  );
});
