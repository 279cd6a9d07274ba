// Issue 19: the queue under faults and strangers, and the README's worker promises, with the
// test-only kinds. Workers killed with -9 or stopped with Ctrl-C, a coordinator stopped with Ctrl-C
// (also while it waits for the run lock), Redis killed and restarted empty mid-run, a worker told
// to stop after its Redis is gone, jobs written into Redis by someone without the queue secret,
// and several jobs at once in one worker. Each test starts its own processes (and, where it kills
// Redis, its own Redis) and skips with the reason where redis-server is absent.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { Queue } from 'bullmq';
import { canonicalJson } from '../src/cache/hash.js';
import { QUEUE_NAME } from '../src/executors/redis.js';
import { cliEnv } from './cli-helpers.js';
import { startTfpipe, type Running } from '../harness/cli-process.js';
import { CHAIN, tempProject } from './helpers.js';
import { noRedis, startRedis, type RedisHandle } from '../harness/redis-server.js';

let redis: RedisHandle | undefined;
before(async () => {
  if (!noRedis) redis = await startRedis();
});
after(async () => {
  await redis?.stop();
});

const env = (outputs: string, extra: Record<string, string> = {}) =>
  cliEnv(outputs, { TFPIPE_LOG_INTERVAL_MS: '0', ...extra });

const worker = (url: string, outputs: string, extra: Record<string, string> = {}, args: string[] = []) =>
  startTfpipe(['worker', '--queue', url, '--lock-timeout', '2', ...args], env(outputs, extra));

const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : []);

/** The exit code, or 'still running' once `ms` have passed (the process is then killed). */
async function exitWithin(r: Running, ms: number): Promise<number | null | 'still running'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'still running'>((res) => {
    timer = setTimeout(() => res('still running'), ms);
  });
  const code = await Promise.race([r.exited, late]);
  clearTimeout(timer);
  if (code === 'still running') r.child.kill('SIGKILL');
  return code;
}

async function stopAll(...rs: Running[]): Promise<void> {
  await Promise.all(rs.map((r) => r.stop()));
}

/** A chain run through the queue whose one worker (a) is inside stage b, which sleeps a minute. */
async function workerInsideB() {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const counter = join(p.dir, 'count.txt');
  const a = worker(redis!.url, p.outputs, { TFPIPE_TEST_SLEEP: 'b:60000', TFPIPE_TEST_COUNTER: counter });
  await a.waitFor(/1 job\(s\) at a time/);
  const coordinator = startTfpipe(['run', file, '--queue', redis!.url], env(p.outputs));
  await a.waitFor(/\[chain\/b@[0-9a-f]+\] started/);
  return { p, file, counter, a, coordinator };
}

test('a worker killed with -9 mid-job: another worker takes the job over and the run finishes, each stage once', {
  skip: noRedis,
  timeout: 120_000,
}, async () => {
  const { p, counter, a, coordinator } = await workerInsideB();
  a.child.kill('SIGKILL');
  await a.exited;
  const b = worker(redis!.url, p.outputs, { TFPIPE_TEST_COUNTER: counter });
  try {
    assert.equal(await exitWithin(coordinator, 60_000), 0, coordinator.output());
    assert.match(coordinator.output(), /\[b\] its worker stopped answering; the job went back to the queue/);
    assert.match(b.output(), /\[chain\/b@[0-9a-f]+\] started/);
    assert.deepEqual(lines(counter).sort(), ['a', 'b', 'c', 'd'], 'every stage ran once to its end');
  } finally {
    await stopAll(coordinator, b);
  }
});

test('worker --concurrency 2 runs two jobs at once, in two stage processes, each with cores / 2 threads', {
  skip: noRedis,
  timeout: 120_000,
}, async () => {
  const p = tempProject();
  // Each job sleeps 5 s once its backend is up, so the two overlap even if one child's TensorFlow.js
  // starts seconds after the other's.
  const file = p.write(
    'p.yaml',
    'name: pair\nruntime: { backend: wasm }\nstages:\n  t1: { kind: threads, sleep_ms: 5000 }\n  t2: { kind: threads, sleep_ms: 5000 }\n',
  );
  const w = worker(redis!.url, p.outputs, {}, ['--concurrency', '2']);
  try {
    await w.waitFor(/2 job\(s\) at a time/);
    const coordinator = startTfpipe(['run', file, '--queue', redis!.url], env(p.outputs));
    assert.equal(await exitWithin(coordinator, 90_000), 0, coordinator.output());
    const read = (name: string) => {
      const dir = join(p.outputs, 'pair', name);
      const key = readdirSync(dir).find((k) => !k.includes('.'));
      return JSON.parse(readFileSync(join(dir, key as string, 'out.json'), 'utf8')) as {
        threads: number;
        pid: number;
        started: number;
        ended: number;
      };
    };
    const [t1, t2] = [read('t1'), read('t2')];
    assert.notEqual(t1.pid, t2.pid, 'two stage processes');
    assert.ok(t1.started < t2.ended && t2.started < t1.ended, `the two jobs overlapped: ${JSON.stringify([t1, t2])}`);
    for (const t of [t1, t2]) assert.equal(t.threads, Math.max(1, Math.floor(availableParallelism() / 2)));
  } finally {
    await w.stop();
  }
});

test('Ctrl-C on a worker hands its running job back to the queue; another worker finishes it', {
  skip: noRedis,
  timeout: 120_000,
}, async () => {
  const { p, counter, a, coordinator } = await workerInsideB();
  a.child.kill('SIGINT');
  assert.equal(await exitWithin(a, 30_000), 130, a.output());
  assert.match(a.output(), /\[chain\/b@[0-9a-f]+\] interrupted; handing the job back to the queue/);
  const b = worker(redis!.url, p.outputs, { TFPIPE_TEST_COUNTER: counter });
  try {
    assert.equal(await exitWithin(coordinator, 60_000), 0, coordinator.output());
    assert.match(b.output(), /\[chain\/b@[0-9a-f]+\] started/);
    assert.doesNotMatch(coordinator.output(), /stopped answering/, 'handed back, not found stalled');
    assert.deepEqual(lines(counter).sort(), ['a', 'b', 'c', 'd']);
  } finally {
    await stopAll(coordinator, b);
  }
});

test('Ctrl-C on a --queue coordinator withdraws the jobs no worker took; a running one finishes and is kept', {
  skip: noRedis,
  timeout: 120_000,
}, async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const counter = join(p.dir, 'count.txt');
  const w = worker(redis!.url, p.outputs, { TFPIPE_TEST_SLEEP: 'a:6000', TFPIPE_TEST_COUNTER: counter });
  const queue = new Queue(QUEUE_NAME, { connection: { url: redis!.url } });
  try {
    await w.waitFor(/1 job\(s\) at a time/);
    const coordinator = startTfpipe(['run', file, '--queue', redis!.url], env(p.outputs));
    await coordinator.waitFor(/\[a\] a worker took the job/);
    await coordinator.waitFor(/\[d\] queued as job (\S+)/);
    const d = /\[d\] queued as job (\S+)/.exec(coordinator.output())?.[1] as string;
    assert.equal(await queue.getJobState(d), 'waiting', 'd waits: the one worker is busy with a');
    coordinator.child.kill('SIGINT');
    assert.equal(await exitWithin(coordinator, 30_000), 130, coordinator.output());
    assert.equal(await queue.getJobState(d), 'unknown', 'd was withdrawn');
    await w.waitFor(/\[chain\/a@[0-9a-f]+\] done/);
    assert.deepEqual(lines(counter), ['a'], 'a ran to its end; nothing else ran');
    // a is kept: a new run finds it done and runs the rest.
    const again = startTfpipe(['run', file, '--queue', redis!.url, '--json'], env(p.outputs));
    assert.equal(await exitWithin(again, 60_000), 0, again.output());
    const states = JSON.parse(again.output().slice(again.output().indexOf('{\n')));
    assert.equal(states.stages.find((s: { name: string }) => s.name === 'a').state, 'cached');
  } finally {
    await queue.close();
    await w.stop();
  }
});

test('Redis killed and restarted empty mid-run: the coordinator says so once, queues the lost jobs again and finishes', {
  skip: noRedis,
  timeout: 180_000,
}, async () => {
  let own = await startRedis();
  const p = tempProject();
  const file = p.write(
    'p.yaml',
    CHAIN.replace('stages:\n', 'sweep:\n  c.lr: [0.5, 0.25]\n  b.value: [10, 20]\nstages:\n'),
  );
  const counter = join(p.dir, 'count.txt');
  const extra = { TFPIPE_TEST_SLEEP: 'c:3000', TFPIPE_TEST_COUNTER: counter };
  const workers = [worker(own.url, p.outputs, extra), worker(own.url, p.outputs, extra)];
  let coordinator: Running | undefined;
  try {
    await Promise.all(workers.map((w) => w.waitFor(/1 job\(s\) at a time/)));
    coordinator = startTfpipe(['run', file, '--queue', own.url], env(p.outputs));
    // Two c jobs running (3 s each), two waiting behind them: then Redis dies.
    await coordinator.waitFor(/\[c [^\]]*\] a worker took the job[\s\S]*\[c [^\]]*\] a worker took the job/);
    await own.kill();
    await new Promise((r) => setTimeout(r, 1500));
    own = await startRedis(own.port);
    assert.equal(await exitWithin(coordinator, 90_000), 0, coordinator.output());
    const out = coordinator.output();
    assert.equal(out.match(/lost the connection to Redis/g)?.length, 1, out);
    assert.match(out, /Redis at redis:\/\/127\.0\.0\.1:\d+ answers again/);
    assert.match(out, /is gone from Redis \(restarted without persistence\?\); queueing it again/);
    assert.doesNotMatch(out, /^\s+at /m, 'no stack traces');
    assert.deepEqual(lines(counter).sort(), ['a', 'b', 'b', 'c', 'c', 'c', 'c', 'd'], 'every instance ran once');
  } finally {
    await stopAll(...workers, ...(coordinator ? [coordinator] : []));
    await own.stop();
  }
});

test('with --queue, Ctrl-C while waiting for the run lock exits 130 at once and lets go of Redis', {
  skip: noRedis,
  timeout: 60_000,
}, async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const lock = join(p.outputs, 'chain', '.run.lock');
  mkdirSync(dirname(lock), { recursive: true });
  // A live holder: this test process.
  writeFileSync(lock, JSON.stringify({ pid: process.pid, host: hostname(), token: 't', since: 'now' }));
  const coordinator = startTfpipe(['run', file, '--queue', redis!.url], env(p.outputs));
  await coordinator.waitFor(/waiting for it to finish/);
  coordinator.child.kill('SIGINT');
  assert.equal(await exitWithin(coordinator, 10_000), 130, coordinator.output());
  assert.match(coordinator.output(), /interrupted while waiting for the run lock; nothing ran/);
  assert.equal(JSON.parse(readFileSync(lock, 'utf8')).token, 't', "the holder's lock stays");
});

test('a worker that has run a job stops on one SIGTERM after its Redis is gone', {
  skip: noRedis,
  timeout: 120_000,
}, async () => {
  const own = await startRedis();
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const w = worker(own.url, p.outputs);
  try {
    await w.waitFor(/1 job\(s\) at a time/);
    const coordinator = startTfpipe(['run', file, '--queue', own.url], env(p.outputs));
    assert.equal(await exitWithin(coordinator, 60_000), 0, coordinator.output());
    await w.waitFor(/\[chain\/c@[0-9a-f]+\] done/);
    await own.kill();
    await w.waitFor(/worker: .*ECONNREFUSED/);
    w.child.kill('SIGTERM');
    assert.equal(await exitWithin(w, 20_000), 130, w.output());
    assert.match(w.output(), /Redis at redis:\/\/127\.0\.0\.1:\d+ does not answer; stopping without it/);
  } finally {
    await w.stop();
    await own.stop();
  }
});

test('jobs written into Redis without the queue secret are refused unread: nothing runs, no key is echoed', {
  skip: noRedis,
  timeout: 120_000,
}, async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const counter = join(p.dir, 'count.txt');
  const queue = new Queue(QUEUE_NAME, { connection: { url: redis!.url } });
  try {
    // What a stranger with access to Redis can read: a genuine job, queued by a coordinator.
    const coordinator = startTfpipe(['run', file, '--queue', redis!.url], env(p.outputs));
    await coordinator.waitFor(/\[a\] queued as job (\S+)/);
    const id = /\[a\] queued as job (\S+)/.exec(coordinator.output())?.[1] as string;
    const genuine = (await queue.getJob(id))?.data as Record<string, unknown> & {
      signature: string;
      pipeline: { document: { stages: { a: { value: number } } } };
    };
    coordinator.child.kill('SIGKILL');
    await coordinator.exited;
    await queue.obliterate({ force: true });
    assert.match(genuine.signature, /^[0-9a-f]{64}$/, 'genuine jobs are signed');
    // Settings of the stranger's choosing, under the genuine key.
    const steered = structuredClone(genuine);
    steered.pipeline.document.stages.a.value = 999;
    const { signature: _drop, ...unsigned } = steered;
    const guessed = createHmac('sha256', 'a guessed secret').update(canonicalJson(unsigned)).digest('hex');
    const crafted: Record<string, unknown>[] = [unsigned, steered, { ...unsigned, signature: guessed }];
    for (const [i, data] of crafted.entries()) await queue.add('stage', data, { jobId: `stranger-${i}` });
    const w = worker(redis!.url, p.outputs, { TFPIPE_TEST_COUNTER: counter });
    try {
      await w.waitFor(/REFUSED[\s\S]*REFUSED[\s\S]*REFUSED/);
      for (const i of crafted.keys()) {
        const job = await queue.getJob(`stranger-${i}`);
        assert.equal(await job?.getState(), 'failed');
        assert.match(
          job?.failedReason ?? '',
          /^refused by worker \S+: the job( is not signed|'s signature does not match); a worker runs only jobs signed by a coordinator that shares its queue secret$/,
        );
        assert.doesNotMatch(job?.failedReason ?? '', /[0-9a-f]{16}/, 'no key, hash or secret in the refusal');
      }
      assert.deepEqual(lines(counter), [], 'no stage code ran');
      assert.equal(existsSync(join(p.outputs, 'chain', 'a')), false, 'nothing was written for stage a');
      // The genuine job, untouched, runs on the same worker.
      await queue.add('stage', genuine, { jobId: id });
      await w.waitFor(/\[chain\/a@[0-9a-f]+\] done/);
      assert.deepEqual(lines(counter), ['a']);
    } finally {
      await w.stop();
    }
  } finally {
    await queue.close();
  }
});
