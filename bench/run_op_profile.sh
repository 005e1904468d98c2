#!/usr/bin/env bash
# Where one DiT forward's GPU time goes, per op and shape, ours and diffusers' in the same run on the GPU machine:
# dit_forward_bench --op-times (CUDA events around each op of one forward) and pytorch_wan_forward.py
# --profile-json (torch.profiler: every aten::linear and SDPA call by input shapes). Merges both into one JSON with
# the device and the date and prints the table of bench/README.md (kernel, shape, time, TFLOP/s, share of the
# forward, PyTorch's time for the same work and the ratio).
#   bash bench/run_op_profile.sh BUILD_DIR CONFIG WxH OUT_JSON
set -u
build=${1:?build directory} config=${2:?config} size=${3:?WxH} out=${4:?output json}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
"$build/bench/dit_forward_bench" --config "$config" --sizes "$size" --iters 1 --op-times --json "$tmp/ours.json" \
  > "$tmp/ours.log" || { cat "$tmp/ours.log"; exit 1; }
python3 "$here/pytorch_wan_forward.py" --config "$config" --width "${size%x*}" --height "${size#*x}" --iters 1 \
  --json "$tmp/peer.json" --profile-json "$tmp/peer_profile.json" > "$tmp/peer.log" || { cat "$tmp/peer.log"; exit 1; }
python3 "$here/op_table.py" "$tmp/ours.json" "$tmp/peer_profile.json" "$out"
