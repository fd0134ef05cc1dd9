// fusedattn/testing: the seeded cases, suite and pass rules our tests use, for anyone checking a backend.
// The public types name WebGPU globals (GPUDevice, GPUBuffer): consumers get them from @webgpu/types.
/// <reference types="@webgpu/types" preserve="true" />
export * from './cases.js';
export * from './compare.js';
export * from './random.js';
export { SUITE } from './suite.js';
export * from './check.js';
export * from './decode.js';
export { NON_FINITE_CASES, makeNonFiniteCase, compareNonFinite, type NonFiniteCase } from './non-finite.js';
export { runCpuFaultCampaign, type CpuFaultOptions, type CpuFaultReport } from './faults.js';
export { hostileNpyFiles, hostileSafetensorsFiles, hostileConfigs, npyWithHeader, type HostileFile, type HostileConfig } from './hostile.js';
export * from './backward.js';
