// The fault-injection figures of docs/FAULTS.md, rerunnable by anyone (after `npm run build`):
//   node bench/faults.mjs [--out DIR] [--seeds N] [--calls N] [--smoke]
// Four campaigns, each checking every outcome itself:
//   1. CPU worker faults: N seeds x C concurrent attention calls while workers are terminated,
//      throw uncaught, throw in a task, or hang (src/testing/faults.ts). A call that succeeds is
//      compared with the float64 reference; one that fails must fail with a DeviceError.
//   2. WebGPU device loss: rounds of 12 queued calls with device.destroy() in the middle; every
//      call succeeds (checked) or fails with a DeviceError, and the next call succeeds.
//   3. Hostile files: the generator of src/testing/hostile.ts through the .npy, safetensors and
//      model readers; each is read or refused with a typed error.
//   4. The non-finite rule: every case of src/testing/non-finite.ts on every backend and path,
//      element by element against the reference.
// Writes faults.jsonl and faults.md to DIR (default bench-results/faults) and prints the table.
// "lost" counts calls that settled neither way, "hung" calls still pending at the deadline; both
// must be 0, and the script exits 1 if any check fails.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { commit, markdownTable } from './model-report.mjs';
import { DeviceError, FusedAttnError, attention, listBackends, naiveAttention, npyToTensor, parseNpy, referenceAttention, validateAttention, gpuDevice } from '../dist/index.js';
import { NON_FINITE_CASES, checkF32, compareNonFinite, hostileConfigs, hostileNpyFiles, hostileSafetensorsFiles, makeCase, makeNonFiniteCase, runCpuFaultCampaign } from '../dist/testing/index.js';
import { SafetensorsFile, bytesSource } from '../dist/io/safetensors.js';
import { loadModel, randomWeights, configFrom, tinyConfigJson, writeModelFolder } from '../dist/model/index.js';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const smoke = args.includes('--smoke');
const outDir = flag('out', 'bench-results/faults');
const seeds = Number(flag('seeds', smoke ? 1 : 5));
const calls = Number(flag('calls', smoke ? 60 : 200));
const rows = [];
let failed = false;
const row = (r) => {
  rows.push(r);
  const bad = r.lost !== 0 || r.hung !== 0 || r.wrong !== 0 || r.untyped !== 0 || (r.later !== undefined && r.laterOk !== r.later);
  if (bad) failed = true;
  console.error(`${r.campaign}: ${JSON.stringify(r)}${bad ? '  <-- FAILED' : ''}`);
};

// 1. CPU worker faults
{
  const total = { campaign: 'CPU workers: terminate / throw / throw in a task / hang', runs: seeds, calls: 0, faults: 0, succeeded: 0, failedCleanly: 0, wrong: 0, untyped: 0, lost: 0, hung: 0, later: 0, laterOk: 0, respawns: 0, ms: 0 };
  for (let s = 0; s < seeds; s++) {
    const r = await runCpuFaultCampaign({ calls, faults: 12, seed: 100 + s });
    total.calls += r.calls;
    total.faults += r.faultsInjected;
    total.succeeded += r.succeeded;
    total.failedCleanly += r.failedCleanly;
    total.wrong += r.wrong;
    total.untyped += r.failedUntyped;
    total.lost += r.lost;
    total.hung += r.hung;
    total.later += r.later;
    total.laterOk += r.laterOk;
    total.respawns += r.respawns;
    total.ms += r.ms;
  }
  row(total);
}

// 2. WebGPU device loss
const webgpu = (await listBackends()).find((b) => b.name === 'webgpu');
if (webgpu?.available && !process.env.FUSEDATTN_WEBGPU_SKIP_REASON) {
  const c = makeCase({ batch: 1, headsQ: 2, seqQ: 64, seqK: 96, dimQK: 32, dimV: 32, causal: true }, 3);
  const ref = referenceAttention(validateAttention(c.q, c.k, c.v, c.options)).out;
  const run = () => attention(c.q, c.k, c.v, { ...c.options, backend: 'webgpu' });
  const r = { campaign: 'WebGPU: device.destroy() mid-queue', runs: smoke ? 2 : 6, calls: 0, faults: 0, succeeded: 0, failedCleanly: 0, wrong: 0, untyped: 0, lost: 0, hung: 0, later: 0, laterOk: 0, ms: 0 };
  const t0 = performance.now();
  await run();
  for (let round = 0; round < r.runs; round++) {
    const device = await gpuDevice();
    let settled = 0;
    const queued = Array.from({ length: 12 }, () => run().finally(() => settled++));
    await new Promise((resolve) => setTimeout(resolve, round * 3));
    device.destroy();
    r.faults++;
    r.calls += queued.length;
    const deadline = new Promise((resolve) => setTimeout(() => resolve('hung'), 20_000).unref());
    for (const outcome of await Promise.all(queued.map((p) => Promise.race([p.then((v) => ({ v }), (e) => ({ e })), deadline])))) {
      if (outcome === 'hung') r.hung++;
      else if ('v' in outcome) (checkF32('out', outcome.v.out.toFloat32(), ref) === undefined ? r.succeeded++ : r.wrong++);
      else if (outcome.e instanceof DeviceError) r.failedCleanly++;
      else r.untyped++;
    }
    r.lost += queued.length - settled - r.hung;
    r.later++;
    try {
      if (checkF32('out', (await run()).out.toFloat32(), ref) === undefined) r.laterOk++;
    } catch {
      // counted as not ok
    }
  }
  r.ms = performance.now() - t0;
  row(r);
} else {
  console.error(`WebGPU: skipped (${process.env.FUSEDATTN_WEBGPU_SKIP_REASON ?? webgpu?.detail})`);
}

// 3. Hostile files
{
  const r = { campaign: 'hostile files: .npy, safetensors, config.json', runs: 1, calls: 0, faults: 0, succeeded: 0, failedCleanly: 0, wrong: 0, untyped: 0, lost: 0, hung: 0, ms: 0 };
  const t0 = performance.now();
  const attempt = async (f) => {
    r.calls++;
    r.faults++;
    try {
      await f();
      r.succeeded++;
    } catch (e) {
      if (e instanceof FusedAttnError && e.message.length <= 600) r.failedCleanly++;
      else r.untyped++;
    }
  };
  for (const f of hostileNpyFiles(1, smoke ? 20 : 200)) await attempt(() => npyToTensor(parseNpy(f.bytes, f.name), f.name));
  for (const f of hostileSafetensorsFiles(2, smoke ? 20 : 200)) {
    await attempt(async () => {
      const file = await SafetensorsFile.open(bytesSource(f.bytes, f.name));
      for (const name of file.names()) await file.read(name, 'float32');
    });
  }
  const dir = mkdtempSync(join(tmpdir(), 'fusedattn-faults-'));
  try {
    const json = tinyConfigJson();
    await writeModelFolder(dir, json, randomWeights(configFrom(json), 1));
    for (const c of hostileConfigs()) {
      writeFileSync(join(dir, 'config.json'), JSON.stringify(c.json));
      await attempt(() => loadModel(dir, { backend: 'cpu' }).then((m) => m.dispose()));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  r.ms = performance.now() - t0;
  row(r);
}

// 4. The non-finite rule
{
  const r = { campaign: 'non-finite inputs: every backend and path vs the reference', runs: 1, calls: 0, faults: 0, succeeded: 0, failedCleanly: 0, wrong: 0, untyped: 0, lost: 0, hung: 0, ms: 0 };
  const t0 = performance.now();
  const backends = (await listBackends()).filter((b) => b.available && !(b.name === 'webgpu' && process.env.FUSEDATTN_WEBGPU_SKIP_REASON));
  for (const [index, c] of NON_FINITE_CASES.entries()) {
    const { q, k, v, options } = makeNonFiniteCase(c, 900 + index);
    const ref = referenceAttention(validateAttention(q, k, v, options));
    r.faults++;
    for (const b of backends) {
      for (const run of [attention, naiveAttention]) {
        r.calls++;
        try {
          const got = await run(q, k, v, { ...options, backend: b.name });
          const bad = [...compareNonFinite('out', got.out.toFloat32(), ref.out), ...compareNonFinite('lse', got.lse.toFloat32(), ref.lse)];
          if (bad.length) {
            r.wrong++;
            console.error(`  ${b.name} ${run.name} ${c.name}: ${bad[0]}`);
          } else r.succeeded++;
        } catch (e) {
          r.untyped++;
          console.error(`  ${b.name} ${run.name} ${c.name}: threw ${e.message}`);
        }
      }
    }
  }
  r.backends = backends.map((b) => b.name).join(', ');
  r.ms = performance.now() - t0;
  row(r);
}

const at = commit();
const table = markdownTable(
  ['campaign', 'runs', 'calls', 'faults injected', 'succeeded (checked)', 'failed cleanly (typed)', 'wrong', 'untyped', 'lost', 'hung', 'later calls ok', 'time'],
  rows.map((r) => [r.campaign, r.runs, r.calls, r.faults, r.succeeded, r.failedCleanly, r.wrong, r.untyped, r.lost, r.hung, r.later === undefined ? '-' : `${r.laterOk}/${r.later}`, `${(r.ms / 1000).toFixed(1)} s`]),
);
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'faults.jsonl'), rows.map((r) => JSON.stringify({ ...r, commit: at, node: process.version, date: new Date().toISOString() })).join('\n') + '\n');
writeFileSync(join(outDir, 'faults.md'), `${table}\n\nCommit ${at}, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}.\n`);
console.log(table);
console.log(`\ncommit ${at}${failed ? '\nSOME CHECK FAILED' : ''}`);
process.exit(failed ? 1 : 0);
