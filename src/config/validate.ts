// Validate a parsed pipeline against the composed schema; every problem at once, with positions.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { JsonObject } from '../ground/json.js';
import type { KindRegistry } from '../stage-kind/registry.js';
import { buildPipelineSchema } from './pipeline-schema.js';
import { didYouMean, dottedPath } from './problems.js';

export interface Validator {
  /** Validates in place (applies defaults) and returns problems as path + message. */
  validate(data: unknown): { path: (string | number)[]; keyOnly: boolean; message: string }[];
  /** The schema that governs a key path (for typing overrides), if known. */
  schemaAt(data: unknown, path: readonly (string | number)[]): JsonObject | undefined;
}

/**
 * tfpipe's own schema keywords: x-path marks settings that name local files (path-settings.ts);
 * x-why says why a bound is what it is, for the message when a value breaks it; x-unkeyed-default
 * keeps a later-added setting at its default out of stage keys (unkeyed-defaults.ts).
 */
export const SCHEMA_KEYWORDS = ['x-path', 'x-why', 'x-unkeyed-default'] as const;

export function createValidator(registry: KindRegistry): Validator {
  const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, discriminator: true, verbose: true });
  for (const keyword of SCHEMA_KEYWORDS) ajv.addKeyword({ keyword });
  for (const k of registry.all()) ajv.addSchema(k.schema);
  const pipelineSchema = buildPipelineSchema(registry);
  const validateFn: ValidateFunction = ajv.compile(pipelineSchema);

  return {
    validate(data) {
      if (validateFn(data)) return [];
      return describeErrors(validateFn.errors ?? [], registry, data);
    },
    schemaAt(data, path) {
      let schema: JsonObject | undefined = pipelineSchema;
      for (let i = 0; i < path.length && schema; i++) {
        const seg = path[i];
        if (i === 1 && path[0] === 'stages') {
          const kind = getAt(data, ['stages', seg, 'kind']);
          schema = typeof kind === 'string' ? registry.get(kind)?.schema : undefined;
          continue;
        }
        if (typeof seg === 'number') schema = schema.items as JsonObject | undefined;
        else schema = (schema.properties as Record<string, JsonObject> | undefined)?.[seg];
      }
      return schema;
    },
  };
}

function getAt(data: unknown, path: readonly (string | number)[]): unknown {
  let node = data;
  for (const seg of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string | number, unknown>)[seg];
  }
  return node;
}

function pointerToPath(pointer: string): (string | number)[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function describeErrors(errors: ErrorObject[], registry: KindRegistry, data: unknown) {
  const out: { path: (string | number)[]; keyOnly: boolean; message: string }[] = [];
  const seen = new Set<string>();
  // When the discriminator could not pick a kind, the oneOf noise below it says nothing useful.
  const badKindPaths = new Set<string>();
  for (const e of errors) if (e.keyword === 'discriminator') badKindPaths.add(e.instancePath);

  for (const e of errors) {
    const path = pointerToPath(e.instancePath);
    let keyOnly = false;
    let message: string;
    switch (e.keyword) {
      case 'discriminator': {
        const kind = getAt(data, [...path, 'kind']);
        const known = registry.names();
        if (typeof kind !== 'string') {
          message = `kind must be a string, one of: ${known.join(', ')}`;
        } else {
          const hint = didYouMean(kind, known);
          message = `unknown stage kind "${kind}"${hint ? ` (did you mean "${hint}"?)` : ''}; known kinds: ${known.join(', ')}`;
        }
        path.push('kind');
        break;
      }
      case 'additionalProperties': {
        const extra = (e.params as { additionalProperty: string }).additionalProperty;
        const allowed = Object.keys(
          ((e.parentSchema as JsonObject | undefined)?.properties as JsonObject | undefined) ?? {},
        );
        const hint = didYouMean(extra, allowed);
        path.push(extra);
        keyOnly = true;
        message = `unknown key${hint ? ` (did you mean "${hint}"?)` : ''}; allowed: ${allowed.join(', ')}`;
        break;
      }
      case 'required':
        message = `missing required key "${(e.params as { missingProperty: string }).missingProperty}"`;
        break;
      case 'enum':
        message = `must be one of: ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
        break;
      case 'const':
        message = `must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}`;
        break;
      case 'propertyNames':
        continue; // reported by the pattern error on the name itself
      case 'pattern':
        if (e.propertyName !== undefined) {
          path.push(e.propertyName);
          keyOnly = true;
          message = `name must match ${(e.params as { pattern: string }).pattern} (letters, digits, _ and -)`;
        } else {
          message = `must match ${(e.params as { pattern: string }).pattern}`;
        }
        break;
      case 'oneOf':
        if (e.schemaPath.includes('/stages/') && badKindPaths.has(e.instancePath)) continue;
        message = 'must match exactly one of the allowed forms';
        break;
      default: {
        message = e.message ?? `failed ${e.keyword}`;
        const why = (e.parentSchema as JsonObject | undefined)?.['x-why'];
        if (
          typeof why === 'string' &&
          ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'].includes(e.keyword)
        )
          message += ` (${why})`;
      }
    }
    if (
      e.keyword !== 'discriminator' &&
      [...badKindPaths].some((p) => e.instancePath.startsWith(`${p}/`) || e.instancePath === p)
    ) {
      continue;
    }
    const id = `${dottedPath(path)}|${message}`;
    if (seen.has(id)) continue;
    seen.add(id);
    out.push({ path, keyOnly, message });
  }
  return out;
}
