// One `tfpipe run` per pipeline at a time; a second one waits, saying for what.
import { mkdir } from 'node:fs/promises';
import lockfile from 'proper-lockfile';

export async function acquireRunLock(pipelineDir: string, onWait: (msg: string) => void): Promise<() => Promise<void>> {
  await mkdir(pipelineDir, { recursive: true });
  // `stale`: a holder killed with -9 stops refreshing the lock, so it is taken over after this long.
  const opts = { stale: 15_000, realpath: false, lockfilePath: `${pipelineDir}/.run.lock` };
  try {
    return await lockfile.lock(pipelineDir, opts);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
  }
  onWait(`another tfpipe run holds ${pipelineDir}; waiting for it to finish`);
  return lockfile.lock(pipelineDir, { ...opts, retries: { retries: 1_000_000, factor: 1, minTimeout: 500, maxTimeout: 500 } });
}
