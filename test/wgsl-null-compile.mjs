// Child process of the WGSL compile tests: compiles the WGSL modules it reads as JSON on stdin
// (from index argv[2] on) with Tint through Dawn's null backend, printing one line per module:
// "<index> ok" or "<index> error <messages>". Dawn's null backend sometimes crashes after a few
// modules; the parent then starts a new child from the next index.
import { create } from 'webgpu';

const start = Number(process.argv[2] ?? 0);
let input = '';
for await (const chunk of process.stdin) input += chunk;
const modules = JSON.parse(input);
const adapter = await create(['backend=null', 'enable-dawn-features=allow_unsafe_apis']).requestAdapter();
if (!adapter) {
  console.log('unavailable no null adapter');
  process.exit(0);
}
const device = await adapter.requestDevice({ requiredFeatures: ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'] });
for (let i = start; i < modules.length; i++) {
  const info = await device.createShaderModule({ code: modules[i] }).getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}: ${m.message}`);
  process.stdout.write(`${i} ${errors.length ? `error ${JSON.stringify(errors)}` : 'ok'}\n`);
}
process.exit(0);
