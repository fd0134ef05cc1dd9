// Child process of the WGSL compile tests: compiles the WGSL modules it reads as JSON on stdin
// (from index argv[2] on) with Tint through Dawn's null backend, printing one line per module:
// "<index> ok" or "<index> error <messages>". A crash must not take the test runner down, so the
// parent runs this in a child and, should one die anyway, starts a new one from the next index.
import { create } from 'webgpu';

const start = Number(process.argv[2] ?? 0);
let input = '';
for await (const chunk of process.stdin) input += chunk;
const modules = JSON.parse(input);
// The instance must outlive the device: once nothing references it, V8 may collect it and Dawn
// destroys its locks under the live device (seen as mutex assertions and futex errors after the
// first module or so, earlier the more garbage the process makes).
const gpu = create(['backend=null', 'enable-dawn-features=allow_unsafe_apis']);
const adapter = await gpu.requestAdapter();
if (!adapter) {
  console.log('unavailable no null adapter');
  process.exit(0);
}
// the adapter's limits, so pipelines of the H200's sizes (workgroup memory, storage buffers) validate
const limits = ['maxComputeWorkgroupStorageSize', 'maxStorageBuffersPerShaderStage', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX'];
const device = await adapter.requestDevice({
  requiredFeatures: ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'],
  requiredLimits: Object.fromEntries(limits.map((name) => [name, adapter.limits[name]])),
});
// a module given as { code, bindings }: also its pipeline (layout 'auto', entry point main) and a
// bind group of exactly those bindings (uniform or storage buffers), as the host would bind them
const buffer = (uniform) => device.createBuffer({ size: 65536, usage: uniform ? 0x40 : 0x80 }); // GPUBufferUsage UNIFORM / STORAGE
for (let i = start; i < modules.length; i++) {
  const { code, bindings } = typeof modules[i] === 'string' ? { code: modules[i] } : modules[i];
  const shader = device.createShaderModule({ code });
  const info = await shader.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}: ${m.message}`);
  if (!errors.length && bindings) {
    device.pushErrorScope('validation');
    const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module: shader, entryPoint: 'main' } });
    device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: bindings.map(({ binding, uniform }) => ({ binding, resource: { buffer: buffer(uniform) } })) });
    const error = await device.popErrorScope();
    if (error) errors.push(`bindings: ${error.message.split('\n')[0]}`);
  }
  process.stdout.write(`${i} ${errors.length ? `error ${JSON.stringify(errors)}` : 'ok'}\n`);
}
// referenced here, after the last use of the device, so the instance stays alive until exit
if (gpu) process.exit(0);
