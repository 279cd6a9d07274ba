// Content-addressed stage artefacts: outputs/<pipeline>/<stage>/<key>/, trusted only with a
// manifest whose files still match. Work happens in <key>.partial and is renamed into place.
import { randomBytes } from 'node:crypto';
import { existsSync, type Stats } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { isObject } from '../ground/json.js';
import type { JsonObject } from '../ground/json.js';
import { TEMPORARY_NAME, writeFileAtomic } from './atomic.js';
import { hashFile, listFiles } from './hash.js';
import type { KeyInputs } from './keys.js';

export const MANIFEST = 'tfpipe-manifest.json';
export const RESULT = 'result.json';
/** Scratch space a resumable kind keeps in its work dir (train's checkpoints); never an artefact. */
export const RESUME_DIR = '.resume';

export interface FileRecord {
  sha256: string;
  size: number;
  /** Only to skip re-hashing unchanged files; never part of a key. */
  mtimeMs: number;
}

export interface Manifest {
  format: 1;
  pipeline: string;
  stage: string;
  key: string;
  inputs: KeyInputs;
  /**
   * Upstream stage name -> digest of the result this one read (see upstream.ts). Absent in
   * manifests written before tfpipe recorded it.
   */
  upstreamOutputs?: Record<string, string>;
  files: Record<string, FileRecord>;
  result: JsonObject;
  backend?: string;
  seconds: number;
  finishedAt: string;
}

/** Has what verify() and the runner read; anything less is a damaged manifest. */
function isManifest(m: unknown): m is Manifest {
  return (
    isObject(m) &&
    m.format === 1 &&
    typeof m.key === 'string' &&
    isObject(m.inputs) &&
    isObject(m.result) &&
    typeof m.seconds === 'number' &&
    typeof m.finishedAt === 'string' &&
    (m.upstreamOutputs === undefined || isObject(m.upstreamOutputs)) &&
    isObject(m.files) &&
    Object.values(m.files).every(
      (f) => isObject(f) && typeof f.sha256 === 'string' && typeof f.size === 'number' && typeof f.mtimeMs === 'number',
    )
  );
}

export type Verified = { ok: true; manifest: Manifest } | { ok: false; reason: string; existed: boolean };

export class ArtefactStore {
  readonly pipelineDir: string;
  constructor(
    readonly outputsRoot: string,
    readonly pipeline: string,
  ) {
    this.pipelineDir = this.inside(join(outputsRoot, pipeline));
  }

  /** Every artefact path goes through here: nothing a setting says can leave outputs/. */
  private inside(p: string): string {
    const root = resolve(this.outputsRoot);
    const abs = resolve(p);
    if (abs !== root && !abs.startsWith(root + sep)) throw new Error(`refusing to write outside ${root}: ${abs}`);
    return abs;
  }

  stageDir(stage: string, key: string): string {
    return this.inside(join(this.pipelineDir, stage, key));
  }

  workDir(stage: string, key: string): string {
    return this.inside(join(this.pipelineDir, stage, `${key}.partial`));
  }

  /** The manifest of a finished result; undefined if absent or damaged (then nothing is trusted). */
  async readManifest(stage: string, key: string): Promise<Manifest | undefined> {
    try {
      const m = JSON.parse(await readFile(join(this.stageDir(stage, key), MANIFEST), 'utf8')) as unknown;
      return isManifest(m) ? m : undefined;
    } catch {
      return undefined;
    }
  }

  /** Is there a finished result for this key whose files are exactly as written? */
  async verify(stage: string, key: string): Promise<Verified> {
    const dir = this.stageDir(stage, key);
    if (!existsSync(dir)) return { ok: false, reason: `no artefacts for key ${key}`, existed: false };
    const manifest = await this.readManifest(stage, key);
    if (!manifest || manifest.key !== key)
      return {
        ok: false,
        reason: `artefacts for key ${key} have no valid manifest (interrupted or foreign)`,
        existed: true,
      };
    for (const [rel, rec] of Object.entries(manifest.files)) {
      const p = join(dir, rel);
      let s: Stats;
      try {
        s = await stat(p);
      } catch {
        return { ok: false, reason: `artefact ${rel} of key ${key} is missing`, existed: true };
      }
      if (s.size !== rec.size)
        return {
          ok: false,
          reason: `artefact ${rel} of key ${key} was modified (size ${rec.size} → ${s.size})`,
          existed: true,
        };
      if (s.mtimeMs !== rec.mtimeMs && (await hashFile(p)) !== rec.sha256) {
        return {
          ok: false,
          reason: `artefact ${rel} of key ${key} was modified (content hash differs)`,
          existed: true,
        };
      }
    }
    return { ok: true, manifest };
  }

  /**
   * A clean work dir, or, for resumable kinds, the one an interrupted attempt left, less the
   * temporary files its writers were killed in (or stopped by a full disk) before their rename.
   */
  async prepareWorkDir(stage: string, key: string, keepPrevious: boolean): Promise<string> {
    const dir = this.workDir(stage, key);
    if (!keepPrevious) await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await removeTemporaries(dir);
    return dir;
  }

  /** Seal the work dir with a manifest and move it into place, replacing any older copy. */
  async commit(stage: string, key: string, m: Omit<Manifest, 'files' | 'format'>): Promise<Manifest> {
    const work = this.workDir(stage, key);
    // Whatever is still under a temporary name was never finished: not part of the result.
    await removeTemporaries(work);
    await writeFileAtomic(join(work, RESULT), `${JSON.stringify(m.result, null, 2)}\n`);
    const files: Record<string, FileRecord> = {};
    for (const rel of await listFiles(work)) {
      if (rel === MANIFEST || rel.startsWith(`${RESUME_DIR}/`)) continue;
      const p = join(work, rel);
      const s = await stat(p);
      files[rel] = { sha256: await hashFile(p), size: s.size, mtimeMs: s.mtimeMs };
    }
    await rm(join(work, RESUME_DIR), { recursive: true, force: true });
    const manifest: Manifest = { format: 1, ...m, files };
    await writeFileAtomic(join(work, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    const final = this.stageDir(stage, key);
    if (existsSync(final)) {
      const trash = `${final}.old-${randomBytes(4).toString('hex')}`;
      await rename(final, trash);
      await rename(work, final);
      await rm(trash, { recursive: true, force: true });
    } else {
      await rename(work, final);
    }
    return manifest;
  }
}

/** Removes every file or folder under `dir` with a temporary name (atomic.ts), outside .resume/. */
async function removeTemporaries(dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name === RESUME_DIR) continue;
    const p = join(dir, e.name);
    if (TEMPORARY_NAME.test(e.name)) await rm(p, { recursive: true, force: true });
    else if (e.isDirectory()) await removeTemporaries(p);
  }
}
