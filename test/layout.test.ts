// The layout rules of docs/ARCHITECTURE.md, checked on the sources' import statements:
//   core <- engines <- ops/<family> <- block, model, scope, profiler, io, cli, testing
// 1. core imports nothing outside core; engines import only core and engines (they know no op);
// 2. an op folder never imports a composite (block, model, cli, ...);
// 3. composites reach an op only through its public modules (ops/<family>/index.ts,
//    ops/<family>/<engine>/index.ts, or ops/cpu-engine.ts for the CPU engine with every op's kernels);
// 4. no import cycles between files (type-only imports included: a cycle is a layering smell even
//    when it erases at run time).
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const src = join(dirname(fileURLToPath(import.meta.url)), '..', 'src');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const files = sources(src).map((f) => relative(src, f).split('\\').join('/'));
const importPattern = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*'(\.{1,2}\/[^']+)'|import\(\s*'(\.{1,2}\/[^']+)'\s*\)/g;

/** Every relative import of a source file, as paths relative to src/ (.ts). */
function importsOf(file: string): string[] {
  const text = readFileSync(join(src, file), 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(importPattern)) {
    const spec = m[1] ?? m[2];
    const target = relative(src, resolve(dirname(join(src, file)), spec)).split('\\').join('/').replace(/\.js$/, '.ts');
    if (!target.startsWith('..')) out.push(target);
  }
  return out;
}

const graph = new Map(files.map((f) => [f, importsOf(f)]));
const top = (f: string) => (f.includes('/') ? f.slice(0, f.indexOf('/')) : f);
const COMPOSITES = ['block', 'model', 'scope', 'profiler', 'io', 'cli', 'testing', 'index.ts'];

function violations(rule: (from: string, to: string) => string | undefined): string[] {
  const found: string[] = [];
  for (const [from, targets] of graph) for (const to of targets) {
    const why = rule(from, to);
    if (why) found.push(`${from} -> ${to}: ${why}`);
  }
  return found;
}

describe('source layout', () => {
  it('finds the sources and their imports', () => {
    expect(files.length).toBeGreaterThan(100);
    expect(graph.get('ops/cpu-worker.ts')).toContain('engines/cpu/worker-loop.ts');
  });

  it('core imports only core; engines import only core and engines', () => {
    expect(violations((from, to) => {
      if (top(from) === 'core' && top(to) !== 'core') return 'core must not import outside core';
      if (top(from) === 'engines' && !['core', 'engines'].includes(top(to))) return 'an engine knows no op';
      return undefined;
    })).toEqual([]);
  });

  it('ops never import composites', () => {
    expect(violations((from, to) => (top(from) === 'ops' && COMPOSITES.includes(top(to)) ? `ops must not import ${top(to)}/` : undefined))).toEqual([]);
  });

  it('composites reach ops only through their public modules', () => {
    const isPublic = (to: string) => /^ops\/[\w-]+\/index\.ts$/.test(to) || /^ops\/[\w-]+\/(cpu|webgpu)\/index\.ts$/.test(to) || to === 'ops/cpu-engine.ts';
    expect(violations((from, to) => (COMPOSITES.includes(top(from)) && top(to) === 'ops' && !isPublic(to) ? 'not a public module of the op' : undefined))).toEqual([]);
  });

  it('has no import cycles', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (f: string) => {
      state.set(f, 'open');
      stack.push(f);
      for (const to of graph.get(f) ?? []) {
        if (state.get(to) === 'open') cycles.push([...stack.slice(stack.indexOf(to)), to].join(' -> '));
        else if (!state.has(to)) visit(to);
      }
      stack.pop();
      state.set(f, 'done');
    };
    for (const f of files) if (!state.has(f)) visit(f);
    expect(cycles).toEqual([]);
  });
});
