// Hostile files (README "Failure behaviour"): a generator of corrupted .npy, safetensors and
// config.json inputs; every reader returns or throws a typed error with a short message, and no
// size is trusted before it is checked (a billion layers fails at once, allocating nothing). Plus
// NaN weights under checkFinite, atomic CLI outputs and the generate limit.
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FusedAttnError, ValueError, encodeNpy, npyToTensor, parseNpy } from '../dist/index.js';
import { hostileConfigs, hostileNpyFiles, hostileSafetensorsFiles } from '../dist/testing/index.js';
import { SafetensorsFile, bytesSource } from '../dist/io/safetensors.js';
import { loadModel, generate } from '../dist/model/index.js';
import { tempDir, writeTinyModel } from './model-helpers.js';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const MAX_MESSAGE = 600;

/** Runs `f`; a thrown error must be a FusedAttnError with a bounded message. Returns 'ok' or the class name. */
async function outcome(what: string, f: () => unknown): Promise<string> {
  try {
    await f();
    return 'ok';
  } catch (e) {
    if (!(e instanceof FusedAttnError)) throw new Error(`${what}: untyped ${(e as Error)?.name}: ${(e as Error)?.message}`);
    if (e.message.length > MAX_MESSAGE) throw new Error(`${what}: a ${e.message.length}-character message`);
    return e.constructor.name;
  }
}

describe('hostile files', () => {
  it('corrupted .npy files: parsed or refused with a typed error', async () => {
    const files = hostileNpyFiles(11);
    const seen: Record<string, number> = {};
    for (const f of files) {
      const r = await outcome(`npy ${f.name}`, () => npyToTensor(parseNpy(f.bytes, f.name), f.name));
      seen[r] = (seen[r] ?? 0) + 1;
      // numpy reads the elements it needs and ignores what follows, so do we
      if (!f.name.startsWith('random') && f.name !== 'trailing bytes') expect(r, f.name).not.toBe('ok');
    }
    expect(Object.keys(seen).length).toBeGreaterThan(1);
  });

  it('corrupted safetensors: opened and read, or refused with a typed error (overlaps and lengths checked)', async () => {
    for (const f of hostileSafetensorsFiles(12)) {
      const r = await outcome(`safetensors ${f.name}`, async () => {
        const file = await SafetensorsFile.open(bytesSource(f.bytes, f.name));
        for (const name of file.names()) await file.read(name, 'float32');
      });
      if (!f.name.startsWith('random')) expect(r, f.name).not.toBe('ok');
    }
  });

  it('hostile config.json: refused before any tensor list or memory is sized from it', async () => {
    const { dir, configJson } = await writeTinyModel();
    for (const c of hostileConfigs()) {
      writeFileSync(join(dir, 'config.json'), JSON.stringify(c.json));
      const heap = process.memoryUsage().heapUsed;
      const started = performance.now();
      const r = await outcome(`config ${c.name}`, () => loadModel(dir, { backend: 'cpu' }).then((m) => m.dispose()));
      expect(r, c.name).not.toBe('ok');
      expect(performance.now() - started, c.name).toBeLessThan(5000);
      expect(process.memoryUsage().heapUsed - heap, c.name).toBeLessThan(256 * 2 ** 20);
    }
    writeFileSync(join(dir, 'config.json'), JSON.stringify(configJson));
    (await loadModel(dir, { backend: 'cpu' })).dispose();
  });

  it('a NaN weight: named at load with checkFinite; without it generation says NaN logits instead of a token', async () => {
    const model = await writeTinyModel();
    const name = 'model.layers.1.mlp.down_proj.weight';
    model.tensors[name].data[5] = NaN;
    const { writeModelFolder } = await import('../dist/model/index.js');
    await writeModelFolder(model.dir, model.configJson, model.tensors);
    const e = await loadModel(model.dir, { backend: 'cpu', checkFinite: true }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ValueError);
    expect((e as Error).message).toMatch(new RegExp(`tensor "${name.replace(/\./g, '\\.')}" holds NaN at flat index 5 \\(loaded with checkFinite\\)`));
    const loaded = await loadModel(model.dir, { backend: 'cpu' });
    await expect(generate(loaded, [1, 2, 3], { maxNewTokens: 2 })).rejects.toThrow(/NaN logits/);
    loaded.dispose();
  });
});

describe('CLI failure behaviour', () => {
  const npy = (dir: string, name: string, shape: number[], seed: number) => {
    const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 0.37 + seed));
    writeFileSync(join(dir, name), encodeNpy({ dtype: 'float32', shape, data }));
  };

  it('run writes all outputs or none: a failing --lse leaves --out as it was and no temporary file', async () => {
    const dir = await tempDir('atomic');
    for (const [i, n] of ['q', 'k', 'v'].entries()) npy(dir, `${n}.npy`, [1, 2, 8, 4], i);
    writeFileSync(join(dir, 'keep.npy'), 'previous contents');
    const r = spawnSync(process.execPath, [CLI, 'run', '--q', join(dir, 'q.npy'), '--k', join(dir, 'k.npy'), '--v', join(dir, 'v.npy'),
      '--out', join(dir, 'keep.npy'), '--lse', join(dir, 'missing-folder', 'lse.npy'), '--backend', 'cpu'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(/^error: cannot write .*missing-folder\/lse\.npy: no such file or directory$/);
    expect(readFileSync(join(dir, 'keep.npy'), 'utf8')).toBe('previous contents');
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    // and when every output can be written, both are
    const ok = spawnSync(process.execPath, [CLI, 'run', '--q', join(dir, 'q.npy'), '--k', join(dir, 'k.npy'), '--v', join(dir, 'v.npy'),
      '--out', join(dir, 'keep.npy'), '--lse', join(dir, 'lse.npy'), '--backend', 'cpu', '--quiet'], { encoding: 'utf8', timeout: 60_000 });
    expect(ok.status).toBe(0);
    expect(parseNpy(readFileSync(join(dir, 'keep.npy'))).shape).toEqual([1, 2, 8, 4]);
    expect(existsSync(join(dir, 'lse.npy'))).toBe(true);
  });

  it('generate refuses to run past max_position_embeddings (exit 2) unless asked', async () => {
    const { dir } = await writeTinyModel();
    const r = spawnSync(process.execPath, [CLI, 'generate', '--model', dir, '--tokens', '1,2,3', '--max-new-tokens', '10000000', '--backend', 'cpu'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe("error: the prompt (3 tokens) + --max-new-tokens 10000000 = 10000003 positions, past the model's max_position_embeddings (128); lower --max-new-tokens or pass --past-max-positions");
    const past = spawnSync(process.execPath, [CLI, 'generate', '--model', dir, '--tokens', '1,2,3', '--max-new-tokens', '130', '--past-max-positions', '--backend', 'cpu', '--quiet'], { encoding: 'utf8', timeout: 60_000 });
    expect(past.status).toBe(0);
    expect(past.stdout.split('\n')[0]).toMatch(/^\d+(,\d+)*$/);
  });

  it('usage errors exit 2; no Dawn warning and no native stack line reach stderr', async () => {
    const tmp = await tempDir('stderr');
    for (const args of [['demo', '--budget', '-1'], ['demo', '--seq-len', '100000000'], ['verify', '--filter', 'no-such-case']]) {
      const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
    // stderr to a file, as a shell redirect or a terminal would have it (Node's own child pipes are
    // sockets, which the filter cannot reopen: README "Failure behaviour")
    for (const env of [{}, { FUSEDATTN_WEBGPU_BACKEND: 'vulkan' }]) {
      const file = join(tmp, `stderr-${Object.keys(env).join('-')}.txt`);
      const fd = openSync(file, 'w');
      const r = spawnSync(process.execPath, [CLI, 'info'], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', fd] });
      closeSync(fd);
      expect(r.status).toBe(0);
      const text = readFileSync(file, 'utf8');
      expect(text).not.toMatch(/artificially reduced|Couldn't load Vulkan|\.cpp:\d+/);
    }
  });
});
