"""cuBLAS anchor of the ceiling study (issue 14): torch.matmul fp16 at S^3 on the same GPU, in the
same run as the WGSL sweep. Rows: C = A @ W.T (the Linear layout the study's 'nt' rows use),
C = A @ B, and bf16; each checked on 32 sampled rows against float64 before it is timed (CUDA
events, median of 20 after 5 warm-ups). One JSON object per line.

Usage: python3 bench/ceiling/cublas.py [--size 8192]
"""
import json
import sys

import torch


def time_ms(fn, iters=20, warmup=5):
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
    return times[len(times) // 2], times[0]


def main(argv):
    size = int(argv[argv.index("--size") + 1]) if "--size" in argv else 8192
    print(json.dumps({"kind": "cublas-env", "torch": torch.__version__, "device": torch.cuda.get_device_name(),
                      "sms": torch.cuda.get_device_properties(0).multi_processor_count}), flush=True)
    g = torch.Generator(device="cuda").manual_seed(14)
    rows = torch.arange(0, size, max(1, size // 32), device="cuda")[:32]
    for dtype, label in ((torch.float16, "fp16"), (torch.bfloat16, "bf16")):
        a = torch.randn(size, size, generator=g, device="cuda", dtype=dtype)
        w = torch.randn(size, size, generator=g, device="cuda", dtype=dtype)
        wt = w.t().contiguous()
        for layout, fn in (("A @ W.T (nt)", lambda: a @ w.t()), ("A @ B (nn)", lambda: a @ wt)):
            row = {"kind": "cublas", "dtype": label, "layout": layout, "size": size}
            try:
                out = fn()
                ref = a[rows].double() @ w.double().t()
                rel = ((out[rows].double() - ref).abs().max() / ref.abs().max()).item()
                row["rel"] = rel
                row["pass"] = rel < 1e-2
                if row["pass"]:
                    ms, ms_min = time_ms(fn)
                    row.update(ms=ms, msMin=ms_min, tflops=2 * size ** 3 / (ms * 1e9))
            except Exception as e:  # say why instead of dying: the sweep's rows still count
                row["error"] = str(e).split("\n")[0][:200]
            print(json.dumps(row), flush=True)
        del a, w, wt
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main(sys.argv[1:])
