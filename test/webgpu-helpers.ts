// Shared by the WebGPU test files: whether an adapter is here (else the tests are skipped loudly,
// with the reason), a device of the test's own for "caller's device" tests, and a one-kernel runner.
import { Tensor, listBackends } from '../dist/index.js';
import { BufferUsage, MapMode } from '../dist/engines/webgpu/usage.js';

/** Why WebGPU tests cannot run here, or undefined when they can. */
export async function webgpuSkipReason(): Promise<string | undefined> {
  const forced = process.env.FUSEDATTN_WEBGPU_SKIP_REASON;
  if (forced) return forced;
  const gpu = (await listBackends()).find((b) => b.name === 'webgpu');
  return gpu?.available ? undefined : gpu?.detail ?? 'no webgpu backend';
}

export async function skipNotice(what: string): Promise<string | undefined> {
  const reason = await webgpuSkipReason();
  if (reason) console.warn(`\n!!! SKIPPING ${what}: ${reason}\n`);
  return reason;
}

/** A GPUDevice that is not fusedattn's shared one (same Dawn instance: two instances misbehave). */
export async function ownDevice(): Promise<GPUDevice> {
  const { openSeparateDevice } = await import('../dist/engines/webgpu/device.js');
  return openSeparateDevice();
}

/** One buffer of a kernel run by runKernel: an input, an output of `write` floats, or both. */
export type KernelBinding = { read: ArrayBufferView } | { write: number } | { readWrite: ArrayBufferView } | { uniform: ArrayBuffer };

/**
 * Runs one WGSL kernel (entry point `main`) on `device`, binding one buffer per entry of `bindings`
 * in order, and returns every binding's contents afterwards as floats (uniforms: empty), so a test
 * can check outputs and that inputs were left alone. Validation errors throw before the submit,
 * so a failing kernel never leaves work in flight.
 */
export async function runKernel(device: GPUDevice, wgsl: string, bindings: KernelBinding[], workgroups: [number, number?, number?]): Promise<Float32Array[]> {
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code: wgsl });
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const buffers = bindings.map((b) => {
    const data = 'read' in b ? b.read : 'readWrite' in b ? b.readWrite : 'uniform' in b ? new Uint8Array(b.uniform) : undefined;
    const bytes = data ? data.byteLength : (b as { write: number }).write * 4;
    // uniform blocks are sized in 16-byte units; storage arrays read back exactly
    const unit = 'uniform' in b ? 16 : 4;
    const usage = 'uniform' in b ? BufferUsage.UNIFORM | BufferUsage.COPY_DST : BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC;
    const buffer = device.createBuffer({ size: Math.max(16, Math.ceil(bytes / unit) * unit), usage });
    if (data) {
      const padded = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      device.queue.writeBuffer(buffer, 0, padded);
    }
    return buffer;
  });
  const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })) });
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
  pass.end();
  const staging = buffers.map((buffer, i) => {
    if ('uniform' in bindings[i]) return undefined;
    const s = device.createBuffer({ size: buffer.size, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    encoder.copyBufferToBuffer(buffer, 0, s, 0, buffer.size);
    return s;
  });
  const commands = encoder.finish();
  const error = await device.popErrorScope();
  if (error) throw new Error(error.message);
  device.queue.submit([commands]);
  const results: Float32Array[] = [];
  for (const s of staging) {
    if (!s) {
      results.push(new Float32Array(0));
      continue;
    }
    await s.mapAsync(MapMode.READ);
    results.push(new Float32Array(s.getMappedRange().slice(0)));
    s.unmap();
    s.destroy();
  }
  for (const b of buffers) b.destroy();
  return results;
}

/**
 * CPU tensors copied into one GPU buffer, each at its own offset (a multiple of 4 past the
 * previous one plus 4 bytes: odd float16 counts end mid-word and the next tensor still starts
 * unaligned to its own size), as GPU tensors viewing that buffer.
 */
export function packOnGpu(rt: { device: GPUDevice; createBuffer(bytes: number, label: string): GPUBuffer; write(buffer: GPUBuffer, offset: number, data: ArrayBufferView): void }, tensors: Tensor[]): Tensor[] {
  let offset = 4;
  const placed = tensors.map((t) => {
    const at = offset;
    offset = Math.ceil((offset + (t.data as ArrayBufferView).byteLength + 4) / 4) * 4;
    return { t, at };
  });
  const bytes = new Uint8Array(offset + 4);
  for (const { t, at } of placed) {
    const view = t.data as ArrayBufferView;
    bytes.set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength), at);
  }
  const buffer = rt.createBuffer(bytes.byteLength, 'test inputs');
  rt.write(buffer, 0, bytes);
  return placed.map(({ t, at }) => Tensor.fromGpuBuffer({ device: rt.device, buffer, byteOffset: at }, t.shape, t.dtype));
}
