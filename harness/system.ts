// System programs some tests and benches need (Debian's chromium, redis-server), found the way .ci/run finds
// them: on the PATH (`command -v`), not at a fixed path.
import { spawnSync } from 'node:child_process';

/** The absolute path of a program on the PATH, or '' when there is none. */
export function commandPath(name: string): string {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 ? r.stdout.trim() : '';
}

/** How long a test's child process may run before it is killed (a hang fails the test, it never stalls the suite). */
export const CHILD_TIMEOUT_MS = 180_000;
