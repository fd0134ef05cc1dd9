// Compiles WGSL with Tint through Dawn's null backend (f16, subgroups and subgroup matrices, no GPU)
// and prints one JSON line: { ok: true, errors: { [label]: [messages] } } or { ok: false, reason }.
// A child process of test/fast-tiers.test.ts: a second Dawn instance in the test process (besides
// the OpenGL ES one) crashed Node at exit. Reads { label: wgsl } as JSON from stdin.
import { readFileSync } from 'node:fs';

const sources = JSON.parse(readFileSync(0, 'utf8'));
let device;
try {
  const { create } = await import('webgpu');
  const adapter = await create(['backend=null', 'enable-dawn-features=allow_unsafe_apis']).requestAdapter();
  device = await adapter.requestDevice({ requiredFeatures: ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'] });
} catch (e) {
  console.log(JSON.stringify({ ok: false, reason: e.message }));
  process.exit(0);
}
const errors = {};
for (const [label, code] of Object.entries(sources)) {
  const module = device.createShaderModule({ code });
  errors[label] = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}: ${m.message}`);
}
console.log(JSON.stringify({ ok: true, errors }));
process.exit(0);
