#!/usr/bin/env python3
"""PyTorch SDPA at the attention shapes of bench/attention_bench.cc, with the cuDNN and the FlashAttention backends.

Layout [1, heads, L, 128] bf16, non-causal, default scale (1/sqrt(128)); random normal data; median of CUDA-event
times after warm-up; FLOPs = 4·lq·lk·d·heads. Writes JSON.
    python3 bench/pytorch_attention.py [--iters 10] [--warmup 2] [--shapes all|NAME,...] [--json out.json]
        [--cooldown-ms 1000]   (idle time before each timing, as attention_bench)
"""
import argparse
import json
import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = [
    ("self_40x32760", 40, 32760, 32760),
    ("self_12x32760", 12, 32760, 32760),
    ("self_40x75600", 40, 75600, 75600),
    ("cross_40x32760x512", 40, 32760, 512),
]
BACKENDS = [("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION), ("sdpa_flash", SDPBackend.FLASH_ATTENTION)]


def time_ms(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    for start, stop in events:
        start.record()
        fn()
        stop.record()
    torch.cuda.synchronize()
    times = sorted(start.elapsed_time(stop) for start, stop in events)
    return statistics.median(times), times[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--shapes", default="all")
    ap.add_argument("--json")
    ap.add_argument("--cooldown-ms", type=int, default=1000,
                    help="idle time before each timing, so every kernel starts from the same clock and power state")
    args = ap.parse_args()
    wanted = None if args.shapes == "all" else set(args.shapes.split(","))

    torch.manual_seed(0)
    results = []
    for name, heads, lq, lk in SHAPES:
        if wanted is not None and name not in wanted:
            continue
        q = torch.randn(1, heads, lq, 128, dtype=torch.bfloat16, device="cuda")
        k = torch.randn(1, heads, lk, 128, dtype=torch.bfloat16, device="cuda")
        v = torch.randn(1, heads, lk, 128, dtype=torch.bfloat16, device="cuda")
        flop = 4.0 * lq * lk * 128 * heads
        for label, backend in BACKENDS:
            row = {"shape": name, "heads": heads, "lq": lq, "lk": lk, "head_dim": 128, "kernel": label}
            try:
                time.sleep(args.cooldown_ms / 1000)
                with sdpa_kernel([backend]):
                    fn = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)  # noqa: E731
                    median, best = time_ms(fn, args.warmup, args.iters)
                row.update({"ms_median": median, "ms_min": best, "iters": args.iters,
                            "tflops": flop / (median * 1e-3) / 1e12})
                print(f"{name:20} {label:12} {median:9.3f} ms (min {best:9.3f})  {row['tflops']:7.1f} TFLOP/s",
                      flush=True)
            except Exception as e:  # a backend that refuses the shape is recorded, not fatal
                row["error"] = f"{type(e).__name__}: {e}"[:300]
                print(f"{name:20} {label:12} error: {row['error']}", flush=True)
            results.append(row)
        del q, k, v
        torch.cuda.empty_cache()
    doc = {"benchmark": "attention_pytorch", "device": torch.cuda.get_device_name(0),
           "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)


if __name__ == "__main__":
    main()
