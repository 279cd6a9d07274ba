// Several plans of one pipeline (a sweep's variants) as one graph: a stage instance is a stage name
// with a key, and variants whose stage has the same key share the instance, which runs once. A key
// covers the stage's upstream keys, so instances that share a key also share their upstream ones.
import { ancestorsAndSelf } from '../graph/dag.js';
import type { Plan, PlannedStage } from './plan.js';

export interface StageInstance {
  /** The stage's name for a single plan; `stage@key` (short) when several plans are joined. */
  id: string;
  planned: PlannedStage;
  /** The first plan that has this instance; the stage has the same settings in every other one. */
  plan: Plan;
  /** Indices of the plans that use it. */
  users: number[];
  /** Need (stage name) -> instance id. */
  needs: Record<string, string>;
}

/** The plans joined: what a run walks and what status, dag and --dry-run show. */
export interface StageGraph {
  /** In an order where every instance comes after the ones it needs. */
  instances: StageInstance[];
  /** Stage runs without sharing: the selected stages of every plan added up. */
  withoutSharing: number;
}

/**
 * The union of the plans. `until` (--until) limits every plan to that stage and what it needs;
 * this is the one place the selection is made.
 */
export function unionOf(plans: readonly Plan[], until?: string): StageGraph {
  const byKey = new Map<string, StageInstance>();
  const out: StageInstance[] = [];
  const shortLen = shortestUniqueKeyLength(plans);
  let withoutSharing = 0;
  plans.forEach((plan, i) => {
    const selected = until ? ancestorsAndSelf(plan.pipeline.stages, until) : undefined;
    withoutSharing += selected?.size ?? plan.stages.length;
    const idOf = new Map<string, string>();
    for (const p of plan.stages) {
      if (selected && !selected.has(p.stage.name)) continue;
      const k = `${p.stage.name}\0${p.key}`;
      let inst = byKey.get(k);
      if (!inst) {
        const id = plans.length === 1 ? p.stage.name : `${p.stage.name}@${p.key.slice(0, shortLen)}`;
        inst = {
          id,
          planned: p,
          plan,
          users: [],
          needs: Object.fromEntries(p.stage.needs.map((n) => [n, idOf.get(n) as string])),
        };
        byKey.set(k, inst);
        out.push(inst);
      }
      inst.users.push(i);
      idOf.set(p.stage.name, inst.id);
    }
  });
  return { instances: out, withoutSharing };
}

/** 8 hex digits name a key unless two keys of one stage start alike. */
function shortestUniqueKeyLength(plans: readonly Plan[]): number {
  for (let n = 8; n < 16; n += 2) {
    const seen = new Map<string, string>();
    let clash = false;
    for (const plan of plans) {
      for (const p of plan.stages) {
        const id = `${p.stage.name}@${p.key.slice(0, n)}`;
        if (seen.has(id) && seen.get(id) !== p.key) clash = true;
        seen.set(id, p.key);
      }
    }
    if (!clash) return n;
  }
  return 16;
}
