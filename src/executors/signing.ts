// Queue jobs are signed, as Celery's message signing signs its messages: a coordinator adds an
// HMAC-SHA256 of the job's content under a secret it shares with the workers, and a worker runs
// only jobs whose signature it can reproduce. Whoever can write to Redis but does not hold the
// secret cannot make a worker run anything, and learns nothing from its refusal.
//
// The secret is $TFPIPE_QUEUE_SECRET where it is set (the same value on every machine), else the
// file .tfpipe-secret in the shared outputs folder: 32 random bytes the first coordinator writes
// (readable by its owner only), which every worker that mounts the folder reads. Redis never sees it.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { canonicalJson } from '../cache/hash.js';
import { isObject } from '../ground/json.js';

export const SECRET_FILE = '.tfpipe-secret';
const ENV = 'TFPIPE_QUEUE_SECRET';

export interface QueueSecret {
  key: Buffer;
  /** Where it came from, for this machine's own log (never sent to Redis). */
  source: string;
}

/** The secret for the outputs folder `outputs`; made there when `create` and there is none yet. */
export async function queueSecret(outputs: string, create: true): Promise<QueueSecret>;
export async function queueSecret(outputs: string, create: false): Promise<QueueSecret | undefined>;
export async function queueSecret(outputs: string, create: boolean): Promise<QueueSecret | undefined> {
  const fromEnv = process.env[ENV];
  if (fromEnv) return { key: Buffer.from(fromEnv, 'utf8'), source: `$${ENV}` };
  const file = join(outputs, SECRET_FILE);
  const read = async () => {
    const text = (await readFile(file, 'utf8').catch(() => '')).trim();
    return text.length >= 32 ? { key: Buffer.from(text, 'utf8'), source: file } : undefined;
  };
  const have = await read();
  if (have || !create) return have;
  try {
    const fh = await open(file, 'wx', 0o600);
    await fh.writeFile(`${randomBytes(32).toString('hex')}\n`);
    await fh.close();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  // Two coordinators racing agree on the file the first one wrote.
  for (let i = 0; i < 50; i++) {
    const s = await read();
    if (s) return s;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`cannot read the queue secret ${file}`);
}

function mac(content: unknown, secret: QueueSecret): Buffer {
  return createHmac('sha256', secret.key).update(canonicalJson(content)).digest();
}

/** The job with its signature added. */
export function signJob<T extends object>(job: T, secret: QueueSecret): T & { signature: string } {
  return { ...job, signature: mac(job, secret).toString('hex') };
}

/**
 * Why a worker must not run this job data, or undefined when its signature is good. The reason
 * says only what is wrong with the job, nothing this worker knows or computes.
 */
export function verifyJob(data: unknown, secret: QueueSecret | undefined): string | undefined {
  if (!secret)
    return `this worker has no queue secret (${ENV}, or ${SECRET_FILE} in its outputs folder): it runs no queued job`;
  if (!isObject(data) || typeof data.signature !== 'string' || !/^[0-9a-f]{64}$/.test(data.signature))
    return 'the job is not signed; a worker runs only jobs signed by a coordinator that shares its queue secret';
  const { signature, ...content } = data;
  const want = mac(content, secret);
  if (!timingSafeEqual(Buffer.from(signature, 'hex'), want))
    return "the job's signature does not match; a worker runs only jobs signed by a coordinator that shares its queue secret";
  return undefined;
}
