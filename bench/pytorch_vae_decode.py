"""The PyTorch peer of vae_decode_bench: diffusers' AutoencoderKLWan (the Wan2.1 config, random weights), eager,
one decode of the same latent shape, plus the FLOPs of that decode counted by torch.utils.flop_counter (the count
both implementations are rated against).

    python3 bench/pytorch_vae_decode.py --width 832 --height 480 --frames 81 --dtype float32 --json out.json

Needs torch and diffusers (the GPU machine has torch; carry the diffusers wheel, see bench/README.md).
"""
import argparse
import json
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cuda")
    p.add_argument("--json")
    a = p.parse_args()

    from diffusers import AutoencoderKLWan
    from torch.utils.flop_counter import FlopCounterMode

    dtype = getattr(torch, a.dtype)
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                           temperal_downsample=[False, True, True]).to(a.device, dtype).eval()
    z = torch.randn((1, 16, 1 + (a.frames - 1) // 4, a.height // 8, a.width // 8), device=a.device, dtype=dtype)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    if a.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.no_grad():
        for i in range(a.warmup + a.iters):
            sync()
            t0 = time.perf_counter()
            frames = vae.decode(z).sample
            sync()
            ms = (time.perf_counter() - t0) * 1e3
            if i >= a.warmup:
                times.append(ms)
            print(f"pytorch {a.width}x{a.height} decode {i}: {ms:.1f} ms", flush=True)
        with FlopCounterMode(display=False) as counter:
            vae.decode(z)
    times.sort()
    flops = counter.get_total_flops()
    out = {"implementation": "pytorch+diffusers", "dtype": a.dtype, "size": f"{a.width}x{a.height}",
           "frames": int(frames.shape[2]), "ms_median": times[len(times) // 2], "ms_all": times,
           "model_tflop": flops / 1e12, "tflops_achieved": flops / 1e12 / (times[len(times) // 2] / 1e3),
           "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if a.device == "cuda" else 0.0,
           "torch": torch.__version__}
    print(json.dumps(out))
    if a.json:
        json.dump(out, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
