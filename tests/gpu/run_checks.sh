#!/usr/bin/env bash
# Single-GPU checks for the GPU machine: every CUDA op against the CPU op, the diffusers goldens on CUDA, and a
# full-size forward against the CPU on a slice. Prints a table last.
#   bash tests/gpu/run_checks.sh BUILD_DIR [RESULTS_DIR] [SLICE_CONFIG]
set -u
build=${1:?build directory}
results=${2:-${OUT:-/tmp/ditrun-gpu-checks}}
slice_config=${3:-1.3b}
here=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$results"
source "$(dirname "$0")/check_table.sh"
nvidia-smi -L
check "cuda_ops_test (every op vs CPU)" "$results/cuda_ops.log" "$build/tests/cuda_ops_test"
DITRUN_GOLDEN_DIR="$here/tests/golden" check "golden_test (diffusers goldens, CPU + CUDA)" "$results/golden.log" \
  "$build/tests/golden_test"
check "dit_slice_check $slice_config 832x480x81" "$results/slice.log" "$build/tests/dit_slice_check" --config "$slice_config"
grep -hE "relative L2|Failure|FAILED|PASSED|slice check" "$results/golden.log" "$results/slice.log" "$results/cuda_ops.log" | grep -v "^\[ " | head -60
print_table
