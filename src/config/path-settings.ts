// Settings that name local files. A kind marks them with `x-path: true` in its schema; that one
// mark makes a --set value relative to the cwd (load.ts) and puts the file's content hash, not
// its spelling, into the stage key (runner/plan.ts).
import type { JsonObject, JsonValue } from '../ground/json.js';

export function isUrl(value: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(value);
}

export interface PathSetting {
  /** Key path inside the stage's settings, e.g. ["source"]. */
  path: (string | number)[];
  /** As written (relative to the pipeline file, or absolute). */
  value: string;
}

/** Every x-path setting holding a local path (URLs are left to the kind, which checks them). */
export function localPathSettings(schema: JsonObject, settings: JsonValue): PathSetting[] {
  const out: PathSetting[] = [];
  const walk = (s: JsonObject | undefined, v: JsonValue | undefined, path: (string | number)[]) => {
    if (!s || v === undefined || v === null) return;
    if (s['x-path'] === true && typeof v === 'string' && !isUrl(v)) out.push({ path, value: v });
    else if (Array.isArray(v))
      v.forEach((item, i) => {
        walk(s.items as JsonObject | undefined, item, [...path, i]);
      });
    else if (typeof v === 'object') {
      const props = s.properties as Record<string, JsonObject> | undefined;
      for (const [k, item] of Object.entries(v)) walk(props?.[k], item, [...path, k]);
    }
  };
  walk(schema, settings, []);
  return out;
}

/** A copy of `settings` without the given settings. */
export function withoutSettings(settings: JsonObject, paths: readonly (string | number)[][]): JsonObject {
  const copy = structuredClone(settings);
  for (const path of paths) {
    let node: JsonValue = copy;
    for (const seg of path.slice(0, -1)) node = (node as Record<string | number, JsonValue>)[seg];
    const last = path[path.length - 1];
    if (Array.isArray(node)) node[last as number] = null;
    else delete (node as JsonObject)[last as string];
  }
  return copy;
}
