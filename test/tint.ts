// WGSL compile checks without a GPU: Tint through Dawn's null backend, which offers f16, subgroups
// and subgroup matrices, so kernels that only run on the GPU machine are at least compiled in CI.
// Compiles in child processes (test/wgsl-null-compile.mjs): a second Dawn instance in the test
// process, besides the OpenGL ES one, crashed Node at exit, and a crash must not take the runner down.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('./wgsl-null-compile.mjs', import.meta.url));

/** A module checked beyond compiling: its 'auto' pipeline layout must take a bind group of exactly these bindings. */
export interface BoundModule {
  code: string;
  bindings: Array<{ binding: number; uniform: boolean }>;
}

/**
 * Compile errors of each WGSL source ([] when it compiles), or undefined, with a loud warning naming
 * `what`, when Dawn's null backend is unavailable. Should a child die anyway, the next one resumes
 * after the last module it reported.
 */
export function tintErrors(sources: Record<string, string | BoundModule>, what: string): Record<string, string[]> | undefined {
  const labels = Object.keys(sources);
  const input = JSON.stringify(labels.map((label) => sources[label]));
  const results: Array<string[] | undefined> = new Array(labels.length).fill(undefined);
  let failure = '';
  for (let next = 0, attempts = 0; next < labels.length && attempts < 4; attempts++) {
    const r = spawnSync(process.execPath, [CHILD, String(next)], { input, encoding: 'utf8', timeout: 60_000 });
    for (const line of r.stdout.split('\n')) {
      if (line.startsWith('unavailable')) failure = line;
      const m = /^(\d+) (ok|error (.*))$/.exec(line);
      if (m) results[Number(m[1])] = m[2] === 'ok' ? [] : JSON.parse(m[3]) as string[];
    }
    if (failure) break;
    failure = `child exit ${r.status ?? r.signal}: ${r.stderr.slice(-300)}`;
    while (next < labels.length && results[next] !== undefined) next++;
  }
  if (results.every((r) => r === undefined)) {
    console.warn(`\n!!! SKIPPING WGSL compile checks of ${what}: Dawn's null backend is unavailable (${failure})\n`);
    return undefined;
  }
  return Object.fromEntries(labels.map((label, i) => [label, results[i] ?? [`not compiled: the null backend kept failing (${failure})`]]));
}
