// .npy files on disk (Node only: kept apart from npy.ts so browser bundles never see node:fs).
import { readFileSync, writeFileSync } from 'node:fs';
import { ValueError } from '../core/errors.js';
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

/** Writes an array as a .npy file. */
export function writeNpyFile(path: string, array: NpyArray): void {
  const bytes = encodeNpy(array, path);
  try {
    writeFileSync(path, bytes);
  } catch (e) {
    throw new ValueError(path, `cannot write ${path}: ${fsReason(e)}`);
  }
}

/** "no such file or directory" rather than a Node error dump. */
export function fsReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const reasons: Record<string, string> = {
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied',
    EISDIR: 'it is a directory',
    ENOTDIR: 'a parent is not a directory',
  };
  return (err.code && reasons[err.code]) ?? err.message ?? String(e);
}
