import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Dawn (the WebGPU addon) and our worker pool both want a real process, not a worker thread.
    pool: 'forks',
    // one fork at a time: the CPU backend already uses every core, and llvmpipe too
    poolOptions: { forks: { singleFork: true } },
    // The CPU pool at 2 threads (what CI has) unless FUSEDATTN_CPU_THREADS says otherwise: the fused
    // path's intermediates are per-worker tile scratch, so at the suite's small sizes the memory
    // comparisons with the naive S×S path would otherwise depend on the machine's core count.
    env: { FUSEDATTN_CPU_THREADS: process.env.FUSEDATTN_CPU_THREADS ?? '2' },
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
