// Hydra-style `key.sub=value` overrides, typed by the schema at that key.
import { parse as parseYamlValue } from 'yaml';
import type { Problem } from '../ground/errors.js';

export interface Override {
  /** As typed, for error messages: "train.lr=3e-4". */
  text: string;
  /** Full path from the document root, e.g. ["stages","train","lr"]. */
  path: (string | number)[];
  raw: string;
}

const TOP_LEVEL = new Set(['name', 'description', 'seed', 'runtime', 'stages']);

/** Split `a.b[2].c=value`; a leading `stages.` is optional for stage settings. */
export function parseOverride(text: string, stageNames: readonly string[]): Override | Problem {
  const eq = text.indexOf('=');
  if (eq <= 0) return { where: `--set ${text}`, path: '', message: 'expected KEY=VALUE, e.g. train.lr=3e-4' };
  const keyText = text.slice(0, eq).trim();
  const path = parseKeyPath(keyText, stageNames);
  if (typeof path === 'string') return { where: `--set ${text}`, path: keyText, message: path };
  return { text, path, raw: text.slice(eq + 1) };
}

/**
 * `train.optimizer.lr` or `stages.augmentation.ops[1].p` as a path from the document root, or
 * what is wrong with it. Shared by `--set` and the `sweep:` block, so both name settings alike.
 */
export function parseKeyPath(keyText: string, stageNames: readonly string[]): (string | number)[] | string {
  const path: (string | number)[] = [];
  for (const part of keyText.split('.')) {
    const m = /^([^[\]]+)((?:\[\d+\])*)$/.exec(part);
    if (!m) return 'malformed key path';
    path.push(m[1]);
    for (const idx of m[2].matchAll(/\[(\d+)\]/g)) path.push(Number(idx[1]));
  }
  const head = String(path[0]);
  // A stage name wins over a top-level key of the same name: `train.lr` means stages.train.lr.
  if (head !== 'stages' && stageNames.includes(head)) path.unshift('stages');
  else if (!TOP_LEVEL.has(head)) return `no stage or top-level key "${head}" (stages: ${stageNames.join(', ')})`;
  return path;
}

/**
 * Hydra's multirun list: `1e-3,2e-3` → ["1e-3", "2e-3"]. Commas inside brackets, braces or quotes
 * do not split, so `[0.8,1.0],[0.5,1.0]` is two values.
 */
export function splitValues(raw: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quote: string | undefined;
  let start = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '[' || c === '{') depth += 1;
    else if (c === ']' || c === '}') depth -= 1;
    else if (c === ',' && depth === 0) {
      out.push(raw.slice(start, i));
      start = i + 1;
    }
  }
  out.push(raw.slice(start));
  return out;
}

/**
 * The value an override sets. Strings stay as typed when the schema says string; everything
 * else is read as a YAML scalar/flow value (3e-4, true, [0.8, 1.0]) and validated like file values.
 */
export function overrideValue(raw: string, schemaType: unknown): unknown {
  const types = Array.isArray(schemaType) ? schemaType : [schemaType];
  if (types.length === 1 && types[0] === 'string') return raw;
  try {
    const v: unknown = parseYamlValue(raw);
    return v === null && raw.trim() !== 'null' && raw.trim() !== '~' ? raw : v;
  } catch {
    return raw;
  }
}

/** Set a value at a path, creating maps as needed. */
export function setAtPath(root: Record<string, unknown>, path: readonly (string | number)[], value: unknown): void {
  let node: Record<string | number, unknown> = root;
  for (let i = 0; i < path.length - 1; i++) {
    const seg = path[i];
    const next = node[seg];
    if (next === null || typeof next !== 'object') node[seg] = typeof path[i + 1] === 'number' ? [] : {};
    node = node[seg] as Record<string | number, unknown>;
  }
  node[path[path.length - 1]] = value;
}
