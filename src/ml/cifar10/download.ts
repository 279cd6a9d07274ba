// Download a file once into a cache shared by all pipelines, atomically and verified, so that an
// interrupted or corrupted download is never mistaken for a good one.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';

/** An http(s) URL to download, as opposed to a local path. */
export function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

export interface DownloadOptions {
  /** Expected md5 (hex). When given, a cached file is re-verified and a mismatch is an error. */
  md5?: string;
  onProgress?: (fraction: number | undefined, bytes: number) => void;
  signal?: AbortSignal;
}

async function md5File(path: string): Promise<string> {
  const h = createHash('md5');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Cache file name: readable basename, prefixed with a hash of the URL so different URLs never collide. */
export function cachedName(url: string): string {
  const tag = createHash('sha256').update(url).digest('hex').slice(0, 10);
  const name = basename(new URL(url).pathname) || 'download';
  return `${tag}-${name}`;
}

/** The file could not be fetched (offline, a wrong URL, the server): says which URL and why. */
export class DownloadError extends Error {
  constructor(
    readonly url: string,
    why: string,
  ) {
    super(`cannot download ${url}: ${why}`);
  }
}

/** fetch() says only "fetch failed"; the reason (ENOTFOUND, ECONNREFUSED, ...) is in its cause. */
function whyFetchFailed(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  const cause = e.cause?.code ?? e.cause?.message;
  return cause ? `${e.message} (${cause})` : e.message;
}

/** Download `url` into `dir` (unless already there and valid); returns the file's path. */
export async function downloadCached(url: string, dir: string, opts: DownloadOptions = {}): Promise<string> {
  await mkdir(dir, { recursive: true });
  const dest = join(dir, cachedName(url));
  if (existsSync(dest)) {
    if (opts.md5 === undefined || (await md5File(dest)) === opts.md5) return dest;
    // A cached file that no longer verifies (edited, truncated by hand): fetch it again.
    await rm(dest, { force: true });
  }
  const tmp = `${dest}.${process.pid}.${randomBytes(4).toString('hex')}.part`;
  try {
    let res: Response;
    try {
      res = await fetch(url, { signal: opts.signal });
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      throw new DownloadError(url, whyFetchFailed(err));
    }
    if (!res.ok || res.body === null) throw new DownloadError(url, `HTTP ${res.status} ${res.statusText}`);
    const length = Number(res.headers.get('content-length') ?? NaN);
    const total = Number.isFinite(length) && length > 0 ? length : undefined;
    const hash = createHash('md5');
    const out = createWriteStream(tmp);
    let bytes = 0;
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        hash.update(chunk);
        bytes += chunk.length;
        if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
        opts.onProgress?.(total === undefined ? undefined : Math.min(1, bytes / total), bytes);
      }
    } finally {
      await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    }
    if (total !== undefined && bytes !== total)
      throw new Error(`download of ${url} truncated: ${bytes} of ${total} bytes`);
    const sum = hash.digest('hex');
    if (opts.md5 !== undefined && sum !== opts.md5) {
      throw new Error(`download of ${url} has md5 ${sum}, expected ${opts.md5}; nothing was kept`);
    }
    await rename(tmp, dest);
    return dest;
  } finally {
    await rm(tmp, { force: true });
  }
}
