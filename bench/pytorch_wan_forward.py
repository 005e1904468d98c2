"""The PyTorch peer of dit_forward_bench: diffusers' WanTransformer3DModel, eager, bf16, SDPA attention
(PyTorch picks its fastest backend), random weights, one forward at the same latent size.

    python3 bench/pytorch_wan_forward.py --config 1.3b --width 832 --height 480 --frames 81 --json out.json

With --profile-json FILE one more forward runs with CUDA events around every nn.Linear and SDPA call, and FILE gets
their GPU time grouped by input shapes and the forward's time (bench/run_op_profile.sh puts it beside
dit_forward_bench --op-times).

Needs torch and diffusers (the GPU machine has torch; carry the diffusers wheel, see bench/README.md).
"""
import argparse
import json
import time

import torch

CONFIGS = {
    "1.3b": dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30),
    "14b": dict(num_attention_heads=40, attention_head_dim=128, ffn_dim=13824, num_layers=40),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="1.3b", choices=CONFIGS)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--json")
    p.add_argument("--profile-json")
    a = p.parse_args()

    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # build the weights in bf16 directly (14B fp32 would not fit)
    t0 = time.time()
    with torch.device("cuda"):
        model = WanTransformer3DModel(
            patch_size=(1, 2, 2), in_channels=16, out_channels=16, text_dim=4096, freq_dim=256,
            cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
            **CONFIGS[a.config]).eval()
    torch.set_default_dtype(torch.float32)
    torch.cuda.synchronize()
    build_s = time.time() - t0
    lat = (1, 16, 1 + (a.frames - 1) // 4, a.height // 8, a.width // 8)
    x = torch.randn(lat, device="cuda", dtype=torch.bfloat16)
    ctx = 0.2 * torch.randn((1, 512, 4096), device="cuda", dtype=torch.bfloat16)
    t = torch.tensor([500], device="cuda")
    torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.no_grad():
        for i in range(a.warmup + a.iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = model(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]
            end.record()
            torch.cuda.synchronize()
            ms = start.elapsed_time(end)
            print(f"forward {i}: {ms:.1f} ms{' (warm-up)' if i < a.warmup else ''}", flush=True)
            if i >= a.warmup:
                times.append(ms)
    times.sort()
    tokens = lat[2] * (lat[3] // 2) * (lat[4] // 2)
    result = {
        "implementation": "pytorch-diffusers-eager-sdpa",
        "torch": torch.__version__,
        "config": a.config,
        "latent": list(lat[1:]),
        "tokens": tokens,
        "iters": a.iters,
        "ms_median": times[len(times) // 2],
        "ms_all": times,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "weights_build_seconds": build_s,
        "output_rms": float(out.float().pow(2).mean().sqrt()),
    }
    print(json.dumps(result))
    if a.profile_json:
        with open(a.profile_json, "w") as f:
            json.dump(profile_forward(model, x, t, ctx), f, indent=2)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)


def profile_forward(model, x, t, ctx):
    """One more forward with CUDA events around every nn.Linear call (module hooks) and every SDPA call (a wrapper
    around torch.nn.functional.scaled_dot_product_attention, which diffusers' attention dispatch calls), grouped
    by input shapes. Events need no synchronisation, so the forward runs as it does unprofiled."""
    import torch.nn.functional as F

    records = []  # (op, input shapes, start event, end event)

    def event():
        return torch.cuda.Event(enable_timing=True)

    def before_linear(module, args):
        module._ditrun_start = event()
        module._ditrun_start.record()

    def after_linear(module, args, output):
        end = event()
        end.record()
        records.append(("aten::linear", [list(args[0].shape), list(module.weight.shape)], module._ditrun_start, end))

    sdpa = F.scaled_dot_product_attention

    def timed_sdpa(query, key, value, *args, **kwargs):
        start, end = event(), event()
        start.record()
        out = sdpa(query, key, value, *args, **kwargs)
        end.record()
        records.append(("aten::scaled_dot_product_attention", [list(query.shape), list(key.shape)], start, end))
        return out

    hooks = []
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            hooks += [m.register_forward_pre_hook(before_linear), m.register_forward_hook(after_linear)]
    F.scaled_dot_product_attention = timed_sdpa
    try:
        with torch.no_grad():
            start, end = event(), event()
            start.record()
            model(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)
            end.record()
            torch.cuda.synchronize()
    finally:
        F.scaled_dot_product_attention = sdpa
        for h in hooks:
            h.remove()
    groups = {}
    for op, shapes, s, e in records:
        g = groups.setdefault((op, json.dumps(shapes)), {"op": op, "input_shapes": shapes, "calls": 0, "ms": 0.0})
        g["calls"] += 1
        g["ms"] += s.elapsed_time(e)
    if not any(op == "aten::scaled_dot_product_attention" for op, *_ in records):
        raise SystemExit("profile: no SDPA call was seen (diffusers no longer calls F.scaled_dot_product_attention)")
    return {"implementation": "pytorch-diffusers-eager-sdpa", "torch": torch.__version__,
            "forward_ms": start.elapsed_time(end), "ops": list(groups.values())}


if __name__ == "__main__":
    main()
