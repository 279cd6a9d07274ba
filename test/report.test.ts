import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import sharp from 'sharp';
import { escapeHtml, renderReportHtml, type ReportData } from '../src/render/report-html.js';
import { stage as report, writePipelineReport } from '../src/kinds/report.js';
import { KindRegistry } from '../src/stage-kind/registry.js';
import { loadRegistry } from '../src/kinds/index.js';
import type { ReportSettings } from '../src/kinds/settings.js';
import type { JsonObject, StageContext, UpstreamArtefacts } from '../src/stage-kind/types.js';
import { picture } from './fixtures/picture-kind.js';
import { stageKinds as testKinds } from './fixtures/kinds.js';
import { silentReporter, tempProject } from './helpers.js';
import { commandPath } from '../harness/system.js';
import { loadPipeline } from '../src/config/load.js';
import { runPipeline } from '../src/sweep/run.js';

// Debian's chromium wherever the PATH has it, as .ci/run looks for it.
const CHROMIUM = commandPath('chromium');
const classes = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

async function png(path: string, w: number, h: number, rgb: [number, number, number]): Promise<void> {
  await sharp({ create: { width: w, height: h, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
    .png()
    .toFile(path);
}

const kinds = new KindRegistry([...(await loadRegistry({})).all(), picture]);

/** An upstream stage as the runner hands it over, with what its kind declares it writes. */
function upstream(
  root: string,
  name: string,
  kind: string,
  settings: JsonObject,
  result: JsonObject,
): UpstreamArtefacts {
  const dir = join(root, 'stages', name);
  mkdirSync(dir, { recursive: true });
  return { name, kind, key: `${kind}-key-0123456789abcdef`, dir, settings, result, writes: kinds.get(kind)?.writes };
}

/** Small synthetic artefacts of every built-in upstream kind, and of a test-only picture kind. */
async function buildUpstreams(root: string): Promise<Record<string, UpstreamArtefacts>> {
  const data = upstream(root, 'cifar10', 'cifar10', { val_fraction: 0.1 }, { train: 45000 });
  await png(join(data.dir, 'samples.png'), 40, 30, [200, 10, 10]);
  const aug = upstream(root, 'augmentation', 'augmentation', { ops: [{ op: 'hflip', p: 0.5 }] }, {});
  await png(join(aug.dir, 'preview.png'), 30, 30, [10, 200, 10]);
  await png(join(aug.dir, 'patches.png'), 30, 30, [10, 10, 200]);
  const train = upstream(root, 'train', 'train', { epochs: 3, lr: 0.001 }, { best_epoch: 2, best_val_accuracy: 0.5 });
  writeFileSync(
    join(train.dir, 'metrics.jsonl'),
    `${[1, 2, 3]
      .map((e) =>
        JSON.stringify({
          epoch: e,
          train_loss: 2 / e,
          train_accuracy: 0.2 * e,
          val_loss: 2 / e,
          val_accuracy: [0.3, 0.5, 0.45][e - 1],
          lr: 0.001,
          images_per_second: 900,
          seconds: 60,
          elapsed_seconds: 60 * e,
        }),
      )
      .join('\n')}\n`,
  );
  const plots = upstream(root, 'curves', 'plots', { width: 480, scale: 2 }, {});
  await png(join(plots.dir, 'accuracy.png'), 48, 28, [0, 0, 0]);
  writeFileSync(
    join(plots.dir, 'loss.svg'),
    '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="red"/></svg>',
  );
  const evaluate = upstream(root, 'evaluate', 'evaluate', {}, { test_accuracy: 0.61 });
  writeFileSync(
    join(evaluate.dir, 'metrics.json'),
    JSON.stringify({
      test_accuracy: 0.6123,
      per_class_accuracy: Object.fromEntries(classes.map((c, i) => [c, 0.5 + i / 50])),
      confusion: classes.map((_, i) => classes.map((_, j) => (i === j ? 60 : 4))),
    }),
  );
  await png(join(evaluate.dir, 'predictions.png'), 20, 20, [50, 50, 50]);
  await png(join(evaluate.dir, 'confusion.png'), 20, 20, [90, 90, 90]);
  const rollout = upstream(
    root,
    'rollout <x>',
    'attention_rollout',
    { method: 'abnar_zuidema' },
    { images: 2, misclassified: 1 },
  );
  await png(join(rollout.dir, 'rollout.png'), 36, 12, [250, 250, 0]);
  writeFileSync(
    join(rollout.dir, 'meta.json'),
    JSON.stringify({
      method: 'abnar_zuidema',
      head_fusion: 'mean',
      discard_ratio: 0.9,
      upsample: 'bicubic',
      indices: [4, 9],
      misclassified: [false, true],
    }),
  );
  const squares = upstream(root, 'squares', 'picture', {}, {});
  await png(join(squares.dir, 'square.png'), 16, 16, [0, 120, 0]);
  return Object.fromEntries([data, aug, train, plots, evaluate, rollout, squares].map((u) => [u.name, u]));
}

function context(
  root: string,
  inputs: Record<string, UpstreamArtefacts>,
  settings: ReportSettings,
): StageContext<ReportSettings> {
  const outDir = join(root, 'stages', 'report');
  mkdirSync(outDir, { recursive: true });
  return {
    pipeline: 'demo <pipe>',
    name: 'report',
    kind: 'report',
    key: 'rk',
    settings,
    seed: 0,
    runtime: { backend: 'cpu', threads: 1 },
    outDir,
    inputs,
    pipelineDir: root,
    cacheDir: join(root, '.cache'),
    resolveInput: (p: string) => p,
    progress: () => {},
    log: () => {},
    signal: new AbortController().signal,
  };
}

const defaults: ReportSettings = { title: '', reference_accuracy: 0.6455, metrics_table: true };

interface PageCheck {
  images: { src: string; naturalWidth: number }[];
  text: string;
  errors: string[];
  requests: string[];
}

async function openInChromium(file: string): Promise<PageCheck> {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('requestfailed', (r) => errors.push(`failed: ${r.url()}`));
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    const images = await page.$$eval('img', (imgs) =>
      imgs.map((i) => ({
        src: (i as HTMLImageElement).currentSrc,
        naturalWidth: (i as HTMLImageElement).naturalWidth,
      })),
    );
    // biome-ignore lint/performance/useDomNodeTextContent: playwright's page API, not a DOM node; the test reads the visible text
    const text = await page.innerText('body');
    return { images, text, errors, requests };
  } finally {
    await browser.close();
  }
}

test('renderReportHtml escapes text and rejects image paths that leave the folder', () => {
  const data: ReportData = {
    title: '<script>alert(1)</script>',
    pipeline: 'p',
    generatedAt: 'now',
    stages: [],
    referenceAccuracy: null,
    sections: [{ id: 'data', title: 'Data', order: 10, notes: ['a & b'], images: [{ file: 'x y.png', title: '"q"' }] }],
  };
  const html = renderReportHtml(data);
  assert.ok(!html.includes('<script>'));
  assert.ok(html.includes('&lt;script&gt;'));
  assert.ok(html.includes('src="x%20y.png"'));
  assert.ok(html.includes('a &amp; b'));
  assert.equal(escapeHtml(`'"`), '&#39;&quot;');
  for (const bad of ['../x.png', '/etc/x.png', 'http://example.com/x.png', 'a/../../x.png']) {
    assert.throws(
      () => renderReportHtml({ ...data, sections: [{ ...data.sections[0], images: [{ file: bad, title: 't' }] }] }),
      /relative/,
    );
  }
});

test('report stage copies every upstream picture and records the data model', async () => {
  const root = mkdtempSync(join(tmpdir(), 'tfpipe-report-'));
  try {
    const ctx = context(root, await buildUpstreams(root), defaults);
    const result = await report.run(ctx);
    assert.equal(result.images, 9);
    assert.equal(result.test_accuracy, 0.6123);
    const files = readdirSync(ctx.outDir).sort();
    for (const f of [
      'cifar10-samples.png',
      'augmentation-preview.png',
      'augmentation-patches.png',
      'curves-accuracy.png',
      'curves-loss.svg',
      'evaluate-predictions.png',
      'evaluate-confusion.png',
      'rollout__x_-rollout.png',
      'squares-square.png',
      'index.html',
      'report.json',
    ]) {
      assert.ok(files.includes(f), `missing ${f} in ${files.join(', ')}`);
    }
    const html = readFileSync(join(ctx.outDir, 'index.html'), 'utf8');
    assert.ok(html.includes('61.23%'), 'test accuracy');
    assert.ok(html.includes('64.55%'), 'reference accuracy');
    assert.ok(html.includes('demo &lt;pipe&gt;'));
    assert.ok(!html.includes('<base'), 'the stage page needs no base');
    // Charts are rasterised at 2 pixels per CSS pixel (the plots default) and shown at CSS size.
    assert.ok(html.includes('<img src="curves-accuracy.png" alt="Accuracy per epoch" width="24">'));
    assert.ok(!/(src|href)="(https?:)?\/\//.test(html), 'no network references');
    // Without the table setting the metrics disappear but the rest stays.
    const ctx2 = context(join(root, 'second'), ctx.inputs, {
      ...defaults,
      metrics_table: false,
      reference_accuracy: null,
    });
    await report.run(ctx2);
    const html2 = readFileSync(join(ctx2.outDir, 'index.html'), 'utf8');
    assert.ok(!html2.includes('Training metrics'));
    assert.ok(!html2.includes('reference report'));
    assert.ok(html.includes('Training metrics'));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('sections follow the order the kinds declare; a kind the report never names shows its picture', async () => {
  const root = mkdtempSync(join(tmpdir(), 'tfpipe-report-'));
  try {
    const ctx = context(root, await buildUpstreams(root), defaults);
    await report.run(ctx);
    const html = readFileSync(join(ctx.outDir, 'index.html'), 'utf8');
    const ids = [...html.matchAll(/<section id="([^"]+)">/g)].map((m) => m[1]);
    assert.deepEqual(ids, [
      'evaluation',
      'data',
      'augmentation',
      'metrics',
      'plots',
      'predictions',
      'rollout',
      'squares',
      'stages',
    ]);
    assert.match(
      html,
      /<section id="squares"><h2>Squares<\/h2><div class="figs"><figure><img src="squares-square.png" alt="A square"><figcaption><b>A square<\/b> – drawn by a test-only kind<\/figcaption><\/figure><\/div><\/section>/,
    );
    assert.match(html, /<h2>Evaluation <span class="muted">\(evaluate\)<\/span><\/h2>/);
    assert.match(
      html,
      /<h2>Training metrics <span class="muted">\(train\)<\/span><\/h2><p>Best validation accuracy 50\.00% at epoch 2/,
    );
    // Without the declaration the same files are not shown: the report knows no kind by name.
    const undeclared = Object.fromEntries(
      Object.entries(ctx.inputs).map(([n, u]) => [n, n === 'squares' ? { ...u, writes: undefined } : u]),
    );
    const ctx2 = context(join(root, 'undeclared'), undeclared, defaults);
    await report.run(ctx2);
    assert.ok(!readFileSync(join(ctx2.outDir, 'index.html'), 'utf8').includes('square.png'));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a train stage that averaged its weights says so in the metrics section; one that did not, nothing', async () => {
  const root = mkdtempSync(join(tmpdir(), 'tfpipe-report-'));
  try {
    const inputs = await buildUpstreams(root);
    const page = async (dir: string, result: JsonObject) => {
      const ctx = context(join(root, dir), { ...inputs, train: { ...inputs.train, result } }, defaults);
      await report.run(ctx);
      return readFileSync(join(ctx.outDir, 'index.html'), 'utf8');
    };
    const ema = { decay: 0.999, warmup: true, every_steps: 1 };
    assert.match(
      await page('ema', { ...inputs.train.result, ema }),
      /<h2>Training metrics <span class="muted">\(train\)<\/span><\/h2><p>train: validation accuracy and loss, best\/ and last\/ are of an EMA of the weights \(decay 0\.999, with warm-up\)/,
    );
    assert.doesNotMatch(await page('plain', { ...inputs.train.result, ema: null }), /EMA/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('through the runner, a test-only picture kind upstream of report lands on the page', async () => {
  const p = tempProject();
  const file = p.write(
    'pictures.yaml',
    `name: pictures
stages:
  a: { kind: emit, value: 1 }
  square: { kind: picture, needs: [a], colour: '#c62828' }
  report: { kind: report, needs: [square, a] }
`,
  );
  const registry = new KindRegistry([...testKinds, picture, report]);
  const summary = await runPipeline(loadPipeline(file, registry), registry, {
    reporter: silentReporter(),
    outputs: p.outputs,
  });
  assert.deepEqual(
    summary.stages.map((s) => s.state),
    ['ran', 'ran', 'ran'],
  );
  const dir = summary.stages.find((s) => s.name === 'report')!.dir;
  const html = readFileSync(join(dir, 'index.html'), 'utf8');
  assert.match(html, /<img src="square-square.png" alt="A square">/);
  const copied = await sharp(join(dir, 'square-square.png')).raw().toBuffer({ resolveWithObject: true });
  assert.equal(copied.info.width, 24, 'the schema default size');
  assert.deepEqual([...copied.data.subarray(0, 3)], [0xc6, 0x28, 0x28]);
  assert.match(readFileSync(join(p.outputs, 'pictures', 'report.html'), 'utf8'), /square-square\.png/);
});

test('writePipelineReport points into the report stage folder and lists the run', async () => {
  const root = mkdtempSync(join(tmpdir(), 'tfpipe-report-'));
  try {
    const ctx = context(root, await buildUpstreams(root), defaults);
    await report.run(ctx);
    const out = await writePipelineReport(root, ctx.outDir, {
      startedAt: '2026-01-01T00:00:00Z',
      backend: 'wasm',
      stages: [
        { name: 'train', kind: 'train', state: 'cached', key: 'abcdef0123456789', seconds: 0.1 },
        { name: 'report', kind: 'report', state: 'ran', key: 'fedcba9876543210', seconds: 1.5 },
      ],
    });
    assert.equal(out, join(root, 'report.html'));
    const html = readFileSync(out, 'utf8');
    assert.ok(html.includes('<base href="stages/report/">'));
    assert.ok(html.includes('This run'));
    assert.match(html, /<td class="state">cached<\/td>/);
    // The runner's publish hook writes the same page from a full run summary.
    rmSync(out);
    await report.publish!(ctx.outDir, root, {
      pipeline: 'demo',
      startedAt: '2026-01-02T00:00:00Z',
      stages: [
        {
          name: 'evaluate',
          kind: 'evaluate',
          state: 'failed',
          key: 'k1',
          seconds: 2,
          dir: '',
          error: 'out of <memory>',
        },
      ],
    });
    const published = readFileSync(out, 'utf8');
    assert.ok(published.includes('<base href="stages/report/">'));
    assert.match(published, /<td class="state">failed<\/td>/);
    assert.ok(published.includes('out of &lt;memory&gt;'));
    await assert.rejects(
      writePipelineReport(root, join(root, 'stages', 'train'), { startedAt: 'x', stages: [] }),
      /report\.json/,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('both pages open from disk in headless Chromium: every image decodes, no errors, no network', {
  skip: CHROMIUM ? false : 'chromium is not on the PATH (apt-get install chromium; .ci/run does)',
  timeout: 120_000,
}, async () => {
  const root = mkdtempSync(join(tmpdir(), 'tfpipe-report-'));
  try {
    const ctx = context(root, await buildUpstreams(root), defaults);
    await report.run(ctx);
    const pipelinePage = await writePipelineReport(root, ctx.outDir, {
      startedAt: '2026-01-01T00:00:00Z',
      stages: [{ name: 'report', kind: 'report', state: 'ran', key: 'k', seconds: 1 }],
    });
    for (const file of [join(ctx.outDir, 'index.html'), pipelinePage]) {
      const page = await openInChromium(file);
      assert.deepEqual(page.errors, [], `${file}: console errors`);
      assert.equal(page.images.length, 9, `${file}: images`);
      for (const img of page.images) {
        assert.ok(img.naturalWidth > 0, `${img.src} did not decode`);
        assert.ok(
          img.src.startsWith(`${pathToFileURL(ctx.outDir).href}/`),
          `${img.src} resolves outside the report folder`,
        );
      }
      assert.ok(
        page.requests.every((u) => u.startsWith('file://')),
        `network requests: ${page.requests.join(', ')}`,
      );
      assert.match(page.text, /Test accuracy 61\.23%/);
      assert.match(page.text, /airplane/);
      assert.match(page.text, /Method abnar_zuidema, head fusion mean, discard ratio 0\.9/);
      assert.match(page.text, /Squares\s+A square – drawn by a test-only kind/);
    }
    const run = await openInChromium(pipelinePage);
    assert.match(run.text, /This run/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
