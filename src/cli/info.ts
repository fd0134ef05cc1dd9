// `fusedattn info`: what this machine offers fusedattn — the backends found, the WebGPU adapter
// with its features and limits, and the CPU (threads, WebAssembly SIMD, memory).
import { availableParallelism, cpus, freemem, totalmem } from 'node:os';
import { Command } from 'commander';
import { listBackends, autoBackend } from '../ops/attention/index.js';
import { formatBytes, table } from './format.js';

export function infoCommand(): Command {
  return new Command('info')
    .description('backends found, the WebGPU adapter (features, limits), CPU threads and SIMD')
    .option('--json', 'print one JSON object instead of text')
    .action(async (flags: { json?: boolean }) => {
      const report = await gatherInfo();
      console.log(flags.json ? JSON.stringify(report, null, 2) : formatInfo(report));
    });
}

/** The parts of the WebGPU backend's adapter description that info prints. */
interface AdapterFacts {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  backend?: string;
  featureLevel?: string;
  isFallbackAdapter?: boolean;
  features?: string[];
  limits?: Record<string, number>;
}

export interface InfoReport {
  backends: Array<{ name: string; available: boolean; detail: string }>;
  /** The adapter WebGPU would use, when there is one. */
  adapter?: AdapterFacts;
  /** What backend 'auto' picks here. */
  auto: string;
  cpu: { model: string; threads: number; wasmSimd: boolean; memory: { total: number; free: number } };
  node: string;
}

export async function gatherInfo(): Promise<InfoReport> {
  const backends = await listBackends();
  // loaded here, not at start-up: other commands should not pay for the GPU module
  const { describeAdapter } = await import('../engines/webgpu/device.js');
  const gpu = (await describeAdapter()) as { adapter?: AdapterFacts };
  const cpuList = cpus();
  return {
    backends: backends.map((b) => ({ name: b.name, available: b.available, detail: b.detail })),
    adapter: gpu.adapter,
    auto: await autoBackend(),
    cpu: {
      model: cpuList[0]?.model.trim() ?? 'unknown',
      threads: availableParallelism(),
      wasmSimd: wasmSimdSupported(),
      memory: { total: totalmem(), free: freemem() },
    },
    node: process.version,
  };
}

export function formatInfo(report: InfoReport): string {
  const lines = [
    table(['backend', 'available', 'detail'], report.backends.map((b) => [b.name, b.available ? 'yes' : 'no', b.detail])),
    '',
    `backend 'auto' picks: ${report.auto}`,
    '',
    ...formatAdapter(report.adapter),
    `CPU: ${report.cpu.model}, ${report.cpu.threads} threads, WebAssembly SIMD ${report.cpu.wasmSimd ? 'yes' : 'no'}`,
    `memory: ${formatBytes(report.cpu.memory.free)} free of ${formatBytes(report.cpu.memory.total)}`,
    `Node ${report.node}`,
  ];
  return lines.join('\n');
}

function formatAdapter(a: AdapterFacts | undefined): string[] {
  if (!a) return [];
  const name = [a.vendor, a.architecture, a.device].filter(Boolean).join(' ') || 'unknown';
  const lines = [
    `WebGPU adapter: ${name}${a.description ? ` (${a.description})` : ''}${a.isFallbackAdapter ? ', a fallback (software) adapter' : ''}`,
    `  Dawn backend ${a.backend ?? '?'}, feature level ${a.featureLevel ?? '?'}`,
    `  features: ${a.features?.length ? a.features.join(', ') : 'none'}`,
    '  limits:',
    ...Object.entries(a.limits ?? {}).map(([key, value]) => `    ${key.padEnd(36)} ${value}`),
    '',
  ];
  return lines;
}

/** A module whose one function is `i32.const 0; i32x4.splat`: valid iff the engine has SIMD. */
function wasmSimdSupported(): boolean {
  const module = new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // \0asm, version 1
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x0a, 0x08, 0x01, 0x06, 0x00, 0x41, 0x00, 0xfd, 0x11, 0x0b, // code: i32.const 0, i32x4.splat, end
  ]);
  try {
    return WebAssembly.validate(module);
  } catch {
    return false;
  }
}
