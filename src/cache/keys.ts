// A stage's key: the hash of everything that determines its results, kept inspectable.
import type { JsonObject } from '../ground/json.js';
import { canonicalJson, sha256 } from './hash.js';

/** Everything that goes into a key; stored in the manifest and lock so `status` can explain. */
export interface KeyInputs {
  kind: string;
  version: number;
  settings: JsonObject;
  /** Upstream stage name -> its key. */
  needs: Record<string, string>;
  /**
   * Local file or folder named by an x-path setting: the setting's dotted path -> content hash.
   * The path as written is not in `settings`, so two spellings of one file give one key.
   */
  inputs: Record<string, string>;
  seed: number;
}

export function stageKey(k: KeyInputs): string {
  return sha256(canonicalJson(k)).slice(0, 16);
}

/** Flatten settings into dotted paths, for old → new explanations. */
export function flatten(value: unknown, prefix = '', out: Record<string, string> = {}): Record<string, string> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length) {
    for (const [k, v] of Object.entries(value as Record<string, unknown>))
      flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out[prefix] = canonicalJson(value);
  }
  return out;
}

/**
 * Human-readable reasons why `next` differs from `prev`, most specific first. `spelled` gives the
 * current value of each input setting, to name the file.
 */
export function explainChange(prev: KeyInputs, next: KeyInputs, spelled: Record<string, string> = {}): string[] {
  const reasons: string[] = [];
  if (prev.kind !== next.kind) reasons.push(`kind changed: ${prev.kind} → ${next.kind}`);
  else if (prev.version !== next.version)
    reasons.push(`implementation of kind "${next.kind}" changed: version ${prev.version} → ${next.version}`);
  const a = flatten(prev.settings);
  const b = flatten(next.settings);
  for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    if (a[k] === b[k]) continue;
    if (a[k] === undefined) reasons.push(`setting ${k} added: ${b[k]}`);
    else if (b[k] === undefined) reasons.push(`setting ${k} removed (was ${a[k]})`);
    else reasons.push(`setting ${k} changed: ${a[k]} → ${b[k]}`);
  }
  if (prev.seed !== next.seed) reasons.push(`seed changed: ${prev.seed} → ${next.seed}`);
  for (const n of [...new Set([...Object.keys(prev.needs), ...Object.keys(next.needs)])].sort()) {
    if (prev.needs[n] === next.needs[n]) continue;
    if (prev.needs[n] === undefined) reasons.push(`now needs stage "${n}"`);
    else if (next.needs[n] === undefined) reasons.push(`no longer needs stage "${n}"`);
    else reasons.push(`upstream stage "${n}" changed (key ${prev.needs[n]} → ${next.needs[n]})`);
  }
  for (const p of [...new Set([...Object.keys(prev.inputs), ...Object.keys(next.inputs)])].sort()) {
    if (prev.inputs[p] === next.inputs[p]) continue;
    const named = spelled[p] !== undefined ? `${spelled[p]} (setting ${p})` : `of setting ${p}`;
    if (prev.inputs[p] === undefined) reasons.push(`setting ${p} now names a local file`);
    else if (next.inputs[p] === undefined) reasons.push(`setting ${p} no longer names a local file`);
    else
      reasons.push(
        `input file ${named} changed (content hash ${prev.inputs[p].slice(0, 12)} → ${next.inputs[p].slice(0, 12)})`,
      );
  }
  return reasons;
}
