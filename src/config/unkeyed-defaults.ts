// Settings added to a kind after results were cached. A schema marks such a top-level setting with
// `x-unkeyed-default: true`; at its default it stays out of the stage key (runner/plan.ts), so a
// pipeline that does not use it keeps the keys, and the cached results, it had before the setting
// existed. Any other value enters the key as usual.
import { canonicalJson } from '../cache/hash.js';
import type { JsonObject, JsonValue } from '../ground/json.js';

/** The paths of x-unkeyed-default settings that hold their schema default. */
export function unkeyedDefaults(schema: JsonObject, settings: JsonObject): string[][] {
  const props = (schema.properties ?? {}) as Record<string, JsonObject>;
  return Object.entries(props)
    .filter(([name, s]) => s['x-unkeyed-default'] === true && name in settings && sameJson(settings[name], s.default))
    .map(([name]) => [name]);
}

function sameJson(a: JsonValue | undefined, b: JsonValue | undefined): boolean {
  return b !== undefined && a !== undefined && canonicalJson(a) === canonicalJson(b);
}
