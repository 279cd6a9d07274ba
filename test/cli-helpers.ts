// Running the real CLI (bin/tfpipe.js) in a child process, with the test kinds loaded.
import { spawn, spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { packageRoot } from '../src/ground/paths.js';
import { CHILD_TIMEOUT_MS } from '../harness/system.js';

export const BIN = resolve(packageRoot, 'bin/tfpipe.js');
export const PLUGIN = resolve(packageRoot, 'dist/test/fixtures/kinds.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  pid?: number;
}

/** The environment of a CLI child: test kinds, plain output, outputs in `outputs` (none: the default rule). */
export function cliEnv(outputs: string | undefined, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TFPIPE_PLUGINS: PLUGIN, NO_COLOR: '1', ...extra };
  if (outputs === undefined) delete env.TFPIPE_OUTPUTS;
  else env.TFPIPE_OUTPUTS = outputs;
  return env;
}

export function tfpipe(
  args: string[],
  outputs: string | undefined,
  opts: { cwd?: string; uid?: number; env?: Record<string, string> } = {},
): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    env: cliEnv(outputs, opts.env),
    encoding: 'utf8',
    cwd: opts.cwd,
    timeout: CHILD_TIMEOUT_MS,
    killSignal: 'SIGKILL',
    ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, pid: r.pid };
}

/**
 * Runs the CLI with `args` and kills it with SIGKILL once its train stage starts epoch 2 of 3
 * (after epoch 1's checkpoints and resume state are written); resolves with what it printed.
 */
export async function killedInEpoch2(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  const child = spawn(process.execPath, [BIN, ...args], { env });
  let seen = '';
  await new Promise<void>((res) => {
    child.stdout.on('data', (d) => {
      seen += String(d);
      if (/\[train\] epoch 2\/3 · batch 1\//.test(seen)) res();
    });
    child.on('exit', () => res());
  });
  child.kill('SIGKILL');
  await new Promise((res) => child.on('exit', res));
  return seen;
}
