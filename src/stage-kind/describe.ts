// What `tfpipe kinds` shows about a kind, read from its StageKind and its JSON Schema: the
// description, the upstream kinds it requires, every setting (dotted path, type, default, doc)
// and what it writes (StageKind.writes).
import { isObject } from '../ground/json.js';
import type { AnyKind } from './registry.js';
import type { JsonObject, JsonValue } from '../ground/json.js';

export interface SettingDoc {
  /** Dotted path as written after the stage name in `--set`, e.g. optimizer.lr. */
  name: string;
  /** The accepted values in words, e.g. "integer ≥ 1", "adam | adamw | sgd". */
  type: string;
  /** Must be given (required and without a default). */
  required: boolean;
  /** Present when the schema has one. */
  default?: JsonValue;
  description: string;
  /** For a list of tagged objects (augmentation ops): each variant with its own settings. */
  variants?: { tag: string; description: string; settings: SettingDoc[] }[];
}

/** One kind, as `tfpipe kinds --json` prints it. */
export interface KindDoc {
  kind: string;
  description: string;
  /** The schema's longer description. */
  details: string;
  /** Upstream kinds that must be among the stage's needs. */
  requires: string[];
  uses_tensorflow: boolean;
  resumable: boolean;
  settings: SettingDoc[];
  writes: {
    files: { file: string; description: string }[];
    pictures: { file: string; title: string; caption?: string; section: string }[];
    /** Report sections the kind fills, in page order. */
    sections: { id: string; title: string; order: number }[];
  };
}

const str = (v: JsonValue | undefined): string => (typeof v === 'string' ? v : '');

function range(s: JsonObject): string {
  const lo =
    typeof s.minimum === 'number'
      ? ['[', s.minimum]
      : typeof s.exclusiveMinimum === 'number'
        ? ['(', s.exclusiveMinimum]
        : undefined;
  const hi =
    typeof s.maximum === 'number'
      ? [s.maximum, ']']
      : typeof s.exclusiveMaximum === 'number'
        ? [s.exclusiveMaximum, ')']
        : undefined;
  if (lo && hi) return ` in ${lo[0]}${lo[1]}, ${hi[0]}${hi[1]}`;
  if (lo) return ` ${lo[0] === '[' ? '≥' : '>'} ${lo[1]}`;
  if (hi) return ` ${hi[1] === ']' ? '≤' : '<'} ${hi[0]}`;
  return '';
}

function plural(type: string): string {
  return type.replace(/^(integer|number|string|boolean|object)\b/, '$1s');
}

/** The values a schema accepts, in words. */
export function describeType(s: JsonValue | undefined): string {
  if (!isObject(s)) return 'any';
  if ('const' in s) return JSON.stringify(s.const);
  if (Array.isArray(s.enum)) return s.enum.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(' | ');
  for (const k of ['anyOf', 'oneOf'] as const) {
    const alts = s[k];
    if (Array.isArray(alts)) return alts.map(describeType).join(' or ');
  }
  if (Array.isArray(s.type)) return s.type.map((t) => describeType({ ...s, type: t })).join(' or ');
  switch (s.type) {
    case 'integer':
    case 'number':
      return `${s.type}${range(s)}`;
    case 'string':
      if (s['x-path'] === true) return 'path or URL (relative to the pipeline file)';
      if (typeof s.pattern === 'string') return `string matching ${s.pattern}`;
      return typeof s.minLength === 'number' && s.minLength > 0 ? 'non-empty string' : 'string';
    case 'null':
      return 'null';
    case 'boolean':
      return 'boolean';
    case 'array': {
      if (isObject(s.items) && Array.isArray(s.items.oneOf))
        return `list of ${str(s.items.discriminator && (s.items.discriminator as JsonObject).propertyName) || 'tagged'} objects`;
      const item = describeType(s.items);
      const unique = s.uniqueItems === true ? ', no repeats' : '';
      if (typeof s.minItems === 'number' && s.minItems === s.maxItems) return `${s.minItems} ${plural(item)}`;
      return `list of ${/\s/.test(item) ? `(${item})` : plural(item)}${unique}`;
    }
    case 'object':
      return 'object';
    default:
      return 'any';
  }
}

function settingsOf(schema: JsonObject, prefix = '', skip: readonly string[] = []): SettingDoc[] {
  const props = isObject(schema.properties) ? schema.properties : {};
  const required = Array.isArray(schema.required) ? schema.required : [];
  const out: SettingDoc[] = [];
  for (const [key, sub] of Object.entries(props)) {
    if (skip.includes(key) || !isObject(sub)) continue;
    const name = prefix + key;
    const doc: SettingDoc = {
      name,
      type: describeType(sub),
      required: required.includes(key) && !('default' in sub),
      ...('default' in sub ? { default: sub.default } : {}),
      description: str(sub.description),
    };
    const items = sub.items;
    if (isObject(items) && Array.isArray(items.oneOf) && isObject(items.discriminator)) {
      const tag = str(items.discriminator.propertyName);
      doc.variants = items.oneOf
        .filter((v) => isObject(v))
        .map((v) => {
          const tagSchema = isObject(v.properties) ? v.properties[tag] : undefined;
          return {
            tag: isObject(tagSchema) ? String(tagSchema.const) : '?',
            description: str(v.description),
            settings: settingsOf(v, '', [tag]),
          };
        });
    }
    // Nested settings objects are listed by dotted path, as --set takes them.
    if (sub.type === 'object' && isObject(sub.properties)) out.push(doc, ...settingsOf(sub, `${name}.`));
    else out.push(doc);
  }
  return out;
}

export function describeKind(k: AnyKind): KindDoc {
  const report = k.writes?.report ?? [];
  return {
    kind: k.kind,
    description: k.description,
    details: str(k.schema.description),
    requires: k.requires ?? [],
    uses_tensorflow: k.usesTensorflow === true,
    resumable: k.resumable === true,
    settings: settingsOf(k.schema, '', ['kind', 'needs']),
    writes: {
      files: Object.entries(k.writes?.files ?? {}).map(([file, description]) => ({ file, description })),
      pictures: report.flatMap((part) => (part.pictures ?? []).map((p) => ({ ...p, section: part.title }))),
      sections: report.map((part) => ({ id: part.section, title: part.title, order: part.order })),
    },
  };
}
