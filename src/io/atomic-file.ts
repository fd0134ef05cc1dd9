// All-or-nothing output files for commands that write several (run: --out and --lse; a future
// `fusedattn grad`: one file per gradient). Each output is first written in full to a temporary file
// beside its target (same folder, so the final rename stays on one file system and is atomic);
// only when every one of them was written are they renamed over their targets. A failure on any
// output (no such folder, no permission, disk full) removes the temporary files and leaves every
// target as it was, so a failed run never leaves a half-written or a mismatched set of files.
// Node only.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ValueError } from '../core/errors.js';

export interface OutputFile {
  /** Target path. */
  path: string;
  bytes: Uint8Array;
  /** The option that named it (for messages), e.g. "--lse". */
  argument?: string;
}

/** Writes every file or none: temporaries first, then renames. Throws ValueError naming the file that failed. */
export function writeOutputsAtomically(files: readonly OutputFile[]): void {
  const seen = new Map<string, string>();
  for (const f of files) {
    const key = resolve(f.path);
    const other = seen.get(key);
    if (other !== undefined) throw new ValueError(f.argument ?? f.path, `${f.argument ?? 'an output'} and ${other} both name ${f.path}; give each output its own file`);
    seen.set(key, f.argument ?? f.path);
  }
  const staged: Array<{ temp: string; target: string }> = [];
  try {
    for (const f of files) {
      const temp = join(dirname(f.path), `.${basename(f.path)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`);
      writeWhole(temp, f);
      staged.push({ temp, target: f.path });
    }
    for (const { temp, target } of staged) {
      try {
        renameSync(temp, target);
      } catch (e) {
        throw new ValueError(target, `cannot write ${target}: ${fsReason(e)}`);
      }
    }
  } catch (e) {
    for (const { temp } of staged) rmSync(temp, { force: true });
    throw e;
  }
}

function writeWhole(temp: string, f: OutputFile): void {
  let fd: number | undefined;
  try {
    fd = openSync(temp, 'wx', 0o644);
    for (let done = 0; done < f.bytes.byteLength;) done += writeSync(fd, f.bytes, done, f.bytes.byteLength - done);
    fsyncSync(fd);
  } catch (e) {
    if (fd !== undefined) {
      closeSync(fd);
      fd = undefined;
      rmSync(temp, { force: true });
    }
    throw new ValueError(f.argument ?? f.path, `cannot write ${f.path}: ${fsReason(e)}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** "no such file or directory" rather than a Node error dump. */
export function fsReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const reasons: Record<string, string> = {
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EISDIR: 'it is a directory',
    ENOTDIR: 'a parent is not a directory',
    ENOSPC: 'no space left on the device',
    EROFS: 'read-only file system',
  };
  return (err?.code && reasons[err.code]) ?? err?.message ?? String(e);
}
