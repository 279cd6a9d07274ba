// Where the queue lives: a Redis URL, checked once up front so that a typo or a Redis that is
// down gives one clear line and exit 2 within seconds, before anything is written, instead of
// BullMQ's client retrying forever.
import { Redis } from 'ioredis';
import { InputError } from '../ground/errors.js';

/** The BullMQ queue every coordinator and worker of tfpipe shares on a Redis server. */
export const QUEUE_NAME = 'tfpipe-stages';

/** An unusable --queue: bad URL or no Redis there. Input like any other: one line, exit 2. */
class QueueUnavailable extends InputError {}

export interface QueueUrl {
  url: string;
  /** Without a password, for messages. */
  shown: string;
}

export function parseQueueUrl(text: string): QueueUrl {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new QueueUnavailable(`--queue ${text}: not a URL; expected redis://HOST:PORT (e.g. redis://127.0.0.1:6379)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new QueueUnavailable(`--queue ${text}: expected a redis:// or rediss:// URL, not ${u.protocol}//`);
  }
  if (!u.hostname) throw new QueueUnavailable(`--queue ${text}: no host; expected redis://HOST:PORT`);
  const shown = `${u.protocol}//${u.hostname}:${u.port || '6379'}${u.pathname && u.pathname !== '/' ? u.pathname : ''}`;
  return { url: text, shown };
}

/** BullMQ connection options; null retries per request as its workers require. */
export function connectionOf(q: QueueUrl): { url: string; maxRetriesPerRequest: null } {
  return { url: q.url, maxRetriesPerRequest: null };
}

/** Resolves once Redis answers PING; otherwise throws QueueUnavailable within about `timeoutMs`. */
export async function checkRedis(q: QueueUrl, timeoutMs = 3000): Promise<void> {
  const client = new Redis(q.url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // ioredis reports a refused connection as 'Connection is closed'; the socket error says why.
  let cause: Error | undefined;
  client.on('error', (err: Error) => {
    cause ??= err;
  });
  const timer = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs + 500).unref(),
  );
  try {
    await Promise.race([client.connect().then(() => client.ping()), timer]);
  } catch (err) {
    throw new QueueUnavailable(`cannot reach Redis at ${q.shown}: ${(cause ?? (err as Error)).message}`);
  } finally {
    client.disconnect();
  }
}
