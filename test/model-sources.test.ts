// loadModel from every kind of source gives the same model: bytes by name, Blobs/Files, a sharded
// folder served over HTTP (range requests, progress), and the folder on disk.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFrom, generate, loadModel, modelFolderFiles, randomWeights, tinyConfigJson, writeModelFolder } from '../dist/model/index.js';
import { serveStatic } from './web/server.js';

describe('model sources', () => {
  it('ArrayBuffers, Files and a URL (sharded, range requests) load the same model as the folder', async () => {
    const json = tinyConfigJson();
    const weights = randomWeights(configFrom(json), 5);
    const dir = mkdtempSync(join(tmpdir(), 'fusedattn-sources-'));
    try {
      await writeModelFolder(dir, json, weights, { shards: 2 });
      const tokensOf = async (source: Parameters<typeof loadModel>[0], options = {}) => {
        const model = await loadModel(source, { backend: 'cpu', ...options });
        try {
          return (await generate(model, [1, 7, 3], { maxNewTokens: 5 })).tokens;
        } finally {
          model.dispose();
        }
      };
      const expected = await tokensOf(dir);
      const bytes = modelFolderFiles(json, weights, { shards: 2 });
      expect(await tokensOf(new Map([...bytes].map(([k, v]) => [k, v.buffer as ArrayBuffer])))).toEqual(expected);
      expect(await tokensOf([...bytes].map(([k, v]) => new File([v as Uint8Array<ArrayBuffer>], k)))).toEqual(expected);
      const server = await serveStatic(dir);
      try {
        const progress: string[] = [];
        expect(await tokensOf(server.url, { onProgress: (p: { file: string; loaded: number; total?: number }) => progress.push(`${p.file} ${p.loaded}/${p.total}`) })).toEqual(expected);
        expect(server.log.filter((l) => /model-0000[12]-of-00002\.safetensors bytes=\d+-\d+/.test(l)).length).toBeGreaterThan(4);
        expect(progress.some((p) => /^model-00002-of-00002\.safetensors (\d+)\/\1$/.test(p))).toBe(true);
      } finally {
        await server.close();
      }
      await expect(loadModel(new Map([['model.safetensors', new Uint8Array(4)]]))).rejects.toThrow(/config\.json not found/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
