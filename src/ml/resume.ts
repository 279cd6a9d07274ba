// Crash-safe training state inside a stage's work dir: .resume/epoch-N/ holds everything needed
// to continue after epoch N; .resume/current names the newest complete one (written last, by
// rename), so a kill at any instant leaves either the old or the new state, never a mix.
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFile, writeFileAtomic } from '../cache/atomic.js';
import { RESUME_DIR } from '../cache/store.js';
import type { EpochMetrics } from '../ground/epoch-metrics.js';
import type { OptimizerState } from './optim.js';

export interface TrainState {
  epochsDone: number;
  plannedEpochs: number;
  bestEpoch: number;
  bestValAccuracy: number;
  elapsedSeconds: number;
  metrics: EpochMetrics[];
}

/** The folder .resume/current names, if an earlier attempt completed one. */
async function currentDir(workDir: string): Promise<string | undefined> {
  const cur = join(workDir, RESUME_DIR, 'current');
  if (!existsSync(cur)) return undefined;
  return join(workDir, RESUME_DIR, (await readFile(cur, 'utf8')).trim());
}

async function readState(dir: string): Promise<TrainState> {
  return JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as TrainState;
}

/** The newest complete saved state, if an earlier attempt left one. */
export async function findResume(
  workDir: string,
): Promise<{ dir: string; state: TrainState; optimizer: OptimizerState } | undefined> {
  const dir = await currentDir(workDir);
  if (!dir) return undefined;
  const state = await readState(dir);
  const meta = JSON.parse(await readFile(join(dir, 'optimizer.json'), 'utf8')) as { step: number; sizes: number[] };
  const bytes = await readFile(join(dir, 'optimizer.bin'));
  const all = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  const slots: Float32Array[] = [];
  let off = 0;
  for (const n of meta.sizes) {
    slots.push(all.slice(off, off + n));
    off += n;
  }
  return { dir, state, optimizer: { step: meta.step, slots } };
}

/** The training state an interrupted attempt saved, without loading its weights (for `status`). */
export async function resumeState(workDir: string): Promise<TrainState | undefined> {
  const dir = await currentDir(workDir);
  return dir ? readState(dir) : undefined;
}

/** Save state after an epoch; `writeModel(dir)` writes the weights into the given folder. */
export async function saveResume(
  workDir: string,
  state: TrainState,
  optimizer: OptimizerState,
  writeModel: (dir: string) => Promise<void>,
): Promise<void> {
  const root = join(workDir, RESUME_DIR);
  const name = `epoch-${state.epochsDone}`;
  const tmp = join(root, `${name}.tmp`);
  await rm(tmp, { recursive: true, force: true });
  try {
    await mkdir(tmp, { recursive: true });
    await writeModel(join(tmp, 'model'));
    const total = optimizer.slots.reduce((s, a) => s + a.length, 0);
    const flat = new Float32Array(total);
    let off = 0;
    for (const s of optimizer.slots) {
      flat.set(s, off);
      off += s.length;
    }
    await writeFile(join(tmp, 'optimizer.bin'), new Uint8Array(flat.buffer));
    await writeFile(
      join(tmp, 'optimizer.json'),
      JSON.stringify({ step: optimizer.step, sizes: optimizer.slots.map((s) => s.length) }),
    );
    await writeFile(join(tmp, 'state.json'), JSON.stringify(state));
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  await rm(join(root, name), { recursive: true, force: true });
  await rename(tmp, join(root, name));
  await writeFileAtomic(join(root, 'current'), name);
  for (const e of await readdir(root))
    if (e !== name && e !== 'current') await rm(join(root, e), { recursive: true, force: true });
}
