// outputs/<pipeline>/tfpipe.lock, in the spirit of dvc.lock: what each stage last ran with.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { isObject } from '../ground/json.js';
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

/**
 * The lock as recorded, a warning for each part that could not be used, and the stages whose
 * entries were damaged ("*": the whole file). The lock is a record
 * for `status` to explain changes; the manifests are the truth. So a damaged lock (edited by hand,
 * truncated, merged badly) never stops a run: a bad entry is left out and rewritten by the next
 * run of that stage, an unreadable file counts as empty.
 */
export function readLock(
  pipelineDir: string,
  pipeline: string,
): { lock: LockFile; warnings: string[]; damaged: string[] } {
  const path = join(pipelineDir, LOCK_FILE);
  const empty: LockFile = { schema: 1, pipeline, stages: {} };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return { lock: empty, warnings: [], damaged: [] }; // nothing recorded yet
  }
  let data: unknown;
  try {
    data = parse(text);
  } catch (err) {
    return {
      lock: empty,
      damaged: ['*'],
      warnings: [`${path} is unreadable (${(err as Error).message.split('\n')[0]}); ignoring it`],
    };
  }
  if (data === null || data === undefined) return { lock: empty, warnings: [], damaged: [] };
  if (!isObject(data) || data.schema !== 1 || !isObject(data.stages)) {
    return {
      lock: empty,
      damaged: ['*'],
      warnings: [`${path} is not a tfpipe lock file (schema 1 with stages); ignoring it`],
    };
  }
  const warnings: string[] = [];
  const damaged: string[] = [];
  const stages: Record<string, LockEntry> = {};
  for (const [name, entry] of Object.entries(data.stages)) {
    const bad = entryProblem(entry);
    if (bad) {
      warnings.push(`${path}: the entry of stage "${name}" is damaged (${bad}); ignoring it`);
      damaged.push(name);
    } else {
      stages[name] = entry as LockEntry;
    }
  }
  return { lock: { schema: 1, pipeline, stages }, warnings, damaged };
}

const isStringMap = (v: unknown) => isObject(v) && Object.values(v).every((x) => typeof x === 'string');

/** What is wrong with a lock entry, or undefined if it has everything status reads. */
function entryProblem(e: unknown): string | undefined {
  if (!isObject(e)) return 'not a mapping';
  const wrong: string[] = [];
  if (typeof e.key !== 'string') wrong.push('key');
  if (typeof e.kind !== 'string') wrong.push('kind');
  if (typeof e.version !== 'number') wrong.push('version');
  if (!isObject(e.settings)) wrong.push('settings');
  if (!isStringMap(e.needs)) wrong.push('needs');
  if (!isStringMap(e.inputs)) wrong.push('inputs');
  if (typeof e.seed !== 'number') wrong.push('seed');
  if (e.upstream_outputs !== undefined && !isStringMap(e.upstream_outputs)) wrong.push('upstream_outputs');
  if (!isStringMap(e.outs)) wrong.push('outs');
  return wrong.length ? `missing or malformed: ${wrong.join(', ')}` : undefined;
}

export async function writeLock(pipelineDir: string, lock: LockFile): Promise<void> {
  const header = '# Written by tfpipe after each stage: the key and inputs each stage last ran with.\n';
  await writeFileAtomic(join(pipelineDir, LOCK_FILE), header + stringify(lock, { lineWidth: 0 }));
}
