"""Joins dit_forward_bench --op-times with pytorch_wan_forward.py --profile-json (bench/run_op_profile.sh): one row
per GEMM and attention shape of our forward with its GPU time, TFLOP/s and share of the forward, beside the time
PyTorch spends on the same work (nn.Linear of the same M, N, K; SDPA of the same heads and lengths). The rest of
each forward (element-wise ops and norms, which the two split into different kernels, and any gaps between
kernels) is compared as one row: the forward's time less its GEMMs and attention. Both sides are timed with CUDA
events around each op. Writes the merged JSON and prints the table as Markdown.

    python3 bench/op_table.py OURS.json PEER_PROFILE.json OUT.json
"""
import datetime
import json
import math
import re
import subprocess
import sys


def main():
    ours_doc, peer, out = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
    ours = ours_doc[0] if isinstance(ours_doc, list) else ours_doc
    timing = ours["op_times"]
    forward_ms = timing["forward_ms"]
    peer_ops = peer["ops"]
    used = set()

    def peer_linear(m, n, k):
        ms, calls = 0.0, 0
        for i, p in enumerate(peer_ops):
            shapes = p["input_shapes"]
            if p["op"] != "aten::linear" or len(shapes) < 2 or not shapes[0] or not shapes[1]:
                continue
            x, w = shapes[0], shapes[1]
            if x[-1] == k and math.prod(x[:-1]) == m and list(w) == [n, k]:
                ms, calls = ms + p["ms"], calls + p["calls"]
                used.add(i)
        return ms, calls

    def peer_attention(h, lq, lk, d):
        ms, calls = 0.0, 0
        for i, p in enumerate(peer_ops):
            shapes = p["input_shapes"]
            if p["op"] != "aten::scaled_dot_product_attention" or len(shapes) < 2:
                continue
            q, k = shapes[0], shapes[1]
            if list(q[-3:]) == [h, lq, d] and k[-2] == lk:
                ms, calls = ms + p["ms"], calls + p["calls"]
                used.add(i)
        return ms, calls

    rows, ours_rest_calls = [], 0
    for e in timing["ops"]:
        peer_ms, peer_calls = None, 0
        if e["op"] == "linear":
            m, n, k = map(int, re.match(r"(\d+)x(\d+)x(\d+)", e["shape"]).groups())
            peer_ms, peer_calls = peer_linear(m, n, k)
        elif e["op"] == "attention":
            h, lq, lk, d = map(int, re.match(r"(\d+)x(\d+)x(\d+) d(\d+)", e["shape"]).groups())
            peer_ms, peer_calls = peer_attention(h, lq, lk, d)
        else:
            ours_rest_calls += e["calls"]
            continue
        rows.append({"kernel": e["op"], "shape": e["shape"], "calls": e["calls"], "ms": e["ms"],
                     "tflops": e["tflops"], "share": e["ms"] / forward_ms,
                     "pytorch_ms": peer_ms if peer_calls else None, "pytorch_calls": peer_calls,
                     "pytorch_over_ours": peer_ms / e["ms"] if peer_calls else None})
    peer_forward = peer["forward_ms"]
    peer_unmatched = sum(p["ms"] for i, p in enumerate(peer_ops) if i not in used)
    peer_rest = peer_forward - sum(p["ms"] for p in peer_ops)
    ours_rest = forward_ms - sum(r["ms"] for r in rows)
    rows.append({"kernel": "everything else (element-wise, norms, gaps)", "shape": "", "calls": ours_rest_calls,
                 "ms": ours_rest, "tflops": None, "share": ours_rest / forward_ms, "pytorch_ms": peer_rest,
                 "pytorch_calls": None, "pytorch_over_ours": peer_rest / ours_rest if ours_rest else None})
    if peer_unmatched:
        rows.append({"kernel": "PyTorch only: GEMMs with no counterpart in our forward (context K/V, cached by us)",
                     "shape": "", "calls": 0, "ms": 0.0, "tflops": None, "share": 0.0, "pytorch_ms": peer_unmatched,
                     "pytorch_calls": None, "pytorch_over_ours": None})
    rows.append({"kernel": "the whole forward", "shape": "", "calls": sum(r["calls"] for r in rows), "ms": forward_ms,
                 "tflops": ours["model_tflop"] / (forward_ms / 1e3), "share": 1.0, "pytorch_ms": peer_forward,
                 "pytorch_calls": None, "pytorch_over_ours": peer_forward / forward_ms})

    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        gpu = "unknown"
    doc = {"benchmark": "op_profile", "config": ours["config"], "size": ours["size"], "tokens": ours["tokens"],
           "device": gpu, "date": datetime.date.today().isoformat(),
           "ditrun_forward_ms": forward_ms, "ditrun_ops_ms": timing["ops_ms"],
           "pytorch_forward_ms": peer_forward,
           "torch": peer.get("torch"), "rows": rows, "ditrun_op_times": timing, "pytorch_profile": peer}
    json.dump(doc, open(out, "w"), indent=2)

    def f(v, fmt):
        return "—" if v is None else format(v, fmt)

    print(f"{ours['config']} {ours['size']} ({ours['tokens']} tokens), {gpu}, {doc['date']}: our forward with op "
          f"timing {forward_ms:.1f} ms; PyTorch's with op timing {peer_forward:.1f} ms")
    print("| kernel | shape | calls | ms | TFLOP/s | share of the forward | PyTorch ms | PyTorch / ours (×) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kernel']} | {r['shape']} | {r['calls']} | {r['ms']:.1f} | {f(r['tflops'], '.0f')} | "
              f"{100 * r['share']:.1f}% | {f(r['pytorch_ms'], '.1f')} | {f(r['pytorch_over_ours'], '.2f')} |")


if __name__ == "__main__":
    main()
