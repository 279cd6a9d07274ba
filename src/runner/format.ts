// One-line renderings of progress, shared by the TTY and plain reporters.
import type { ProgressUpdate } from '../ground/progress.js';

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

function bar(fraction: number, width = 20): string {
  const n = Math.max(0, Math.min(width, Math.round(fraction * width)));
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}]`;
}

export function formatProgress(u: ProgressUpdate, opts: { bar?: boolean } = {}): string {
  const parts: string[] = [];
  if (u.epoch !== undefined) parts.push(`epoch ${u.epoch}${u.epochs ? `/${u.epochs}` : ''}`);
  if (u.batch !== undefined) {
    const b = `batch ${u.batch}${u.batches ? `/${u.batches}` : ''}`;
    parts.push(opts.bar && u.batches ? `${bar(u.batch / u.batches)} ${b}` : b);
  } else if (u.fraction !== undefined) {
    parts.push(opts.bar ? `${bar(u.fraction)} ${(u.fraction * 100).toFixed(0)}%` : `${(u.fraction * 100).toFixed(0)}%`);
  }
  if (u.loss !== undefined) parts.push(`loss ${u.loss.toFixed(4)}`);
  if (u.accuracy !== undefined) parts.push(`acc ${(u.accuracy * 100).toFixed(2)}%`);
  if (u.imagesPerSecond !== undefined) parts.push(`${u.imagesPerSecond.toFixed(0)} img/s`);
  if (u.etaSeconds !== undefined) parts.push(`ETA ${formatDuration(u.etaSeconds)}`);
  if (u.message) parts.push(u.message);
  return parts.join(' · ');
}

/** TFPIPE_LOG_INTERVAL_MS: how often plain progress lines are printed; 10 s unless set. */
export function logIntervalMs(env: NodeJS.ProcessEnv = process.env): number {
  return Number(env.TFPIPE_LOG_INTERVAL_MS ?? 10_000);
}

/**
 * Whether an update is due to be passed on: the last batch of a loop always (every epoch's end is
 * seen), otherwise at most one per `intervalMs`.
 */
export function progressThrottle(intervalMs: number): (u: ProgressUpdate) => boolean {
  let last = 0;
  return (u) => {
    const now = Date.now();
    const boundary = u.batch !== undefined && u.batch === u.batches;
    if (!boundary && now - last < intervalMs) return false;
    last = now;
    return true;
  };
}
