// Read the six CIFAR-10 data files from a .tar.gz (streamed into memory, nothing extracted to disk)
// or from a folder, and verify every one against its known md5 before anything uses it.
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import * as tar from 'tar';
import { BIN_FILES, BIN_MD5, CLASSES, RECORD_BYTES, RECORDS_PER_FILE, type BinFile } from './constants.js';

export interface CifarFiles {
  bins: Record<BinFile, Buffer>;
  classes: string[];
}

export function md5(data: Uint8Array): string {
  return createHash('md5').update(data).digest('hex');
}

function isBinFile(name: string): name is BinFile {
  return (BIN_FILES as readonly string[]).includes(name);
}

/** batches.meta.txt: class names one a line, then blank lines. */
function parseMeta(text: string): string[] | undefined {
  const names = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '');
  return names.length === CLASSES.length ? names : undefined;
}

/** Throws naming the first missing or corrupted file. */
export function verifyBins(found: Partial<Record<BinFile, Buffer>>, where: string): Record<BinFile, Buffer> {
  const missing = BIN_FILES.filter((f) => found[f] === undefined);
  if (missing.length > 0) throw new Error(`CIFAR-10 source ${where} lacks ${missing.join(', ')}: ${EXPECTED_SOURCE}`);
  for (const f of BIN_FILES) {
    const data = found[f] as Buffer;
    const sum = md5(data);
    if (sum !== BIN_MD5[f]) {
      throw new Error(
        `CIFAR-10 file ${f} in ${where} is corrupted: md5 ${sum}, expected ${BIN_MD5[f]} (${data.length} bytes, expected ${RECORD_BYTES * RECORDS_PER_FILE})`,
      );
    }
  }
  return found as Record<BinFile, Buffer>;
}

async function readArchive(file: string, onProgress?: (fraction: number, name: string) => void): Promise<CifarFiles> {
  const found: Partial<Record<BinFile, Buffer>> = {};
  let meta: string | undefined;
  const total = BIN_FILES.length * RECORD_BYTES * RECORDS_PER_FILE;
  let done = 0;
  await tar.t({
    file,
    onReadEntry: (entry) => {
      const name = basename(entry.path);
      if (entry.type !== 'File' || !(isBinFile(name) || name === 'batches.meta.txt')) return;
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => {
        chunks.push(c);
        if (isBinFile(name)) {
          done += c.length;
          onProgress?.(Math.min(1, done / total), name);
        }
      });
      entry.on('end', () => {
        const data = Buffer.concat(chunks);
        if (isBinFile(name)) found[name] = data;
        else meta = data.toString('utf8');
      });
    },
  });
  return { bins: verifyBins(found, file), classes: (meta && parseMeta(meta)) || [...CLASSES] };
}

async function readFolder(dir: string): Promise<CifarFiles> {
  // Accept the extracted archive's root as well as the cifar-10-batches-bin folder itself.
  const inner = join(dir, 'cifar-10-batches-bin');
  const base = existsSync(join(inner, BIN_FILES[0])) ? inner : dir;
  const found: Partial<Record<BinFile, Buffer>> = {};
  for (const f of BIN_FILES) {
    if (existsSync(join(base, f))) found[f] = await readFile(join(base, f));
  }
  const metaPath = join(base, 'batches.meta.txt');
  const meta = existsSync(metaPath) ? parseMeta(await readFile(metaPath, 'utf8')) : undefined;
  return { bins: verifyBins(found, base), classes: meta ?? [...CLASSES] };
}

export const EXPECTED_SOURCE =
  'expected the binary version of CIFAR-10 (cifar-10-binary.tar.gz) or the folder it unpacks to (cifar-10-batches-bin/)';

/** A gzip stream (1f 8b) or a plain ustar archive ("ustar" at byte 257). */
async function looksLikeArchive(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(262);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return (
      (bytesRead >= 2 && head[0] === 0x1f && head[1] === 0x8b) ||
      (bytesRead >= 262 && head.toString('latin1', 257, 262) === 'ustar')
    );
  } finally {
    await fh.close();
  }
}

/** Read and verify CIFAR-10 from a local .tar.gz / .tgz file or an extracted folder. */
export async function readCifarSource(
  path: string,
  onProgress?: (fraction: number, name: string) => void,
): Promise<CifarFiles> {
  if (!existsSync(path)) throw new Error(`CIFAR-10 source ${path} does not exist`);
  if (statSync(path).isDirectory()) return readFolder(path);
  if (!(await looksLikeArchive(path)))
    throw new Error(`CIFAR-10 source ${path} is not a .tar.gz archive: ${EXPECTED_SOURCE}`);
  try {
    return await readArchive(path, onProgress);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // zlib and tar say what went wrong but not in which file.
    if (e.code?.startsWith('Z_') || e.code?.startsWith('TAR_')) {
      throw new Error(`CIFAR-10 archive ${path} is damaged or truncated (${e.message}); download it again`);
    }
    throw err;
  }
}
