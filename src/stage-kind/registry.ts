// A registry of stage kinds: what config/ validates against and the runner looks kinds up in.
// Which kinds exist is said in one place, src/kinds/index.ts (plus TFPIPE_PLUGINS).
import type { StageKind } from './types.js';

/** A kind of any settings type (method parameters are bivariant, so every StageKind<S> fits). */
export type AnyKind = StageKind<never>;

export class KindRegistry {
  private readonly kinds = new Map<string, AnyKind>();
  constructor(kinds: AnyKind[]) {
    for (const k of kinds) this.register(k);
  }
  register(kind: AnyKind): void {
    if (this.kinds.has(kind.kind)) throw new Error(`stage kind "${kind.kind}" is registered twice`);
    this.kinds.set(kind.kind, kind);
  }
  get(name: string): AnyKind | undefined {
    return this.kinds.get(name);
  }
  names(): string[] {
    return [...this.kinds.keys()];
  }
  all(): AnyKind[] {
    return [...this.kinds.values()];
  }
}
