// The Tensor type: an element type, a shape, and where the elements live (CPU memory or a GPU
// buffer). Kernels never see a Tensor directly; validation turns tensors into strided views.
import { BYTES_PER_ELEMENT, type DType, type TypedStorage, bfloat16ToFloats, halfToFloats } from './dtype.js';
import { DTypeError, ShapeError, show } from './errors.js';

/** How the dimensions of an attention input are ordered (see README "Layouts"). */
export type Layout = 'BNSD' | 'BSND' | 'BSH' | 'SBH' | 'TND';

/** Where a GPU-resident tensor's elements are. The buffer must have STORAGE usage. */
export interface GpuStorage {
  readonly device: GPUDevice;
  readonly buffer: GPUBuffer;
  /** Byte offset of element 0 inside `buffer`; a multiple of 4. */
  readonly byteOffset: number;
}

export type TensorLocation = 'cpu' | 'webgpu';

export class Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Elements in row-major order (float16 as raw bits), when the tensor lives in CPU memory. */
  readonly data: TypedStorage | undefined;
  /** The GPU buffer holding the elements, when the tensor lives on a GPU. */
  readonly gpu: GpuStorage | undefined;
  /** Optional layout tag, checked against `options.layout` by ops that take one. */
  readonly layout: Layout | undefined;

  private constructor(dtype: DType, shape: readonly number[], data: TypedStorage | undefined, gpu: GpuStorage | undefined, layout?: Layout) {
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.data = data;
    this.gpu = gpu;
    this.layout = layout;
  }

  /** Wraps CPU data without copying. `dtype` is inferred from the array type when omitted. */
  static fromData(data: ArrayBufferView, shape: readonly number[], dtype?: DType, layout?: Layout): Tensor {
    const t = dtype ?? inferDType(data, 'data');
    const storage = viewAs(data, t, 'data');
    checkShape(shape, 'shape');
    const n = numel(shape);
    if (storage.length !== n) {
      throw new ShapeError('data', `Tensor data has ${storage.length} elements but shape ${show(shape)} needs ${n}`);
    }
    return new Tensor(t, shape, storage, undefined, layout);
  }

  /** Wraps a GPU buffer without copying. */
  static fromGpuBuffer(gpu: GpuStorage, shape: readonly number[], dtype: DType, layout?: Layout): Tensor {
    checkShape(shape, 'shape');
    if (gpu.byteOffset % 4 !== 0) {
      throw new ShapeError('byteOffset', `GPU tensor byteOffset must be a multiple of 4, got ${gpu.byteOffset}`);
    }
    const bytes = numel(shape) * BYTES_PER_ELEMENT[dtype];
    if (gpu.byteOffset + bytes > gpu.buffer.size) {
      throw new ShapeError('buffer', `GPU buffer of ${gpu.buffer.size} bytes is too small for shape ${show(shape)} ${dtype} at offset ${gpu.byteOffset} (needs ${gpu.byteOffset + bytes})`);
    }
    return new Tensor(dtype, shape, undefined, gpu, layout);
  }

  get location(): TensorLocation {
    return this.gpu ? 'webgpu' : 'cpu';
  }

  get size(): number {
    return numel(this.shape);
  }

  get rank(): number {
    return this.shape.length;
  }

  /** The same elements under another layout tag (no copy). */
  withLayout(layout: Layout | undefined): Tensor {
    return new Tensor(this.dtype, this.shape, this.data, this.gpu, layout);
  }

  /** The elements as float32 values (converting float16). CPU tensors only. */
  toFloat32(): Float32Array {
    const data = this.cpuData('toFloat32');
    if (this.dtype === 'float16') return halfToFloats(data as Uint16Array);
    if (this.dtype === 'bfloat16') return bfloat16ToFloats(data as Uint16Array);
    if (data instanceof Float32Array) return data;
    return Float32Array.from(data as ArrayLike<number>);
  }

  private cpuData(what: string): TypedStorage {
    if (!this.data) throw new DTypeError('tensor', `${what}() needs a CPU tensor; this one lives on the GPU (read it back first)`);
    return this.data;
  }
}

/** Anything `attention()` accepts as an input: a Tensor, or plain data with a shape. */
export type TensorInput = Tensor | { data: ArrayBufferView; shape: readonly number[]; dtype?: DType; layout?: Layout };

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkShape(shape: readonly number[], argument: string): void {
  if (!Array.isArray(shape)) throw new ShapeError(argument, `${argument} must be an array of dimensions, got ${show(shape)}`);
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new ShapeError(argument, `${argument} must hold non-negative integers, got ${show(shape)}`);
    }
  }
}

/** The dtype a typed array stores: Float32Array -> float32, Uint16Array/Float16Array -> float16 bits... */
export function inferDType(data: ArrayBufferView, argument: string): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Uint16Array) return 'float16';
  const f16 = (globalThis as { Float16Array?: new () => ArrayBufferView }).Float16Array;
  if (f16 && data instanceof f16) return 'float16';
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Int32Array) return 'int32';
  const name = data?.constructor?.name ?? typeof data;
  throw new DTypeError(argument, `${argument} must be a Float32Array, Uint16Array (float16 bits), Uint8Array, Int8Array or Int32Array, got ${name}`);
}

function viewAs(data: ArrayBufferView, dtype: DType, argument: string): TypedStorage {
  const { buffer, byteOffset, byteLength } = data;
  const bpe = BYTES_PER_ELEMENT[dtype];
  const expectedBpe = (data as unknown as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT;
  if (expectedBpe !== bpe) {
    throw new DTypeError(argument, `${argument} is a ${data.constructor.name} but dtype ${show(dtype)} needs ${bpe}-byte elements`);
  }
  switch (dtype) {
    case 'float32': return new Float32Array(buffer, byteOffset, byteLength / 4);
    case 'float16':
    case 'bfloat16': return new Uint16Array(buffer, byteOffset, byteLength / 2);
    case 'bool':
    case 'uint8': return new Uint8Array(buffer, byteOffset, byteLength);
    case 'int8': return new Int8Array(buffer, byteOffset, byteLength);
    case 'int32': return new Int32Array(buffer, byteOffset, byteLength / 4);
  }
}

/** Turns a TensorInput into a Tensor, checking its dtype against `allowed`. */
export function toTensor(input: TensorInput, argument: string, allowed: readonly DType[]): Tensor {
  if (input === null || typeof input !== 'object') {
    throw new ShapeError(argument, `${argument} must be a Tensor or {data, shape}, got ${show(input)}`);
  }
  let tensor: Tensor;
  if (input instanceof Tensor) tensor = input;
  else {
    if (!ArrayBuffer.isView(input.data)) {
      throw new DTypeError(argument, `${argument}.data must be a typed array, got ${show(input.data)}`);
    }
    if (!Array.isArray(input.shape)) {
      throw new ShapeError(argument, `${argument}.shape must be an array of dimensions, got ${show(input.shape)}`);
    }
    const dtype = input.dtype ?? inferDType(input.data, `${argument}.data`);
    try {
      tensor = Tensor.fromData(input.data, input.shape, dtype, input.layout);
    } catch (e) {
      if (e instanceof ShapeError || e instanceof DTypeError) {
        const Cls = e.constructor as typeof ShapeError;
        throw new Cls(argument, `${argument}: ${e.message}`);
      }
      throw e;
    }
  }
  if (!allowed.includes(tensor.dtype)) {
    throw new DTypeError(argument, `${argument} must have dtype ${allowed.join(' or ')}, got ${tensor.dtype}`);
  }
  return tensor;
}
