// Host arrays for a call's results, with their pages made resident while the workers compute.
//
// A fresh ArrayBuffer is zero pages the OS maps on first write. Copying a call's results out of the
// arena into fresh arrays therefore paid one page fault per 4 KiB: 6 MB of gradients took 4 ms on
// the H200 machine's Xeon and 17 ms on the 2-core dev machine, the copy itself 0.1 ms. The calling
// thread only waits while the pool runs a job, so it touches the result pages then instead.

/** The smallest page size of the platforms we run on; a larger page is touched more than once, harmlessly. */
const PAGE_BYTES = 4096;

/** Writes a zero into every page of each array (fresh arrays are zero already: the values do not change). */
export function touchPages(arrays: readonly ArrayBufferView[]): void {
  for (const a of arrays) {
    const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    for (let i = 0; i < bytes.length; i += PAGE_BYTES) bytes[i] = 0;
  }
}

/**
 * Awaits `job` after touching the pages of `arrays`: the job's workers are already running when
 * this is called, so the page faults overlap them (inline jobs simply run first).
 */
export async function whileTouchingPages<T>(job: Promise<T>, arrays: readonly ArrayBufferView[]): Promise<T> {
  touchPages(arrays);
  return job;
}
