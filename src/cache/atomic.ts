// Writes that are either complete or absent (temp file in the same folder, then rename), and
// write errors that name their file: Node's own "ENOSPC: no space left on device, write" does not.
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile as fsWriteFile } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';

/**
 * Names ending in .tmp or .old, optionally followed by -suffix (`.x.1a2b3c4d.tmp`, `last.tmp`,
 * `last.tmp.tmp-4242`, `best.old-4242`): what tfpipe's writers use before a rename. What a
 * crash or a full disk leaves under such a name is never part of a result.
 */
export const TEMPORARY_NAME = /\.(tmp|old)(-[0-9a-z]+)?$/;

/** A write error that names `path`, keeping its code and syscall (a system error, not a bug). */
export function namingPath(err: unknown, path: string): unknown {
  const e = err as NodeJS.ErrnoException;
  if (!(e instanceof Error) || typeof e.code !== 'string' || e.path) return err;
  const named = new Error(`${e.message} '${path}'`) as NodeJS.ErrnoException;
  Object.assign(named, { code: e.code, errno: e.errno, syscall: e.syscall, path });
  return named;
}

/** fs.promises.writeFile whose errors name the file. */
export async function writeFile(path: string, data: string | Uint8Array): Promise<void> {
  try {
    await fsWriteFile(path, data);
  } catch (err) {
    throw namingPath(err, path);
  }
}

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await fsWriteFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw namingPath(err, path);
  }
}
