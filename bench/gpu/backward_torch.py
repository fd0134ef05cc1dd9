"""The PyTorch anchor of the attention backward (issue 10), on the GPU machine.

1. Checks (--dump DIR): for each check shape (a reduced shape of each bench configuration) writes
   q, k, v, dO (fp16, seed 0, BNSD, raw .f16 via tofile) and the float64 reference gradients
   (math backend in float64 on the same fp16 values, raw .f32), and reports each SDPA backend's
   fp16 gradient error against that reference (what "2x FlashAttention's error" is measured by).
2. Timings: torch.autograd.grad of SDPA's output, backward only (the forward runs once, outside the
   timed region), per backend (flash, cuDNN, efficient, math), median of N with CUDA events, fp16;
   the math backend also in fp32 (the portable f32 tier's anchor). FLOPs = 2.5 x the forward's.

Prints one JSON object per line: {"kind": "torch-bwd" | "torch-check", ...}.
Usage: python3 bench/gpu/backward_torch.py [--dump DIR] [--smoke] [--backends math,flash] [--shapes "name,name"]
(--backends / --shapes: time only those backends and bench shapes, e.g. the portable tier's math anchor)
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = json.load(open(os.path.join(HERE, "backward-shapes.json")))
BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}


def slug(name):
    return "".join(c if c.isalnum() else "_" for c in name)


def dims(s):
    return s["batch"], s["headsQ"], s.get("headsKv", s["headsQ"]), s["seq"], s["dimQK"], s.get("dimV", s["dimQK"])


def inputs(s, dtype, seed=0):
    b, hq, hk, n, dq, dv = dims(s)
    g = torch.Generator(device="cuda").manual_seed(seed)
    t = lambda h, d: torch.randn((b, h, n, d), generator=g, device="cuda", dtype=torch.float16).to(dtype)
    q, k, v, do = t(hq, dq), t(hk, dq), t(hk, dv), t(hq, dv)
    return q, k, v, do


def forward(s, q, k, v):
    gqa = s.get("headsKv", s["headsQ"]) != s["headsQ"]
    return F.scaled_dot_product_attention(q, k, v, is_causal=bool(s.get("causal")), enable_gqa=gqa, dropout_p=s.get("dropout", 0.0))


def flops(s):
    b, hq, _, n, dq, dv = dims(s)
    pairs = b * hq * (n * (n + 1) // 2 if s.get("causal") else n * n)
    return 2.5 * 2 * pairs * (dq + dv)


def time_ms(fn, iters, warmup=2):
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


def grads(s, q, k, v, do):
    q, k, v = (x.detach().requires_grad_(True) for x in (q, k, v))
    out = forward(s, q, k, v)
    return torch.autograd.grad(out, (q, k, v), do)


def check(name, s, dump):
    q, k, v, do = inputs(s, torch.float16)
    with sdpa_kernel(SDPBackend.MATH):
        ref = grads(s, q.double(), k.double(), v.double(), do.double())
    base = os.path.join(dump, slug(name))
    for t, label in ((q, "q"), (k, "k"), (v, "v"), (do, "do")):
        t.cpu().numpy().tofile(f"{base}.{label}.f16")
    for t, label in zip(ref, ("dq", "dk", "dv")):
        t.float().cpu().numpy().tofile(f"{base}.ref-{label}.f32")
    for backend, enum in BACKENDS.items():
        row = {"kind": "torch-check", "shape": name, "backend": backend}
        try:
            with sdpa_kernel(enum):
                got = grads(s, q, k, v, do)
            for g, r, label in zip(got, ref, ("dq", "dk", "dv")):
                row[label] = ((g.double() - r).abs().max() / r.abs().max()).item()
        except Exception as e:  # the backend cannot run this shape: say why
            row["error"] = str(e).split("\n")[0][:200]
        print(json.dumps(row), flush=True)


def bench(name, s, smoke, only=None):
    for dtype_name, dtype, backends in (("float16", torch.float16, list(BACKENDS)), ("float32", torch.float32, ["math"])):
        backends = [b for b in backends if only is None or b in only]
        if not backends:
            continue
        q, k, v, do = inputs(s, dtype)
        for backend in backends:
            row = {"kind": "torch-bwd", "shape": name, "backend": backend, "dtype": dtype_name}
            try:
                with sdpa_kernel(BACKENDS[backend]):
                    qq, kk, vv = (x.detach().requires_grad_(True) for x in (q, k, v))
                    out = forward(s, qq, kk, vv)
                    step = lambda: torch.autograd.grad(out, (qq, kk, vv), do, retain_graph=True)
                    ms = time_ms(step, iters=1 if smoke else (3 if backend == "math" else 10))
                row["ms"] = ms
                row["tflops"] = flops(s) / ms / 1e9
            except Exception as e:
                row["error"] = str(e).split("\n")[0][:200]
            print(json.dumps(row), flush=True)
            torch.cuda.empty_cache()
        del q, k, v, do


def main(argv):
    dump = None
    if "--dump" in argv:
        dump = argv[argv.index("--dump") + 1]
        os.makedirs(dump, exist_ok=True)
    smoke = "--smoke" in argv
    only = argv[argv.index("--backends") + 1].split(",") if "--backends" in argv else None
    shapes = argv[argv.index("--shapes") + 1].split(",") if "--shapes" in argv else None
    print(json.dumps({"kind": "torch-env", "torch": torch.__version__, "device": torch.cuda.get_device_name()}), flush=True)
    for name, s in SHAPES["check" if not smoke else "smoke"].items():
        if dump:
            check(name, s, dump)
    for name, s in SHAPES["bench" if not smoke else "smoke"].items():
        if shapes is None or name in shapes:
            bench(name, s, smoke, only)


if __name__ == "__main__":
    main(sys.argv[1:])
