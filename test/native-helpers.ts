// What the native tests need to know before they register: is the addon built, must it be
// (TFPIPE_NATIVE_REQUIRED=1, set by .ci/run where a compiler is), and which ISA variants this
// architecture's build should hold (native/variants.conf), each with the reason it cannot run here.
// A test that cannot run is registered anyway and reports itself skipped, by name and reason.
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { nativeAvailability, nativeInfo } from '../src/ml/vit/native.js';
import { packageRoot } from '../src/ground/paths.js';

const { variantsFor } = (await import(pathToFileURL(join(packageRoot, 'native/build.mjs')).href)) as {
  variantsFor: () => { name: string }[];
};

/** CI builds the addon where a compiler is and must not let its tests skip. */
export const nativeRequired = process.env.TFPIPE_NATIVE_REQUIRED === '1';

const info = nativeInfo();

/** false when the addon loads; otherwise why not (the reason a skipped native test gives). */
export const noAddon: string | false = info ? false : `native addon unavailable: ${nativeAvailability().detail}`;

/** The variants native/variants.conf lists for this architecture, best first. */
export const expectedVariants: string[] = variantsFor().map((v) => v.name);

/** One entry per expected variant: run its tests, or skip them with the reason. */
export function isaCases(): { isa: string; skip: string | false }[] {
  return expectedVariants.map((isa) => {
    if (!info) return { isa, skip: noAddon };
    const v = info.variants.find((x) => x.name === isa);
    if (!v)
      return {
        isa,
        skip: `the ${isa} variant is not in this build (built: ${info.variants.map((x) => x.name).join(', ')})`,
      };
    if (!v.supported)
      return {
        isa,
        skip: `this CPU (${info.cpu}) cannot run the ${isa} variant (it needs ${v.requires}; it has ${info.features})`,
      };
    return { isa, skip: false };
  });
}

/** The largest absolute difference of a from b, relative to b's largest magnitude (at least 1e-3); Infinity when the lengths differ. */
export function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 1e-3;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  let m = a.length === b.length ? 0 : Infinity;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m / scale;
}
