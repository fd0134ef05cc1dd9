// Tensors as kernel operands. A CPU tensor is uploaded into a pooled buffer (float16 stays as raw
// half bits, bool/uint8 masks stay bytes: kernels read both through u32 words, 2 halves or 4 bytes
// per word). A GPU tensor is bound in place: storage bindings must start at a multiple of
// minStorageBufferOffsetAlignment, so we bind from the aligned offset below the tensor and pass the
// remaining distance to the kernel as an element offset.
import { BYTES_PER_ELEMENT } from '../../core/dtype.js';
import type { Tensor } from '../../core/tensor.js';
import { type GpuRuntime, align4 } from './runtime.js';

export interface Operand {
  readonly binding: GPUBufferBinding;
  /** Element index (in the tensor's dtype) of the tensor's first element inside the binding. */
  readonly elementBase: number;
  /** Set when we uploaded the tensor: release it when the op is done. */
  readonly uploaded: GPUBuffer | undefined;
}

/** Bytes the storage binding of `tensor` spans (what maxStorageBufferBindingSize must allow). */
export function bindingBytes(tensor: Tensor, offsetAlignment: number): number {
  const bytes = tensor.size * BYTES_PER_ELEMENT[tensor.dtype];
  if (!tensor.gpu) return Math.max(4, align4(bytes));
  const start = tensor.gpu.byteOffset - (tensor.gpu.byteOffset % offsetAlignment);
  return Math.max(4, align4(tensor.gpu.byteOffset + bytes - start));
}

/** The element base operandOf() will give `tensor` (0 for CPU tensors, which are uploaded). */
export function elementBaseOf(tensor: Tensor, offsetAlignment: number): number {
  if (!tensor.gpu) return 0;
  return (tensor.gpu.byteOffset % offsetAlignment) / BYTES_PER_ELEMENT[tensor.dtype];
}

export function operandOf(runtime: GpuRuntime, tensor: Tensor, name: string): Operand {
  if (!tensor.gpu) {
    const data = tensor.data as ArrayBufferView;
    const buffer = runtime.upload(data, name);
    return { binding: { buffer, offset: 0, size: buffer.size }, elementBase: 0, uploaded: buffer };
  }
  const { buffer, byteOffset } = tensor.gpu;
  const align = runtime.limits.minStorageBufferOffsetAlignment;
  const offset = byteOffset - (byteOffset % align);
  const size = Math.min(bindingBytes(tensor, align), buffer.size - offset);
  const bpe = BYTES_PER_ELEMENT[tensor.dtype];
  return { binding: { buffer, offset, size }, elementBase: (byteOffset - offset) / bpe, uploaded: undefined };
}

export function releaseOperands(runtime: GpuRuntime, operands: ReadonlyArray<Operand | undefined>): void {
  for (const o of operands) if (o?.uploaded) runtime.release(o.uploaded);
}
