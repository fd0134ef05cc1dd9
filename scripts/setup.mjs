// Set-up shared by `npm test` and `npm start` on a fresh clone: install the npm dependencies,
// build the TypeScript, and (for WebGPU without a GPU) make sure Mesa's OpenGL ES / llvmpipe
// drivers are present, installing them with apt-get when we are root on Debian/Ubuntu.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed with exit code ${r.status}`);
}

function newer(a, b) {
  return existsSync(a) && (!existsSync(b) || statSync(a).mtimeMs > statSync(b).mtimeMs);
}

/** npm ci when node_modules is missing or older than the lockfile. */
export function ensureDependencies() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  if (!existsSync(marker) || newer(join(root, 'package-lock.json'), marker)) {
    console.log('[setup] installing npm dependencies (npm ci)...');
    try {
      run('npm', ['ci', '--no-audit', '--no-fund']);
    } catch {
      // A registry mirror that lacks some platform packages of an optional dependency makes the
      // lockfile look out of sync to `npm ci`; `npm install` resolves what exists and goes on.
      console.warn('[setup] npm ci failed; retrying with npm install');
      run('npm', ['install', '--no-audit', '--no-fund']);
    }
  }
}

/** Builds dist/ from scratch (scripts/build.mjs: tsc, then the self-contained CPU worker bundle). */
export function build() {
  console.log('[setup] building (tsc + worker bundle)...');
  run(process.execPath, [join(root, 'scripts', 'build.mjs')]);
}

const MESA_LIBS = ['libEGL.so.1', 'libEGL_mesa.so.0', 'libGLESv2.so.2'];
const MESA_PACKAGES = ['libegl1', 'libegl-mesa0', 'libgles2', 'libgl1-mesa-dri'];

function missingMesaLibs() {
  let cache = '';
  try {
    cache = execFileSync('ldconfig', ['-p'], { encoding: 'utf8' });
  } catch {
    try {
      cache = execFileSync('/sbin/ldconfig', ['-p'], { encoding: 'utf8' });
    } catch {
      return MESA_LIBS; // cannot tell: treat as missing
    }
  }
  const missing = MESA_LIBS.filter((lib) => !cache.includes(lib));
  const dri = ['/usr/lib/x86_64-linux-gnu/dri/swrast_dri.so', '/usr/lib/aarch64-linux-gnu/dri/swrast_dri.so', '/usr/lib/dri/swrast_dri.so'];
  if (!dri.some(existsSync)) missing.push('swrast_dri.so (llvmpipe)');
  return missing;
}

/**
 * Makes WebGPU usable without a GPU (Dawn's OpenGL ES backend on Mesa llvmpipe).
 * Returns undefined when ready, or the reason WebGPU tests will be skipped.
 */
export function ensureMesa() {
  if (process.platform !== 'linux') return undefined; // other platforms bring their own drivers
  let missing = missingMesaLibs();
  if (missing.length === 0) return undefined;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const hasApt = existsSync('/usr/bin/apt-get');
  if (isRoot && hasApt) {
    console.log(`[setup] installing Mesa for WebGPU-on-CPU (missing ${missing.join(', ')}): apt-get install ${MESA_PACKAGES.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    try {
      run('apt-get', ['update', '-qq'], { env });
      run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...MESA_PACKAGES], { env });
    } catch (e) {
      return `apt-get could not install Mesa (${e.message})`;
    }
    missing = missingMesaLibs();
    if (missing.length === 0) return undefined;
    return `Mesa libraries still missing after apt-get: ${missing.join(', ')}`;
  }
  return `Mesa libraries missing (${missing.join(', ')}) and cannot install them here (${isRoot ? 'no apt-get' : 'not root'}); install: apt-get install ${MESA_PACKAGES.join(' ')}`;
}

const CHROMIUM = '/usr/bin/chromium';

/**
 * Debian's Chromium for the browser tests (puppeteer-core drives it; its own browser download
 * cannot run here), installed with apt-get when we are root, like Mesa above.
 * Returns undefined when ready, or the reason the browser tests will be skipped.
 */
export function ensureChromium() {
  if (process.env.FUSEDATTN_CHROMIUM) return existsSync(process.env.FUSEDATTN_CHROMIUM) ? undefined : `FUSEDATTN_CHROMIUM=${process.env.FUSEDATTN_CHROMIUM} does not exist`;
  if (existsSync(CHROMIUM)) return undefined;
  if (process.platform !== 'linux') return `no ${CHROMIUM}; set FUSEDATTN_CHROMIUM to a Chromium or Chrome binary`;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot || !existsSync('/usr/bin/apt-get')) return `${CHROMIUM} missing and cannot install it here (${isRoot ? 'no apt-get' : 'not root'}); install: apt-get install chromium`;
  console.log('[setup] installing Chromium for the browser tests: apt-get install chromium');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    run('apt-get', ['update', '-qq'], { env });
    run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'chromium'], { env });
  } catch (e) {
    return `apt-get could not install chromium (${e.message})`;
  }
  return existsSync(CHROMIUM) ? undefined : `${CHROMIUM} still missing after apt-get install chromium`;
}
