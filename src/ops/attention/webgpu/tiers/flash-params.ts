// The uniform block shared by the fast f16 attention kernels (subgroup-matrix and subgroup tiers):
// element offsets and strides of every input, the causal/window geometry, scale and softcap.
// One WGSL struct and one packer, so the two can never disagree on a field's position.
//
// Shape legend: B batch, Nq/Nkv query/key-value heads, Sq/Sk lengths (per sequence for TND),
// Dq query/key head dim (NoPE part in the MLA split form), Dr RoPE part, Dv value head dim.
import type { AttentionProblem, StridedView } from '../../problem.js';

/** Window bounds beyond this mean "unbounded"; small enough that i ± bound cannot overflow i32. */
export const UNBOUNDED = 1 << 29;

/** [field name, WGSL type] in buffer order; every field is 4 bytes. */
const FIELDS = [
  ['batch', 'u32'], ['headsQ', 'u32'], ['headsKv', 'u32'], ['group', 'u32'],
  ['qOff', 'u32'], ['qSb', 'u32'], ['qSs', 'u32'], ['qSh', 'u32'],
  ['kOff', 'u32'], ['kSb', 'u32'], ['kSs', 'u32'], ['kSh', 'u32'],
  ['vOff', 'u32'], ['vSb', 'u32'], ['vSs', 'u32'], ['vSh', 'u32'],
  ['qrOff', 'u32'], ['qrSb', 'u32'], ['qrSs', 'u32'], ['qrSh', 'u32'],
  ['krOff', 'u32'], ['krSb', 'u32'], ['krSs', 'u32'], ['krSh', 'u32'],
  ['oSb', 'u32'], ['oSs', 'u32'], ['oSh', 'u32'], ['tilesQ', 'u32'],
  ['lseSb', 'u32'], ['lseSh', 'u32'], ['lseSs', 'u32'], ['alibiSb', 'u32'],
  ['scaleLog2', 'f32'], ['scale', 'f32'], ['softcap', 'f32'], ['alignBottomRight', 'u32'],
  ['windowLeft', 'i32'], ['windowRight', 'i32'],
  // always 0: lets a kernel form -inf at run time (WGSL constant expressions cannot be infinite)
  ['zero', 'u32'], ['pad1', 'u32'],
] as const;

export const PARAMS_BYTES = FIELDS.length * 4;

/** The WGSL declaration of the uniform struct `Params`. */
export function paramsStructWgsl(): string {
  return `struct Params {\n${FIELDS.map(([name, type]) => `  ${name}: ${type},`).join('\n')}\n}`;
}

/** Extra element offsets (in elements of the bound buffer) for GPU tensors bound at a byte offset. */
export interface BindingOffsets {
  q: number;
  k: number;
  v: number;
  qRope: number;
  kRope: number;
}

const ZERO_OFFSETS: BindingOffsets = { q: 0, k: 0, v: 0, qRope: 0, kRope: 0 };

export type ParamName = (typeof FIELDS)[number][0];

/** Packs the uniform block from explicit field values (unset fields are 0), for callers without an AttentionProblem. */
export function packParamFields(values: Partial<Record<ParamName, number>>): ArrayBuffer {
  const buffer = new ArrayBuffer(PARAMS_BYTES);
  const view = new DataView(buffer);
  FIELDS.forEach(([name, type], i) => {
    const value = values[name] ?? 0;
    if (type === 'f32') view.setFloat32(4 * i, value, true);
    else if (type === 'i32') view.setInt32(4 * i, value, true);
    else view.setUint32(4 * i, value >>> 0, true);
  });
  return buffer;
}

/** Packs the uniform block for `problem`, with `tilesQ` query tiles along the grid's x axis. */
export function packParams(p: AttentionProblem, tilesQ: number, extra: BindingOffsets = ZERO_OFFSETS): ArrayBuffer {
  const buffer = new ArrayBuffer(PARAMS_BYTES);
  const u32 = new Uint32Array(buffer);
  const i32 = new Int32Array(buffer);
  const f32 = new Float32Array(buffer);
  const index = new Map<string, number>(FIELDS.map(([name], i) => [name, i]));
  const setU = (name: string, value: number) => { u32[index.get(name)!] = value >>> 0; };
  const setView = (prefix: string, view: StridedView | undefined, add: number) => {
    if (!view) return;
    setU(`${prefix}Off`, view.offset + add);
    setU(`${prefix}Sb`, view.strides.b);
    setU(`${prefix}Ss`, view.strides.s);
    setU(`${prefix}Sh`, view.strides.h);
  };
  setU('batch', p.batch);
  setU('headsQ', p.headsQ);
  setU('headsKv', p.headsKv);
  setU('group', p.headsQ / p.headsKv);
  setView('q', p.q, extra.q);
  setView('k', p.k, extra.k);
  setView('v', p.v, extra.v);
  setView('qr', p.qRope, extra.qRope);
  setView('kr', p.kRope, extra.kRope);
  setU('oSb', p.outStrides.b);
  setU('oSs', p.outStrides.s);
  setU('oSh', p.outStrides.h);
  setU('tilesQ', tilesQ);
  setU('lseSb', p.lseStrides.b);
  setU('lseSh', p.lseStrides.h);
  setU('lseSs', p.lseStrides.s);
  setU('alibiSb', p.alibi?.strideB ?? 0);
  f32[index.get('scaleLog2')!] = p.scale * Math.LOG2E;
  f32[index.get('scale')!] = p.scale;
  f32[index.get('softcap')!] = p.softcap;
  setU('alignBottomRight', p.window.align === 'bottom-right' ? 1 : 0);
  i32[index.get('windowLeft')!] = Math.min(p.window.left, UNBOUNDED);
  i32[index.get('windowRight')!] = Math.min(p.window.right, UNBOUNDED);
  return buffer;
}
