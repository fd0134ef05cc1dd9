# PyTorch scaled_dot_product_attention on the same shapes as bench/gpu-portable.mjs, same machine,
# same run: fp32 rows (math, memory-efficient; FlashAttention and cuDNN take no fp32) and fp16 rows
# (math, flash, cuDNN, memory-efficient). CUDA-event time, median of the repetitions after warm-up.
# One JSON line per result on stdout.
#   python3 bench/gpu-portable-torch.py [--quick]
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = [
    dict(name='B4 H32 S4096 D128', batch=4, heads=32, seq=4096, dq=128),
    dict(name='B4 H32 S4096 D128 causal', batch=4, heads=32, seq=4096, dq=128, causal=True),
    dict(name='B1 H32 S1024 D128 causal', batch=1, heads=32, seq=1024, dq=128, causal=True),
    dict(name='MLA B2 H16 S4096 192/128 causal', batch=2, heads=16, seq=4096, dq=192, dv=128, causal=True),
    dict(name='B4 H32 S1024 D64', batch=4, heads=32, seq=1024, dq=64),
    dict(name='GQA B4 H32/8 S4096 D128 causal', batch=4, heads=32, kv_heads=8, seq=4096, dq=128, causal=True),
]
BACKENDS = {
    'math': SDPBackend.MATH,
    'flash': SDPBackend.FLASH_ATTENTION,
    'cudnn': SDPBackend.CUDNN_ATTENTION,
    'efficient': SDPBackend.EFFICIENT_ATTENTION,
}


def time_ms(fn, reps):
    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main():
    quick = '--quick' in sys.argv
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 math means fp32 (PyTorch's default)
    print(json.dumps(dict(kind='torch', version=torch.__version__, device=torch.cuda.get_device_name())), flush=True)
    for s in SHAPES:
        if quick and s['seq'] > 1024:
            continue
        kv = s.get('kv_heads', s['heads'])
        dv = s.get('dv', s['dq'])
        causal = s.get('causal', False)
        flops = 4 * s['batch'] * s['heads'] * s['seq'] ** 2 * (s['dq'] + dv) / 2 * (0.5 if causal else 1)
        gen = torch.Generator(device='cuda').manual_seed(0)
        q32 = torch.randn(s['batch'], s['heads'], s['seq'], s['dq'], device='cuda', generator=gen)
        k32 = torch.randn(s['batch'], kv, s['seq'], s['dq'], device='cuda', generator=gen)
        v32 = torch.randn(s['batch'], kv, s['seq'], dv, device='cuda', generator=gen)
        for dtype in (torch.float32, torch.float16):
            q, k, v = (t.to(dtype) for t in (q32, k32, v32))
            for name, backend in BACKENDS.items():
                row = dict(kind='torch-time', shape=s['name'], backend=name, dtype=str(dtype).replace('torch.', ''))
                try:
                    with sdpa_kernel(backend):
                        call = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=kv != s['heads'])
                        ms = time_ms(call, 5 if s['seq'] >= 4096 else 10)
                    row.update(ms=ms, tflops=flops / (ms * 1e-3) / 1e12)
                except Exception as e:  # a backend that does not take this shape/dtype says so
                    row.update(unsupported=str(e).split('\n')[0][:300])
                torch.cuda.empty_cache()
                print(json.dumps(row), flush=True)


if __name__ == '__main__':
    main()
