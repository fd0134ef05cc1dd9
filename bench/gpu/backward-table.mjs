#!/usr/bin/env node
// The backward's H200 table from one run's JSON lines: ours (bench/gpu/backward.mjs) beside
// PyTorch's SDPA backward (bench/gpu/backward_torch.py), TFLOP/s with FLOPs = 2.5 × forward.
//   node bench/gpu/backward-table.mjs OUT/backward-torch.jsonl OUT/backward-gpu.jsonl > OUT/backward.md
import { existsSync, readFileSync } from 'node:fs';

const lines = (path) => (path && existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)) : []);
const torch = lines(process.argv[2]);
const ours = lines(process.argv[3]);
const cell = (r) => (!r ? '—' : r.status && r.status !== 'ok' ? r.status.split(':')[0] : r.error ? 'n/a' : `${r.tflops.toFixed(1)} (${r.ms.toFixed(2)} ms)`);
const shapes = [...new Set([...ours.filter((r) => r.kind === 'bench').map((r) => r.shape), ...torch.filter((r) => r.kind === 'torch-bwd').map((r) => r.shape)])];
const out = [];
const env = torch.find((r) => r.kind === 'torch-env');
out.push(`Attention backward, TFLOP/s (ms), backward only; ${env ? `PyTorch ${env.torch} on ${env.device}` : 'no PyTorch rows'}; commit ${ours[0]?.commit ?? '?'}`, '');
out.push('| shape | ours f16 (tier) | ours f16 portable | ours f32 portable | our unfused f16 | torch flash | torch cuDNN | torch efficient | torch math f16 | torch math f32 |');
out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const shape of shapes) {
  const o = (dtype, impl) => ours.find((r) => r.kind === 'bench' && r.shape === shape && r.dtype === dtype && r.impl === impl);
  const t = (backend, dtype = 'float16') => torch.find((r) => r.kind === 'torch-bwd' && r.shape === shape && r.backend === backend && r.dtype === dtype);
  const f16 = o('float16', 'fused');
  out.push(`| ${shape} | ${cell(f16)}${f16?.tier ? ` ${f16.tier}` : ''} | ${cell(o('float16', 'portable'))} | ${cell(o('float32', 'fused'))} | ${cell(o('float16', 'unfused'))} | ${cell(t('flash'))} | ${cell(t('cudnn'))} | ${cell(t('efficient'))} | ${cell(t('math'))} | ${cell(t('math', 'float32'))} |`);
}
out.push('', 'Checks (max |g - ref| / max |ref|, float64 reference):', '');
out.push('| shape | impl | dtype | dq | dk | dv | status |', '|---|---|---|---:|---:|---:|---|');
for (const r of ours.filter((x) => x.kind === 'check')) out.push(`| ${r.shape} | ours (${r.tier ?? '?'}) | ${r.dtype} | ${r.dq?.toExponential(2) ?? '—'} | ${r.dk?.toExponential(2) ?? '—'} | ${r.dv?.toExponential(2) ?? '—'} | ${r.status}${r.error ? `: ${r.error}` : ''} |`);
for (const r of torch.filter((x) => x.kind === 'torch-check')) out.push(`| ${r.shape} | torch ${r.backend} | float16 | ${r.dq?.toExponential(2) ?? '—'} | ${r.dk?.toExponential(2) ?? '—'} | ${r.dv?.toExponential(2) ?? '—'} | ${r.error ?? 'ok'} |`);
console.log(out.join('\n'));
