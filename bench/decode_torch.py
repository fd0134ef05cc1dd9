"""PyTorch SDPA decode beside bench/decode.mjs (issue 15): one query per sequence against a fp16
KV cache, on the same shapes and lengths, plus MLA's absorbed latent form (one shared KV head of 576,
values = its first 512 columns). Every shape is checked against a float64 computation first; a
wrong result gets an "error" row and no time. Times per call:
  steadyUs  CUDA events around N back-to-back calls (launch cost included, as queued work), / N,
            median of 3 rounds;
  loneUs    one call between two synchronizations (host launch + GPU + sync), median of 20.
One JSON object per line: {"kind": "torch-decode", "shape", "length", "steadyUs", "loneUs", "GBs", ...}.

Usage: python3 bench/decode_torch.py [--smoke]
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

SMOKE = "--smoke" in sys.argv
SHAPES = {"tiny": (4, 2, 32)} if SMOKE else {"llama-8b": (32, 8, 128), "qwen2-0.5b": (14, 2, 64), "qwen-7b": (28, 4, 128)}
# MLA_ONLY=1 (bench/gpu/mla-decode.sh): the MLA rows only
if os.environ.get("MLA_ONLY"):
    SHAPES = {}
LENGTHS = [64, 300] if SMOKE else [1024, 4096, 16384, 32768]
MLA_HEADS = [16] if SMOKE else [16, 64, 128]
MLA_LENGTH = 200 if SMOKE else 32768
N = 20 if SMOKE else 200


def reference(q, k, v):
    """float64 attention with GQA by repeating the KV heads."""
    g = q.shape[1] // k.shape[1]
    k = k.double().repeat_interleave(g, dim=1)
    v = v.double().repeat_interleave(g, dim=1)
    s = (q.double() @ k.transpose(-1, -2)) / (q.shape[-1] ** 0.5)
    return torch.softmax(s, dim=-1) @ v


def steady_us(fn):
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    rounds = []
    for _ in range(3):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(N):
            fn()
        b.record()
        b.synchronize()
        rounds.append(a.elapsed_time(b) * 1000 / N)
    return sorted(rounds)[1]


def lone_us(fn):
    times = []
    for _ in range(20):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e6)
    return sorted(times)[len(times) // 2]


def bench(name, length, q, k, v, bytes_):
    row = {"kind": "torch-decode", "shape": name, "length": length, "headsQ": q.shape[1], "headsKv": k.shape[1], "dimQK": q.shape[-1], "dimV": v.shape[-1]}
    try:
        gqa = q.shape[1] != k.shape[1]
        call = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
        out = call()
        ref = reference(q, k, v)
        err = ((out.double() - ref).abs().max() / ref.abs().max()).item()
        row["maxRelError"] = err
        if not err < 1e-2:
            raise RuntimeError(f"output differs from float64 by {err} of the largest value")
        row["steadyUs"] = round(steady_us(call), 2)
        row["loneUs"] = round(lone_us(call), 2)
        row["GBs"] = round(bytes_ / row["steadyUs"] / 1e3, 1)
    except Exception as e:  # one failing shape must not stop the rest
        row["error"] = str(e)[:300]
    print(json.dumps(row), flush=True)


def main():
    if not torch.cuda.is_available():
        print(json.dumps({"kind": "torch-env", "error": "no CUDA device: PyTorch rows skipped"}), flush=True)
        return
    print(json.dumps({"kind": "torch-env", "torch": torch.__version__, "device": torch.cuda.get_device_name()}), flush=True)
    g = torch.Generator(device="cuda").manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=g, device="cuda", dtype=torch.float16)
    for name, (nq, nkv, d) in SHAPES.items():
        for length in LENGTHS:
            q, k, v = rand(1, nq, 1, d), rand(1, nkv, length, d), rand(1, nkv, length, d)
            bench(name, length, q, k, v, 2 * nkv * length * d * 2)
            del q, k, v
    latent = rand(1, 1, MLA_LENGTH, 576)
    for nq in MLA_HEADS:
        bench(f"mla-{nq}", MLA_LENGTH, rand(1, nq, 1, 576), latent, latent[..., :512], MLA_LENGTH * 576 * 2)


main()
