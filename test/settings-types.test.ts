// Settings types are generated from the kinds' schemas (tools/settings-types.ts); the committed
// file must be what the generator makes of today's schemas.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { compile, type JSONSchema } from 'json-schema-to-typescript';
import {
  generateSettingsTypes,
  resolvedSettingsSchema,
  SETTINGS_FILE,
  settingsTypeName,
} from '../tools/settings-types.js';
import { emit } from './fixtures/kinds.js';

test('src/stages/settings.ts is what tools/settings-types.ts generates from schemas/*.schema.json', async () => {
  assert.equal(
    readFileSync(SETTINGS_FILE, 'utf8'),
    await generateSettingsTypes(),
    'stale: run `npm run settings-types`',
  );
});

test('a generated settings type has what the loader hands a stage: defaults required, no kind or needs', async () => {
  const ts = await compile(resolvedSettingsSchema(emit.schema) as JSONSchema, settingsTypeName('emit'), {
    bannerComment: '',
  });
  assert.match(ts, /export interface EmitSettings \{/);
  assert.match(ts, /\bvalue: number;/, 'required in the schema');
  assert.match(ts, /\blr: number;/, 'has a default, so always present');
  assert.match(ts, /\bfail: boolean;/);
  assert.match(ts, /\bnote\?: string;/, 'no default: may be absent');
  assert.doesNotMatch(ts, /\bkind\??:|\bneeds\??:/, 'the loader strips kind and needs');
  assert.equal(settingsTypeName('attention_rollout'), 'AttentionRolloutSettings');
  assert.equal(settingsTypeName('cifar10'), 'Cifar10Settings');
});
