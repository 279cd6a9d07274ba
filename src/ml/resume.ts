// Crash-safe training state inside a stage's work dir: .resume/epoch-N/ holds everything needed
// to continue after epoch N; .resume/current names the newest complete one (written last, by
// rename), so a kill at any instant leaves either the old or the new state, never a mix.
// Inside: model/ (the trained weights), optimizer.bin + .json (its slots and step), state.json,
// and with train's EMA on, ema.bin + .json (the average and the step it is at).
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

/** Arrays saved by writeArrays, each with the step they belong to. */
export interface SavedArrays {
  step: number;
  arrays: Float32Array[];
}

/** `name`.bin (the arrays end to end) and `name`.json (the step and each array's length). */
async function writeArrays(dir: string, name: string, saved: SavedArrays): Promise<void> {
  const flat = new Float32Array(saved.arrays.reduce((n, a) => n + a.length, 0));
  let off = 0;
  for (const a of saved.arrays) {
    flat.set(a, off);
    off += a.length;
  }
  await writeFile(join(dir, `${name}.bin`), new Uint8Array(flat.buffer));
  await writeFile(
    join(dir, `${name}.json`),
    JSON.stringify({ step: saved.step, sizes: saved.arrays.map((a) => a.length) }),
  );
}

async function readArrays(dir: string, name: string): Promise<SavedArrays> {
  const meta = JSON.parse(await readFile(join(dir, `${name}.json`), 'utf8')) as { step: number; sizes: number[] };
  const bytes = await readFile(join(dir, `${name}.bin`));
  const all = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  const total = meta.sizes.reduce((n, s) => n + s, 0);
  if (all.length !== total)
    throw new Error(`${join(dir, `${name}.bin`)} holds ${all.length} values, expected ${total}`);
  const arrays: Float32Array[] = [];
  let off = 0;
  for (const n of meta.sizes) {
    arrays.push(all.slice(off, off + n));
    off += n;
  }
  return { step: meta.step, arrays };
}

/** A saved state: `dir` holds model/; `ema` when train's EMA was on. */
export interface Resume {
  dir: string;
  state: TrainState;
  optimizer: OptimizerState;
  ema?: SavedArrays;
}

/** The newest complete saved state, if an earlier attempt left one. */
export async function findResume(workDir: string): Promise<Resume | undefined> {
  const dir = await currentDir(workDir);
  if (!dir) return undefined;
  const state = await readState(dir);
  const { step, arrays: slots } = await readArrays(dir, 'optimizer');
  const ema = existsSync(join(dir, 'ema.json')) ? await readArrays(dir, 'ema') : undefined;
  return { dir, state, optimizer: { step, slots }, ...(ema ? { ema } : {}) };
}

/** The training state an interrupted attempt saved, without loading its weights (for `status`). */
export async function resumeState(workDir: string): Promise<TrainState | undefined> {
  const dir = await currentDir(workDir);
  return dir ? readState(dir) : undefined;
}

/**
 * Save state after an epoch; `writeModel(dir)` writes the trained weights into the given folder;
 * `ema`, train's EMA of them, when on.
 */
export async function saveResume(
  workDir: string,
  state: TrainState,
  optimizer: OptimizerState,
  writeModel: (dir: string) => Promise<void>,
  ema?: SavedArrays,
): Promise<void> {
  const root = join(workDir, RESUME_DIR);
  const name = `epoch-${state.epochsDone}`;
  const tmp = join(root, `${name}.tmp`);
  await rm(tmp, { recursive: true, force: true });
  try {
    await mkdir(tmp, { recursive: true });
    await writeModel(join(tmp, 'model'));
    await writeArrays(tmp, 'optimizer', { step: optimizer.step, arrays: optimizer.slots });
    if (ema) await writeArrays(tmp, 'ema', ema);
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
