#!/usr/bin/env python3
"""PyTorch on the same GPU, for context next to bench/block.mjs: the Qwen/Llama attention module
done the HF eager way (separate q/k/v Linear, RoPE, repeat_kv, matmul, causal mask, softmax, matmul,
o Linear) vs a fused-style module (one packed qkv Linear, RoPE, scaled_dot_product_attention with
is_causal, o Linear). Median ms over CUDA-event-timed calls; prints JSON lines.

  python3 bench/block_torch.py [--batch 1,4,8] [--seq 1024] [--dtype float32,float16]
"""
import argparse
import json
import math

import torch
import torch.nn.functional as F


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--batch', default='1,4,8')
    p.add_argument('--seq', type=int, default=1024)
    p.add_argument('--dtype', default='float32,float16')
    p.add_argument('--iters', type=int, default=10)
    a = p.parse_args()
    H, NQ, NKV, D = 4096, 32, 32, 128
    dev = 'cuda'
    for dtype_name in a.dtype.split(','):
        dt = getattr(torch, dtype_name)
        torch.backends.cuda.matmul.allow_tf32 = False
        g = torch.Generator(device=dev).manual_seed(1)
        w = {k: torch.randn(shape, device=dev, dtype=dt, generator=g) / math.sqrt(shape[-1])
             for k, shape in {'q': (NQ * D, H), 'k': (NKV * D, H), 'v': (NKV * D, H), 'o': (H, NQ * D)}.items()}
        b = {k: torch.randn(n, device=dev, dtype=dt, generator=g) * 0.5 for k, n in {'q': NQ * D, 'k': NKV * D, 'v': NKV * D}.items()}
        wqkv = torch.cat([w['q'], w['k'], w['v']])
        bqkv = torch.cat([b['q'], b['k'], b['v']])
        for B in [int(x) for x in a.batch.split(',')]:
            S = a.seq
            x = torch.randn(B, S, H, device=dev, dtype=dt, generator=g)
            inv = 1.0 / (10000 ** (torch.arange(0, D, 2, device=dev, dtype=torch.float64) / D))
            ang = torch.arange(S, device=dev, dtype=torch.float64)[:, None] * inv[None, :]
            cos = ang.cos().to(dt)
            sin = ang.sin().to(dt)

            def eager():
                q = F.linear(x, w['q'], b['q']).view(B, S, NQ, D).transpose(1, 2)
                k = F.linear(x, w['k'], b['k']).view(B, S, NKV, D).transpose(1, 2)
                v = F.linear(x, w['v'], b['v']).view(B, S, NKV, D).transpose(1, 2)
                q, k = rope(q, cos, sin), rope(k, cos, sin)
                rep = NQ // NKV
                if rep > 1:
                    k = k.repeat_interleave(rep, dim=1)
                    v = v.repeat_interleave(rep, dim=1)
                s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(D)
                mask = torch.full((S, S), float('-inf'), device=dev, dtype=dt).triu(1)
                p_ = torch.softmax(s + mask, dim=-1, dtype=torch.float32).to(dt)
                o = torch.matmul(p_, v).transpose(1, 2).reshape(B, S, NQ * D)
                return F.linear(o, w['o'])

            def fused():
                qkv = F.linear(x, wqkv, bqkv).view(B, S, NQ + 2 * NKV, D).transpose(1, 2)
                q, k, v = qkv[:, :NQ], qkv[:, NQ:NQ + NKV], qkv[:, NQ + NKV:]
                q, k = rope(q, cos, sin), rope(k, cos, sin)
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=NQ != NKV)
                return F.linear(o.transpose(1, 2).reshape(B, S, NQ * D), w['o'])

            ref = eager().float()
            err = ((fused().float() - ref).abs().max() / ref.abs().max()).item()
            for name, fn in [('eager', eager), ('sdpa', fused)]:
                for _ in range(2):
                    fn()
                torch.cuda.synchronize()
                times = []
                for _ in range(a.iters):
                    s0, s1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    s0.record()
                    fn()
                    s1.record()
                    torch.cuda.synchronize()
                    times.append(s0.elapsed_time(s1))
                times.sort()
                print(json.dumps({'kind': 'torch', 'module': name, 'dtype': dtype_name, 'batch': B, 'seq': S,
                                  'ms': times[len(times) // 2], 'relErrVsEager': err, 'gpu': torch.cuda.get_device_name()}), flush=True)
            del x


if __name__ == '__main__':
    main()
