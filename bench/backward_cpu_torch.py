#!/usr/bin/env python3
"""PyTorch's CPU SDPA backward on the shapes of bench/backward.mjs (issue 10's CPU anchor).

    python3 bench/backward_cpu_torch.py --threads 16 > torch-cpu.jsonl

float32, torch.autograd through F.scaled_dot_product_attention on the CPU (PyTorch picks its CPU
flash kernel where it applies, else the math path); the forward runs once, then the backward alone
is timed (retain_graph, so every iteration differentiates the same graph, dropout mask included).
FLOPs counted as bench/backward.mjs does: 2.5 x the forward's 2 matmuls over the visible pairs.
One JSON line per shape; a shape that fails prints its error instead of a time.
"""
import argparse, json, math, time

import torch
import torch.nn.functional as F

CONFIGS = [
    dict(name='B1 H8 S1024 D64', h=8, hkv=8, s=1024, d=64, dv=64, causal=False, p=0.0),
    dict(name='B1 H8 S1024 D64 causal', h=8, hkv=8, s=1024, d=64, dv=64, causal=True, p=0.0),
    dict(name='B1 H8/2 S1024 D128 causal (GQA)', h=8, hkv=2, s=1024, d=128, dv=128, causal=True, p=0.0),
    dict(name='B1 H8 S1024 D192/128 causal (MLA)', h=8, hkv=8, s=1024, d=192, dv=128, causal=True, p=0.0),
    dict(name='B1 H8 S1024 D64 causal dropout 0.1', h=8, hkv=8, s=1024, d=64, dv=64, causal=True, p=0.1),
]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--threads', type=int, default=torch.get_num_threads())
    ap.add_argument('--iters', type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for c in CONFIGS:
        row = dict(kind='backward-cpu-torch', torch=torch.__version__, threads=torch.get_num_threads(), config=c['name'])
        try:
            q = torch.randn(1, c['h'], c['s'], c['d'], requires_grad=True)
            k = torch.randn(1, c['hkv'], c['s'], c['d'], requires_grad=True)
            v = torch.randn(1, c['hkv'], c['s'], c['dv'], requires_grad=True)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=c['causal'], dropout_p=c['p'], enable_gqa=c['hkv'] != c['h'])
            dout = torch.randn_like(out)
            times = []
            for i in range(args.iters + 1):
                for t in (q, k, v):
                    t.grad = None
                t0 = time.perf_counter()
                out.backward(dout, retain_graph=True)
                times.append(time.perf_counter() - t0)
            grads = [q.grad, k.grad, v.grad]
            if not all(torch.isfinite(g).all() and g.abs().max() > 0 for g in grads):
                raise RuntimeError('non-finite or all-zero gradients')
            ms = sorted(times[1:])[len(times[1:]) // 2] * 1e3
            s = c['s']
            pairs = c['h'] * (s * (s + 1) // 2 if c['causal'] else s * s)
            flops = 2.5 * 2 * pairs * (c['d'] + c['dv'])
            row.update(status='ok', ms=round(ms, 2), gflops=round(flops / ms / 1e6, 2))
        except Exception as e:  # noqa: BLE001 - a failing shape is reported, the others still run
            row.update(status='FAIL', error=str(e)[:300])
        print(json.dumps(row), flush=True)

if __name__ == '__main__':
    main()
