#!/usr/bin/env bash
# Makes what to carry to the GPU machine: the built programs (stripped; no object files) and the shared libraries
# they need that the machine's image lacks (SentencePiece, ICU: ICU's data alone is 30 MB), in OUT/lib, where the
# GPU scripts point LD_LIBRARY_PATH; then OUT.tar.xz of it all (about a quarter of the size, well inside the device
# tool's 64 MiB). Run here after the build:
#   bash tests/gpu/bundle_libs.sh build-device device-bin
# carry device-bin.tar.xz, and there: tar xf device-bin.tar.xz && bash tests/gpu/run_checks.sh device-bin
set -eu
build=${1:?build directory} out=${2:?output folder}
rm -rf "$out"
mkdir -p "$out/tests" "$out/bench" "$out/lib"
copy() { [ -f "$1" ] && [ -x "$1" ] && cp "$1" "$2" && strip --strip-unneeded "$2/$(basename "$1")" || true; }
copy "$build/ditrun" "$out"
for f in "$build"/tests/*; do copy "$f" "$out/tests"; done
for f in "$build"/bench/*; do copy "$f" "$out/bench"; done
for binary in "$out/ditrun" "$out"/tests/* "$out"/bench/*; do
  ldd "$binary" 2>/dev/null | awk '/=> \// {print $3}' | grep -E 'libsentencepiece|libicu' || true
done | sort -u | while read -r lib; do cp -L "$lib" "$out/lib/"; done
tar cJf "$out.tar.xz" "$out"
du -sh "$out" "$out.tar.xz"
