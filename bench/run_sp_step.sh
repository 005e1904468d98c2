#!/usr/bin/env bash
# Time per denoising step for parallel layouts on all GPUs of the machine, with the device and date added.
#   bash bench/run_sp_step.sh BUILD CONFIG SIZE LAYOUTS WARMUP ITERS OUT.json [more sp_step_bench options]
# A run cut short (timeout) still writes the layouts it finished.
set -u
build=${1:?} config=${2:?} size=${3:?} layouts=${4:?} warmup=${5:?} iters=${6:?} out=${7:?}
export NCCL_NVLS_ENABLE=0
gpus=$(nvidia-smi -L | wc -l)
tmp=$(mktemp)
mpirun --allow-run-as-root --mca btl self,vader --mca pml ob1 -x NCCL_NVLS_ENABLE -np "$gpus" \
  "$build/bench/sp_step_bench" --config "$config" --size "$size" --layouts "$layouts" --warmup "$warmup" \
  --iters "$iters" --json "$tmp" "${@:8}"
python3 - "$tmp" "$out" <<'PY'
import datetime, json, subprocess, sys
doc = json.load(open(sys.argv[1]))
doc["benchmark"] = "sp_step"
doc["device"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True).stdout.strip().splitlines()
doc["date"] = datetime.date.today().isoformat()
json.dump(doc, open(sys.argv[2], "w"), indent=2)
print(f"{'layout':18} {'step ms':>9} {'speedup':>7} {'eff':>5} {'comm ms':>8} {'hidden':>6} {'timed':>6} "
      f"{'vs 1GPU':>8} {'mem GiB':>7} {'bytes/step':>10}")
for r in doc["layouts"]:
    b = r.get("ulysses_bytes_per_step", 0) + r.get("ring_bytes_per_step", 0) + r.get("cfg_bytes_per_step", 0)
    print(f"{r['layout']:18} {r['step_ms']:9.1f} {r.get('speedup', 0):7.2f} {r.get('efficiency', 0):5.2f} "
          f"{r['comm_ms_per_step_alone']:8.1f} {r.get('sp_comm_hidden_share', float('nan')):6.2f} "
          f"{r.get('sp_hidden_share_timed', float('nan')):6.2f} {r.get('latent_rel_l2_vs_1gpu', 0):8.1e} "
          f"{r.get('device_memory_used_gib', 0):7.1f} {b:10.3e}")
PY
