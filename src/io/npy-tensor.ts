// Between .npy arrays and Tensors. Tensor has no int64 (nothing on a GPU wants it), so int64
// arrays are only for cu_seqlens, which attention() accepts as a BigInt64Array directly.
import { DTypeError } from '../core/errors.js';
import { Tensor } from '../core/tensor.js';
import type { NpyArray } from './npy.js';

/** Wraps an array's data as a CPU Tensor (no copy). `name` goes into the error for int64. */
export function npyToTensor(array: NpyArray, name = 'array'): Tensor {
  if (array.dtype === 'int64') {
    throw new DTypeError(name, `${name} has dtype int64, which only cu_seqlens accept; expected float32, float16, bool, uint8 or int32`);
  }
  return Tensor.fromData(array.data as Exclude<NpyArray['data'], BigInt64Array>, array.shape, array.dtype);
}

/** A CPU tensor as a .npy array (no copy). */
export function tensorToNpy(tensor: Tensor, name = 'tensor'): NpyArray {
  if (!tensor.data) throw new DTypeError(name, `${name} lives on the GPU; read it back before saving it as .npy`);
  return { dtype: tensor.dtype, shape: [...tensor.shape], data: tensor.data } as NpyArray;
}

