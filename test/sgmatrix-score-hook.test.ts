// The tensor-core tier's kernel WGSL around the score hook (no GPU needed): the plain kernels
// (no mask, bias or function) stay byte for byte what the H200 measured, one SHA-256 per option
// set in a file snapshot, so any change to them shows up as a changed line.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildFlashSgMatrix } from '../dist/ops/attention/webgpu/tiers/flash-sgmatrix-wgsl.js';
import { plainVariants } from './sgmatrix-variants.js';

const sha = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 16);

describe('tensor-core kernel without a score hook', () => {
  it('generates the same WGSL as before (hash per option set)', async () => {
    const variants = plainVariants();
    expect(variants.length).toBeGreaterThan(300);
    const lines = variants.map((o) => `${sha(buildFlashSgMatrix(o))} ${JSON.stringify(o)}`);
    await expect(lines.join('\n') + '\n').toMatchFileSnapshot('./__snapshots__/sgmatrix-plain.sha256');
  });
});
