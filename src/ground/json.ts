// JSON values, and JSON read back from disk (manifests, tfpipe.lock, runs.jsonl) or from a schema:
// its shape is checked before it is trusted.

export type JsonValue = string | number | boolean | null | JsonValue[] | { [k: string]: JsonValue };
export type JsonObject = { [k: string]: JsonValue };

/** A JSON object: not null and not an array. */
export function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
