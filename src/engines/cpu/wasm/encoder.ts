// A small WebAssembly binary encoder, so the CPU kernels are built from readable TypeScript at
// runtime (no committed .wasm, no assembler dependency, works in a browser bundle).
//
// Kernels are written as folded expressions, the way WAT's S-expression form reads:
//   f.set(acc, v.add(f.get(acc), v.mul(f.get(a), f.get(b))))
// Every expression carries its bytes and its WAT text, so `FUSEDATTN_DEBUG_WASM=1` (or
// `ModuleBuilder.wat()`) prints what was generated. Only the instructions our kernels use are here;
// opcodes follow the core spec (0xFD-prefixed SIMD opcodes as in the final SIMD proposal).

export type ValType = 'i32' | 'f32' | 'v128';

const VALTYPE: Record<ValType, number> = { i32: 0x7f, f32: 0x7d, v128: 0x7b };

/** An expression: the bytes that push its value and its folded WAT text. */
export interface Expr {
  readonly bytes: readonly number[];
  readonly wat: string;
}

export interface Local {
  readonly index: number;
  readonly type: ValType;
  readonly name: string;
}

export interface Label {
  readonly depth: number;
  readonly name: string;
}

// ---------- LEB128 and constants

export function uleb(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

export function sleb(value: number): number[] {
  const out: number[] = [];
  let v = value | 0;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const done = (v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

const f32Bytes = (x: number): number[] => Array.from(new Uint8Array(Float32Array.of(x).buffer));

function str(s: string): number[] {
  const bytes = Array.from(new TextEncoder().encode(s));
  return [...uleb(bytes.length), ...bytes];
}

function fmtF32(x: number): string {
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  return String(Math.fround(x));
}

// ---------- expression constructors (no immediates / memory / lanes)

const simd = (op: number) => [0xfd, ...uleb(op)];

function node(name: string, opcode: readonly number[], args: readonly Expr[], immediateText = ''): Expr {
  const bytes: number[] = [];
  for (const a of args) bytes.push(...a.bytes);
  bytes.push(...opcode);
  const inner = [name + immediateText, ...args.map((a) => a.wat)].join(' ');
  return { bytes, wat: `(${inner})` };
}

const op = (name: string, opcode: readonly number[]) => (...args: Expr[]): Expr => node(name, opcode, args);

/** Memory access: alignment exponent and byte offset. */
function memarg(align: number, offset: number): number[] {
  return [...uleb(align), ...uleb(offset)];
}

const load = (name: string, opcode: readonly number[], align: number) => (addr: Expr, offset = 0): Expr =>
  node(name, [...opcode, ...memarg(align, offset)], [addr], offset ? ` offset=${offset}` : '');

const store = (name: string, opcode: readonly number[], align: number) => (addr: Expr, value: Expr, offset = 0): Expr =>
  node(name, [...opcode, ...memarg(align, offset)], [addr, value], offset ? ` offset=${offset}` : '');

/** i32 instructions. */
export const i32 = {
  const: (n: number): Expr => ({ bytes: [0x41, ...sleb(n)], wat: `(i32.const ${n | 0})` }),
  add: op('i32.add', [0x6a]),
  sub: op('i32.sub', [0x6b]),
  mul: op('i32.mul', [0x6c]),
  div_s: op('i32.div_s', [0x6d]),
  shr_s: op('i32.shr_s', [0x75]),
  and: op('i32.and', [0x71]),
  or: op('i32.or', [0x72]),
  shl: op('i32.shl', [0x74]),
  eqz: op('i32.eqz', [0x45]),
  eq: op('i32.eq', [0x46]),
  ne: op('i32.ne', [0x47]),
  lt_s: op('i32.lt_s', [0x48]),
  gt_s: op('i32.gt_s', [0x4a]),
  le_s: op('i32.le_s', [0x4c]),
  ge_s: op('i32.ge_s', [0x4e]),
  min_s: (a: Expr, b: Expr): Expr => select(a, b, i32.lt_s(a, b)),
  load8_u: load('i32.load8_u', [0x2d], 0),
  trunc_f32_s: op('i32.trunc_f32_s', [0xa8]),
  // used by the generated score/mask kernels (src/ops/attention/mods/cpu/)
  load: load('i32.load', [0x28], 2),
  rem_s: op('i32.rem_s', [0x6f]),
  /** Saturating f32 -> i32 (NaN -> 0), never traps. */
  trunc_sat_f32_s: op('i32.trunc_sat_f32_s', [0xfc, 0x00]),
};

/** f32 scalar instructions. */
export const f32 = {
  const: (x: number): Expr => ({ bytes: [0x43, ...f32Bytes(x)], wat: `(f32.const ${fmtF32(x)})` }),
  load: load('f32.load', [0x2a], 2),
  store: store('f32.store', [0x38], 2),
  add: op('f32.add', [0x92]),
  sub: op('f32.sub', [0x93]),
  mul: op('f32.mul', [0x94]),
  div: op('f32.div', [0x95]),
  max: op('f32.max', [0x97]),
  eq: op('f32.eq', [0x5b]),
  ne: op('f32.ne', [0x5c]),
  convert_i32_s: op('f32.convert_i32_s', [0xb2]),
};

/** `select(a, b, cond)`: a when cond != 0, else b. */
export function select(a: Expr, b: Expr, cond: Expr): Expr {
  return node('select', [0x1b], [a, b, cond]);
}

const lane = (name: string, opcode: number) => (vec: Expr, index: number): Expr =>
  ({ bytes: [...vec.bytes, ...simd(opcode), index], wat: `(${name} ${index} ${vec.wat})` });

const replaceLane = (name: string, opcode: number) => (vec: Expr, value: Expr, index: number): Expr =>
  ({ bytes: [...vec.bytes, ...value.bytes, ...simd(opcode), index], wat: `(${name} ${index} ${vec.wat} ${value.wat})` });

const storeLane = (name: string, opcode: number, align: number) => (addr: Expr, vec: Expr, index: number, offset = 0): Expr =>
  ({
    bytes: [...addr.bytes, ...vec.bytes, ...simd(opcode), ...memarg(align, offset), index],
    wat: `(${name}${offset ? ` offset=${offset}` : ''} ${index} ${addr.wat} ${vec.wat})`,
  });

const loadLane = (name: string, opcode: number, align: number) => (addr: Expr, vec: Expr, index: number, offset = 0): Expr =>
  ({
    bytes: [...addr.bytes, ...vec.bytes, ...simd(opcode), ...memarg(align, offset), index],
    wat: `(${name}${offset ? ` offset=${offset}` : ''} ${index} ${addr.wat} ${vec.wat})`,
  });

/** v128 instructions not tied to a lane shape. Loads use alignment 4 bytes: we never promise 16. */
export const v128 = {
  load: load('v128.load', simd(0x00), 2),
  load32_splat: load('v128.load32_splat', simd(0x09), 2),
  store: store('v128.store', simd(0x0b), 2),
  load32_zero: load('v128.load32_zero', simd(0x5c), 2),
  load64_zero: load('v128.load64_zero', simd(0x5d), 2),
  load32_lane: loadLane('v128.load32_lane', 0x56, 2),
  store32_lane: storeLane('v128.store32_lane', 0x5a, 2),
  store64_lane: storeLane('v128.store64_lane', 0x5b, 2),
  and: op('v128.and', simd(0x4e)),
  or: op('v128.or', simd(0x50)),
  bitselect: op('v128.bitselect', simd(0x52)),
  any_true: op('v128.any_true', simd(0x53)),
  not: op('v128.not', simd(0x4d)),
  andnot: op('v128.andnot', simd(0x4f)),
  xor: op('v128.xor', simd(0x51)),
  /** Lane shuffle of two vectors, by f32 lane indices (0-3 from a, 4-7 from b). */
  shuffle32: (a: Expr, b: Expr, lanes: readonly [number, number, number, number]): Expr => {
    const bytes = lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]);
    return { bytes: [...a.bytes, ...b.bytes, ...simd(0x0d), ...bytes], wat: `(i8x16.shuffle ${bytes.join(' ')} ${a.wat} ${b.wat})` };
  },
};

/** f32x4 instructions. */
export const f32x4 = {
  splat: op('f32x4.splat', simd(0x13)),
  const: (x: number): Expr => {
    const b = f32Bytes(x);
    return { bytes: [...simd(0x0c), ...b, ...b, ...b, ...b], wat: `(v128.const f32x4 ${fmtF32(x)} ${fmtF32(x)} ${fmtF32(x)} ${fmtF32(x)})` };
  },
  extract_lane: lane('f32x4.extract_lane', 0x1f),
  eq: op('f32x4.eq', simd(0x41)),
  ne: op('f32x4.ne', simd(0x42)),
  lt: op('f32x4.lt', simd(0x43)),
  gt: op('f32x4.gt', simd(0x44)),
  le: op('f32x4.le', simd(0x45)),
  ge: op('f32x4.ge', simd(0x46)),
  ceil: op('f32x4.ceil', simd(0x67)),
  floor: op('f32x4.floor', simd(0x68)),
  nearest: op('f32x4.nearest', simd(0x6a)),
  sqrt: op('f32x4.sqrt', simd(0xe3)),
  abs: op('f32x4.abs', simd(0xe0)),
  neg: op('f32x4.neg', simd(0xe1)),
  add: op('f32x4.add', simd(0xe4)),
  sub: op('f32x4.sub', simd(0xe5)),
  mul: op('f32x4.mul', simd(0xe6)),
  div: op('f32x4.div', simd(0xe7)),
  min: op('f32x4.min', simd(0xe8)),
  max: op('f32x4.max', simd(0xe9)),
  /** Pseudo-max b < a ? a : b... precisely (a < b ? b : a): one maxps, no NaN/-0 fix-ups. */
  pmax: op('f32x4.pmax', simd(0xeb)),
  convert_i32x4_s: op('f32x4.convert_i32x4_s', simd(0xfa)),
  /** Relaxed SIMD: a*b + c, fused where the hardware has FMA. Only when the engine validates it. */
  relaxed_madd: op('f32x4.relaxed_madd', simd(0x105)),
};

/** i32x4 instructions. */
export const i32x4 = {
  splat: op('i32x4.splat', simd(0x11)),
  const: (a: number, b: number, c: number, d: number): Expr => {
    const bytes = Array.from(new Uint8Array(Int32Array.of(a, b, c, d).buffer));
    return { bytes: [...simd(0x0c), ...bytes], wat: `(v128.const i32x4 ${a} ${b} ${c} ${d})` };
  },
  extract_lane: lane('i32x4.extract_lane', 0x1b),
  replace_lane: replaceLane('i32x4.replace_lane', 0x1c),
  eq: op('i32x4.eq', simd(0x37)),
  ne: op('i32x4.ne', simd(0x38)),
  lt_s: op('i32x4.lt_s', simd(0x39)),
  gt_s: op('i32x4.gt_s', simd(0x3b)),
  le_s: op('i32x4.le_s', simd(0x3d)),
  ge_s: op('i32x4.ge_s', simd(0x3f)),
  abs: op('i32x4.abs', simd(0xa0)),
  neg: op('i32x4.neg', simd(0xa1)),
  shl: op('i32x4.shl', simd(0xab)),
  shr_u: op('i32x4.shr_u', simd(0xad)),
  add: op('i32x4.add', simd(0xae)),
  sub: op('i32x4.sub', simd(0xb1)),
  mul: op('i32x4.mul', simd(0xb5)),
  min_s: op('i32x4.min_s', simd(0xb6)),
  max_s: op('i32x4.max_s', simd(0xb8)),
  trunc_sat_f32x4_s: op('i32x4.trunc_sat_f32x4_s', simd(0xf8)),
  extend_low_i16x8_u: op('i32x4.extend_low_i16x8_u', simd(0xa9)),
  extend_high_i16x8_u: op('i32x4.extend_high_i16x8_u', simd(0xaa)),
};

/** i64x2 instructions. */
export const i64x2 = {
  /** u64 products of lanes 0, 1 (low) or 2, 3 (high) of two i32x4 (as u32). */
  extmul_low_i32x4_u: op('i64x2.extmul_low_i32x4_u', simd(0xde)),
  extmul_high_i32x4_u: op('i64x2.extmul_high_i32x4_u', simd(0xdf)),
};

export const i16x8 = {
  extend_low_i8x16_u: op('i16x8.extend_low_i8x16_u', simd(0x89)),
};

// ---------- functions

/** Builds one function body: statements, structured control flow with named labels, locals. */
export class FunctionBuilder {
  readonly name: string;
  readonly params: Local[] = [];
  readonly result: ValType | undefined;
  private readonly locals: Local[] = [];
  private readonly code: number[] = [];
  private readonly lines: string[] = [];
  private readonly labels: string[] = [];

  constructor(name: string, params: ReadonlyArray<readonly [string, ValType]>, result?: ValType) {
    this.name = name;
    this.result = result;
    params.forEach(([n, t], index) => this.params.push({ index, type: t, name: n }));
  }

  param(name: string): Local {
    const p = this.params.find((x) => x.name === name);
    if (!p) throw new Error(`wasm builder: ${this.name} has no parameter ${name}`);
    return p;
  }

  local(type: ValType, name: string): Local {
    const l = { index: this.params.length + this.locals.length, type, name: `${name}_${this.locals.length}` };
    this.locals.push(l);
    return l;
  }

  get(l: Local): Expr {
    return { bytes: [0x20, ...uleb(l.index)], wat: `(local.get $${l.name})` };
  }

  tee(l: Local, value: Expr): Expr {
    return { bytes: [...value.bytes, 0x22, ...uleb(l.index)], wat: `(local.tee $${l.name} ${value.wat})` };
  }

  set(l: Local, value: Expr): void {
    this.statement({ bytes: [...value.bytes, 0x21, ...uleb(l.index)], wat: `(local.set $${l.name} ${value.wat})` });
  }

  /** An expression evaluated for its effect (stores). */
  statement(e: Expr): void {
    this.code.push(...e.bytes);
    this.lines.push(`${'  '.repeat(this.labels.length + 2)}${e.wat}`);
  }

  private open(kind: 'block' | 'loop' | 'if', name: string, opcode: number, prefix: readonly number[] = []): Label {
    this.code.push(...prefix, opcode, 0x40);
    this.lines.push(`${'  '.repeat(this.labels.length + 2)}(${kind} $${name}`);
    this.labels.push(name);
    return { depth: this.labels.length, name };
  }

  private close(): void {
    this.code.push(0x0b);
    this.labels.pop();
    this.lines.push(`${'  '.repeat(this.labels.length + 2)})`);
  }

  /** `block`: `br(label)` inside jumps past its end. */
  block(name: string, body: (exit: Label) => void): void {
    const label = this.open('block', name, 0x02);
    body(label);
    this.close();
  }

  /** `loop`: `br(label)` inside jumps back to its start. */
  loop(name: string, body: (again: Label) => void): void {
    const label = this.open('loop', name, 0x03);
    body(label);
    this.close();
  }

  /** `if cond then ... [else ...]`. */
  if(cond: Expr, then: () => void, otherwise?: () => void): void {
    this.open('if', 'if', 0x04, cond.bytes);
    then();
    if (otherwise) {
      this.code.push(0x05);
      this.lines.push(`${'  '.repeat(this.labels.length + 1)}(else)`);
      otherwise();
    }
    this.close();
  }

  br(label: Label): void {
    this.code.push(0x0c, ...uleb(this.labels.length - label.depth));
    this.lines.push(`${'  '.repeat(this.labels.length + 2)}(br $${label.name})`);
  }

  brIf(label: Label, cond: Expr): void {
    this.code.push(...cond.bytes, 0x0d, ...uleb(this.labels.length - label.depth));
    this.lines.push(`${'  '.repeat(this.labels.length + 2)}(br_if $${label.name} ${cond.wat})`);
  }

  /** `for (i = from; i < to; i += step)` over i32 locals, checked at the top. */
  forRange(i: Local, from: Expr, to: Expr, step: number, body: () => void): void {
    this.set(i, from);
    this.block(`${i.name}_done`, (done) => {
      this.loop(`${i.name}_loop`, (again) => {
        this.brIf(done, i32.ge_s(this.get(i), to));
        body();
        this.set(i, i32.add(this.get(i), i32.const(step)));
        this.br(again);
      });
    });
  }

  returnValue(value: Expr): void {
    this.statement({ bytes: [...value.bytes, 0x0f], wat: `(return ${value.wat})` });
  }

  /** The function's code-section entry (locals + body). */
  encode(): number[] {
    const groups: number[] = [];
    let count = 0;
    for (let i = 0; i < this.locals.length; i++) {
      count++;
      if (i === this.locals.length - 1 || this.locals[i + 1].type !== this.locals[i].type) {
        groups.push(...uleb(count), VALTYPE[this.locals[i].type]);
        count = 0;
      }
    }
    const groupCount = groupsCount(this.locals);
    const body = [...uleb(groupCount), ...groups, ...this.code, 0x0b];
    return [...uleb(body.length), ...body];
  }

  signature(): number[] {
    return [0x60, ...uleb(this.params.length), ...this.params.map((p) => VALTYPE[p.type]), ...(this.result ? [1, VALTYPE[this.result]] : [0])];
  }

  wat(): string {
    const params = this.params.map((p) => `(param $${p.name} ${p.type})`).join(' ');
    const locals = this.locals.map((l) => `    (local $${l.name} ${l.type})`).join('\n');
    const result = this.result ? ` (result ${this.result})` : '';
    return `  (func $${this.name} (export "${this.name}") ${params}${result}\n${locals}\n${this.lines.join('\n')}\n  )`;
  }
}

function groupsCount(locals: readonly Local[]): number {
  let n = 0;
  for (let i = 0; i < locals.length; i++) if (i === 0 || locals[i].type !== locals[i - 1].type) n++;
  return n;
}

/** A module importing one memory ("env" "memory") and exporting every function by name. */
export class ModuleBuilder {
  private readonly functions: FunctionBuilder[] = [];
  constructor(private readonly memory: { shared: boolean; maximumPages: number }) {}

  func(name: string, params: ReadonlyArray<readonly [string, ValType]>, result: ValType | undefined, body: (f: FunctionBuilder) => void): void {
    const f = new FunctionBuilder(name, params, result);
    body(f);
    this.functions.push(f);
  }

  bytes(): Uint8Array<ArrayBuffer> {
    const section = (id: number, content: number[]) => [id, ...uleb(content.length), ...content];
    const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
    const types = this.functions.map((f) => f.signature());
    const { shared, maximumPages } = this.memory;
    const memoryType = [shared ? 0x03 : 0x01, ...uleb(1), ...uleb(maximumPages)];
    const imports = [[...str('env'), ...str('memory'), 0x02, ...memoryType]];
    const out = [
      0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
      ...section(1, vec(types)),
      ...section(2, vec(imports)),
      ...section(3, vec(this.functions.map((_, i) => uleb(i)))),
      ...section(7, vec(this.functions.map((f, i) => [...str(f.name), 0x00, ...uleb(i)]))),
      ...section(10, vec(this.functions.map((f) => f.encode()))),
    ];
    return Uint8Array.from(out);
  }

  wat(): string {
    const { shared, maximumPages } = this.memory;
    return `(module\n  (import "env" "memory" (memory 1 ${maximumPages}${shared ? ' shared' : ''}))\n${this.functions.map((f) => f.wat()).join('\n')}\n)`;
  }
}
