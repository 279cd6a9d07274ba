// Issue 11 item 15: every run is on record with its outcome, killed ones included, and status
// tells a resumable attempt from one that never ran.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadPipeline } from '../src/config/load.js';
import { readRuns } from '../src/runner/history.js';
import { makePlan } from '../src/runner/plan.js';
import { loadRegistry } from '../src/kinds/index.js';
import { packageRoot } from '../src/ground/paths.js';
import { BIN, cliEnv, tfpipe } from './cli-helpers.js';
import { CHAIN, tempProject } from './helpers.js';

/** Starts a run whose stage b sleeps; resolves once b is running. */
async function startStalled(file: string, outputs: string) {
  const child = spawn(process.execPath, [BIN, 'run', file], { env: cliEnv(outputs, { TFPIPE_TEST_SLEEP: 'b:60000' }) });
  let seen = '';
  await new Promise<void>((res) =>
    child.stdout.on('data', (d) => {
      seen += String(d);
      if (seen.includes('[b] running')) res();
    }),
  );
  return { child, exited: new Promise<number | null>((res) => child.on('exit', (code) => res(code))) };
}

const runsDoc = (file: string, outputs: string) =>
  JSON.parse(tfpipe(['runs', file, '--json'], outputs).stdout).runs as {
    outcome: string;
    stopped_at: string[];
    ran: string[];
    seconds: number | null;
  }[];

test('a failed run is recorded as failed at its stage, not "ran: nothing"', () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  assert.equal(tfpipe(['run', file, '--set', 'b.fail=true'], p.outputs).code, 1);
  assert.equal(tfpipe(['run', file], p.outputs).code, 0);
  const runs = runsDoc(file, p.outputs);
  assert.deepEqual(
    runs.map((r) => [r.outcome, r.stopped_at, r.ran]),
    [
      ['failed', ['b'], ['a', 'd']],
      ['ok', [], ['b', 'c']],
    ],
  );
  const text = tfpipe(['runs', file], p.outputs).stdout.split('\n');
  assert.match(text[1], /failed at b +ran: a, d$/);
  assert.match(text[2], /ok +ran: b, c$/);
});

test('interrupted and killed runs are on record; a live one shows as running', { timeout: 120_000 }, async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const a = await startStalled(file, p.outputs);
  a.child.kill('SIGINT');
  assert.equal(await a.exited, 130);

  const b = await startStalled(file, p.outputs);
  const live = runsDoc(file, p.outputs);
  assert.equal(live[1].outcome, 'running');
  assert.match(tfpipe(['runs', file], p.outputs).stdout, new RegExp(`running \\(pid ${b.child.pid}\\)`));
  b.child.kill('SIGKILL');
  await b.exited;

  const runs = runsDoc(file, p.outputs);
  assert.deepEqual(
    runs.map((r) => [r.outcome, r.stopped_at]),
    [
      ['interrupted', ['b']],
      ['killed', []],
    ],
  );
  assert.equal(runs[1].seconds, null);
  assert.match(tfpipe(['runs', file], p.outputs).stdout, /interrupted at b .*\n.*killed /);
});

test('runs.jsonl written before outcomes were recorded, and damaged lines, still read', async () => {
  const p = tempProject();
  const dir = join(p.outputs, 'chain');
  mkdirSync(dir, { recursive: true });
  const stage = (name: string, state: string) => ({ name, kind: 'emit', state, key: 'k', seconds: 1, dir: '/x' });
  appendFileSync(
    join(dir, 'runs.jsonl'),
    `${[
      JSON.stringify({
        started_at: '2025-01-01T00:00:00.000Z',
        seconds: 3,
        seed: 0,
        settings: {},
        stages: [stage('a', 'ran'), stage('b', 'failed')],
        metrics: {},
      }),
      '{"started_at": "2025-01-02T00:0',
      JSON.stringify({ unrelated: true }),
      JSON.stringify({
        started_at: '2025-01-03T00:00:00.000Z',
        seconds: 2,
        seed: 0,
        settings: {},
        stages: [stage('a', 'cached')],
        metrics: {},
      }),
    ].join('\n')}\n`,
  );
  const runs = await readRuns(dir);
  assert.deepEqual(
    runs.map((r) => [r.outcome, r.stopped_at]),
    [
      ['failed', ['b']],
      ['ok', []],
    ],
  );
});

test('status says a train stage is resumable from epoch N, not "never ran"', async () => {
  const p = tempProject();
  // The data file only needs to exist: status hashes it, nothing reads it as an archive.
  p.write('data.tar.gz', 'stand-in');
  const file = p.write(
    'p.yaml',
    readFileSync(join(packageRoot, 'pipelines', 'cifar-vit-quick.yaml'), 'utf8').replace(
      '    limit_train: 10000\n',
      '    limit_train: 10000\n    source: data.tar.gz\n',
    ),
  );
  const registry = await loadRegistry({});
  const pipeline = loadPipeline(file, registry);
  const before = await makePlan(pipeline, registry, { outputs: p.outputs });
  const train = before.stages.find((s) => s.stage.name === 'train')!;
  assert.deepEqual(train.reasons, ['never ran']);
  // What train's saveResume leaves after epoch 3 of 10 when the run is killed.
  const resume = join(before.store.workDir('train', train.key), '.resume');
  mkdirSync(join(resume, 'epoch-3'), { recursive: true });
  writeFileSync(
    join(resume, 'epoch-3', 'state.json'),
    JSON.stringify({
      epochsDone: 3,
      plannedEpochs: 10,
      bestEpoch: 3,
      bestValAccuracy: 0.3,
      elapsedSeconds: 30,
      metrics: [],
    }),
  );
  writeFileSync(join(resume, 'current'), 'epoch-3');
  const after = await makePlan(pipeline, registry, { outputs: p.outputs });
  const t = after.stages.find((s) => s.stage.name === 'train')!;
  assert.equal(t.state, 'missing');
  assert.deepEqual(t.reasons, ['resumable from epoch 4 of 10 (an interrupted attempt finished 3)']);
  assert.deepEqual(after.stages.find((s) => s.stage.name === 'evaluate')!.reasons, ['never ran']);
});
