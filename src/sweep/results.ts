// What a sweep has produced so far, read from the store (not from one run, so the page also covers
// variants run alone with --variant or by an earlier run), and its page, outputs/<pipeline>/sweep.html.
import { existsSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { writeFileAtomic } from '../cache/atomic.js';
import { headlineMetrics } from '../runner/history.js';
import type { Plan } from '../runner/plan.js';
import { unionOf, type StageInstance } from '../runner/union.js';
import type { KindRegistry } from '../stage-kind/registry.js';
import { pipelineDirOf, planVariants, variantDir } from './run.js';
import { formatValue, type SweepDefinition, type Variant } from './variants.js';

export interface VariantResult {
  variant: Variant;
  /** Every stage has a finished, trusted result. */
  complete: boolean;
  metrics: Record<string, number>;
  /** Compute minutes of its stages' results (shared ones in full); null if none finished. */
  minutes: number | null;
  /** Its stages whose instance other variants use too. */
  shared: string[];
  /** Its report.html, if one was published. */
  report?: string;
}

export interface SweepResults {
  variants: VariantResult[];
  instances: StageInstance[];
  /** Stage runs without sharing: variants × stages. */
  withoutSharing: number;
}

async function sweepResults(def: SweepDefinition, registry: KindRegistry, outputs: string): Promise<SweepResults> {
  const units = await planVariants(def, registry, { outputs }, def.variants);
  const plans: Plan[] = units.map((u) => u.plan);
  const { instances, withoutSharing } = unionOf(plans);
  const sharedBy = new Map(instances.map((i) => [`${i.planned.stage.name}\0${i.planned.key}`, i.users.length]));
  const variants = def.variants.map((variant, i): VariantResult => {
    const stages = plans[i].stages;
    const done = stages.filter((p) => p.state === 'cached' && p.manifest);
    const report = join(variantDir(def, outputs, variant), 'report.html');
    return {
      variant,
      complete: done.length === stages.length,
      metrics: headlineMetrics(done.map((p) => ({ headline: p.impl.headline, result: p.manifest!.result }))),
      minutes: done.length ? done.reduce((s, p) => s + p.manifest!.seconds, 0) / 60 : null,
      shared: stages.filter((p) => (sharedBy.get(`${p.stage.name}\0${p.key}`) ?? 0) > 1).map((p) => p.stage.name),
      ...(existsSync(report) ? { report } : {}),
    };
  });
  return { variants, instances, withoutSharing };
}

/** Writes sweep.html (and its charts under sweep/) and returns its path. */
export async function writeSweepPage(def: SweepDefinition, registry: KindRegistry, outputs: string): Promise<string> {
  // vega and the page renderer are only needed here, at the end of a sweep.
  const [{ renderSvg }, { sweepChartSpec }, { renderSweepHtml }] = await Promise.all([
    import('../render/charts.js'),
    import('./chart.js'),
    import('./page-html.js'),
  ]);
  const res = await sweepResults(def, registry, outputs);
  const dir = pipelineDirOf(def, outputs);
  const rel = (p: string) => relative(dir, p).split(sep).join('/');
  const charts: { title: string; file: string }[] = [];
  for (const axis of def.axes) {
    const points = res.variants.flatMap((r) =>
      [
        ...(r.metrics.best_val_accuracy !== undefined
          ? [{ series: 'best validation', y: r.metrics.best_val_accuracy }]
          : []),
        ...(r.metrics.test_accuracy !== undefined ? [{ series: 'test', y: r.metrics.test_accuracy }] : []),
      ].map((p) => {
        const v = r.variant.values[axis.short];
        return { ...p, x: typeof v === 'number' ? v : formatValue(v), variant: r.variant.name };
      }),
    );
    if (!points.length) continue;
    const spec = sweepChartSpec(axis.setting, points);
    const base = `sweep/accuracy-${axis.short.replace(/[^A-Za-z0-9._-]/g, '_')}`;
    await writeFileAtomic(join(dir, `${base}.vl.json`), `${JSON.stringify(spec, null, 2)}\n`);
    await writeFileAtomic(join(dir, `${base}.svg`), await renderSvg(spec));
    charts.push({ title: `Accuracy against ${axis.setting}`, file: `${base}.svg` });
  }
  const html = renderSweepHtml({
    pipeline: def.name,
    generatedAt: new Date().toISOString(),
    settings: def.axes.map((a) => ({ short: a.short, setting: a.setting })),
    rows: res.variants.map((r) => ({
      index: r.variant.index,
      name: r.variant.name,
      values: Object.fromEntries(Object.entries(r.variant.values).map(([k, v]) => [k, formatValue(v)])),
      bestValAccuracy: r.metrics.best_val_accuracy ?? null,
      testAccuracy: r.metrics.test_accuracy ?? null,
      minutes: r.minutes,
      shared: r.shared,
      ...(r.report ? { report: rel(r.report) } : {}),
      complete: r.complete,
    })),
    charts,
    stageRuns: { instances: res.instances.length, withoutSharing: res.withoutSharing },
  });
  const out = join(dir, 'sweep.html');
  await writeFileAtomic(out, html);
  return out;
}
