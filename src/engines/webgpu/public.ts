// The WebGPU entry points of the public API, loading the backend lazily (a CPU-only user never
// loads the GPU runtime).
import type { AdapterDescription } from './device.js';

/**
 * The GPUDevice fusedattn uses when options.device is not given (acquired on first call), so
 * callers can put inputs on it (Tensor.fromGpuBuffer) and read results. DeviceError if none.
 */
export async function gpuDevice(): Promise<GPUDevice> {
  const { getRuntime } = await import('./runtime.js');
  return (await getRuntime()).device;
}

/** The adapter behind gpuDevice(): name, backend, features, key limits, subgroup-matrix shapes. */
export async function gpuAdapterInfo(): Promise<AdapterDescription> {
  const { getRuntime } = await import('./runtime.js');
  return (await getRuntime()).adapter;
}

export type { AdapterDescription } from './device.js';
