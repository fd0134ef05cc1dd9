"""PyTorch scaled_dot_product_attention on the benchmark shapes, per backend (flash, cuDNN,
memory-efficient, math), timed with CUDA events (median of N after warm-up), fp16, random normal
inputs. Prints one JSON object per line: {"kind": "torch", "shape", "backend", "ms" | "error"}.

Usage: python3 bench/gpu/torch_sdpa.py [--dump DIR] [shape names as in bench/gpu/shapes.json ...]
With --dump DIR it also writes each shape's q/k/v (seed 0, BNSD) and each backend's output as raw
fp16 files (DIR/<slug>.{q,k,v,out-<backend>}.f16, slug = shape name with non-alphanumerics as _),
so the WebGPU benchmark runs on the same inputs and measures its error against PyTorch.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = json.load(open(os.path.join(HERE, "shapes.json")))
BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}


def slug(name):
    return "".join(c if c.isalnum() else "_" for c in name)


def make_inputs(s, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    hk = s.get("headsKv", s["headsQ"])
    dv = s.get("dimV", s["dimQK"])
    shape = lambda h, d: (s["batch"], h, s["seq"], d)
    q = torch.randn(shape(s["headsQ"], s["dimQK"]), generator=g, device="cuda", dtype=torch.float16)
    k = torch.randn(shape(hk, s["dimQK"]), generator=g, device="cuda", dtype=torch.float16)
    v = torch.randn(shape(hk, dv), generator=g, device="cuda", dtype=torch.float16)
    return q, k, v


def run(s, q, k, v):
    gqa = s.get("headsKv", s["headsQ"]) != s["headsQ"]
    return F.scaled_dot_product_attention(q, k, v, is_causal=bool(s.get("causal")), enable_gqa=gqa)


def time_ms(fn, iters=10, warmup=3):
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


def main(argv):
    dump = None
    if argv[:1] == ["--dump"]:
        dump = argv[1]
        os.makedirs(dump, exist_ok=True)
        argv = argv[2:]
    names = argv or list(SHAPES)
    print(json.dumps({"kind": "torch-env", "torch": torch.__version__, "device": torch.cuda.get_device_name()}), flush=True)
    for name in names:
        s = SHAPES[name]
        q, k, v = make_inputs(s)
        for backend, enum in BACKENDS.items():
            row = {"kind": "torch", "shape": name, "backend": backend}
            try:
                with sdpa_kernel(enum):
                    out = run(s, q, k, v)
                    row["ms"] = time_ms(lambda: run(s, q, k, v), iters=5 if backend == "math" else 10)
                if dump and backend != "efficient":
                    out.cpu().numpy().tofile(os.path.join(dump, f"{slug(name)}.out-{backend}.f16"))
            except Exception as e:  # the backend cannot run this shape: say why
                row["error"] = str(e).split("\n")[0][:200]
            print(json.dumps(row), flush=True)
            torch.cuda.empty_cache()
        if dump:
            for t, label in ((q, "q"), (k, "k"), (v, "v")):
                t.cpu().numpy().tofile(os.path.join(dump, f"{slug(name)}.{label}.f16"))
        del q, k, v


if __name__ == "__main__":
    main(sys.argv[1:])
