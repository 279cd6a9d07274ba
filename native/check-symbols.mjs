// Every variant object (model-<isa>.o) must define its global symbols only inside namespace
// tfpipe::<isa>. A symbol outside it (an inline function or template instantiation from a shared
// header) is emitted by each variant with that variant's flags, and the linker keeps one copy for
// all of them: a baseline CPU could then run an AVX-512 copy and die with SIGILL. A mangled name
// that mentions tfpipe::<isa> anywhere (a function in it, a local lambda, a template instantiated
// with one of its types) is unique to the variant, so it cannot collide.
import { execFileSync } from 'node:child_process';

/** Global symbols of `object` that could be shared with other variants, or null when `nm` cannot run. */
export function foreignSymbols(object, isa, nm = process.env.NM || 'nm') {
  let out;
  try {
    out = execFileSync(nm, ['-g', '--defined-only', object], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return null;
  }
  const own = `6tfpipe${isa.length}${isa}`;
  return out
    .split('\n')
    .map((line) => line.trim().split(/\s+/).pop() ?? '')
    .filter((name) => name && !name.includes(own));
}
