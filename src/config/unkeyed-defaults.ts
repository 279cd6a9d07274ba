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
    .filter(([name, s]) => s['x-unkeyed-default'] === true && name in settings && isDefault(settings[name], s))
    .map(([name]) => [name]);
}

function isDefault(value: JsonValue | undefined, schema: JsonObject): boolean {
  const d = filledDefault(schema);
  return value !== undefined && d !== undefined && canonicalJson(value) === canonicalJson(d);
}

/**
 * A setting's default as validation leaves it: an object default gets its properties' own
 * defaults filled in (Ajv's useDefaults), so `ema: {}` compares as {decay: 0, warmup: true}.
 */
function filledDefault(schema: JsonObject): JsonValue | undefined {
  const d = schema.default;
  const props = schema.properties as Record<string, JsonObject> | undefined;
  if (d === null || typeof d !== 'object' || Array.isArray(d) || !props) return d;
  const out: JsonObject = { ...d };
  for (const [name, s] of Object.entries(props)) {
    if (out[name] !== undefined) continue;
    const inner = filledDefault(s);
    if (inner !== undefined) out[name] = inner;
  }
  return out;
}
