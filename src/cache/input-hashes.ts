// Content hashes of external inputs (e.g. a local dataset archive). Remembered by
// (path, size, mtime) only to avoid re-reading a 170 MB file on every `status`; the key uses content.
import { readFileSync, type Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../ground/errors.js';
import { isObject } from '../ground/json.js';
import { writeFileAtomic } from './atomic.js';
import { hashPath } from './hash.js';

type Memo = Record<string, { size: number; mtimeMs: number; hash: string }>;

export class InputHasher {
  private memo: Memo;
  private dirty = false;
  private readonly file: string;
  constructor(cacheDir: string) {
    this.file = join(cacheDir, 'input-hashes.json');
    let memo: unknown;
    try {
      memo = JSON.parse(readFileSync(this.file, 'utf8'));
    } catch {
      // none yet, or damaged: it is only a memo
    }
    this.memo = isObject(memo) ? (memo as Memo) : {};
  }

  async hash(absPath: string): Promise<string> {
    let s: Stats;
    try {
      s = await stat(absPath);
    } catch {
      throw new InputError(`input ${absPath} does not exist`);
    }
    const m = Object.hasOwn(this.memo, absPath) ? this.memo[absPath] : undefined;
    if (s.isFile() && m && typeof m.hash === 'string' && m.size === s.size && m.mtimeMs === s.mtimeMs) return m.hash;
    const hash = await hashPath(absPath);
    if (s.isFile()) {
      this.memo[absPath] = { size: s.size, mtimeMs: s.mtimeMs, hash };
      this.dirty = true;
    }
    return hash;
  }

  /** Keeps the hashes for the next plan; best effort, since they can always be recomputed. */
  async save(): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    await writeFileAtomic(this.file, JSON.stringify(this.memo, null, 1)).catch(() => {});
  }
}
