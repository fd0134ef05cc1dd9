// `npm run playground` serves this folder with Vite; `vite build playground` makes the static
// site the browser test opens. fusedattn resolves to this checkout's dist/ (built first).
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const dist = (p) => fileURLToPath(new URL(`../dist/${p}`, import.meta.url));
// Cross-origin isolation: SharedArrayBuffer, so the CPU backend runs on its worker pool
const headers = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  resolve: {
    alias: [
      { find: /^fusedattn\/model$/, replacement: dist('model/index.js') },
      { find: /^fusedattn$/, replacement: dist('index.js') },
    ],
  },
  server: { headers },
  preview: { headers },
});
