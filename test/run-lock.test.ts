// Issue 11 items 3, 4 and 6: the run lock never makes a run wait forever or for nothing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { acquireLock } from '../src/cache/run-lock.js';
import { tempProject } from './helpers.js';
import { CHILD_TIMEOUT_MS } from '../harness/system.js';

const past = (path: string, seconds: number) => {
  const t = new Date(Date.now() - seconds * 1000);
  utimesSync(path, t, t);
};

/** The pid of a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
    encoding: 'utf8',
    timeout: CHILD_TIMEOUT_MS,
  });
  return Number(r.stdout);
}

test('an empty lock (killed between creating and writing it) is stale after the grace period, and says so', {
  timeout: 15_000,
}, async () => {
  const path = join(tempProject().dir, '.run.lock');
  writeFileSync(path, '');
  past(path, 10);
  const told: string[] = [];
  const release = await acquireLock(path, { onWait: (m) => told.push(m), graceMs: 2000, pollMs: 10 });
  assert.equal(told.length, 1, told.join('\n'));
  assert.match(
    told[0],
    /\.run\.lock is empty \(left by a process killed while taking it, \d+ s ago\); treated as stale and taken over/,
  );
  assert.equal(JSON.parse(readFileSync(path, 'utf8')).pid, process.pid);
  await release();
  assert.equal(existsSync(path), false);
});

test('a fresh unreadable lock is waited for (it may be being written), then taken over', {
  timeout: 15_000,
}, async () => {
  const path = join(tempProject().dir, '.run.lock');
  writeFileSync(path, '{"pid": 12');
  const told: string[] = [];
  const t0 = Date.now();
  const release = await acquireLock(path, { onWait: (m) => told.push(m), graceMs: 300, pollMs: 20 });
  assert.ok(Date.now() - t0 >= 250, 'waited for the grace period');
  assert.match(told[0], /is being taken by another tfpipe process; waiting/);
  assert.match(told[1], /is unreadable .*treated as stale and taken over/);
  await release();
});

test('a dead holder: the message says it is gone and the lock was taken over, not "waiting"', {
  timeout: 15_000,
}, async () => {
  const path = join(tempProject().dir, '.run.lock');
  const pid = deadPid();
  writeFileSync(path, JSON.stringify({ pid, host: hostname(), token: 'x', since: '2025-01-01T00:00:00.000Z' }));
  const told: string[] = [];
  const release = await acquireLock(path, { onWait: (m) => told.push(m), pollMs: 10 });
  assert.deepEqual(told, [
    `the tfpipe process that held ${path} (pid ${pid}, since 2025-01-01T00:00:00.000Z) is gone; its lock was taken over`,
  ]);
  await release();
});

test('waiting for a live holder stops at once when the signal aborts', { timeout: 15_000 }, async () => {
  const path = join(tempProject().dir, '.run.lock');
  // This process is alive: the lock is busy for as long as the test wants.
  writeFileSync(path, JSON.stringify({ pid: process.pid, host: hostname(), token: 'other', since: 'now' }));
  const controller = new AbortController();
  const told: string[] = [];
  const waiting = acquireLock(path, { onWait: (m) => told.push(m), signal: controller.signal, pollMs: 5000 });
  await new Promise((r) => setTimeout(r, 50));
  const t0 = Date.now();
  controller.abort();
  // The signal's own reason, not a timer's AbortError or a lock error.
  await assert.rejects(waiting, (err: Error) => err === controller.signal.reason);
  assert.ok(Date.now() - t0 < 1000, 'did not sleep out the poll interval');
  assert.match(
    told[0],
    new RegExp(`another tfpipe process \\(pid ${process.pid}\\) holds .*; waiting for it to finish`),
  );
  assert.equal(JSON.parse(readFileSync(path, 'utf8')).token, 'other', "the holder's lock is untouched");
});

test("waiters that all find one stale lock take it one at a time; release leaves a later holder's lock alone", {
  timeout: 15_000,
}, async () => {
  const dir = tempProject().dir;
  const path = join(dir, 'stage.lock');
  writeFileSync(path, '');
  past(path, 10);
  let inside = 0;
  let most = 0;
  const order: number[] = [];
  await Promise.all(
    [1, 2, 3, 4].map(async (i) => {
      const release = await acquireLock(path, { graceMs: 100, pollMs: 5 });
      inside += 1;
      most = Math.max(most, inside);
      order.push(i);
      await new Promise((r) => setTimeout(r, 30));
      inside -= 1;
      await release();
    }),
  );
  assert.equal(most, 1, 'never two holders at once');
  assert.equal(order.length, 4);
  assert.deepEqual(readdirSync(dir), [], 'no temp or set-aside files left');

  const release = await acquireLock(path);
  writeFileSync(path, JSON.stringify({ pid: process.pid, host: hostname(), token: 'someone-else', since: 'now' }));
  await release();
  assert.equal(JSON.parse(readFileSync(path, 'utf8')).token, 'someone-else');
});
