"""The PyTorch peer of text_encode_bench: transformers' UMT5EncoderModel with the umT5-XXL shape (random weights,
bf16, eager), encoding the same number of prompts at the same token counts, three ways:
  padded_each   one prompt at a time padded to 512 with the attention mask (what Wan2.1's pipeline does),
  batched_512   all prompts in one batch padded to 512,
  real_each     one prompt at a time at its real length (what ditrun does).

    python3 bench/pytorch_umt5_encode.py --lengths 31,64,... --iters 3 --json out.json
"""
import argparse
import json
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lengths", required=True, help="token counts, comma-separated (one prompt each)")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--pad-to", type=int, default=512)
    p.add_argument("--json")
    a = p.parse_args()

    from transformers import UMT5Config, UMT5EncoderModel

    lengths = [int(x) for x in a.lengths.split(",")]
    cfg = UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                     relative_attention_num_buckets=32, relative_attention_max_distance=128,
                     feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, dropout_rate=0.0)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device("cuda"):
        torch.set_default_dtype(torch.bfloat16)
        model = UMT5EncoderModel(cfg).eval()
    torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    gen = torch.Generator(device="cuda").manual_seed(1)
    ids = [torch.randint(2, cfg.vocab_size, (n,), device="cuda", generator=gen) for n in lengths]

    def padded(batch):
        x = torch.zeros((len(batch), a.pad_to), dtype=torch.long, device="cuda")
        mask = torch.zeros_like(x)
        for i, t in enumerate(batch):
            x[i, : len(t)] = t
            mask[i, : len(t)] = 1
        return x, mask

    def run(mode):
        if mode == "padded_each":
            for t in ids:
                x, m = padded([t])
                model(input_ids=x, attention_mask=m)
        elif mode == "batched_512":
            x, m = padded(ids)
            model(input_ids=x, attention_mask=m)
        else:
            for t in ids:
                model(input_ids=t[None])

    results = {"implementation": "pytorch", "torch": torch.__version__, "dtype": "bfloat16", "prompts": len(ids),
               "lengths": lengths, "weights_init_s": load_s}
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        for mode in ("padded_each", "batched_512", "real_each"):
            times = []
            for i in range(a.warmup + a.iters):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                run(mode)
                torch.cuda.synchronize()
                ms = (time.perf_counter() - t0) * 1e3
                if i >= a.warmup:
                    times.append(ms)
                print(f"pytorch {mode} pass {i}: {ms:.1f} ms", flush=True)
            times.sort()
            med = times[len(times) // 2]
            results[mode] = {"ms_all_prompts_median": med, "ms_per_prompt": med / len(ids), "ms_all": times}
    results["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    import transformers

    results["transformers"] = transformers.__version__
    print(json.dumps(results))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
