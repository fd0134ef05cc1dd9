// Where web developers are (issue 11): the packed package installed into an empty project, its
// declaration files compiled strictly, Deno and Bun running the CPU suite with no flags, and a
// page bundled by Vite (production build) and by esbuild, run in headless Chromium against the
// float64 reference: cross-origin isolated (workers) and not, under a CSP without
// 'wasm-unsafe-eval', and on WebGPU through SwiftShader. One install, one build of each bundle,
// one browser for everything.
import { copyFileSync, cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUITE } from '../dist/testing/index.js';
import { type SharedBrowser, browserSkipReason, launchBrowser } from './web/browser.js';
import { type Consumer, bin, installConsumer, must, readJson, repo, run } from './web/consumer.js';
import { decodePng } from './web/png.js';
import { ISOLATION_HEADERS, STRICT_CSP, type StaticServer, serveStatic } from './web/server.js';

interface PageReport {
  error?: string;
  warmupError?: string;
  passed: number;
  failed: number;
  unsupported: number;
  failures: string[];
  stats: Array<{ backend: string; tier: string; threads: number; fallback?: string }>;
  backends: Array<{ name: string; available: boolean; detail: string }>;
  crossOriginIsolated: boolean;
}

const browserSkip = browserSkipReason();
if (browserSkip) console.warn(`\n!!! SKIPPING the browser tests: ${browserSkip}\n`);

let consumer: Consumer;
beforeAll(async () => {
  consumer = await installConsumer();
});
afterAll(() => consumer?.remove());

describe('the packed package', () => {
  it('holds dist/, the sources its maps name, and a prepack build', () => {
    const packed = new Set(consumer.packed);
    for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/ops/cpu-worker.js', 'dist/ops/cpu-worker-node.js', 'dist/core/platform/browser.js', 'src/index.ts', 'package.json', 'README.md']) {
      expect(packed.has(f), f).toBe(true);
    }
    expect([...packed].filter((f) => f.startsWith('test/') || f.startsWith('node_modules/'))).toEqual([]);
    // every source map points at files the package holds
    const missing: string[] = [];
    for (const f of packed) {
      if (!f.endsWith('.map')) continue;
      const map = readJson(join(consumer.dir, 'node_modules', 'fusedattn', f)) as { sources: string[] };
      for (const s of map.sources) {
        const target = join(f, '..', s);
        if (!packed.has(target)) missing.push(`${f} -> ${target}`);
      }
    }
    expect(missing.slice(0, 5)).toEqual([]);
    const pkg = readJson(join(repo, 'package.json')) as Record<string, Record<string, unknown>>;
    expect(pkg.scripts.prepack).toMatch(/build/);
    expect(pkg.sideEffects).toBe(false);
    expect(pkg.dependencies.webgpu).toBeUndefined();
    expect(pkg.peerDependenciesMeta.webgpu).toEqual({ optional: true });
    // browsers never install Dawn
    expect(existsSync(join(consumer.dir, 'node_modules', 'webgpu'))).toBe(false);
  });

  it('has no top-level await and no node: import in what a browser bundle reaches', () => {
    const dist = join(consumer.dir, 'node_modules', 'fusedattn', 'dist');
    const offenders: string[] = [];
    for (const f of consumer.packed.filter((p) => p.startsWith('dist/') && p.endsWith('.js') && !p.startsWith('dist/cli/'))) {
      const text = readFileSync(join(dist, '..', f), 'utf8');
      if (/^(?:export )?(?:const|let|var) [^=\n]*= await |^await /m.test(text)) offenders.push(`${f}: top-level await`);
      const nodeOnly = /node\.js$|node-fs\.js$|bun\.js$|deno\.js$|cpu-worker-node\.js$|npy-file\.js$|atomic-file\.js$/.test(f);
      if (!nodeOnly && /from 'node:|import\('node:/.test(text)) offenders.push(`${f}: node: import`);
    }
    expect(offenders).toEqual([]);
  });

  it('type-checks in a strict consumer with skipLibCheck: false (bundler and NodeNext resolution)', async () => {
    const main = [
      "import { attention, listBackends, Tensor, type AttentionResult, type RunStats } from 'fusedattn';",
      "import { loadModel, type ModelSource } from 'fusedattn/model';",
      "import { SUITE } from 'fusedattn/testing';",
      'export async function run(device?: GPUDevice): Promise<RunStats | undefined> {',
      '  const q = Tensor.fromData(new Float32Array(16), [1, 1, 4, 4]);',
      "  const r: AttentionResult = await attention(q, q, q, { causal: true, device, backend: 'auto' });",
      "  const source: ModelSource = new URL('https://example.invalid/model/');",
      '  void loadModel; void source; void SUITE.length; void (await listBackends());',
      '  return r.stats;',
      '}',
    ].join('\n');
    writeFileSync(join(consumer.dir, 'main.ts'), main);
    const base = { target: 'ES2022', strict: true, skipLibCheck: false, noEmit: true, types: [], lib: ['ES2022', 'DOM', 'DOM.Iterable'] };
    const configs = [['bundler', { module: 'ESNext', moduleResolution: 'Bundler' }], ['nodenext', { module: 'NodeNext', moduleResolution: 'NodeNext' }]] as const;
    // both at once: checking lib.dom.d.ts and @webgpu/types without skipLibCheck is most of the time
    const results = await Promise.all(configs.map(([name, options]) => {
      writeFileSync(join(consumer.dir, `tsconfig.${name}.json`), JSON.stringify({ compilerOptions: { ...base, ...options }, files: ['main.ts'] }));
      return run(process.execPath, [join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', `tsconfig.${name}.json`], consumer.dir);
    }));
    results.forEach((r, i) => {
      expect(`${r.stdout}${r.code ? r.stderr : ''}`, configs[i][0]).toBe('');
      expect(r.code).toBe(0);
    });
  });

  it('in Node without the optional peer "webgpu": the CPU works, WebGPU says what to install', async () => {
    const script = "import { attention, listBackends, Tensor } from 'fusedattn';\n" +
      'const x = Tensor.fromData(new Float32Array(64).fill(1), [1, 1, 8, 8]);\n' +
      "const r = await attention(x, x, x, { backend: 'cpu' });\n" +
      'console.log(JSON.stringify({ stats: r.stats, backends: await listBackends() }));\n';
    writeFileSync(join(consumer.dir, 'node-check.mjs'), script);
    const { stdout: out, stderr, code } = await run(process.execPath, ['node-check.mjs'], consumer.dir, { ...process.env, FUSEDATTN_WEBGPU_BACKEND: '' });
    expect(code, stderr).toBe(0);
    const { stats, backends } = JSON.parse(out) as { stats: PageReport['stats'][number]; backends: PageReport['backends'] };
    expect(stats.backend).toBe('cpu');
    const gpu = backends.find((b) => b.name === 'webgpu');
    expect(gpu?.available).toBe(false);
    expect(gpu?.detail).toMatch(/"webgpu".*npm install webgpu/);
  });
});

describe('Deno and Bun run the CPU suite without flags', () => {
  for (const runtime of ['deno', 'bun'] as const) {
    it(runtime, async () => {
      const args = runtime === 'deno' ? ['run', 'pages/runtime-main.mjs'] : ['pages/runtime-main.mjs'];
      // no TTY (execFile): Deno must not prompt for permissions, and without them it must not need any
      const r = await run(bin(runtime), args, consumer.dir, { ...process.env, NO_COLOR: '1' });
      const line = r.stdout.trim().split('\n').pop() ?? '';
      expect(r.code, `${runtime} exited ${r.code}: ${r.stderr.slice(-2000)}`).toBe(0);
      const report = JSON.parse(line) as { passed: number; failed: number; failures: string[]; threads: number; cpu: string };
      expect(report.failures).toEqual([]);
      expect(report.passed).toBe(SUITE.length);
      // Bun has worker_threads; Deno without --allow-read starts no worker from a local file and says so
      if (runtime === 'bun') expect(report.threads).toBeGreaterThan(1);
      else expect(report.cpu).toMatch(/single-threaded \(Deno starts workers from local files only with read access/);
    });
  }
});

describe.skipIf(browserSkip !== undefined)('in a browser (headless Chromium)', () => {
  let browser: SharedBrowser;
  const servers: StaticServer[] = [];
  const builds = { vite: '', esbuild: '', esbuildCopied: '', playground: '' };

  beforeAll(async () => {
    const pages = join(consumer.dir, 'pages');
    builds.vite = join(consumer.dir, 'out-vite');
    // a production build, no config file: what `vite build` does for a fresh project
    // esbuild's defaults for a browser bundle (platform browser, no config); esbuild emits no worker files
    builds.esbuild = join(consumer.dir, 'out-esbuild');
    builds.playground = join(consumer.dir, 'out-playground');
    const [, , , launched] = await Promise.all([
      must(process.execPath, [join(repo, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--config', join(repo, 'playground', 'vite.config.js'), '--outDir', builds.playground, '--emptyOutDir', '--logLevel', 'warn'], repo),
      must(process.execPath, [join(repo, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', join(pages, 'suite'), '--outDir', builds.vite, '--emptyOutDir', '--logLevel', 'warn'], consumer.dir),
      must(bin('esbuild'), [join(pages, 'suite', 'main.js'), '--bundle', '--format=esm', `--outfile=${join(builds.esbuild, 'main.js')}`, '--log-level=warning'], consumer.dir),
      launchBrowser(),
    ]);
    browser = launched;
    copyFileSync(join(pages, 'suite', 'index.html'), join(builds.esbuild, 'index.html'));
    // the README's one step for esbuild: copy the worker script next to the bundle
    builds.esbuildCopied = join(consumer.dir, 'out-esbuild-copied');
    cpSync(builds.esbuild, builds.esbuildCopied, { recursive: true });
    copyFileSync(join(consumer.dir, 'node_modules', 'fusedattn', 'dist', 'ops', 'cpu-worker.js'), join(builds.esbuildCopied, 'cpu-worker.js'));
    // a plain .mjs script of the playground (no declarations): typed here
    const { makeTinyModel } = (await import('../playground/make-model.mjs' as string)) as { makeTinyModel: (dir: string) => Promise<void> };
    await makeTinyModel(join(builds.playground, 'models', 'tiny'));
  });
  afterAll(async () => {
    await browser?.close();
    await Promise.all(servers.map((s) => s.close()));
  });

  async function runPage(root: string, headers: Record<string, string>, query = ''): Promise<PageReport> {
    const server = await serveStatic(root, headers);
    servers.push(server);
    const page = await browser.newPage();
    try {
      await page.goto(`${server.url}index.html${query}`);
      const report = (await page.evaluate('window.__report')) as PageReport;
      if (report.error || report.failed) console.error(browser.logs.slice(-20).join('\n'));
      expect(report.error).toBeUndefined();
      return report;
    } finally {
      await page.close();
    }
  }
  // a few cases of each kind (sizes that start the pool, GQA, TND, masks, float16) keep the pages quick
  const SUBSET = '0,5,7,10,20,25,28';
  const maxThreads = (r: PageReport) => Math.max(...r.stats.map((s) => s.threads));

  it('Vite production build, cross-origin isolated: the whole suite on the worker pool', async () => {
    const r = await runPage(builds.vite, ISOLATION_HEADERS);
    expect(r.crossOriginIsolated).toBe(true);
    expect(r.warmupError).toBeUndefined();
    expect(r.failures).toEqual([]);
    expect(r.passed).toBe(SUITE.length);
    expect(maxThreads(r)).toBeGreaterThan(1);
    expect(r.stats[0].tier).toMatch(/^wasm-/);
  });

  it('Vite build without COOP/COEP: single-threaded, and the result says why', async () => {
    const r = await runPage(builds.vite, {}, `?only=${SUBSET}`);
    expect(r.crossOriginIsolated).toBe(false);
    expect(r.failures).toEqual([]);
    expect(r.passed).toBe(SUBSET.split(',').length);
    expect(maxThreads(r)).toBe(1);
    expect(r.stats[0].fallback).toMatch(/SharedArrayBuffer/);
  });

  it("CSP without 'wasm-unsafe-eval': the scalar kernels, said in the result and listBackends()", async () => {
    const r = await runPage(builds.vite, { ...ISOLATION_HEADERS, ...STRICT_CSP }, `?only=${SUBSET}`);
    expect(r.failures).toEqual([]);
    expect(r.passed).toBe(SUBSET.split(',').length);
    expect(r.stats.every((s) => s.tier === 'scalar')).toBe(true);
    expect(r.stats[0].fallback).toMatch(/wasm-unsafe-eval/);
    expect(r.backends[0].detail).toMatch(/scalar/);
    expect(maxThreads(r)).toBeGreaterThan(1);
  });

  it('esbuild bundle (no worker file emitted): one DeviceError naming the script, then single-threaded results', async () => {
    const r = await runPage(builds.esbuild, ISOLATION_HEADERS, `?only=${SUBSET}`);
    expect(r.warmupError).toMatch(/^DeviceError: .*cpu-worker\.js.*HTTP 404/);
    expect(r.failures).toEqual([]);
    expect(r.passed).toBe(SUBSET.split(',').length);
    expect(maxThreads(r)).toBe(1);
    expect(r.stats[0].fallback).toMatch(/cpu-worker\.js/);
  });

  it('esbuild bundle with cpu-worker.js copied beside it: the worker pool', async () => {
    const r = await runPage(builds.esbuildCopied, ISOLATION_HEADERS, `?only=${SUBSET}`);
    expect(r.warmupError).toBeUndefined();
    expect(r.failures).toEqual([]);
    expect(maxThreads(r)).toBeGreaterThan(1);
  });

  it('WebGPU through SwiftShader (--enable-unsafe-webgpu)', async () => {
    // SwiftShader compiles every pipeline on the CPU: two cases (plain with LSE, TND with GQA)
    const GPU_CASES = '0,10';
    const r = await runPage(builds.vite, ISOLATION_HEADERS, `?backend=webgpu&only=${GPU_CASES}`);
    const gpu = r.backends.find((b) => b.name === 'webgpu');
    expect(gpu?.available, gpu?.detail).toBe(true);
    expect(r.failures).toEqual([]);
    expect(r.passed).toBe(2);
    expect(r.stats[0]).toMatchObject({ backend: 'webgpu', tier: 'portable' });
  });

  it("the playground's main flows: backends, a checked run, the timing chart, the heatmap, generation from served files", async () => {
    const server = await serveStatic(builds.playground, ISOLATION_HEADERS);
    servers.push(server);
    const page = await browser.newPage();
    await page.setViewport({ width: 1000, height: 1400 });
    try {
      await page.goto(`${server.url}index.html`);
      const flag = (name: string) => page.waitForFunction((n) => document.body.dataset[n], { timeout: 60_000 }, name).then(() => page.evaluate((n) => document.body.dataset[n], name));
      expect(await flag('backends')).toBe('ready');
      expect(await page.$eval('#backends', (e) => e.textContent)).toMatch(/cpu: \d+ worker threads/);
      await page.select('select[name=backend]', 'cpu');
      await page.click('#run');
      expect(await flag('run')).toBe('ok');
      expect(await page.$eval('#result', (e) => e.textContent)).toMatch(/on cpu \(wasm-.*threads?\); max error vs float64 reference/);
      await page.click('#time');
      expect(await flag('chart')).toBe('drawn');
      await page.click('#draw-heatmap');
      expect(await flag('heatmap')).toBe('drawn');
      await page.click('#generate');
      const tokens = await flag('tokens');
      // the same greedy tokens as the runner in Node from the same files
      const { loadModel, generate } = await import('../dist/model/index.js');
      const model = await loadModel(join(builds.playground, 'models', 'tiny'), { backend: 'cpu' });
      const expected = (await generate(model, [1, 5, 9, 14], { maxNewTokens: 8 })).tokens;
      model.dispose();
      expect(tokens).toBe(expected.join(','));
      // the weights were fetched by range requests
      expect(server.log.some((l) => /model\.safetensors bytes=\d+-\d+/.test(l))).toBe(true);

      // the screenshot, checked where the chart and the heatmap are
      const png = await page.screenshot({ type: 'png' });
      if (process.env.FUSEDATTN_PLAYGROUND_SCREENSHOT) writeFileSync(process.env.FUSEDATTN_PLAYGROUND_SCREENSHOT, png);
      const shot = decodePng(png);
      const box = async (sel: string) => (await (await page.$(sel))!.boundingBox())!;
      const colorsIn = (b: { x: number; y: number; width: number; height: number }) => {
        const seen = new Map<string, number>();
        for (let y = Math.ceil(b.y) + 1; y < b.y + b.height - 1; y += 2) {
          for (let x = Math.ceil(b.x) + 1; x < b.x + b.width - 1; x += 2) {
            const [r, g, bl] = shot.pixel(x, y);
            const key = `${r >> 4},${g >> 4},${bl >> 4}`;
            seen.set(key, (seen.get(key) ?? 0) + 1);
          }
        }
        return seen;
      };
      const chart = colorsIn(await box('#chart'));
      // the two bars: #1f77b4 (fused) and #ff7f0e (naive)
      expect(chart.get('1,7,11') ?? 0, 'fused bar').toBeGreaterThan(50);
      expect(chart.get('15,7,0') ?? 0, 'naive bar').toBeGreaterThan(50);
      const heat = colorsIn(await box('#heatmap'));
      // a causal map: white above the diagonal, many shades of blue below
      expect(heat.get('15,15,15') ?? 0).toBeGreaterThan(1000);
      expect([...heat.keys()].filter((k) => k.endsWith(',15') && k !== '15,15,15').length).toBeGreaterThan(8);
    } finally {
      await page.close();
    }
  });
});
