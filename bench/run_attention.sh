#!/usr/bin/env bash
# Attention alone, ours (sm90 wgmma/TMA kernel at every key tile, and the mma.sync kernel) and PyTorch SDPA (cuDNN
# and FlashAttention backends) in the same run on the GPU machine; merges both into one JSON with the device and
# the date and prints a table.
#   bash bench/run_attention.sh BUILD_DIR OUT_JSON [ITERS] [extra attention_bench flags, e.g. --skip-old]
set -u
build=${1:?build directory} out=${2:?output json} iters=${3:-10}
shift $(( $# < 3 ? $# : 3 ))
here=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH="$(cd "$build" && pwd)/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
tmp=$(mktemp -d)
"$build/bench/attention_bench" --iters "$iters" --json "$tmp/ours.json" "$@" || exit 1
python3 "$here/pytorch_attention.py" --iters "$iters" --json "$tmp/peer.json" || exit 1
python3 - "$tmp" "$out" <<'PY'
import datetime, json, subprocess, sys
tmp, out = sys.argv[1:3]
ours = json.load(open(f"{tmp}/ours.json"))
peer = json.load(open(f"{tmp}/peer.json"))
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip().splitlines()[0]
except (OSError, IndexError):
    gpu = ours.get("device", "unknown")
rows = ours["results"] + peer["results"]
shapes = []
for r in rows:
    if r["shape"] not in shapes:
        shapes.append(r["shape"])
summary = []
for s in shapes:
    mine = [r for r in ours["results"] if r["shape"] == s and r["kernel"] == "sm90_wgmma_tma"]
    best = max(mine, key=lambda r: r["tflops"]) if mine else None
    default = next((r for r in mine if r["default"]), None)
    cudnn = next((r for r in peer["results"] if r["shape"] == s and r["kernel"] == "sdpa_cudnn" and "tflops" in r), None)
    entry = {"shape": s}
    if default:
        entry["sm90_default_tflops"] = default["tflops"]
        entry["sm90_default_block_n"] = default["block_n"]
    if best:
        entry["sm90_best_tflops"] = best["tflops"]
        entry["sm90_best_block_n"] = best["block_n"]
    if cudnn and default:
        entry["sm90_default_vs_cudnn"] = default["tflops"] / cudnn["tflops"]
    summary.append(entry)
doc = {"benchmark": "attention", "device": gpu, "date": datetime.date.today().isoformat(),
       "torch": peer.get("torch"), "cudnn": peer.get("cudnn"), "results": rows, "summary": summary}
json.dump(doc, open(out, "w"), indent=2)
print(f"\n{gpu}, {doc['date']}")
print(f"{'shape':20} {'kernel':16} {'block_n':>7} {'ms':>10} {'TFLOP/s':>8}")
for r in rows:
    bn = str(r.get("block_n", "")) + ("*" if r.get("default") and r["kernel"] == "sm90_wgmma_tma" else "")
    if "tflops" in r:
        print(f"{r['shape']:20} {r['kernel']:16} {bn:>7} {r['ms_median']:10.3f} {r['tflops']:8.1f}")
    else:
        print(f"{r['shape']:20} {r['kernel']:16} {bn:>7} {'error':>10} {r.get('error', '')[:60]}")
print("(* = the key tile the sm90 kernel picks by default)")
for e in summary:
    if "sm90_default_vs_cudnn" in e:
        print(f"{e['shape']:20} sm90 default / cuDNN = {e['sm90_default_vs_cudnn']:.2f}x")
PY
