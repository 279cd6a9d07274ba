// outputs/<pipeline>/tfpipe.lock, in the spirit of dvc.lock: what each stage last ran with.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import type { JsonObject } from '../stages/types.js';
import { writeFileAtomic } from './atomic.js';
import type { KeyInputs } from './keys.js';
import type { Manifest } from './store.js';

export interface LockEntry extends KeyInputs {
  key: string;
  /** Upstream stage name -> digest of the result it read. */
  upstream_outputs?: Record<string, string>;
  /** Artefact path -> sha256. */
  outs: Record<string, string>;
  backend?: string;
  seconds: number;
  finished_at: string;
}

export interface LockFile {
  schema: 1;
  pipeline: string;
  stages: Record<string, LockEntry>;
}

export const LOCK_FILE = 'tfpipe.lock';

/** The lock's record of a finished result; everything in it comes from the result's manifest. */
export function lockEntry(m: Manifest): LockEntry {
  return {
    ...m.inputs,
    key: m.key,
    ...(m.upstreamOutputs ? { upstream_outputs: m.upstreamOutputs } : {}),
    outs: Object.fromEntries(Object.entries(m.files).map(([f, r]) => [f, r.sha256])),
    ...(m.backend ? { backend: m.backend } : {}),
    seconds: m.seconds,
    finished_at: m.finishedAt,
  };
}

export function readLock(pipelineDir: string, pipeline: string): LockFile {
  try {
    const data = parse(readFileSync(join(pipelineDir, LOCK_FILE), 'utf8')) as LockFile | null;
    if (data && data.schema === 1 && data.stages) return data;
  } catch {
    // missing or unreadable: nothing recorded yet
  }
  return { schema: 1, pipeline, stages: {} };
}

export async function writeLock(pipelineDir: string, lock: LockFile): Promise<void> {
  const header = '# Written by tfpipe after each stage: the key and inputs each stage last ran with.\n';
  await writeFileAtomic(join(pipelineDir, LOCK_FILE), header + stringify(lock as unknown as JsonObject, { lineWidth: 0 }));
}
