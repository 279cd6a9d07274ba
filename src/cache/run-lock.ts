// One holder at a time for a given lock file (the pipeline's `.run.lock`, or any other path, e.g.
// a per-stage lock); the others wait, saying for what.
// On one machine a pid file rather than mtime heartbeats: training blocks the event loop for
// seconds per batch, which would make a heartbeat lock look stale, and a holder killed with -9 is
// detected at once. A pid on another machine cannot be asked, so there (remoteStaleMs, for the
// per-stage locks on a shared folder) the holder's mtime heartbeat is all there is to go by.
// The file appears complete or not at all: it is written under a temporary name and hard-linked
// into place (link fails if the lock exists), so a kill between creating and writing it cannot
// leave an empty lock. An empty or unreadable lock (an older tfpipe, a file system without hard
// links) counts as stale once it is older than a short grace period.
import { randomBytes } from 'node:crypto';
import { readFileSync, type Stats, unlinkSync } from 'node:fs';
import { link, mkdir, open, readFile, rename, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const RUN_LOCK = '.run.lock';

interface Holder {
  pid: number;
  host: string;
  /** Tells our lock from a later holder's, so release never removes someone else's. */
  token: string;
  since: string;
}

export interface LockOptions {
  /** Told once when the lock is busy, and whenever a stale lock is taken over. */
  onWait?: (message: string) => void;
  /** Stops waiting: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** How old an empty or unreadable lock must be before it counts as stale. */
  graceMs?: number;
  pollMs?: number;
  /**
   * For locks on a folder other machines share (the per-stage-key locks a sweep's workers take):
   * the holder refreshes the file's mtime, and a holder on another host whose file is older than
   * this counts as gone. Without it, a holder on another host is waited for until its file is removed.
   */
  remoteStaleMs?: number;
}

const UNREADABLE_GRACE_MS = 2000;

/** Whether process `pid` on `host` still runs; a process on another host is assumed to. */
export function processAlive(pid: number, host: string = hostname()): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false; // kill(0 or -1) would ask about a group
  if (host !== hostname()) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function parseHolder(text: string): Holder | undefined {
  try {
    const h = JSON.parse(text) as Partial<Holder>;
    return typeof h.pid === 'number' && typeof h.host === 'string' ? (h as Holder) : undefined;
  } catch {
    return undefined;
  }
}

/** Creates `path` holding `holder`, atomically; false if it exists. */
async function create(path: string, holder: Holder): Promise<boolean> {
  const text = JSON.stringify(holder);
  const tmp = join(dirname(path), `.${basename(path)}.${holder.token}.tmp`);
  await writeFile(tmp, text);
  try {
    await link(tmp, path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EXDEV') throw err;
    // No hard links here: exclusive create, then write (the grace period covers the gap).
    try {
      const fh = await open(path, 'wx');
      await fh.writeFile(text);
      await fh.close();
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    }
  } finally {
    await rm(tmp, { force: true });
  }
}

/**
 * Removes the lock file only if it is still the one judged stale (same inode): two waiters that
 * both found it stale must not remove the lock the first of them has taken since.
 */
async function removeIfSame(path: string, ino: number): Promise<void> {
  const aside = `${path}.stale-${randomBytes(4).toString('hex')}`;
  try {
    await rename(path, aside);
  } catch {
    return; // already gone
  }
  if ((await stat(aside)).ino === ino) {
    await rm(aside, { force: true });
    return;
  }
  // We moved a lock someone has just taken: put it back, unless yet another one appeared.
  await link(aside, path).catch(() => {});
  await rm(aside, { force: true });
}

/** Free; held by a live process (wait); or stale, and already removed so the caller may take it. */
type Look = { state: 'free' } | { state: 'busy'; message: string } | { state: 'stale'; message: string };

/** Who holds the lock, and whether it may be taken over. */
async function look(path: string, graceMs: number, remoteStaleMs?: number): Promise<Look> {
  let s: Stats;
  let text: string;
  try {
    s = await stat(path);
    text = await readFile(path, 'utf8');
  } catch {
    return { state: 'free' };
  }
  const holder = parseHolder(text);
  if (!holder) {
    const age = Date.now() - s.mtimeMs;
    if (age < graceMs) return { state: 'busy', message: `${path} is being taken by another tfpipe process; waiting` };
    const what = s.size === 0 ? 'is empty' : 'is unreadable';
    await removeIfSame(path, s.ino);
    return {
      state: 'stale',
      message: `${path} ${what} (left by a process killed while taking it, ${Math.round(age / 1000)} s ago); treated as stale and taken over`,
    };
  }
  if (holder.host === hostname() && !processAlive(holder.pid)) {
    await removeIfSame(path, s.ino);
    return {
      state: 'stale',
      message: `the tfpipe process that held ${path} (pid ${holder.pid}, since ${holder.since ?? '?'}) is gone; its lock was taken over`,
    };
  }
  const silent = Date.now() - s.mtimeMs;
  if (holder.host !== hostname() && remoteStaleMs !== undefined && silent > remoteStaleMs) {
    await removeIfSame(path, s.ino);
    return {
      state: 'stale',
      message: `the tfpipe process that held ${path} (pid ${holder.pid} on ${holder.host}) has not refreshed it for ${Math.round(silent / 1000)} s; its lock was taken over`,
    };
  }
  const where =
    holder.host === hostname()
      ? `pid ${holder.pid}`
      : `pid ${holder.pid} on ${holder.host}; ${remoteStaleMs === undefined ? 'if that process is gone, delete the file' : `taken over if it stops refreshing the file for ${Math.round(remoteStaleMs / 1000)} s`}`;
  return { state: 'busy', message: `another tfpipe process (${where}) holds ${path}; waiting for it to finish` };
}

const held = new Map<string, string>();

// A process that exits without releasing (process.exit after a second Ctrl-C, a closed pipe)
// still removes its locks; only kill -9 leaves one, and the next taker sees the pid is gone.
let exitHook = false;
function releaseAllOnExit(): void {
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const [path, token] of held) {
      try {
        if (parseHolder(readFileSync(path, 'utf8'))?.token === token) unlinkSync(path);
      } catch {
        // already gone
      }
    }
  });
}

/** Takes the lock file at `path`, waiting while a live process holds it; resolves with release(). */
export async function acquireLock(path: string, opts: LockOptions = {}): Promise<() => Promise<void>> {
  const { onWait = () => {}, signal, graceMs = UNREADABLE_GRACE_MS, pollMs = 250, remoteStaleMs } = opts;
  await mkdir(dirname(path), { recursive: true });
  const holder: Holder = {
    pid: process.pid,
    host: hostname(),
    token: randomBytes(8).toString('hex'),
    since: new Date().toISOString(),
  };
  let told = '';
  for (;;) {
    signal?.throwIfAborted();
    const l = await look(path, graceMs, remoteStaleMs);
    if (l.state === 'free') {
      if (await create(path, holder)) break;
      continue;
    }
    if (l.state === 'stale') {
      onWait(l.message);
      continue;
    }
    if (l.message !== told) {
      onWait(l.message);
      told = l.message;
    }
    // Rejects with the signal's reason, as throwIfAborted above does, not timers' AbortError.
    await sleep(pollMs, undefined, { signal }).catch((err: unknown) => {
      throw signal?.aborted ? signal.reason : err;
    });
  }
  held.set(path, holder.token);
  releaseAllOnExit();
  // The heartbeat runs on the event loop, which a training batch blocks for seconds at most.
  const beat =
    remoteStaleMs === undefined
      ? undefined
      : setInterval(
          () => {
            const now = new Date();
            utimes(path, now, now).catch(() => {});
          },
          Math.max(1000, remoteStaleMs / 12),
        );
  beat?.unref();
  return async () => {
    clearInterval(beat);
    held.delete(path);
    try {
      if (parseHolder(await readFile(path, 'utf8'))?.token === holder.token) await unlink(path);
    } catch {
      // already gone
    }
  };
}

/** The pipeline-wide lock: one `tfpipe run` of a pipeline at a time. */
export function acquireRunLock(pipelineDir: string, opts: LockOptions = {}): Promise<() => Promise<void>> {
  return acquireLock(join(pipelineDir, RUN_LOCK), opts);
}
