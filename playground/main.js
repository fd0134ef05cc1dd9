// The playground: what the package offers a web page, in four panels. Every panel checks its own
// result (against the float64 reference, or a recomputation) before it shows it.
import { Tensor, attention, listBackends, naiveAttention, referenceAttention, validateAttention } from 'fusedattn';
import { generate, loadModel } from 'fusedattn/model';

const $ = (id) => document.getElementById(id);
let seed = 1;
function randomTensor(shape) {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    data[i] = (seed / 2 ** 32) * 2 - 1;
  }
  return Tensor.fromData(data, shape);
}

function maxRelError(got, ref) {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    err = Math.max(err, Math.abs(got[i] - ref[i]));
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return err / Math.max(scale, 1e-30);
}

function formInputs() {
  const f = new FormData($('form'));
  const n = (k) => Number(f.get(k));
  const q = randomTensor([n('batch'), n('heads'), n('seqQ'), n('dim')]);
  const k = randomTensor([n('batch'), n('kvHeads'), n('seqK'), n('dim')]);
  const v = randomTensor([n('batch'), n('kvHeads'), n('seqK'), n('dim')]);
  return { q, k, v, options: { causal: f.get('causal') === 'on', backend: f.get('backend') } };
}

async function showBackends() {
  const list = await listBackends();
  $('backends').innerHTML = '';
  for (const b of list) {
    const li = document.createElement('li');
    li.textContent = `${b.name}: ${b.available ? '' : '(unavailable) '}${b.detail}`;
    $('backends').append(li);
  }
  document.body.dataset.backends = 'ready';
}

async function runOnce(event) {
  event?.preventDefault();
  const { q, k, v, options } = formInputs();
  try {
    const result = await attention(q, k, v, options);
    const ref = referenceAttention(validateAttention(q, k, v, options));
    const err = maxRelError(result.out.toFloat32(), ref.out);
    const s = result.stats;
    $('result').className = err < 1e-4 ? '' : 'error';
    $('result').textContent = `out ${result.out.shape.join('×')} on ${s.backend} (${s.tier}, ${s.threads} thread${s.threads === 1 ? '' : 's'}${s.fallback ? `; ${s.fallback}` : ''}); max error vs float64 reference ${err.toExponential(2)}`;
    document.body.dataset.run = err < 1e-4 ? 'ok' : 'wrong';
  } catch (e) {
    $('result').className = 'error';
    $('result').textContent = `${e.name}: ${e.message}`;
    document.body.dataset.run = 'error';
  }
}

async function timeIt(fn, repeats) {
  await fn(); // warm-up: pipelines, worker start
  const times = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
}

async function timeFusedVsNaive() {
  const { q, k, v, options } = formInputs();
  try {
    const fusedOut = (await attention(q, k, v, options)).out.toFloat32();
    const naiveOut = (await naiveAttention(q, k, v, options)).out.toFloat32();
    if (maxRelError(fusedOut, naiveOut) > 1e-4) throw new Error('fused and naive disagree: no timing shown');
    const fused = await timeIt(() => attention(q, k, v, options), 3);
    const naive = await timeIt(() => naiveAttention(q, k, v, options), 3);
    drawChart([['fused', fused, '#1f77b4'], ['naive', naive, '#ff7f0e']]);
    document.body.dataset.chart = 'drawn';
  } catch (e) {
    $('result').className = 'error';
    $('result').textContent = `${e.name}: ${e.message}`;
    document.body.dataset.chart = 'error';
  }
}

function drawChart(bars) {
  const c = $('chart').getContext('2d');
  const { width, height } = c.canvas;
  c.fillStyle = '#fff';
  c.fillRect(0, 0, width, height);
  const max = Math.max(...bars.map((b) => b[1]));
  const barH = 50;
  bars.forEach(([label, ms, color], i) => {
    const y = 30 + i * (barH + 30);
    const w = Math.max(2, ((width - 130) * ms) / max);
    c.fillStyle = color;
    c.fillRect(70, y, w, barH);
    c.fillStyle = '#000';
    c.font = '14px sans-serif';
    c.fillText(label, 10, y + barH / 2 + 5);
    c.fillText(`${ms.toFixed(2)} ms`, 75 + w, y + barH / 2 + 5);
  });
}

// The weights P = softmax(scale q kᵀ) of a small causal case, in float64 here; P·v is checked
// against attention()'s output before the heatmap is drawn, so the picture is of what ran.
async function drawHeatmap() {
  const n = 24;
  const d = 16;
  const q = randomTensor([1, 1, n, d]);
  const k = randomTensor([1, 1, n, d]);
  const v = randomTensor([1, 1, n, d]);
  const backend = new FormData($('form')).get('backend');
  const out = (await attention(q, k, v, { causal: true, backend })).out.toFloat32();
  const Q = q.toFloat32();
  const K = k.toFloat32();
  const V = v.toFloat32();
  const P = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let t = 0; t < d; t++) s += Q[i * d + t] * K[j * d + t];
      P[i * n + j] = s / Math.sqrt(d);
      max = Math.max(max, P[i * n + j]);
    }
    let sum = 0;
    for (let j = 0; j <= i; j++) sum += (P[i * n + j] = Math.exp(P[i * n + j] - max));
    for (let j = 0; j <= i; j++) P[i * n + j] /= sum;
  }
  const pv = new Float64Array(n * d);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) for (let t = 0; t < d; t++) pv[i * d + t] += P[i * n + j] * V[j * d + t];
  const err = maxRelError(out, pv);
  $('heatmap-status').textContent = `P·v matches attention() to ${err.toExponential(2)}`;
  if (err > 1e-4) {
    $('heatmap-status').className = 'error';
    document.body.dataset.heatmap = 'wrong';
    return;
  }
  const c = $('heatmap').getContext('2d');
  const cell = c.canvas.width / n;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const w = Math.sqrt(P[i * n + j]); // sqrt: small weights stay visible
      c.fillStyle = `rgb(${Math.round(255 * (1 - w))}, ${Math.round(255 * (1 - 0.6 * w))}, 255)`;
      c.fillRect(j * cell, i * cell, cell, cell);
    }
  }
  document.body.dataset.heatmap = 'drawn';
}

async function generateTokens() {
  const prompt = $('prompt').value.split(/[\s,]+/).filter(Boolean).map(Number);
  const backend = new FormData($('form')).get('backend');
  try {
    const model = await loadModel(new URL('./models/tiny/', location.href), {
      backend: backend === 'auto' ? 'cpu' : backend,
      onProgress: (p) => ($('progress').textContent = `${p.file}: ${p.loaded} / ${p.total ?? '?'} bytes`),
    });
    try {
      const result = await generate(model, prompt, { maxNewTokens: 8 });
      $('tokens').textContent = `generated: ${result.tokens.join(', ')}`;
      document.body.dataset.tokens = result.tokens.join(',');
    } finally {
      model.dispose();
    }
  } catch (e) {
    $('tokens').className = 'error';
    $('tokens').textContent = `${e.name}: ${e.message}`;
    document.body.dataset.tokens = 'error';
  }
}

$('form').addEventListener('submit', runOnce);
$('time').addEventListener('click', timeFusedVsNaive);
$('draw-heatmap').addEventListener('click', drawHeatmap);
$('generate').addEventListener('click', generateTokens);
void showBackends();
