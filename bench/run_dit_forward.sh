#!/usr/bin/env bash
# One DiT forward, ours and the PyTorch peer, in the same run on the GPU machine; merges both into one JSON with
# the device and the date.   bash bench/run_dit_forward.sh BUILD_DIR CONFIG SIZES OUT_JSON [ITERS]
#   e.g. bash bench/run_dit_forward.sh build 14b 832x480,1280x720 $OUT/dit_forward_14b.json 2
set -u
build=${1:?} config=${2:?} sizes=${3:?} out=${4:?} iters=${5:-3}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
"$build/bench/dit_forward_bench" --config "$config" --sizes "$sizes" --iters "$iters" --json "$tmp/ours.json"
IFS=, read -ra list <<<"$sizes"
for s in "${list[@]}"; do
  w=${s%x*} h=${s#*x}
  python3 "$here/pytorch_wan_forward.py" --config "$config" --width "$w" --height "$h" --iters "$iters" \
    --json "$tmp/peer_$s.json"
done
python3 - "$tmp" "$out" "$config" <<'PY'
import datetime, glob, json, subprocess, sys
tmp, out, config = sys.argv[1:4]
ours = json.load(open(f"{tmp}/ours.json"))
gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                     capture_output=True, text=True).stdout.strip()
rows = []
for o in ours:
    peer = json.load(open(f"{tmp}/peer_{o['size']}.json"))
    rows.append({"size": o["size"], "tokens": o["tokens"], "ditrun": o, "pytorch": peer,
                 "speedup_vs_pytorch": peer["ms_median"] / o["ms_median"]})
doc = {"benchmark": "dit_forward", "config": config, "device": gpu,
       "date": datetime.date.today().isoformat(), "results": rows}
json.dump(doc, open(out, "w"), indent=2)
print(f"{'config':8} {'size':10} {'tokens':>7} {'ditrun ms':>10} {'TFLOP/s':>8} {'mem GiB':>8} {'pytorch ms':>11} {'peak GiB':>9} {'speedup':>8}")
for r in rows:
    o, p = r["ditrun"], r["pytorch"]
    print(f"{config:8} {r['size']:10} {r['tokens']:7d} {o['ms_median']:10.1f} {o['tflops_achieved']:8.1f} "
          f"{o['device_memory_gib']:8.1f} {p['ms_median']:11.1f} {p['peak_memory_gib']:9.1f} {r['speedup_vs_pytorch']:8.2f}")
PY
