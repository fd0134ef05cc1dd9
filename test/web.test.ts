// Where web developers are (issue 11): the packed package installed into an empty project, its
// declaration files compiled strictly, Deno and Bun running the CPU suite with no flags (and Bun
// the WebGPU cases through Dawn), and a page built by Vite, webpack, esbuild and Rollup with no
// configuration and by none (the README's import-map snippet as written), run in headless Chromium
// against the float64 reference: cross-origin isolated (workers) and not, under a CSP without
// 'wasm-unsafe-eval' or blob: workers, and on WebGPU through SwiftShader. One install, one build
// of each bundle, one browser for everything.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
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
  stats: Array<{ backend: string; tier: string; threads: number; workerScript?: string; fallback?: string }>;
  backends: Array<{ name: string; available: boolean; detail: string }>;
  crossOriginIsolated: boolean;
  snippet?: string;
}

// everything here starts from `npm pack` + `npm install` into an empty project: a machine with only
// node (the lent GPU machine) cannot, and skips the file loudly
const npmSkip = spawnSync('npm', ['--version'], { encoding: 'utf8' }).status === 0 ? undefined : 'npm is not on PATH (a machine with Node.js alone): the packaging, runtime and browser tests need it';
if (npmSkip) console.warn(`\n!!! SKIPPING the web tests: ${npmSkip}\n`);
const browserSkip = npmSkip ?? browserSkipReason();
if (browserSkip && !npmSkip) console.warn(`\n!!! SKIPPING the browser tests: ${browserSkip}\n`);

let consumer: Consumer;
let bundled: Promise<Builds> | undefined;
beforeAll(async () => {
  if (npmSkip) return;
  consumer = await installConsumer();
  // the bundlers start now, beside the package, Deno and Bun tests (mostly one-core work)
  if (!browserSkip) {
    bundled = buildPages(consumer);
    bundled.catch(() => undefined); // reported by the browser tests' beforeAll
  }
});
afterAll(() => consumer?.remove());

describe.skipIf(npmSkip !== undefined)('the packed package', () => {
  it('holds dist/, the sources its maps name, and a prepack build', () => {
    const packed = new Set(consumer.packed);
    for (const f of [
      'dist/index.js', 'dist/index.d.ts', 'dist/ops/cpu-worker.js', 'dist/ops/cpu-worker-node.js', 'dist/ops/cpu-worker-source.js', 'dist/core/platform/browser.js',
      'dist/browser/index.js', 'dist/browser/model.js', 'dist/browser/testing.js', 'dist/browser/cpu-worker.js', 'src/index.ts', 'package.json', 'README.md',
    ]) {
      expect(packed.has(f), f).toBe(true);
    }
    expect([...packed].filter((f) => f.startsWith('test/') || f.startsWith('node_modules/'))).toEqual([]);
    // every source map points at files the package holds
    const missing: string[] = [];
    for (const f of packed) {
      if (!f.endsWith('.map')) continue;
      const map = readJson(join(consumer.dir, 'node_modules', 'fusedattn', f)) as { sources: string[]; sourcesContent?: Array<string | null> };
      map.sources.forEach((s, i) => {
        const target = join(f, '..', s);
        // the browser build embeds the text of what the package does not ship (the tokenizer)
        if (!packed.has(target) && typeof map.sourcesContent?.[i] !== 'string') missing.push(`${f} -> ${target}`);
      });
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
      const nodeOnly = /node\.js$|node-fs\.js$|bun\.js$|deno\.js$|cpu-worker-node\.js$|npy-file\.js$|atomic-file\.js$/.test(f); // deno.js: cpu-spawn.deno.js too
      if (!nodeOnly && /from 'node:|import\('node:/.test(text)) offenders.push(`${f}: node: import`);
    }
    expect(offenders).toEqual([]);
  });

  it('the browser build imports nothing by bare name (no import map needed beyond the entry points)', () => {
    const bare: string[] = [];
    for (const f of consumer.packed.filter((p) => p.startsWith('dist/browser/') && p.endsWith('.js'))) {
      const text = readFileSync(join(consumer.dir, 'node_modules', 'fusedattn', f), 'utf8');
      // static `from "x"`, `import "x"` and dynamic `import("x")` (not the WASM encoder's `.import(` nor its WAT text `(import "env"`)
      for (const m of text.matchAll(/(?:\bfrom|(?<![.\w$(])import)\s*\(?\s*["']([^"']+)["']/g)) if (!m[1].startsWith('./')) bare.push(`${f}: ${m[1]}`);
    }
    expect(bare).toEqual([]);
  });

  it('every environment variable is read through src/core/env.ts', () => {
    // Deno without --allow-env throws at process.env / Deno.env; env.ts asks first and reads "unset"
    const offenders: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (/\.ts$/.test(entry.name) && !path.endsWith(join('core', 'env.ts')) && !path.includes(join('src', 'cli'))) {
          readFileSync(path, 'utf8').split('\n').forEach((line, i) => {
            const code = /^\s*(\*|\/\*)/.test(line) ? '' : line.replace(/\/\/.*$/, '');
            if (/process\.env|process\?\.env|Deno\.env/.test(code)) offenders.push(`${path.slice(repo.length)}:${i + 1}: ${line.trim()}`);
          });
        }
      }
    };
    walk(join(repo, 'src'));
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

describe.skipIf(npmSkip !== undefined)('Deno and Bun run the CPU suite without flags', () => {
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
      // both on the worker pool: Deno's workers start from source (no --allow-read needed), and the
      // script ends by itself when done (runtime-main calls no exit(); the idle workers are unref'd)
      expect(report.threads).toBeGreaterThan(1);
      expect(report.cpu).toMatch(/worker threads on shared memory/);
    });
  }

  // Dawn (the optional peer) is in this checkout, not in the consumer: Bun runs the same page from here
  const gpuSkip = process.env.FUSEDATTN_WEBGPU_SKIP_REASON;
  if (gpuSkip) console.warn(`\n!!! SKIPPING Bun with Dawn: ${gpuSkip}\n`);
  it.skipIf(gpuSkip !== undefined)('bun with Dawn: WebGPU on llvmpipe, EGL_PLATFORM set through bun:ffi', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
    delete env.EGL_PLATFORM; // what fusedattn must set itself: Bun's process.env does not reach Mesa
    const r = await run(bin('bun'), [join('test', 'web', 'pages', 'runtime-main.mjs'), '--backend=webgpu', '--only=0,10'], repo, env);
    expect(r.code, `bun exited ${r.code}: ${r.stderr.slice(-2000)}`).toBe(0);
    const report = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as { passed: number; failures: string[]; backends: string[]; tiers: string[] };
    expect(report.failures).toEqual([]);
    expect(report.passed).toBe(2);
    expect(report.backends).toEqual(['webgpu']);
    expect(report.tiers).toEqual(['portable']);
  });
});

interface Builds { vite: string; esbuild: string; webpack: string; rollup: string; playground: string }

/** Every page the browser tests load, built once. */
async function buildPages(consumer: Consumer): Promise<Builds> {
  const pages = join(consumer.dir, 'pages');
  const entry = join(pages, 'suite', 'main.js');
  const builds = Object.fromEntries(['vite', 'esbuild', 'webpack', 'rollup', 'playground'].map((name) => [name, join(consumer.dir, `out-${name}`)])) as unknown as Builds;
  const node = (script: string, ...args: string[]) => must(process.execPath, [join(pages, script), ...args], consumer.dir, { ...process.env, FUSEDATTN_REPO: repo });
  const vite = join(repo, 'node_modules', 'vite', 'bin', 'vite.js');
  // Each bundler's production build of the same page with no configuration: what `vite build`,
  // `esbuild --bundle` (browser defaults), `webpack --entry` and Rollup with node-resolve do for a
  // fresh project. Vite and webpack emit the worker; esbuild and Rollup do not.
  await Promise.all([
    must(process.execPath, [vite, 'build', '--config', join(repo, 'playground', 'vite.config.js'), '--outDir', builds.playground, '--emptyOutDir', '--logLevel', 'warn'], repo),
    must(process.execPath, [vite, 'build', join(pages, 'suite'), '--outDir', builds.vite, '--emptyOutDir', '--logLevel', 'warn'], consumer.dir),
    must(bin('esbuild'), [entry, '--bundle', '--format=esm', `--outfile=${join(builds.esbuild, 'main.js')}`, '--log-level=warning'], consumer.dir),
    node('bundle-webpack.mjs', entry, builds.webpack),
    node('bundle-rollup.mjs', entry, builds.rollup),
  ]);
  for (const out of [builds.esbuild, builds.webpack, builds.rollup]) copyFileSync(join(pages, 'suite', 'index.html'), join(out, 'index.html'));
  // the README's plain-ESM page as written, then the check that runs suite cases through its import map
  const readme = readFileSync(join(repo, 'README.md'), 'utf8');
  const snippet = [...readme.matchAll(/```html\n([\s\S]*?)```/g)].map((m) => m[1]).find((html) => html.includes('"importmap"'));
  if (!snippet) throw new Error('README.md has no ```html block with an import map');
  writeFileSync(join(consumer.dir, 'readme.html'), `<!doctype html>\n<meta charset="utf-8">\n<body>\n${snippet}<script type="module" src="/pages/readme-check.mjs"></script>\n`);
  // a plain .mjs script of the playground (no declarations): typed here
  const { makeTinyModel } = (await import('../playground/make-model.mjs' as string)) as { makeTinyModel: (dir: string) => Promise<void> };
  await makeTinyModel(join(builds.playground, 'models', 'tiny'));
  return builds;
}

describe.skipIf(browserSkip !== undefined)('in a browser (headless Chromium)', () => {
  let browser: SharedBrowser;
  let builds: Builds;
  const servers: StaticServer[] = [];

  beforeAll(async () => {
    const launching = launchBrowser();
    try {
      builds = await bundled!;
    } finally {
      browser = await launching; // closed by afterAll even when a build failed
    }
  });
  afterAll(async () => {
    await browser?.close();
    await Promise.all(servers.map((s) => s.close()));
  });

  async function runPage(root: string, headers: Record<string, string>, query = '', page = 'index.html'): Promise<PageReport> {
    const server = await serveStatic(root, headers);
    servers.push(server);
    const tab = await browser.newPage();
    try {
      await tab.goto(`${server.url}${page}${query}`);
      const report = (await tab.evaluate('window.__report')) as PageReport;
      if (report.error || report.failed) console.error(browser.logs.slice(-20).join('\n'));
      expect(report.error).toBeUndefined();
      return report;
    } finally {
      await tab.close();
    }
  }
  // a few cases of each kind (sizes that start the pool, GQA, TND, masks, float16) keep the pages quick
  const SUBSET = '0,5,7,10,20,25,28';
  const subsetSize = SUBSET.split(',').length;
  // where a page tests how the package was built or loaded, three cases (BNSD big enough for the
  // pool, TND with GQA, float16) check the numbers
  const FEW = '0,10,28';
  const maxThreads = (r: PageReport) => Math.max(...r.stats.map((s) => s.threads));

  it('Vite production build, cross-origin isolated: the whole suite on the worker pool', async () => {
    const r = await runPage(builds.vite, ISOLATION_HEADERS);
    expect(r.crossOriginIsolated).toBe(true);
    expect(r.warmupError).toBeUndefined();
    expect(r.failures).toEqual([]);
    expect(r.passed).toBe(SUITE.length);
    expect(maxThreads(r)).toBeGreaterThan(1);
    expect(r.stats[0].tier).toMatch(/^wasm-/);
    expect(r.stats[0].workerScript).toBe('url');
  });

  it('Vite build without COOP/COEP: single-threaded, and the result says why', async () => {
    const r = await runPage(builds.vite, {}, `?only=${SUBSET}`);
    expect(r.crossOriginIsolated).toBe(false);
    expect(r.failures).toEqual([]);
    expect(r.passed).toBe(subsetSize);
    expect(maxThreads(r)).toBe(1);
    expect(r.stats[0].fallback).toMatch(/SharedArrayBuffer/);
  });

  it("CSP without 'wasm-unsafe-eval': the scalar kernels, said in the result and listBackends()", async () => {
    const r = await runPage(builds.vite, { ...ISOLATION_HEADERS, ...STRICT_CSP }, `?only=${SUBSET}`);
    expect(r.failures).toEqual([]);
    expect(r.passed).toBe(subsetSize);
    expect(r.stats.every((s) => s.tier === 'scalar')).toBe(true);
    expect(r.stats[0].fallback).toMatch(/wasm-unsafe-eval/);
    expect(r.backends[0].detail).toMatch(/scalar/);
    expect(maxThreads(r)).toBeGreaterThan(1);
  });

  it('webpack 5 production build (no config): the worker it emits, multi-threaded', async () => {
    const r = await runPage(builds.webpack, ISOLATION_HEADERS, `?only=${FEW}`);
    expect(r.warmupError).toBeUndefined();
    expect(r.failures).toEqual([]);
    expect(r.passed).toBe(3);
    expect(maxThreads(r)).toBeGreaterThan(1);
    expect(r.stats[0].workerScript).toBe('url');
  });

  for (const bundler of ['esbuild', 'rollup'] as const) {
    it(`${bundler} bundle (no config, no worker file emitted): the embedded worker, multi-threaded`, async () => {
      const r = await runPage(builds[bundler], ISOLATION_HEADERS, `?only=${FEW}`);
      expect(r.warmupError).toBeUndefined();
      expect(r.failures).toEqual([]);
      expect(r.passed).toBe(3);
      expect(maxThreads(r)).toBeGreaterThan(1);
      expect(r.stats.every((s) => s.workerScript === 'embedded' && s.fallback === undefined)).toBe(true);
      expect(r.backends[0].detail).toMatch(/worker threads on shared memory \(workers from the embedded copy of their script: .*cpu-worker\.js.*HTTP 404/);
    });
  }

  it('esbuild bundle under a CSP that refuses blob: workers: one DeviceError naming both causes, then single-threaded', async () => {
    const r = await runPage(builds.esbuild, { ...ISOLATION_HEADERS, ...STRICT_CSP }, `?only=${FEW}`);
    expect(r.warmupError).toMatch(/^DeviceError: .*cpu-worker\.js.*HTTP 404.*embedded copy.*Content-Security-Policy refuses blob: workers \(worker-src/);
    expect(r.failures).toEqual([]);
    expect(r.passed).toBe(3);
    expect(maxThreads(r)).toBe(1);
    expect(r.stats[0].fallback).toMatch(/single-threaded: .*cpu-worker\.js/);
  });

  it("the README's plain-ESM page as written (no bundler, import map of the entry points): multi-threaded, checked", async () => {
    const r = await runPage(consumer.dir, ISOLATION_HEADERS, `?only=${FEW}`, 'readme.html');
    expect(r.failures).toEqual([]);
    expect(r.passed).toBe(3);
    expect(maxThreads(r)).toBeGreaterThan(1);
    expect(r.stats[0].workerScript).toBe('url');
    expect(r.snippet).toMatch(/^cpu wasm-\S+, \d+ threads: out\[0\] = -?\d/);
    expect(Number(/(\d+) threads/.exec(r.snippet ?? '')?.[1])).toBeGreaterThan(1);
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
