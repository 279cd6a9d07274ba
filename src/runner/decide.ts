// Whether a stage runs, is reused or is skipped, given what happened to its upstream stages in
// this run. A pure function: recording the outcome is the runner's job.
import type { Manifest } from '../cache/store.js';
import { whyNotReused } from '../cache/upstream.js';
import type { PlannedStage } from './plan.js';

/** What became of a stage in this run. */
export type Outcome =
  | { state: 'ran' | 'cached'; manifest: Manifest; seconds: number }
  | { state: 'failed' | 'skipped'; error: string; seconds: number };

export type Decision =
  | { action: 'skip'; reason: string }
  | { action: 'reuse'; manifest: Manifest }
  | { action: 'run'; reasons: string[] };

export function decide(p: PlannedStage, outcomes: ReadonlyMap<string, Outcome>, interrupted: boolean): Decision {
  if (interrupted) return { action: 'skip', reason: 'interrupted' };
  const upstream: Record<string, Manifest> = {};
  for (const n of p.stage.needs) {
    const o = outcomes.get(n);
    if (!o || (o.state !== 'ran' && o.state !== 'cached'))
      return { action: 'skip', reason: `upstream stage "${n}" did not finish` };
    upstream[n] = o.manifest;
  }
  if (p.forced) return { action: 'run', reasons: ['forced with --force'] };
  if (p.state !== 'cached' || !p.manifest) return { action: 'run', reasons: p.reasons };
  // An upstream stage that ran in this run may have produced other outputs than this result read.
  const changed = whyNotReused(p.manifest, upstream);
  if (changed.length) return { action: 'run', reasons: changed };
  return { action: 'reuse', manifest: p.manifest };
}
