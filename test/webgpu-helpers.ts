// Shared by the WebGPU test files: whether an adapter is here (else the tests are skipped loudly,
// with the reason), and a device of the test's own for "caller's device" tests.
import { listBackends } from '../dist/index.js';

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
  const { openSeparateDevice } = await import('../dist/backends/webgpu/device.js');
  return openSeparateDevice();
}
