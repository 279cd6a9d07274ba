// sweep.html and its charts: only the swept values, the best finished variant marked, links that
// open from disk, one point per finished variant and metric in each chart.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderSvg } from '../src/render/charts.js';
import { sweepChartSpec, type SweepPoint } from '../src/sweep/chart.js';
import { renderSweepHtml, type SweepPageRow } from '../src/sweep/page-html.js';

const row = (index: number, lr: string, test: number | null, extra: Partial<SweepPageRow> = {}): SweepPageRow => ({
  index,
  name: `lr=${lr}`,
  values: { lr },
  bestValAccuracy: test === null ? null : test - 0.01,
  testAccuracy: test,
  minutes: 1.25,
  shared: ['data', 'model'],
  report: `variants/lr=${lr}/report.html`,
  complete: test !== null,
  ...extra,
});

test('the page lists the variants with only the swept values, marks the best and links each report', () => {
  const html = renderSweepHtml({
    pipeline: 'p',
    generatedAt: 'now',
    settings: [{ short: 'lr', setting: 'train.optimizer.lr' }],
    rows: [row(0, '0.001', 0.5), row(1, '0.002', 0.625), row(2, '0.004', null, { report: undefined, shared: [] })],
    charts: [{ title: 'Accuracy against train.optimizer.lr', file: 'sweep/accuracy-lr.svg' }],
    stageRuns: { instances: 7, withoutSharing: 12 },
  });
  assert.match(
    html,
    /<th title="train\.optimizer\.lr">lr<\/th><th>best val acc<\/th>/,
    'one column per swept setting, then the results',
  );
  const rows = [...html.matchAll(/<tr( class="[^"]*")?><td class="n">(\d)<\/td>/g)].map((m) => [
    Number(m[2]),
    m[1] ?? '',
  ]);
  assert.deepEqual(rows, [
    [0, ''],
    [1, ' class="best"'],
    [2, ' class="incomplete"'],
  ]);
  assert.ok(html.includes('<a href="variants/lr%3D0.002/report.html">report</a>'));
  assert.match(html, /<td class="n">62\.50%<\/td>/);
  assert.match(html, /<td>data, model<\/td>/);
  assert.match(html, /no report<\/span> <span class="muted">\(not finished\)/);
  assert.match(html, /7 stage runs for the whole sweep instead of 12 without sharing \(5 saved\)/);
  assert.ok(html.includes('<img src="sweep/accuracy-lr.svg"'));
  assert.doesNotMatch(html, /<script/);
  assert.throws(
    () =>
      renderSweepHtml({
        pipeline: 'p',
        generatedAt: '',
        settings: [],
        rows: [row(0, 'x', 0.1, { report: '../elsewhere.html' })],
        charts: [],
        stageRuns: { instances: 1, withoutSharing: 1 },
      }),
    /relative/,
  );
});

test('a chart per swept setting: a point per variant and metric, log axis for values a decade apart', async () => {
  const points: SweepPoint[] = [0.001, 0.01, 0.1].flatMap((x, i) => [
    { x, y: 0.4 + i / 10, series: 'best validation', variant: `lr=${x}` },
    { x, y: 0.38 + i / 10, series: 'test', variant: `lr=${x}` },
  ]);
  const spec = sweepChartSpec('train.optimizer.lr', points) as unknown as {
    encoding: { x: { type: string; scale: { type?: string } } };
  };
  assert.equal(spec.encoding.x.type, 'quantitative');
  assert.equal(spec.encoding.x.scale.type, 'log');
  const svg = await renderSvg(sweepChartSpec('train.optimizer.lr', points));
  const marks = [...svg.matchAll(/aria-roledescription="point" transform="translate\(([-\d.e]+),([-\d.e]+)\)"/g)].map(
    (m) => [Number(m[1]), Number(m[2])],
  );
  assert.equal(marks.length, 6);
  // Equal steps on a log axis: 0.001 → 0.01 → 0.1 are equally spaced.
  const xs = [...new Set(marks.map((m) => Math.round(m[0])))].sort((a, b) => a - b);
  assert.equal(xs.length, 3);
  assert.ok(Math.abs(xs[1] - xs[0] - (xs[2] - xs[1])) <= 1, `evenly spaced: ${xs}`);
  const named = sweepChartSpec('model.kind', [
    { x: 'small', y: 0.5, series: 'test', variant: 'a' },
    { x: 'big', y: 0.6, series: 'test', variant: 'b' },
  ]) as unknown as { encoding: { x: { type: string; sort: string[] } } };
  assert.equal(named.encoding.x.type, 'ordinal');
  assert.deepEqual(named.encoding.x.sort, ['small', 'big'], 'in the order the sweep lists them');
});
