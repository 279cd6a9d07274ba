// One `tfpipe run` per pipeline at a time; a second one waits, saying for what.
// A pid file rather than mtime heartbeats: training blocks the event loop for seconds per batch,
// which would make a heartbeat lock look stale, and a holder killed with -9 is detected at once.
import { hostname } from 'node:os';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

const FILE = '.run.lock';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function tryTake(path: string): Promise<boolean> {
  try {
    const fh = await open(path, 'wx');
    await fh.writeFile(JSON.stringify({ pid: process.pid, host: hostname() }));
    await fh.close();
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  let holder: { pid?: number; host?: string } = {};
  try {
    holder = JSON.parse(await readFile(path, 'utf8')) as typeof holder;
  } catch {
    return false; // being written right now; look again shortly
  }
  if (holder.host === hostname() && typeof holder.pid === 'number' && !alive(holder.pid)) {
    await rm(path, { force: true }); // its holder died without releasing it
  }
  return false;
}

export async function acquireRunLock(pipelineDir: string, onWait: (msg: string) => void): Promise<() => Promise<void>> {
  await mkdir(pipelineDir, { recursive: true });
  const path = join(pipelineDir, FILE);
  let told = false;
  while (!(await tryTake(path))) {
    if (!told) {
      onWait(`another tfpipe run holds ${path}; waiting for it to finish`);
      told = true;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return async () => { await rm(path, { force: true }); };
}
