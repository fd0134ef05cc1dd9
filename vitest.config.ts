import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Dawn (the WebGPU addon) and our worker pool both want a real process, not a worker thread.
    pool: 'forks',
    // one fork at a time: the CPU backend already uses every core, and llvmpipe too
    poolOptions: { forks: { singleFork: true } },
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
