// Long-running `tfpipe` processes for the queue tests and the sweep bench (workers, coordinators to
// kill), with their output collected and a way to wait for a line.
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { packageRoot } from '../src/ground/paths.js';

export const BIN = resolve(packageRoot, 'bin/tfpipe.js');

export interface Running {
  child: ChildProcess;
  output(): string;
  /** Resolves when the output matches; rejects if the process ends first or after `ms`. */
  waitFor(re: RegExp, ms?: number): Promise<void>;
  exited: Promise<number | null>;
  /** Stops it (SIGINT, then SIGKILL) unless it has ended. */
  stop(): Promise<void>;
}

export function startTfpipe(args: string[], env: NodeJS.ProcessEnv): Running {
  const child = spawn(process.execPath, [BIN, ...args], { env });
  let text = '';
  const waiters: (() => void)[] = [];
  const onData = (d: Buffer) => {
    text += String(d);
    for (const w of [...waiters]) w();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((r) =>
    child.on('exit', (code) => {
      r(code);
      for (const w of [...waiters]) w();
    }),
  );
  return {
    child,
    output: () => text,
    waitFor: (re, ms = 60_000) =>
      new Promise<void>((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`no ${re} within ${ms} ms; output:\n${text}`)), ms);
        const check = () => {
          if (re.test(text)) {
            clearTimeout(timer);
            waiters.splice(waiters.indexOf(check), 1);
            res();
          } else if (child.exitCode !== null || child.signalCode !== null) {
            clearTimeout(timer);
            waiters.splice(waiters.indexOf(check), 1);
            rej(new Error(`process ended before ${re}; output:\n${text}`));
          }
        };
        waiters.push(check);
        check();
      }),
    exited,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGINT');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
