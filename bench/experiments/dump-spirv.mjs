// Prints the SPIR-V that Dawn/Tint generates for one flash kernel variant (Dawn's dump_shaders toggle).
// Usage: node bench/experiments/dump-spirv.mjs '{"subgroups":4,"blockKeys":32}' [robust=1]
import { create, globals } from 'webgpu';
import { buildFlashSgMatrix } from '../../dist/ops/attention/webgpu/tiers/flash-sgmatrix-wgsl.js';
Object.assign(globalThis, globals);
const variant = JSON.parse(process.argv[2] ?? '{}');
const robust = (process.argv[3] ?? '1') === '1';
const toggles = ['allow_unsafe_apis', 'vulkan_enable_f16_on_nvidia', 'dump_shaders', 'disable_symbol_renaming', ...(robust ? [] : ['disable_robustness'])];
const gpu = create([`enable-dawn-features=${toggles.join(',')}`]);
const adapter = await gpu.requestAdapter();
const device = await adapter.requestDevice({ requiredFeatures: ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'], requiredLimits: { maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize } });
const o = { dimQK: 128, dimRope: 0, dimV: 128, subgroups: 4, blockKeys: 32, headsPerTile: 1, sharedKV: false, vectorLoads: true, rescaleThreshold: 8, causalOrWindow: true, softcap: false, alibi: false, returnLse: false, rowPad: 8, ...variant };
const module = device.createShaderModule({ code: buildFlashSgMatrix(o) });
await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
process.exit(0);
