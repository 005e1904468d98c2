#!/usr/bin/env bash
# One Wan-VAE decode (21 latent frames -> 81 frames), ours and the PyTorch peer, in the same run on the GPU
# machine; merges both into one JSON with the device, the date and the FLOPs counted by PyTorch, plus our conv3d
# alone at each decoder stage's shape of the first size.
#   bash bench/run_vae_decode.sh BUILD_DIR SIZES OUT_JSON [ITERS] [PEER_DTYPE]
#   e.g. bash bench/run_vae_decode.sh build-device 832x480,1280x720 $OUT/vae_decode_h100.json 2 float32
#        VAE_RANKS=2 bash bench/run_vae_decode.sh build-device 832x480 $OUT/vae_decode_h200x2.json 2 bfloat16
set -u
build=${1:?} sizes=${2:?} out=${3:?} iters=${4:-2} dtype=${5:-float32}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
# VAE_RANKS=N: our decode split over N GPUs (mpirun, one rank per GPU, NCCL halo exchange); the peer has one GPU.
ranks=${VAE_RANKS:-1}
launch=()
[ "$ranks" -gt 1 ] && launch=(mpirun --allow-run-as-root --mca btl self,vader --mca pml ob1 -x NCCL_NVLS_ENABLE
  -x LD_LIBRARY_PATH -np "$ranks")
"${launch[@]}" "$build/bench/vae_decode_bench" --vae random:wan2.1 --sizes "$sizes" --iters "$iters" --json "$tmp/ours.json" \
  --conv-json "$tmp/conv.json"
IFS=, read -ra list <<<"$sizes"
for s in "${list[@]}"; do
  python3 "$here/pytorch_vae_decode.py" --width "${s%x*}" --height "${s#*x}" --iters "$iters" --dtype "$dtype" \
    --json "$tmp/peer_$s.json"
done
python3 - "$tmp" "$out" <<'PY'
import datetime, json, subprocess, sys
tmp, out = sys.argv[1:3]
gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                     capture_output=True, text=True).stdout.strip()
rows = []
for o in json.load(open(f"{tmp}/ours.json")):
    peer = json.load(open(f"{tmp}/peer_{o['size']}.json"))
    o["model_tflop"] = peer["model_tflop"]
    o["tflops_achieved"] = peer["model_tflop"] / (o["ms_median"] / 1e3)
    rows.append({"size": o["size"], "ditrun": o, "pytorch": peer, "speedup_vs_pytorch": peer["ms_median"] / o["ms_median"]})
json.dump({"benchmark": "vae_decode", "device": gpu, "date": datetime.date.today().isoformat(), "results": rows,
           "conv3d_alone_first_size": json.load(open(f"{tmp}/conv.json"))}, open(out, "w"), indent=2)
print(f"{'size':10} {'TFLOP':>7} {'ditrun ms':>10} {'TFLOP/s':>8} {'GiB':>6} {'pytorch ms':>11} {'TFLOP/s':>8} {'peak GiB':>9} {'speedup':>8}")
for r in rows:
    o, p = r["ditrun"], r["pytorch"]
    print(f"{r['size']:10} {p['model_tflop']:7.1f} {o['ms_median']:10.1f} {o['tflops_achieved']:8.1f} {o['device_memory_gib']:6.1f} "
          f"{p['ms_median']:11.1f} {p['tflops_achieved']:8.1f} {p['peak_memory_gib']:9.1f} {r['speedup_vs_pytorch']:8.2f}")
PY
