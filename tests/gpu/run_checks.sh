#!/usr/bin/env bash
# Single-GPU checks for the GPU machine: every CUDA op against the CPU op, the diffusers goldens on CUDA (DiT,
# samplers, VAE decode), recorded denoising steps against direct ones, and a full-size forward against the CPU on
# a slice. Prints a table last.
#   bash tests/gpu/run_checks.sh BUILD_DIR [RESULTS_DIR] [SLICE_CONFIG]
set -u
build=${1:?build directory}
# Libraries the GPU machine lacks, bundled by tests/gpu/bundle_libs.sh.
export LD_LIBRARY_PATH="$(cd "$build" && pwd)/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
results=${2:-${OUT:-/tmp/ditrun-gpu-checks}}
slice_config=${3:-1.3b}
here=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$results"
source "$(dirname "$0")/check_table.sh"
nvidia-smi -L
check "cuda_ops_test (every op vs CPU)" "$results/cuda_ops.log" "$build/tests/cuda_ops_test"
DITRUN_GOLDEN_DIR="$here/tests/golden" check "golden_test (diffusers goldens, CPU + CUDA)" "$results/golden.log" \
  "$build/tests/golden_test"
check "denoise_test (whole steps as CUDA graphs vs direct, bit for bit)" "$results/denoise.log" \
  "$build/tests/denoise_test"
check "vae_test (VAE decoder, diffusers golden on CUDA)" "$results/vae.log" "$build/tests/vae_test"
# The whole decode path on the GPU: the golden through `ditrun vae-decode --backend cuda` (bf16 tensor-core
# convolutions: the bound of vae_test, 3e-2).
check "vae-decode --backend cuda vs golden" "$results/vae_decode.log" "$build/ditrun" vae-decode --backend cuda \
  --vae "$here/tests/golden/tiny_vae" --in "$here/tests/golden/vae_decode.h5" --out "$results/vae_frames.h5"
rows+=("$(python3 - "$results/vae_frames.h5" "$here/tests/golden/vae_decode.h5" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1])["frames"][:], h5py.File(sys.argv[2])["frames"][:]
e = float(np.linalg.norm(a - b) / np.linalg.norm(b))
print(f"  -> frames vs diffusers: relative L2 {e:.2e} ({'ok' if e < 3e-2 else 'TOO FAR'})")
PY
)")
check "dit_slice_check $slice_config 832x480x81" "$results/slice.log" "$build/tests/dit_slice_check" --config "$slice_config"
grep -hE "relative L2|Failure|FAILED|PASSED|slice check" "$results/golden.log" "$results/slice.log" "$results/cuda_ops.log" \
  "$results/denoise.log" "$results/vae.log" | grep -v "^\[ " | head -60
print_table
