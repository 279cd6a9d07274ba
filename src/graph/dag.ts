// Stages as a DAG: run order, cycles, and the part of the graph a command touches.

export interface GraphNode {
  name: string;
  needs: string[];
}

/** Nodes in dependency order (stable: file order among independent stages), or the cycle found. */
export function topoOrder<N extends GraphNode>(nodes: readonly N[]): { order: N[] } | { cycle: string[] } {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const state = new Map<string, 'visiting' | 'done'>();
  const order: N[] = [];
  const stack: string[] = [];
  const visit = (n: N): string[] | undefined => {
    const s = state.get(n.name);
    if (s === 'done') return undefined;
    if (s === 'visiting') return [...stack.slice(stack.indexOf(n.name)), n.name];
    state.set(n.name, 'visiting');
    stack.push(n.name);
    for (const dep of n.needs) {
      const d = byName.get(dep);
      if (!d) continue; // unknown needs are reported by validation
      const cycle = visit(d);
      if (cycle) return cycle;
    }
    stack.pop();
    state.set(n.name, 'done');
    order.push(n);
    return undefined;
  };
  for (const n of nodes) {
    const cycle = visit(n);
    if (cycle) return { cycle };
  }
  return { order };
}

/** The named stage and everything it needs, transitively. */
export function ancestorsAndSelf(nodes: readonly GraphNode[], name: string): Set<string> {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const out = new Set<string>();
  const walk = (n: string) => {
    if (out.has(n)) return;
    out.add(n);
    for (const d of byName.get(n)?.needs ?? []) walk(d);
  };
  walk(name);
  return out;
}

/** A node as drawn: a stage, or a sweep's stage instance with a note on the variants using it. */
export interface DrawnNode extends GraphNode {
  kind: string;
  note?: string;
}

/** Text drawing of the graph: one line per stage with what it needs. */
function renderText(nodes: readonly DrawnNode[]): string {
  return nodes
    .map(
      (n) =>
        `${n.name} (${n.kind})${n.needs.length ? `  <- ${n.needs.join(', ')}` : ''}${n.note ? `  [${n.note}]` : ''}`,
    )
    .join('\n');
}

function renderMermaid(nodes: readonly DrawnNode[]): string {
  const id = (s: string) => s.replace(/[^A-Za-z0-9_]/g, '_');
  const lines = ['flowchart TD'];
  for (const n of nodes)
    lines.push(
      `  ${id(n.name)}["${n.name}<br/><i>${n.kind}</i>${n.note ? `<br/>${n.note.replace(/"/g, '#quot;')}` : ''}"]`,
    );
  for (const n of nodes) for (const d of n.needs) lines.push(`  ${id(d)} --> ${id(n.name)}`);
  return lines.join('\n');
}

/** Graphviz: `tfpipe dag p.yaml --format dot | dot -Tsvg > dag.svg`. */
function renderDot(nodes: readonly DrawnNode[]): string {
  // Quoted IDs take any name; inside them only " and \ need escaping. \n in a label is a line break.
  const esc = (s: string) => s.replace(/[\\"]/g, (c) => `\\${c}`);
  const lines = ['digraph pipeline {', '  node [shape=box];'];
  for (const n of nodes)
    lines.push(`  "${esc(n.name)}" [label="${esc(n.name)}\\n(${esc(n.kind)})${n.note ? `\\n${esc(n.note)}` : ''}"];`);
  for (const n of nodes) for (const d of n.needs) lines.push(`  "${esc(d)}" -> "${esc(n.name)}";`);
  lines.push('}');
  return lines.join('\n');
}

export const DAG_FORMATS = ['text', 'mermaid', 'dot'] as const;
export type DagFormat = (typeof DAG_FORMATS)[number];

/** The graph as `tfpipe dag --format` draws it. */
export function renderGraph(nodes: readonly DrawnNode[], format: DagFormat): string {
  return { text: renderText, mermaid: renderMermaid, dot: renderDot }[format](nodes);
}
