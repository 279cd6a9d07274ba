// One process at a time works on a stage key: whoever runs a stage instance (the coordinating
// `tfpipe run`, a `-j` child, a queue worker's child on another machine) holds
// outputs/<pipeline>/.locks/<stage>-<key>.lock while it touches <key>.partial/. It is per key, not
// per pipeline, so a sweep's own jobs run side by side while a duplicate of one job waits.
//
// A holder on this host is alive while its pid is (a kill -9 is seen at once). A holder on another
// host sharing the folder is alive while it keeps the file's mtime fresh; its heartbeat runs on
// the event loop, which a training batch blocks for seconds at most, hence the generous default.
import { hostname } from 'node:os';
import { link, mkdir, open, readFile, rename, rm, utimes } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import { stat } from 'node:fs/promises';

export interface StageLockOptions {
  /** Told once, when the lock is held by someone else. */
  onWait(message: string): void;
  signal?: AbortSignal;
  /** A holder on another host counts as dead after this long without a heartbeat. */
  remoteStaleMs?: number;
  pollMs?: number;
}

interface Holder {
  pid: number;
  host: string;
  since: string;
}

const HEARTBEAT_MS = 10_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function tryCreate(path: string): Promise<boolean> {
  try {
    const fh = await open(path, 'wx');
    const holder: Holder = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
    await fh.writeFile(JSON.stringify(holder));
    await fh.close();
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

/** Why the current holder no longer counts, or undefined while it does. */
async function staleness(path: string, text: string, remoteStaleMs: number): Promise<string | undefined> {
  let h: Partial<Holder>;
  try {
    h = JSON.parse(text) as Partial<Holder>;
  } catch {
    // Being written this instant, or left empty by a crash between create and write.
    const s = await stat(path).catch(() => undefined);
    return s && Date.now() - s.mtimeMs > 5_000 ? 'it is empty or damaged' : undefined;
  }
  if (h.host === hostname()) return typeof h.pid === 'number' && !alive(h.pid) ? `its holder (pid ${h.pid}) is gone` : undefined;
  const s = await stat(path).catch(() => undefined);
  if (s && Date.now() - s.mtimeMs > remoteStaleMs) return `its holder on ${h.host} sent no heartbeat for ${Math.round((Date.now() - s.mtimeMs) / 1000)} s`;
  return undefined;
}

/** Moves a dead holder's lock aside; puts it back if it turned out to be a fresh one. */
async function breakLock(path: string, seen: string): Promise<void> {
  const aside = `${path}.${randomBytes(4).toString('hex')}.stale`;
  try {
    await rename(path, aside);
  } catch {
    return; // someone else broke it first
  }
  const now = await readFile(aside, 'utf8').catch(() => seen);
  if (now !== seen) await link(aside, path).catch(() => {});
  await rm(aside, { force: true });
}

export function describeHolder(text: string): string {
  try {
    const h = JSON.parse(text) as Holder;
    return `pid ${h.pid} on ${h.host} since ${h.since}`;
  } catch {
    return 'another process';
  }
}

/** Waits for the key's lock and returns its release. Throws if `signal` aborts while waiting. */
export async function acquireStageLock(path: string, opts: StageLockOptions): Promise<() => Promise<void>> {
  await mkdir(dirname(path), { recursive: true });
  const remoteStaleMs = opts.remoteStaleMs ?? 120_000;
  let told = false;
  while (!(await tryCreate(path))) {
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text === undefined) continue; // released just now
    const stale = await staleness(path, text, remoteStaleMs);
    if (stale) {
      opts.onWait(`taking over ${path}: ${stale}`);
      await breakLock(path, text);
      continue;
    }
    if (!told) {
      opts.onWait(`waiting for ${describeHolder(text)}, which is working on this stage key`);
      told = true;
    }
    if (opts.signal?.aborted) throw new Error('interrupted while waiting for the stage lock');
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 200));
  }
  const beat = setInterval(() => {
    const now = new Date();
    utimes(path, now, now).catch(() => {});
  }, HEARTBEAT_MS);
  beat.unref();
  return async () => {
    clearInterval(beat);
    await rm(path, { force: true });
  };
}
