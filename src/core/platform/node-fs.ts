// The local file system through node:fs (Node, Bun, and Deno where the caller gave read access).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { LocalFile, LocalFs } from './types.js';

/** fs reads are capped below 2 GiB; big tensors are read in pieces of this size. */
const READ_CHUNK = 256 * 1024 * 1024;

function openFile(path: string): LocalFile {
  let handle: ReturnType<typeof open> | undefined;
  const get = () => (handle ??= open(path, 'r'));
  return {
    name: path,
    size: async () => (await (await get()).stat()).size,
    read: async (offset, length) => {
      const fh = await get();
      const out = new Uint8Array(length);
      for (let done = 0; done < length;) {
        const { bytesRead } = await fh.read(out, done, Math.min(READ_CHUNK, length - done), offset + done);
        if (bytesRead === 0) throw new RangeError(`${path}: unexpected end of file at byte ${offset + done} (wanted ${length} bytes from ${offset})`);
        done += bytesRead;
      }
      return out;
    },
    close: async () => {
      const h = handle;
      handle = undefined;
      if (h) await (await h).close();
    },
  };
}

export const nodeFs: LocalFs = {
  join,
  dirname,
  kind: async (path) => {
    const st = await stat(path).catch(() => undefined);
    return st === undefined ? undefined : st.isDirectory() ? 'folder' : 'file';
  },
  readText: (path) => readFile(path, 'utf8'),
  open: openFile,
  writeFile: (path, data) => writeFile(path, data),
  mkdir: async (path) => {
    await mkdir(path, { recursive: true });
  },
  readTextSync: (path) => (existsSync(path) ? readFileSync(path, 'utf8') : undefined),
  writeTextSync: (path, text) => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  },
  homeCacheDir: () => join(homedir(), '.cache'),
};
