// The one place the built-in stage kinds are listed. A new kind: add its module here and its schema
// in schemas/, then regenerate schemas/pipeline.schema.json (tfpipe schema) and src/kinds/settings.ts
// (npm run settings-types).
import { type AnyKind, KindRegistry } from '../stage-kind/registry.js';
import { stage as attentionRollout } from './attention_rollout.js';
import { stage as augmentation } from './augmentation.js';
import { stage as cifar10 } from './cifar10.js';
import { stage as evaluate } from './evaluate.js';
import { stage as plots } from './plots.js';
import { stage as report } from './report.js';
import { stage as train } from './train.js';
import { stage as vit } from './vit.js';

export const builtinKinds: readonly AnyKind[] = [
  cifar10,
  augmentation,
  vit,
  train,
  evaluate,
  plots,
  attentionRollout,
  report,
];

/**
 * Built-in kinds plus plugin modules named in TFPIPE_PLUGINS (comma-separated paths of ES
 * modules exporting `stageKinds: StageKind[]`); tests use this to add small test-only kinds.
 */
export async function loadRegistry(env: NodeJS.ProcessEnv = process.env): Promise<KindRegistry> {
  const registry = new KindRegistry([...builtinKinds]);
  for (const spec of (env.TFPIPE_PLUGINS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const { pathToFileURL } = await import('node:url');
    const { resolve } = await import('node:path');
    const mod = (await import(pathToFileURL(resolve(spec)).href)) as { stageKinds?: AnyKind[] };
    if (!Array.isArray(mod.stageKinds)) throw new Error(`plugin ${spec} does not export stageKinds: StageKind[]`);
    for (const k of mod.stageKinds) registry.register(k);
  }
  return registry;
}
