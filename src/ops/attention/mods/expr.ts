// Typed expression builders for score and mask functions (FlexAttention's score_mod / mask_mod,
// in TypeScript). A user function is *traced* once: it receives symbolic variables and returns an
// expression tree, which is data for the code generators (WGSL, WebAssembly SIMD) and the float64
// reference evaluator. User JavaScript never runs per element and nothing is eval'ed.
//
// Three kinds of values: float (f32 in the kernels, float64 in the reference), int (i32, wrapping)
// and bool. Int and float never mix silently except by promotion: int op float -> float. An int
// op a non-integer number is an error (say `.toFloat()`), so every kernel computes the same thing.
//
// Semantics every backend implements identically (tests hold them to it):
//   int div truncates toward zero, x / 0 = x, x % 0 = 0 (WGSL's rules; the WASM code guards them);
//   toInt() truncates, saturates at the i32 range, NaN -> 0;
//   tensor.at(i, j, ...) clamps every index into [0, dim - 1] (relative-position tables need no
//   bounds arithmetic, and nothing reads outside the captured data).
import { Tensor } from '../../../core/tensor.js';
import { DTypeError, ShapeError, ValueError, show } from '../../../core/errors.js';

export type Kind = 'float' | 'int' | 'bool';

/** Variables of a score/mask/sink function. `qLen`/`kvLen` are the lengths of sequence `b`. */
export type VarName = 'score' | 'b' | 'h' | 'q' | 'kv' | 'qLen' | 'kvLen';

export type UnaryOp = 'neg' | 'abs' | 'exp' | 'log' | 'tanh' | 'sqrt' | 'floor' | 'ceil' | 'toInt' | 'toFloat' | 'not';
export type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'mod' | 'min' | 'max' | 'lt' | 'le' | 'gt' | 'ge' | 'eq' | 'ne' | 'and' | 'or';
export type Op = 'var' | 'const' | UnaryOp | BinaryOp | 'select' | 'load';

/** One node of an expression tree (children are nodes; trees may share subtrees). */
export interface Node {
  readonly op: Op;
  readonly kind: Kind;
  readonly args: readonly Node[];
  /** 'const': the value (booleans as 0/1). */
  readonly value?: number;
  /** 'var': which variable. */
  readonly name?: VarName;
  /** 'load': the captured tensor read (args are its indices). */
  readonly tensor?: ModTensor;
}

function node(op: Op, kind: Kind, args: readonly Node[], extra: Partial<Pick<Node, 'value' | 'name' | 'tensor'>> = {}): Node {
  return { op, kind, args, ...extra };
}

const COMPARISONS: readonly BinaryOp[] = ['lt', 'le', 'gt', 'ge', 'eq', 'ne'];

/** Turns a number or expression into a node of `want` kind (int -> float promotion only). */
function operand(x: Expr | number, want: 'float' | 'int', method: string): Node {
  if (typeof x === 'number') {
    if (Number.isNaN(x)) throw new ValueError(method, `${method}: NaN is not a constant an expression can hold`);
    if (want === 'int') {
      if (!Number.isInteger(x) || x < -(2 ** 31) || x >= 2 ** 31) {
        throw new ValueError(method, `${method}: ${x} is not an i32 integer; convert the int side with .toFloat() to compute in float`);
      }
      return node('const', 'int', [], { value: x });
    }
    return node('const', 'float', [], { value: x });
  }
  if (!(x instanceof Expr)) throw new ValueError(method, `${method}: expected an expression or a number, got ${show(x)}`);
  if (x.node.kind === want) return x.node;
  if (x.node.kind === 'int' && want === 'float') return node('toFloat', 'float', [x.node]);
  throw new ValueError(method, `${method}: expected a ${want} operand, got a ${x.node.kind} expression`);
}

/** The result kind of an arithmetic op between `self` (int or float) and `x`. */
function arithmeticKind(self: Kind, x: Expr | number): 'float' | 'int' {
  if (self === 'float') return 'float';
  if (x instanceof Expr && x.node.kind === 'float') return 'float';
  return 'int';
}

export abstract class Expr {
  readonly node: Node;
  constructor(n: Node) {
    this.node = n;
  }
  get kind(): Kind {
    return this.node.kind;
  }
}

/** Shared by FloatExpr and IntExpr: arithmetic, comparisons, min/max/abs. */
abstract class NumericExpr extends Expr {
  protected binary(op: BinaryOp, x: Expr | number): Expr {
    const kind = arithmeticKind(this.node.kind, x);
    const method = `${this.node.kind}.${op}`;
    const a = kind === 'float' ? operand(this, 'float', method) : this.node;
    const b = operand(x, kind, method);
    if (COMPARISONS.includes(op)) return new BoolExpr(node(op, 'bool', [a, b]));
    return wrap(node(op, kind, [a, b]));
  }
  lt(x: Expr | number): BoolExpr { return this.binary('lt', x) as BoolExpr; }
  le(x: Expr | number): BoolExpr { return this.binary('le', x) as BoolExpr; }
  gt(x: Expr | number): BoolExpr { return this.binary('gt', x) as BoolExpr; }
  ge(x: Expr | number): BoolExpr { return this.binary('ge', x) as BoolExpr; }
  eq(x: Expr | number): BoolExpr { return this.binary('eq', x) as BoolExpr; }
  ne(x: Expr | number): BoolExpr { return this.binary('ne', x) as BoolExpr; }
}

export class FloatExpr extends NumericExpr {
  add(x: Expr | number): FloatExpr { return this.binary('add', x) as FloatExpr; }
  sub(x: Expr | number): FloatExpr { return this.binary('sub', x) as FloatExpr; }
  mul(x: Expr | number): FloatExpr { return this.binary('mul', x) as FloatExpr; }
  div(x: Expr | number): FloatExpr { return this.binary('div', x) as FloatExpr; }
  min(x: Expr | number): FloatExpr { return this.binary('min', x) as FloatExpr; }
  max(x: Expr | number): FloatExpr { return this.binary('max', x) as FloatExpr; }
  clamp(lo: Expr | number, hi: Expr | number): FloatExpr { return this.max(lo).min(hi); }
  neg(): FloatExpr { return new FloatExpr(node('neg', 'float', [this.node])); }
  abs(): FloatExpr { return new FloatExpr(node('abs', 'float', [this.node])); }
  exp(): FloatExpr { return new FloatExpr(node('exp', 'float', [this.node])); }
  log(): FloatExpr { return new FloatExpr(node('log', 'float', [this.node])); }
  tanh(): FloatExpr { return new FloatExpr(node('tanh', 'float', [this.node])); }
  sqrt(): FloatExpr { return new FloatExpr(node('sqrt', 'float', [this.node])); }
  floor(): FloatExpr { return new FloatExpr(node('floor', 'float', [this.node])); }
  ceil(): FloatExpr { return new FloatExpr(node('ceil', 'float', [this.node])); }
  /** Truncates toward zero, saturating at the i32 range; NaN -> 0. */
  toInt(): IntExpr { return new IntExpr(node('toInt', 'int', [this.node])); }
}

export class IntExpr extends NumericExpr {
  add(x: FloatExpr): FloatExpr;
  add(x: IntExpr | number): IntExpr;
  add(x: Expr | number): IntExpr | FloatExpr { return this.binary('add', x) as IntExpr; }
  sub(x: FloatExpr): FloatExpr;
  sub(x: IntExpr | number): IntExpr;
  sub(x: Expr | number): IntExpr | FloatExpr { return this.binary('sub', x) as IntExpr; }
  mul(x: FloatExpr): FloatExpr;
  mul(x: IntExpr | number): IntExpr;
  mul(x: Expr | number): IntExpr | FloatExpr { return this.binary('mul', x) as IntExpr; }
  /** Integer division truncating toward zero (x / 0 = x); with a float operand, float division. */
  div(x: FloatExpr): FloatExpr;
  div(x: IntExpr | number): IntExpr;
  div(x: Expr | number): IntExpr | FloatExpr { return this.binary('div', x) as IntExpr; }
  /** Remainder with the sign of the dividend (x % 0 = 0). */
  mod(x: IntExpr | number): IntExpr {
    return new IntExpr(node('mod', 'int', [this.node, operand(x, 'int', 'int.mod')]));
  }
  min(x: FloatExpr): FloatExpr;
  min(x: IntExpr | number): IntExpr;
  min(x: Expr | number): IntExpr | FloatExpr { return this.binary('min', x) as IntExpr; }
  max(x: FloatExpr): FloatExpr;
  max(x: IntExpr | number): IntExpr;
  max(x: Expr | number): IntExpr | FloatExpr { return this.binary('max', x) as IntExpr; }
  clamp(lo: IntExpr | number, hi: IntExpr | number): IntExpr { return this.max(lo).min(hi); }
  neg(): IntExpr { return new IntExpr(node('neg', 'int', [this.node])); }
  abs(): IntExpr { return new IntExpr(node('abs', 'int', [this.node])); }
  toFloat(): FloatExpr { return new FloatExpr(node('toFloat', 'float', [this.node])); }
}

export class BoolExpr extends Expr {
  and(x: BoolExpr | boolean): BoolExpr { return new BoolExpr(node('and', 'bool', [this.node, boolOperand(x, 'bool.and')])); }
  or(x: BoolExpr | boolean): BoolExpr { return new BoolExpr(node('or', 'bool', [this.node, boolOperand(x, 'bool.or')])); }
  not(): BoolExpr { return new BoolExpr(node('not', 'bool', [this.node])); }
  /** `this ? a : b` (both sides are computed; pick the kind of the wider side). */
  select(a: FloatExpr | number, b: FloatExpr | number): FloatExpr;
  select(a: IntExpr, b: IntExpr | number): IntExpr;
  select(a: IntExpr | number, b: IntExpr): IntExpr;
  select(a: BoolExpr, b: BoolExpr): BoolExpr;
  select(a: Expr | number, b: Expr | number): Expr {
    const kinds = [a, b].map((x) => (typeof x === 'number' ? undefined : x.node.kind));
    if (kinds.includes('bool')) {
      if (kinds[0] !== 'bool' || kinds[1] !== 'bool') throw new ValueError('bool.select', 'bool.select: both sides must be bool when one is');
      return new BoolExpr(node('select', 'bool', [this.node, (a as Expr).node, (b as Expr).node]));
    }
    const kind: 'float' | 'int' = kinds.includes('float') || kinds.every((k) => k === undefined) ? 'float' : 'int';
    return wrap(node('select', kind, [this.node, operand(a, kind, 'bool.select'), operand(b, kind, 'bool.select')]));
  }
}

function boolOperand(x: BoolExpr | boolean, method: string): Node {
  if (typeof x === 'boolean') return node('const', 'bool', [], { value: x ? 1 : 0 });
  if (!(x instanceof BoolExpr)) throw new ValueError(method, `${method}: expected a bool expression, got ${show(x)}`);
  return x.node;
}

export function wrap(n: Node): Expr {
  if (n.kind === 'float') return new FloatExpr(n);
  if (n.kind === 'int') return new IntExpr(n);
  return new BoolExpr(n);
}

/** A float constant. */
export function float(value: number): FloatExpr {
  return new FloatExpr(operand(value, 'float', 'float'));
}

/** An i32 constant. */
export function int(value: number): IntExpr {
  return new IntExpr(operand(value, 'int', 'int'));
}

/** A bool constant. */
export function bool(value: boolean): BoolExpr {
  return new BoolExpr(boolOperand(value, 'bool'));
}

export function variable(name: VarName): FloatExpr | IntExpr {
  return name === 'score' ? new FloatExpr(node('var', 'float', [], { name })) : new IntExpr(node('var', 'int', [], { name }));
}

// ---------- captured tensors

/**
 * A small tensor an expression reads (per-head sink logits, a relative-position bias table, a
 * document-id vector): float32 or int32 data of rank 1 to 4, copied at capture so later writes to
 * the caller's array cannot change a kernel's input behind its back.
 */
export class ModTensor {
  readonly data: Float32Array | Int32Array;
  readonly shape: readonly number[];
  readonly kind: 'float' | 'int';
  readonly name: string;

  constructor(data: Float32Array | Int32Array, shape: readonly number[], name: string) {
    this.data = data;
    this.shape = Object.freeze([...shape]);
    this.kind = data instanceof Int32Array ? 'int' : 'float';
    this.name = name;
  }

  get rank(): number {
    return this.shape.length;
  }

  /** Element at the given indices (each clamped into its dimension). */
  protected load(index: ReadonlyArray<IntExpr | number>): Node {
    if (index.length !== this.rank) {
      throw new ShapeError(this.name, `${this.name}.at() takes ${this.rank} indices (shape ${show(this.shape)}), got ${index.length}`);
    }
    return node('load', this.kind, index.map((i) => operand(i, 'int', `${this.name}.at`)), { tensor: this });
  }
}

export class FloatTensor extends ModTensor {
  at(...index: Array<IntExpr | number>): FloatExpr { return new FloatExpr(this.load(index)); }
}

export class IntTensor extends ModTensor {
  at(...index: Array<IntExpr | number>): IntExpr { return new IntExpr(this.load(index)); }
}

type FloatData = Float32Array | Float64Array | readonly number[];

/**
 * Captures data for expressions to read. Float32Array / Float64Array / number[] / float Tensors
 * give a FloatTensor; Int32Array, Uint8Array and int32 / bool / uint8 Tensors an IntTensor.
 * `shape` defaults to the data's length (rank 1) or the Tensor's shape.
 */
export function capture(data: Int32Array | Uint8Array | Int8Array | Uint16Array | Int16Array, shape?: readonly number[], name?: string): IntTensor;
export function capture(data: FloatData, shape?: readonly number[], name?: string): FloatTensor;
export function capture(data: Tensor, shape?: readonly number[], name?: string): FloatTensor | IntTensor;
export function capture(data: unknown, shape?: readonly number[], name = 'captured tensor'): FloatTensor | IntTensor {
  let values: Float32Array | Int32Array;
  let dims = shape;
  if (data instanceof Tensor) {
    if (!data.data) throw new DTypeError(name, `${name}: a captured tensor must be CPU data (it is copied into the kernels' inputs), got a ${data.location} tensor`);
    dims ??= data.shape;
    if (data.dtype === 'float32' || data.dtype === 'float16') values = data.toFloat32().slice();
    else if (data.dtype === 'int32' || data.dtype === 'bool' || data.dtype === 'uint8') values = Int32Array.from(data.data as ArrayLike<number>);
    else throw new DTypeError(name, `${name}: captured tensors hold float32, float16, int32, uint8 or bool data, got ${data.dtype}`);
  } else if (data instanceof Int32Array || data instanceof Uint8Array || data instanceof Int8Array || data instanceof Uint16Array || data instanceof Int16Array) {
    values = Int32Array.from(data);
  } else if (data instanceof Float32Array || data instanceof Float64Array || Array.isArray(data)) {
    values = Float32Array.from(data as ArrayLike<number>);
  } else {
    throw new DTypeError(name, `${name}: expected a typed array, a number[] or a Tensor, got ${show(data)}`);
  }
  dims ??= [values.length];
  if (!Array.isArray(dims) || dims.length < 1 || dims.length > 4 || !dims.every((d) => Number.isInteger(d) && d >= 1)) {
    throw new ShapeError(name, `${name}: shape must have 1 to 4 positive integer dimensions, got ${show(dims)}`);
  }
  const size = dims.reduce((a, b) => a * b, 1);
  if (size !== values.length) throw new ShapeError(name, `${name}: shape ${show(dims)} needs ${size} elements, got ${values.length}`);
  if (values instanceof Float32Array) {
    for (let i = 0; i < values.length; i++) {
      if (Number.isNaN(values[i])) throw new ValueError(name, `${name}[${i}] is NaN`);
    }
    return new FloatTensor(values, dims, name);
  }
  return new IntTensor(values, dims, name);
}
