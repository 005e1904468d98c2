#!/usr/bin/env bash
# Multi-GPU checks for the GPU machine (one rank per GPU, NCCL): communicator operations, a failing rank ending the
# job, and `ditrun run` building and checking every communicator with NCCL. Prints a table last.
#   bash tests/gpu/multi_gpu_checks.sh BUILD_DIR [RESULTS_DIR]
set -u
build=${1:?build directory}
results=${2:-${OUT:-/tmp/ditrun-gpu-checks}}
mkdir -p "$results"
export NCCL_NVLS_ENABLE=0  # NVLink multicast must stay off on the shared machines
gpus=$(nvidia-smi -L | wc -l)
mpi=(mpirun --allow-run-as-root --oversubscribe --mca btl self,vader --mca pml ob1 -x NCCL_NVLS_ENABLE -np "$gpus")
nvidia-smi -L | tee "$results/gpus.txt"
declare -a rows

check() {  # name, log, command...
  local name=$1 log=$2; shift 2
  local t0=$SECONDS
  "$@" >"$log" 2>&1
  local rc=$?
  rows+=("$(printf '%-44s rc=%-3s %4ss' "$name" "$rc" "$((SECONDS - t0))")")
  return $rc
}

check "comm_test --nccl ($gpus ranks)" "$results/comm_nccl.log" "${mpi[@]}" "$build/tests/comm_test" --nccl
grep -E "comm_test:|FAILED|PASSED" "$results/comm_nccl.log" | tail -4

check "failing rank ends job (nccl)" "$results/abort_nccl.log" timeout 90 "${mpi[@]}" "$build/tests/comm_abort_probe" --nccl
grep -q "ditrun: error: probe: rank 1 fails on purpose.*(rank 1)" "$results/abort_nccl.log" && ! grep -q "was not ended" "$results/abort_nccl.log" \
  && rows+=("  -> ended with rank 1's reason: yes") || rows+=("  -> ended with rank 1's reason: NO")

work=$(mktemp -d)
for layout in "cfg = 2" "ulysses = 2" "ring = 2"; do
  name=${layout%% *}
  printf '[parallel]\n%s\n[output]\ndir = "%s/out-%s"\n[prompts]\nlist = ["a fox"]\n' "$layout" "$work" "$name" >"$work/$name.toml"
  check "ditrun run --backend cuda ($layout)" "$results/run_$name.log" "${mpi[@]}" "$build/ditrun" run "$work/$name.toml" --backend cuda
  cp "$work/out-$name/report.json" "$results/report_$name.json" 2>/dev/null
  python3 - "$work/out-$name/report.json" <<'PY' && rows+=("  -> report: every group checked ok with nccl") || rows+=("  -> report check FAILED")
import json, sys
r = json.load(open(sys.argv[1]))
checks = [g["check"] for gs in r["plan"]["groups"].values() for g in gs]
assert r["backend"]["communicators"] == "nccl" and checks and all(c["ok"] and c["backend"] == "nccl" for c in checks)
PY
done
echo
printf '%s\n' "${rows[@]}"
