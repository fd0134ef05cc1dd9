#!/usr/bin/env node
// Joins bench/backward.mjs's rows with bench/backward_cpu_torch.py's (same shapes, same threads)
// into the markdown table of issue 10's CPU anchor: ours / PyTorch's speed per shape (target >= 0.5).
//   node bench/backward-cpu-table.mjs backward-cpu.jsonl backward-cpu-torch.jsonl
import { existsSync, readFileSync } from 'node:fs';

const read = (path) => (path && existsSync(path)
  ? readFileSync(path, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l))
  : []);
const [oursPath, torchPath] = process.argv.slice(2);
const ours = read(oursPath);
const torch = new Map(read(torchPath).map((r) => [r.config, r]));
const lines = [
  `CPU backward, float32 (${ours[0]?.cpu ?? '?'}, ${ours[0]?.threads ?? '?'} threads; PyTorch ${[...torch.values()][0]?.torch ?? 'absent'}, ${[...torch.values()][0]?.threads ?? '?'} threads)`,
  '',
  '| shape | ours fused ms | PyTorch SDPA ms | ours / PyTorch speed (target ≥ 0.5) | our phases, ms (last call) |',
  '|---|---:|---:|---:|---|',
];
// where our call's time went: stage, plan, each pool job, readBack (stats.phasesMs), and for each
// job the mean time its workers spent in its tasks (stats.busyMs; the rest is dispatch and wake-up)
const phases = (r) => (r.fusedPhasesMs
  ? Object.entries(r.fusedPhasesMs).map(([k, v]) => `${k} ${v}${r.fusedBusyMs?.[k] !== undefined ? ` (busy ${r.fusedBusyMs[k]})` : ''}`).join(', ')
  : '—');
for (const r of ours) {
  const t = torch.get(r.config);
  const mine = r.status === 'ok' ? String(r.fusedMs) : `FAIL: ${r.error}`;
  const theirs = t ? (t.status === 'ok' ? String(t.ms) : `FAIL: ${t.error}`) : '—';
  const ratio = r.status === 'ok' && t?.status === 'ok' ? `${(t.ms / r.fusedMs).toFixed(2)}×` : '—';
  lines.push(`| ${r.config} | ${mine} | ${theirs} | ${ratio} | ${phases(r)} |`);
}
console.log(lines.join('\n'));
