#!/usr/bin/env bash
# Compiles CUDA sources for sm_90a with ptxas' report and fails on what makes a Hopper kernel silently slow:
#   C7514: ptxas serialises every wgmma of a kernel when a non-wgmma instruction may read a wgmma accumulator
#          before its wait (a register copy is enough; it made the attention kernel 30% slower in a trial);
#   register spills.
# Needs only nvcc (no GPU).
#   bash tests/check_kernel_codegen.sh NVCC SOURCE_ROOT FILE...
set -u
nvcc=${1:?nvcc} root=${2:?source root}
shift 2
[ $# -gt 0 ] || { echo "check_kernel_codegen.sh: no source file given" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for file in "$@"; do
  log="$tmp/$(basename "$file").log"
  if ! "$nvcc" -std=c++20 -O3 -gencode=arch=compute_90a,code=sm_90a -DDITRUN_WITH_CUDA=1 -I"$root" -cubin \
      -Xptxas -v -o "$tmp/out.cubin" "$root/$file" > "$log" 2>&1; then
    echo "FAIL $file: does not compile"; tail -20 "$log"; status=1; continue
  fi
  serialised=$(grep -c "C7514" "$log")
  spills=$(grep -Eo "[1-9][0-9]* bytes spill stores" "$log" | wc -l)
  kernels=$(grep -c "Compiling entry function" "$log")
  if [ "$serialised" -gt 0 ] || [ "$spills" -gt 0 ]; then
    echo "FAIL $file: $serialised kernel(s) with serialised wgmma (C7514), $spills with register spills"
    grep -E "C7514|[1-9][0-9]* bytes spill stores|Compiling entry function" "$log" | cut -c1-220
    status=1
  else
    echo "ok   $file: $kernels kernels, no serialised wgmma, no spills"
  fi
done
exit $status
