// A throwaway Debian redis-server for the queue tests and the sweep bench: a free loopback port, no persistence,
// stopped when the test ends. Tests skip with a reason where the binary is absent.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { commandPath } from './system.js';

export const REDIS_SERVER = commandPath('redis-server');
export const noRedis: string | false = REDIS_SERVER
  ? false
  : 'redis-server is not installed (apt-get install redis-server; .ci/run does)';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function pong(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    let got = '';
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      got += String(d);
      if (got.includes('\r\n')) {
        sock.destroy();
        resolve(got.startsWith('+PONG'));
      }
    });
    sock.on('error', () => resolve(false));
  });
}

export interface RedisHandle {
  url: string;
  port: number;
  stop(): Promise<void>;
  /** kill -9: gone at once, with everything it held (no persistence). */
  kill(): Promise<void>;
}

/** A redis-server on a free loopback port, or on `port` (to bring one back where another died). */
export async function startRedis(port?: number): Promise<RedisHandle> {
  port ??= await freePort();
  const child: ChildProcess = spawn(
    REDIS_SERVER,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 100 && !(await pong(port)); i++) await new Promise((r) => setTimeout(r, 50));
  if (!(await pong(port))) {
    child.kill('SIGKILL');
    throw new Error(`redis-server did not answer on port ${port}`);
  }
  const end = (signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  return { url: `redis://127.0.0.1:${port}`, port, stop: () => end('SIGTERM'), kill: () => end('SIGKILL') };
}
