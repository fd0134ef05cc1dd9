// Named spans of GPU work ("fused-block", "scope:layer0", ...): ops and scopes wrap their work in
// withSpan(runtime, label, fn), and the profiler files every command queued meanwhile under the
// innermost span (and counts it for each enclosing one). One stack per runtime; JavaScript runs one
// op's queueing at a time, so overlapping async ops would mix their spans: profile them one by one.
import type { GpuRuntime } from '../engines/webgpu/runtime.js';

const stacks = new WeakMap<GpuRuntime, string[]>();

/** Told when a span opens (label, depth = spans already open); returns what to call when it closes. */
export type SpanListener = (label: string, depth: number) => () => void;
const listeners = new WeakMap<GpuRuntime, Set<SpanListener>>();

/** Listens to every span opened on `runtime` (the profiler); returns the function that stops it. */
export function onSpan(runtime: GpuRuntime, listener: SpanListener): () => void {
  let set = listeners.get(runtime);
  if (!set) listeners.set(runtime, (set = new Set()));
  set.add(listener);
  return () => set.delete(listener);
}

/** The open spans of `runtime`, outermost first. */
export function currentSpans(runtime: GpuRuntime): readonly string[] {
  return stacks.get(runtime) ?? [];
}

/** Runs `fn` inside the span `label`. */
export async function withSpan<T>(runtime: GpuRuntime, label: string, fn: () => Promise<T>): Promise<T> {
  let stack = stacks.get(runtime);
  if (!stack) stacks.set(runtime, (stack = []));
  const closers = [...(listeners.get(runtime) ?? [])].map((l) => l(label, stack.length));
  stack.push(label);
  try {
    return await fn();
  } finally {
    const at = stack.lastIndexOf(label);
    if (at >= 0) stack.splice(at, 1);
    for (const close of closers) close();
  }
}
