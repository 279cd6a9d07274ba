// An outputs folder's identity: outputs/.tfpipe-store holds a random id, made once by the first
// coordinator that hands work to other processes. A queue worker compares it with the id in each
// job, so a worker that sees another folder (not the shared one, a stale mount, a typo in
// --outputs) refuses the job instead of building results nobody will find.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';

const STORE_ID_FILE = '.tfpipe-store';

export interface StoreIdentity {
  id: string;
  /** Where the coordinator saw it, for messages on other machines. */
  host: string;
  root: string;
}

export async function readStoreId(outputs: string): Promise<string | undefined> {
  try {
    const data = JSON.parse(await readFile(join(outputs, STORE_ID_FILE), 'utf8')) as { id?: unknown };
    return typeof data.id === 'string' ? data.id : undefined;
  } catch {
    return undefined;
  }
}

/** The folder's id, made now if it has none (two processes racing agree on the first one written). */
export async function ensureStoreId(outputs: string): Promise<StoreIdentity> {
  const have = await readStoreId(outputs);
  if (have) return { id: have, host: hostname(), root: outputs };
  await mkdir(outputs, { recursive: true });
  try {
    const fh = await open(join(outputs, STORE_ID_FILE), 'wx');
    await fh.writeFile(
      `${JSON.stringify({ id: randomUUID(), created: new Date().toISOString(), host: hostname() })}\n`,
    );
    await fh.close();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  for (let i = 0; i < 50; i++) {
    const id = await readStoreId(outputs);
    if (id) return { id, host: hostname(), root: outputs };
    await new Promise((r) => setTimeout(r, 20)); // the winner is still writing it
  }
  throw new Error(`cannot read ${join(outputs, STORE_ID_FILE)}`);
}
