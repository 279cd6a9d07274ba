// Every way a command can end badly, as one exit code and one clear message; under --json, stdout
// still carries exactly one JSON document, then holding the error.
import { ConfigError, formatProblem, InputError, type Problem } from '../ground/errors.js';
import { Aborted } from '../ground/errors.js';

/** Wrong command line: exit 2 with the usage text. */
export class UsageError extends Error {}

/** A flag's whole-number value ≥ 1 (-j, --concurrency, --lock-timeout), or `fallback` when absent. */
export function positiveInt(text: string | undefined, fallback: number, flag: string): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag} takes a whole number ≥ 1, got "${text}"`);
  return n;
}

export const EXIT = { ok: 0, failed: 1, invalid: 2, interrupted: 130 } as const;

interface Described {
  code: number;
  message: string;
  problems?: Problem[];
  /** Printed to stderr after the message (usage text, a stack trace for a bug). */
  detail?: string;
}

function describe(err: unknown, usage: string): Described {
  if (err instanceof ConfigError) {
    const n = err.problems.length;
    return {
      code: EXIT.invalid,
      message: `${n} problem${n === 1 ? '' : 's'} found, nothing was run`,
      problems: err.problems,
    };
  }
  if (err instanceof UsageError) return { code: EXIT.invalid, message: err.message, detail: usage };
  if (err instanceof InputError) return { code: EXIT.invalid, message: err.message };
  if (err instanceof Aborted) return { code: EXIT.interrupted, message: err.message };
  const e = err as NodeJS.ErrnoException;
  // A system error (disk full, a file vanished) is not a bug in tfpipe: its message says it all.
  if (e instanceof Error && typeof e.code === 'string' && typeof e.syscall === 'string')
    return { code: EXIT.failed, message: e.message };
  return {
    code: EXIT.failed,
    message: `internal error: ${e instanceof Error ? e.message : String(err)}`,
    detail: e instanceof Error ? e.stack : undefined,
  };
}

export function reportError(err: unknown, json: boolean, usage: string): number {
  const d = describe(err, usage);
  process.stderr.write(`tfpipe: ${d.message}${d.problems ? ':' : ''}\n`);
  for (const p of d.problems ?? []) process.stderr.write(`  ${formatProblem(p)}\n`);
  if (d.detail) process.stderr.write(`${d.detail}\n`);
  if (json) {
    const error = { message: d.message, exit_code: d.code, ...(d.problems ? { problems: d.problems } : {}) };
    process.stdout.write(`${JSON.stringify({ error }, null, 2)}\n`);
  }
  return d.code;
}

let guarded = false;
/**
 * `tfpipe status … | head -2`: once the reader has gone, stop at once and quietly, as a Unix
 * tool killed by SIGPIPE does (exit 141). Locks are released by their exit hook.
 */
export function exitQuietlyOnClosedPipe(): void {
  if (guarded) return;
  guarded = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(141);
      throw err;
    });
  }
}

/**
 * Ctrl-C (or SIGTERM) once aborts the returned signal, so running work stops after its current
 * step and what finished is kept; a second one quits at once (130). `release()` removes the handlers.
 */
export function onInterrupt(message?: string): { signal: AbortSignal; release(): void } {
  const controller = new AbortController();
  let interrupts = 0;
  const handler = () => {
    interrupts += 1;
    if (interrupts > 1) process.exit(EXIT.interrupted);
    if (message) process.stderr.write(message);
    controller.abort();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: controller.signal,
    release: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
