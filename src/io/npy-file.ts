// .npy files on disk (Node only: kept apart from npy.ts so browser bundles never see node:fs).
import { readFileSync } from 'node:fs';
import { ValueError } from '../core/errors.js';
import { fsReason, writeOutputsAtomically } from './atomic-file.js';
import { encodeNpy, parseNpy, type NpyArray } from './npy.js';

/** Reads a .npy file; errors (missing file, bad header, unsupported dtype) name the path. */
export function readNpyFile(path: string): NpyArray {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new ValueError(path, `cannot read ${path}: ${fsReason(e)}`);
  }
  return parseNpy(bytes, path);
}

/** Writes an array as a .npy file (atomically: a temporary file beside it, then a rename). */
export function writeNpyFile(path: string, array: NpyArray, argument?: string): void {
  writeNpyFiles([{ path, array, argument }]);
}

/** Writes several .npy files, all or none (io/atomic-file.ts): a failed call leaves every target as it was. */
export function writeNpyFiles(files: ReadonlyArray<{ path: string; array: NpyArray; argument?: string }>): void {
  writeOutputsAtomically(files.map((f) => ({ path: f.path, bytes: encodeNpy(f.array, f.path), argument: f.argument })));
}
