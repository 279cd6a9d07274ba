// Accuracy against one swept setting, as a Vega-Lite spec rendered like the plots stage's charts
// (render/charts.ts). Every finished variant is a point; where other settings were swept too, the
// points at one value are those variants side by side.
import type { TopLevelSpec } from 'vega-lite';

export interface SweepPoint {
  /** The swept setting's value. */
  x: number | string;
  y: number;
  /** "best validation" or "test". */
  series: string;
  variant: string;
}

export function sweepChartSpec(
  setting: string,
  points: SweepPoint[],
  size = { width: 360, height: 240 },
): TopLevelSpec {
  const xs = points.map((p) => p.x);
  const numeric = xs.every((x) => typeof x === 'number');
  const positive = numeric && xs.every((x) => (x as number) > 0);
  const span = positive ? Math.max(...(xs as number[])) / Math.min(...(xs as number[])) : 1;
  const distinct = [...new Set(xs.map(String))];
  const x = numeric
    ? {
        field: 'x',
        type: 'quantitative' as const,
        title: setting,
        // Learning rates and the like are tried on a log grid.
        // Padding keeps the first and last values' points off the chart's edges.
        scale: span >= 10 ? { type: 'log' as const, padding: 24 } : { zero: false, nice: false, padding: 24 },
        axis: distinct.length <= 8 ? { values: [...new Set(xs as number[])].sort((a, b) => a - b) } : {},
      }
    : { field: 'x', type: 'ordinal' as const, title: setting, sort: distinct };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: `Accuracy against ${setting}`,
    width: size.width,
    height: size.height,
    background: 'white',
    data: { values: points },
    mark: { type: 'point', filled: true, size: 70, opacity: 0.85 },
    encoding: {
      x,
      y: { field: 'y', type: 'quantitative', title: 'accuracy', axis: { format: '~%' }, scale: { zero: false } },
      color: { field: 'series', type: 'nominal', title: null, sort: ['best validation', 'test'] },
      tooltip: [
        { field: 'variant', type: 'nominal' },
        { field: 'y', type: 'quantitative', format: '.2%' },
      ],
    },
  };
}
