// Issue 10, BullMQ on Redis with the test-only kinds: workers run the sweep, the same work is
// never queued twice, a dead coordinator is picked up, a worker with other code or another
// outputs folder refuses, and an unreachable Redis is a clear exit 2 with nothing written.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { BIN, cliEnv } from './cli-helpers.js';
import { startTfpipe, type Running } from '../harness/cli-process.js';
import { CHAIN, tempProject } from './helpers.js';
import { freePort, noRedis, startRedis, type RedisHandle } from '../harness/redis-server.js';

const SWEPT = CHAIN.replace('stages:\n', 'sweep:\n  c.lr: [0.5, 0.25]\n  b.value: [10, 20]\nstages:\n');

let redis: RedisHandle | undefined;
before(async () => {
  if (!noRedis) redis = await startRedis();
});
after(async () => {
  await redis?.stop();
});

const env = (outputs: string, extra: Record<string, string> = {}) =>
  cliEnv(outputs, { TFPIPE_LOG_INTERVAL_MS: '0', ...extra });

/** The CLI run to its end, but never for longer than two minutes (a hung queue fails the test). */
function tfpipe(args: string[], outputs: string, extra: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    env: env(outputs, extra),
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function withWorkers<T>(
  outputs: string,
  n: number,
  extra: Record<string, string>,
  fn: (workers: Running[]) => Promise<T>,
): Promise<T> {
  const workers = Array.from({ length: n }, () =>
    startTfpipe(['worker', '--queue', redis!.url, '--lock-timeout', '2'], env(outputs, extra)),
  );
  try {
    await Promise.all(workers.map((w) => w.waitFor(/tfpipe worker .*: 1 job\(s\) at a time/)));
    return await fn(workers);
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : []);

test('unreachable Redis or a wrong URL: one clear line, exit 2, nothing written', async () => {
  const p = tempProject();
  const file = p.write('p.yaml', SWEPT);
  const port = await freePort();
  for (const url of [`redis://127.0.0.1:${port}`, 'http://127.0.0.1:6379', 'redis//nohost']) {
    const r = tfpipe(['run', file, '--queue', url], p.outputs);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^tfpipe: (cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED|--queue )/);
  }
  const w = tfpipe(['worker', '--queue', `redis://127.0.0.1:${port}`], p.outputs);
  assert.equal(w.code, 2);
  assert.match(w.stderr, /cannot reach Redis/);
  assert.equal(existsSync(p.outputs), false);
});

test('two workers run a sweep: every instance once, in the workers, with the results of a local run', {
  skip: noRedis,
}, async () => {
  const p = tempProject();
  const file = p.write('p.yaml', SWEPT);
  const spans = join(p.dir, 'spans.txt');
  const r = await withWorkers(p.outputs, 2, { TFPIPE_TEST_SPANS: spans }, async () =>
    tfpipe(['run', file, '--queue', redis!.url, '--json'], p.outputs, { TFPIPE_TEST_SPANS: spans }),
  );
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  assert.equal(doc.stage_runs.ran, 8);
  const rows = lines(spans).map((l) => l.split(' '));
  assert.equal(rows.length, 8, 'each instance ran once');
  assert.match(r.stderr, /ran on worker [^:]+:\d+/);
  const local = tempProject();
  const l = tfpipe(['run', file, '--json'], local.outputs);
  assert.deepEqual(
    JSON.parse(l.stdout)
      .instances.map((i: { key: string }) => i.key)
      .sort(),
    doc.instances.map((i: { key: string }) => i.key).sort(),
  );
  for (const i of doc.instances as { name: string; key: string }[]) {
    const out = (root: string) => readFileSync(join(root, 'chain', i.name, i.key, 'out.json'), 'utf8');
    assert.equal(out(p.outputs), out(local.outputs));
  }
  // Run again: all cached, nothing queued.
  const again = tfpipe(['run', file, '--queue', redis!.url, '--json'], p.outputs);
  assert.equal(JSON.parse(again.stdout).stage_runs.cached, 8);
  assert.doesNotMatch(again.stderr, /queued as job/);
});

test('a coordinator killed after queueing is run again: it waits for the queued jobs instead of queueing them twice', {
  skip: noRedis,
}, async () => {
  const p = tempProject();
  const file = p.write('p.yaml', SWEPT);
  const counter = join(p.dir, 'count.txt');
  const first = startTfpipe(['run', file, '--queue', redis!.url], env(p.outputs));
  await first.waitFor(/\[a .*\] queued as job/);
  await first.waitFor(/\[d .*\] queued as job/);
  first.child.kill('SIGKILL');
  await first.exited;
  const second = startTfpipe(
    ['run', file, '--queue', redis!.url, '--json'],
    env(p.outputs, { TFPIPE_TEST_COUNTER: counter }),
  );
  await second.waitFor(/\[a .*\] job \S+ is already queued \(queued by an earlier run\); waiting for it/);
  const code = await withWorkers(p.outputs, 1, { TFPIPE_TEST_COUNTER: counter }, () => second.exited);
  assert.equal(code, 0, second.output());
  assert.deepEqual(lines(counter).sort(), ['a', 'b', 'b', 'c', 'c', 'c', 'c', 'd'], 'every instance ran exactly once');
});

test('a worker whose kind versions differ refuses every job and writes nothing', { skip: noRedis }, async () => {
  const p = tempProject();
  const file = p.write('p.yaml', SWEPT);
  const counter = join(p.dir, 'count.txt');
  const r = await withWorkers(
    p.outputs,
    1,
    { TFPIPE_TEST_EMIT_VERSION: '2', TFPIPE_TEST_COUNTER: counter },
    async (ws) => {
      const res = tfpipe(['run', file, '--queue', redis!.url, '--json'], p.outputs);
      await ws[0].waitFor(/REFUSED/);
      return { ...res, worker: ws[0].output() };
    },
  );
  assert.equal(r.code, 1);
  const doc = JSON.parse(r.stdout);
  const a = doc.instances.find((i: { name: string }) => i.name === 'a');
  assert.equal(a.state, 'failed');
  assert.match(
    a.error,
    /^refused by worker \S+: chain\/a@([0-9a-f]{16}): .* computes another key for this stage \(implementation of kind "emit" changed: version 1 → 2\)/,
  );
  // The refusal names no key but the job's own: what the worker computed stays with it.
  const keys = new Set(a.error.match(/[0-9a-f]{16}/g));
  assert.deepEqual([...keys], [a.key]);
  assert.match(r.worker, /REFUSED/);
  assert.deepEqual(lines(counter), [], 'no stage code ran');
  const stageDirs = readdirSync(join(p.outputs, 'chain')).filter((e) => ['a', 'b', 'c', 'd'].includes(e));
  assert.deepEqual(stageDirs, [], 'no artefact and no work dir was written');
});

test('a worker that sees another outputs folder refuses the job: without its secret, or by the store id', {
  skip: noRedis,
}, async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const elsewhere = join(p.dir, 'other-outputs');
  mkdirSync(elsewhere);
  writeFileSync(join(elsewhere, '.tfpipe-store'), JSON.stringify({ id: 'not-the-same-store' }));
  // Another folder holds neither the coordinator's secret file nor its store id.
  const stageA = async (extra: Record<string, string>) => {
    const worker = startTfpipe(['worker', '--queue', redis!.url, '--outputs', elsewhere], env(p.outputs, extra));
    try {
      await worker.waitFor(/1 job\(s\) at a time/);
      const r = tfpipe(['run', file, '--queue', redis!.url, '--json'], p.outputs, extra);
      assert.equal(r.code, 1);
      await worker.waitFor(/REFUSED/);
      return { a: JSON.parse(r.stdout).stages.find((s: { name: string }) => s.name === 'a'), log: worker.output() };
    } finally {
      await worker.stop();
    }
  };
  const noSecret = await stageA({});
  assert.match(noSecret.a.error, /refused by worker \S+: this worker has no queue secret/);
  assert.match(noSecret.log, /\[job \S+\] REFUSED, nothing ran: this worker has no queue secret/);
  // With a secret both share through the environment, the store id tells the folders apart.
  const shared = await stageA({ TFPIPE_QUEUE_SECRET: 'a secret both machines were given, 32+ chars' });
  assert.match(
    shared.a.error,
    /belongs to the outputs folder .* \(store [0-9a-f-]{36}\), but .* is store not-the-same-store: this worker does not see the coordinator's outputs folder/,
  );
  assert.deepEqual(readdirSync(elsewhere), ['.tfpipe-store']);
});
