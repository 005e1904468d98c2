#!/usr/bin/env bash
# Encoding 16 prompts with umT5-XXL-shaped weights, ours and the PyTorch peer, in the same run on the GPU machine;
# merges both into one JSON with the device and the date.
#   bash bench/run_text_encode.sh BUILD_DIR OUT_JSON [ITERS]
# The 16 token counts (EOS included) spread over what Wan2.1 prompts tokenize to (tens to a couple of hundred);
# ours runs them as given and also every prompt at 512 tokens, the reference's padded length.
set -u
build=${1:?} out=${2:?} iters=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
lengths=24,37,45,52,60,68,75,83,90,98,110,124,140,165,190,230
padded=$(printf '512%.0s,' $(seq 16)); padded=${padded%,}
tmp=$(mktemp -d)
"$build/bench/text_encode_bench" --config xxl --lengths "$lengths" --iters "$iters" --json "$tmp/ours.json"
"$build/bench/text_encode_bench" --config xxl --lengths "$padded" --iters "$iters" --json "$tmp/ours_512.json"
python3 "$here/pytorch_umt5_encode.py" --lengths "$lengths" --iters "$iters" --json "$tmp/peer.json"
python3 - "$tmp" "$out" <<'PY'
import datetime, json, subprocess, sys
tmp, out = sys.argv[1:3]
gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                     capture_output=True, text=True).stdout.strip()
ours, ours512, peer = (json.load(open(f"{tmp}/{n}.json")) for n in ("ours", "ours_512", "peer"))
json.dump({"benchmark": "text_encode_umt5_xxl", "device": gpu, "date": datetime.date.today().isoformat(),
           "ditrun_real_lengths": ours, "ditrun_512": ours512, "pytorch": peer}, open(out, "w"), indent=2)
print(f"{'what':44} {'ms / prompt':>12}")
print(f"{'ditrun, real lengths (one after another)':44} {ours['ms_per_prompt']:12.2f}")
print(f"{'ditrun, 512 tokens each':44} {ours512['ms_per_prompt']:12.2f}")
for mode, what in (("padded_each", "PyTorch, padded to 512, one at a time"), ("batched_512", "PyTorch, padded to 512, batch of 16"),
                   ("real_each", "PyTorch, real lengths, one at a time")):
    print(f"{what:44} {peer[mode]['ms_per_prompt']:12.2f}")
PY
