#!/usr/bin/env bash
# One-step set-up for a fresh Debian 12 machine: installs what ditrun needs from Debian's packages
# (only those missing), then configures and builds into ./build. Both README commands run this first.
#   bash setup.sh            # install + build (Release)
#   BUILD_DIR=b bash setup.sh   # another build folder
#   DITRUN_CMAKE_ARGS="-DDITRUN_FFMPEG=OFF" bash setup.sh   # extra CMake options
set -euo pipefail
cd "$(dirname "$0")"

packages=(
  build-essential cmake ninja-build pkg-config git
  openmpi-bin libopenmpi-dev
  libhdf5-dev
  libavcodec-dev libavformat-dev libswscale-dev libavutil-dev ffmpeg
  libgtest-dev nlohmann-json3-dev libtomlplusplus-dev libcli11-dev
  munge slurmctld slurmd slurm-client python3 gnuplot-nox
  libsentencepiece-dev libicu-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# CUDA toolkit is optional: with nvcc the CUDA backend (sm_90a) is built, without it a CPU-only ditrun.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi

build_dir=${BUILD_DIR:-build}
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release ${DITRUN_CMAKE_ARGS:-}
fi
cmake --build "$build_dir" -j "$(nproc)"
