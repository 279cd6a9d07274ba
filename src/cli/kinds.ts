// tfpipe kinds [KIND] [--json]: the stage kinds, their settings and what they write.
import { didYouMean } from '../config/problems.js';
import { InputError } from '../ground/errors.js';
import { describeKind, type KindDoc, type SettingDoc } from '../stage-kind/describe.js';
import type { KindRegistry } from '../stage-kind/registry.js';

const WIDTH = 100;

function wrap(text: string, indent: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && indent + line.length + 1 + word.length > WIDTH) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.map((l) => ' '.repeat(indent) + l);
}

function settingLines(s: SettingDoc, indent: number): string[] {
  const pad = ' '.repeat(indent);
  const value = 'default' in s ? ` = ${JSON.stringify(s.default)}` : s.required ? ' (required)' : ' (optional)';
  const lines = [`${pad}${s.name}: ${s.type}${value}`, ...wrap(s.description, indent + 4)];
  for (const v of s.variants ?? []) {
    lines.push(`${pad}    - ${v.tag}`, ...wrap(v.description, indent + 8));
    for (const sub of v.settings) lines.push(...settingLines(sub, indent + 8));
  }
  return lines;
}

export function formatKind(d: KindDoc): string {
  const lines = wrap(`${d.kind} — ${d.description}`, 2).map((l, i) => (i === 0 ? l.trimStart() : l));
  if (d.details) lines.push(...wrap(d.details, 2));
  lines.push(`  needs stages of kind: ${d.requires.length ? d.requires.join(', ') : '(none required)'}`);
  const traits = [
    d.uses_tensorflow ? 'uses TensorFlow.js' : '',
    d.resumable ? 'resumes an interrupted run' : '',
  ].filter(Boolean);
  if (traits.length) lines.push(`  ${traits.join('; ')}`);
  lines.push('  settings:');
  if (d.settings.length === 0) lines.push('    none');
  for (const s of d.settings) lines.push(...settingLines(s, 4));
  const { files, pictures, sections } = d.writes;
  lines.push('  writes:');
  if (files.length === 0 && pictures.length === 0) lines.push('    nothing declared');
  const w = Math.max(0, ...files.map((f) => f.file.length), ...pictures.map((p) => p.file.length)) + 2;
  for (const f of files)
    lines.push(...wrap(f.description, 4 + w).map((l, i) => (i === 0 ? `    ${f.file.padEnd(w)}${l.trimStart()}` : l)));
  for (const p of pictures)
    lines.push(`    ${p.file.padEnd(w)}picture "${p.title}" in the report's "${p.section}" section`);
  const bare = sections.filter((s) => !pictures.some((p) => p.section === s.title));
  if (bare.length) lines.push(`  report: ${bare.map((s) => `"${s.title}" section`).join(', ')}`);
  return lines.join('\n');
}

/** Exit code 2 for a kind that is not registered. */
export function commandKinds(registry: KindRegistry, name: string | undefined, json: boolean): number {
  const kinds = name === undefined ? registry.all() : [registry.get(name)].filter((k) => k !== undefined);
  if (kinds.length === 0) {
    const hint = didYouMean(name ?? '', registry.names());
    // Thrown, not printed here: main's reportError gives it the exit code and, with --json, the document.
    throw new InputError(
      `no stage kind "${name}"${hint ? ` (did you mean "${hint}"?)` : ''}; kinds: ${registry.names().join(', ')}`,
    );
  }
  const docs = kinds.map(describeKind);
  process.stdout.write(
    json ? `${JSON.stringify({ kinds: docs }, null, 2)}\n` : `${docs.map(formatKind).join('\n\n')}\n`,
  );
  return 0;
}
