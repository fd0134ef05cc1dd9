"""PyTorch anchors of issue 13 at B4 H32 S4096 D128 fp16 (or --smoke: tiny): SDPA with a dense bool
mask (causal, 1024 keys; memory-efficient and flash-causal baselines), FlexAttention
(torch.compile(flex_attention)) with block masks (causal, sliding window 1024, 8 documents of 512)
and a tanh softcap score_mod, and linear attention (elu+1) as einsums, non-causal and chunked causal.
Each result is checked first (FlexAttention and SDPA against each other on the same mask, linear
attention against float64 on a slice); a failed check prints an error instead of a time.
One JSON object per line: {"kind": "torch", "case", "ms", "tflops"} or {"case", "error"}.
Usage: python3 bench/variants/torch_variants.py [--smoke]
"""
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SMOKE = "--smoke" in sys.argv
DEV = "cuda" if torch.cuda.is_available() else "cpu"
B, H, S, D = (1, 2, 256, 32) if SMOKE else (4, 32, 4096, 128)
WINDOW = 64 if SMOKE else 1024
DOCS = 8
DTYPE = torch.float16 if DEV == "cuda" else torch.float32


def emit(**row):
    print(json.dumps({"kind": "torch", "B": B, "H": H, "S": S, "D": D, **row}), flush=True)


def time_ms(fn, iters=10, warmup=3):
    if DEV != "cuda":
        import time
        fn()
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


g = torch.Generator(device=DEV).manual_seed(0)
q, k, v = (torch.randn((B, H, S, D), generator=g, device=DEV, dtype=DTYPE) for _ in range(3))
i = torch.arange(S, device=DEV)
window_mask = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - WINDOW)
causal_pairs = S * (S + 1) // 2
window_pairs = int(window_mask.sum())
doc = i // (S // DOCS)
doc_pairs = DOCS * (S // DOCS) * (S // DOCS + 1) // 2


def attn_flops(pairs):
    return 4 * D * pairs * B * H


def run(case, fn, flops, check=None):
    try:
        out = fn()
        if check is not None:
            err = check(out)
            if not err <= 2e-2:
                emit(case=case, error=f"check failed: max abs error {err:.3e}")
                return None
        ms = time_ms(fn)
        emit(case=case, ms=ms, tflops=flops / (ms * 1e9))
        return out
    except Exception as e:  # one failing variant must not stop the rest
        emit(case=case, error=str(e).split("\n")[0][:300])
        return None


# ---- SDPA
def sdpa(backend, **kw):
    with sdpa_kernel(backend):
        return F.scaled_dot_product_attention(q, k, v, **kw)


ref_window = run("sdpa math, dense bool mask (check reference)", lambda: sdpa(SDPBackend.MATH, attn_mask=window_mask), attn_flops(window_pairs)) if SMOKE else None
sdpa_window = run(f"sdpa efficient, dense bool mask (causal {WINDOW})", lambda: sdpa(SDPBackend.EFFICIENT_ATTENTION, attn_mask=window_mask), attn_flops(window_pairs))
run("sdpa flash, causal", lambda: sdpa(SDPBackend.FLASH_ATTENTION, is_causal=True), attn_flops(causal_pairs))
run("sdpa efficient, causal", lambda: sdpa(SDPBackend.EFFICIENT_ATTENTION, is_causal=True), attn_flops(causal_pairs))

# ---- FlexAttention
try:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    flex = torch.compile(flex_attention) if DEV == "cuda" else flex_attention

    def causal_mod(b, h, qi, ki):
        return ki <= qi

    def window_mod(b, h, qi, ki):
        return (ki <= qi) & (ki > qi - WINDOW)

    def doc_mod(b, h, qi, ki):
        return (doc[qi] == doc[ki]) & (ki <= qi)

    def softcap_mod(score, b, h, qi, ki):
        return 30.0 * torch.tanh(score / 30.0)

    masks = {name: create_block_mask(fn, None, None, S, S, device=DEV) for name, fn in [("causal", causal_mod), ("window", window_mod), ("doc", doc_mod)]}
    dense_causal = i[None, :] <= i[:, None]

    def against_sdpa(mask):
        want = sdpa(SDPBackend.EFFICIENT_ATTENTION if DEV == "cuda" else SDPBackend.MATH, attn_mask=mask)
        return lambda out: float((out.float() - want.float()).abs().max())

    run("flex causal", lambda: flex(q, k, v, block_mask=masks["causal"]), attn_flops(causal_pairs), against_sdpa(dense_causal))
    run(f"flex sliding window {WINDOW}", lambda: flex(q, k, v, block_mask=masks["window"]), attn_flops(window_pairs), against_sdpa(window_mask))
    run(f"flex {DOCS} documents of {S // DOCS}", lambda: flex(q, k, v, block_mask=masks["doc"]), attn_flops(doc_pairs), against_sdpa((doc[None, :] == doc[:, None]) & dense_causal))
    run("flex causal + softcap 30", lambda: flex(q, k, v, score_mod=softcap_mod, block_mask=masks["causal"]), attn_flops(causal_pairs))
    run("flex full (no mask)", lambda: flex(q, k, v), attn_flops(S * S))
except Exception as e:
    emit(case="flex", error=str(e).split("\n")[0][:300])


# ---- linear attention, elu+1
def phi(x):
    return F.elu(x) + 1


def linear_full(q, k, v):
    fq, fk = phi(q), phi(k)
    kv = torch.einsum("bhsd,bhse->bhde", fk, v)
    z = fk.sum(dim=2)
    return torch.einsum("bhsd,bhde->bhse", fq, kv) / torch.einsum("bhsd,bhd->bhs", fq, z).unsqueeze(-1)


def linear_causal(q, k, v, chunk=64):
    fq, fk = phi(q), phi(k)
    b, h, s, d = q.shape
    state = torch.zeros(b, h, d, v.shape[-1] + 1, device=q.device, dtype=torch.float32)
    va = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
    mask = torch.tril(torch.ones(chunk, chunk, device=q.device, dtype=torch.bool))
    outs = []
    for c in range(0, s, chunk):
        qc, kc, vc = fq[:, :, c:c + chunk], fk[:, :, c:c + chunk], va[:, :, c:c + chunk]
        n = qc.shape[2]
        a = (qc @ kc.transpose(-1, -2)).masked_fill(~mask[:n, :n], 0)
        num = a.float() @ vc.float() + qc.float() @ state
        outs.append(num[..., :-1] / num[..., -1:])
        state = state + kc.float().transpose(-1, -2) @ vc.float()
    return torch.cat(outs, dim=2).to(q.dtype)


def linear_check(fn, causal):
    qs, ks, vs = (x[:1, :2, :256].double() for x in (q, k, v))
    fq, fk = phi(qs), phi(ks)
    w = fq @ fk.transpose(-1, -2)
    if causal:
        w = torch.tril(w)
    want = (w @ vs) / w.sum(-1, keepdim=True)
    got = fn(q[:1, :2, :256], k[:1, :2, :256], v[:1, :2, :256])
    return lambda _out: float((got.double() - want).abs().max())


lin_flops = B * H * 4 * S * D * (D + 1)  # φ(K)ᵀ[V|1] and φ(Q)(·): the useful work
run("linear attention elu+1 (einsum)", lambda: linear_full(q, k, v), lin_flops, linear_check(linear_full, False))
run("linear attention elu+1, causal (chunked einsum)", lambda: linear_causal(q, k, v), lin_flops, linear_check(linear_causal, True))
