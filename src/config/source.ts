// Parse YAML keeping the source positions, so every later problem can name file:line:column.
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import type { Problem } from '../ground/errors.js';

export interface YamlSource {
  file: string;
  doc: Document.Parsed;
  lines: LineCounter;
  /** Plain JS value of the document (undefined when it has syntax errors). */
  data: unknown;
}

function pos(src: { file: string; lines: LineCounter }, offset: number): string {
  const { line, col } = src.lines.linePos(offset);
  return `${src.file}:${line}:${col}`;
}

/** Parse text; returns the source and every syntax problem (duplicate keys included). */
export function parseYaml(file: string, text: string): { source: YamlSource; problems: Problem[] } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const problems: Problem[] = [];
  for (const err of [...doc.errors, ...doc.warnings]) {
    const where = pos({ file, lines }, err.pos[0]);
    const message =
      err.code === 'DUPLICATE_KEY'
        ? 'duplicate key (each key may appear once in a mapping)'
        : err.message.split('\n')[0];
    problems.push({ where, path: '', message });
  }
  let data: unknown;
  if (!doc.errors.length) {
    try {
      data = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      // The yaml library refuses aliases that expand exponentially ("billion laughs").
      let at = 0;
      visit(doc, {
        Alias(_, node) {
          at = node.range?.[0] ?? 0;
          return visit.BREAK;
        },
      });
      problems.push({
        where: pos({ file, lines }, at),
        path: '',
        message: `refusing this document: its aliases expand too much (${(err as Error).message}); write the values out`,
      });
    }
  }
  const source: YamlSource = { file, doc, lines, data };
  return { source, problems };
}

/**
 * The position of the node at `path` (or, with `key`, of the key naming its last segment),
 * falling back to the nearest ancestor that exists.
 */
export function locate(src: YamlSource, path: readonly (string | number)[], opts: { key?: boolean } = {}): string {
  let node: unknown = src.doc.contents;
  let best: number = rangeStart(node) ?? 0;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      if (last && opts.key) {
        best = rangeStart(pair.key) ?? best;
        break;
      }
      node = pair.value;
      best = rangeStart(node) ?? rangeStart(pair.key) ?? best;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) break;
      node = item;
      best = rangeStart(node) ?? best;
    } else {
      break;
    }
  }
  return pos(src, best);
}

function rangeStart(node: unknown): number | undefined {
  const r = (node as Node | null | undefined)?.range;
  return r ? r[0] : undefined;
}
