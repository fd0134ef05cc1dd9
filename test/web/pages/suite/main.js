// A page as a web developer writes one: imports fusedattn, runs the suite (?backend=webgpu for the
// GPU), publishes the report on window.__report for the test to read.
import { Tensor, attention } from 'fusedattn';
import { runSuite } from '../cpu-suite.mjs';

const params = new URLSearchParams(location.search);
const only = params.get('only')?.split(',').map(Number);
const backend = params.get('backend') ?? 'cpu';

// The first call starts the backend: a CPU worker script that cannot load is reported here, once,
// as a DeviceError; later calls run on the calling thread.
async function warmUp() {
  const x = Tensor.fromData(new Float32Array(64).fill(0.5), [1, 1, 8, 8]);
  try {
    await attention(x, x, x, { backend });
    return undefined;
  } catch (e) {
    return `${e && e.name}: ${e && e.message}`;
  }
}

window.__report = warmUp().then(async (warmupError) => ({ warmupError, ...(await runSuite({ backend, ...(only ? { only } : {}) })) })).then(
  (report) => ({ ...report, crossOriginIsolated: globalThis.crossOriginIsolated === true }),
  (e) => ({ error: `${e && e.name}: ${e && e.message}\n${e && e.stack}` }),
);
window.__report.then((r) => {
  document.getElementById('status').textContent = r.error ? `error: ${r.error}` : `passed ${r.passed}, failed ${r.failed}`;
});
