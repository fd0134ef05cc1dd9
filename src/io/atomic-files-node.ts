// Writing several output files all or nothing (Node only; the -node suffix keeps it out of browser bundles): each goes to a temporary file beside its
// target, and the temporaries are renamed over the targets only once every one was written; on any
// failure they are removed and no target is touched. A reader never sees a half-written file.
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ValueError } from '../core/errors.js';
import { encodeNpy, type NpyArray } from './npy.js';
import { fsReason } from './npy-file.js';

/** Writes every `[path, bytes]` atomically as a set (see above); throws ValueError naming the path that failed. */
export function writeFilesAtomically(files: ReadonlyArray<readonly [string, Uint8Array]>): void {
  const temporaries: string[] = [];
  try {
    for (const [path, bytes] of files) {
      const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
      temporaries.push(temporary);
      try {
        writeFileSync(temporary, bytes);
      } catch (e) {
        throw new ValueError(path, `cannot write ${path}: ${fsReason(e)}`);
      }
    }
    files.forEach(([path], i) => {
      try {
        renameSync(temporaries[i], path);
      } catch (e) {
        throw new ValueError(path, `cannot write ${path}: ${fsReason(e)}`);
      }
    });
    temporaries.length = 0;
  } finally {
    for (const t of temporaries) rmSync(t, { force: true });
  }
}

/** .npy arrays written with writeFilesAtomically. */
export function writeNpyFilesAtomically(files: ReadonlyArray<readonly [string, NpyArray]>): void {
  writeFilesAtomically(files.map(([path, array]) => [path, encodeNpy(array, path)] as const));
}
