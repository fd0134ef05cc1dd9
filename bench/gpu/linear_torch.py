"""PyTorch's fp16 einsum anchor of linear attention (elu+1) at B4 H32 S4096 D128 (--smoke: tiny),
non-causal and chunked causal, each checked against float64 first. The forms are those of
bench/variants/torch_variants.py (imported from there would run its other anchors too).
Usage: python3 bench/gpu/linear_torch.py [--smoke]"""
import json
import sys

import torch
import torch.nn.functional as F

SMOKE = "--smoke" in sys.argv
DEV = "cuda" if torch.cuda.is_available() else "cpu"
B, H, S, D = (1, 2, 256, 32) if SMOKE else (4, 32, 4096, 128)
DTYPE = torch.float16 if DEV == "cuda" else torch.float32


def time_ms(fn, iters=10, warmup=3):
    for _ in range(warmup):
        fn()
    if DEV != "cuda":
        import time
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
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


def phi(x):
    return F.elu(x) + 1


def linear_full(q, k, v):
    fq, fk = phi(q), phi(k)
    kv = torch.einsum("bhsd,bhse->bhde", fk, v)
    z = fk.sum(dim=2)
    return torch.einsum("bhsd,bhde->bhse", fq, kv) / torch.einsum("bhsd,bhd->bhs", fq, z).unsqueeze(-1)


def linear_causal(q, k, v, chunk=64):
    fq, fk = phi(q), phi(k)
    state = torch.zeros(q.shape[0], q.shape[1], q.shape[3], v.shape[-1] + 1, device=q.device, dtype=torch.float32)
    va = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
    mask = torch.tril(torch.ones(chunk, chunk, device=q.device, dtype=torch.bool))
    outs = []
    for c in range(0, q.shape[2], chunk):
        qc, kc, vc = fq[:, :, c:c + chunk], fk[:, :, c:c + chunk], va[:, :, c:c + chunk]
        n = qc.shape[2]
        a = (qc @ kc.transpose(-1, -2)).masked_fill(~mask[:n, :n], 0)
        num = a.float() @ vc.float() + qc.float() @ state
        outs.append(num[..., :-1] / num[..., -1:])
        state = state + kc.float().transpose(-1, -2) @ vc.float()
    return torch.cat(outs, dim=2).to(q.dtype)


g = torch.Generator(device=DEV).manual_seed(0)
q, k, v = (torch.randn((B, H, S, D), generator=g, device=DEV, dtype=DTYPE) * s for s in (0.7, 0.7, 1.0))
flops = B * H * 4 * S * D * (D + 1)
for name, fn, causal in (("einsum", linear_full, False), ("chunked einsum", linear_causal, True)):
    qs, ks, vs = (x[:1, :2, :256].double() for x in (q, k, v))
    w = phi(qs) @ phi(ks).transpose(-1, -2)
    if causal:
        w = torch.tril(w)
    want = (w @ vs) / w.sum(-1, keepdim=True)
    err = float((fn(q[:1, :2, :256], k[:1, :2, :256], v[:1, :2, :256]).double() - want).abs().max() / want.abs().max())
    row = {"kind": "torch", "case": f"linear elu+1 {name}", "causal": causal, "B": B, "H": H, "S": S, "D": D, "dtype": str(DTYPE), "check": err}
    if not err <= 2e-2:
        row["error"] = "check failed"
    else:
        ms = time_ms(lambda: fn(q, k, v))
        row.update(ms=ms, tflops=flops / (ms * 1e9))
    print(json.dumps(row), flush=True)
    print(f"torch {'causal    ' if causal else 'non-causal'} {name:15s} " + (f"{row['ms']:8.3f} ms {row['tflops']:6.1f} TFLOP/s  check {err:.1e}" if "ms" in row else f"FAIL check {err:.1e}"), file=sys.stderr, flush=True)
