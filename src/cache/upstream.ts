// What a stage's result consumed from its upstream stages, and whether upstream still holds that.
// A key says what a stage was asked to do; it cannot say what an upstream stage actually produced
// (a forced rerun, nondeterminism, another backend). So every result records a digest of each
// upstream result it read, and a result is reused only while those digests still match: the one
// reuse rule (whyNotReused), which planning, the walk and a stage's runner all ask.
import { canonicalJson, sha256 } from './hash.js';
import type { Manifest } from './store.js';

/** The part of a finished result that downstream stages depend on. */
export interface Produced {
  /** Digest over the result's files (path -> sha256), result.json included. */
  digest: string;
  finishedAt: string;
}

export function outputsDigest(files: Record<string, { sha256: string }>): string {
  return sha256(canonicalJson(Object.fromEntries(Object.entries(files).map(([f, r]) => [f, r.sha256])))).slice(0, 16);
}

export function produced(m: Manifest): Produced {
  return { digest: outputsDigest(m.files), finishedAt: m.finishedAt };
}

/**
 * The reuse rule: a finished result is reused only while every upstream stage still holds the
 * outputs it read. `upstream` is the result each of its needs holds (now, in a plan; as produced in
 * this run, in the walk; as found after a lock wait, in a stage's runner). The reasons it may not
 * be reused; [] when it may.
 */
export function whyNotReused(result: Manifest, upstream: Readonly<Record<string, Manifest>>): string[] {
  return upstreamChanges(result, Object.fromEntries(Object.entries(upstream).map(([n, m]) => [n, produced(m)])));
}

/** Reasons why `result` no longer matches what its upstream stages hold now; [] when it does. */
export function upstreamChanges(result: Manifest, upstream: Record<string, Produced>): string[] {
  const reasons: string[] = [];
  const recorded = result.upstreamOutputs;
  for (const [name, now] of Object.entries(upstream).sort(([a], [b]) => a.localeCompare(b))) {
    const was = recorded?.[name];
    if (was === now.digest) continue;
    if (was !== undefined) {
      reasons.push(
        `upstream stage "${name}"'s outputs changed (digest ${was.slice(0, 12)} → ${now.digest.slice(0, 12)})`,
      );
    } else if (recorded !== undefined || !startedAfter(result, now)) {
      // Results written before digests were recorded are trusted only if the upstream result they
      // would have read was already finished when they started: it is then the one they read.
      reasons.push(`upstream stage "${name}" ran again after this result was made (no output digest recorded)`);
    }
  }
  return reasons;
}

function startedAfter(result: Manifest, upstream: Produced): boolean {
  const start = Date.parse(result.finishedAt) - result.seconds * 1000;
  return Date.parse(upstream.finishedAt) <= start;
}
