// A consumer project as a web developer has one: `npm pack` of this checkout (dist/ as `npm test`
// just built it; `prepack` builds it on a real pack), installed with npm into an empty folder, with
// no `webgpu` (an optional peer that browsers never need). The bundler, TypeScript, Deno and Bun
// tests all run against that installed copy.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = fileURLToPath(new URL('../..', import.meta.url));
export const bin = (name: string) => join(repo, 'node_modules', '.bin', name);

/** A child process without blocking the event loop (vitest's RPC times out under a long spawnSync). */
export async function run(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(file, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20, timeout: 120_000 });
    return { stdout, stderr, code: 0 };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; code?: number | string; message: string };
    return { stdout: err.stdout ?? '', stderr: `${err.stderr ?? ''}${err.message}`, code: typeof err.code === 'number' ? err.code : 1 };
  }
}

async function must(file: string, args: string[], cwd: string): Promise<string> {
  const r = await run(file, args, cwd);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} failed (${r.code}): ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

export interface Consumer {
  dir: string;
  /** Paths inside the tarball (without the leading "package/"). */
  packed: string[];
  tarball: string;
  remove(): void;
}

export async function installConsumer(): Promise<Consumer> {
  const dir = mkdtempSync(join(tmpdir(), 'fusedattn-consumer-'));
  // --ignore-scripts: dist/ is fresh (npm test built it); the prepack script is checked on its own
  const out = await must('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], repo);
  const [info] = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2));
  await must('npm', ['install', `./${info.filename}`, '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts', '--loglevel=error'], dir);
  // the shared suite runner and the test pages, next to node_modules so `fusedattn` resolves
  cpSync(join(repo, 'test', 'web', 'pages'), join(dir, 'pages'), { recursive: true });
  return { dir, packed: info.files.map((f) => f.path), tarball: join(dir, info.filename), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export { must };

export function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8'));
}
