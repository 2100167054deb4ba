#!/usr/bin/env bash
# Builds the host shim: every kernel in nino-cuda/kernels compiled by g++ as plain C++ (see cuda_shim.h)
# into one shared library that the tests load (NINO_SHIM_LIB). Usage: build.sh OUT_DIR [plain|tsan|asan]
# NINO_KERNELS_DIR compiles another copy of the kernels (scripts/cuda-mutations.sh uses it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$1"
mode="${2:-plain}"
mkdir -p "$out"
kernels=("${NINO_KERNELS_DIR:-$here/../kernels}"/*.cu)
: >"$out/kernels.inc"
: >"$out/registry.inc"
for f in "${kernels[@]}"; do
    echo "#include \"$(realpath "$f")\"" >>"$out/kernels.inc"
    sed -n 's/^NINO_KERNEL \([a-z0-9_]*\)(.*/SHIM_KERNEL(\1)/p' "$f" >>"$out/registry.inc"
done
flags=(-std=c++20 -O2 -g -fPIC -shared -pthread -DNINO_SHIM -ffp-contract=off -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare)
# Hardware fmaf where the CPU has it (the result is the same correctly rounded value either way).
if grep -qw fma /proc/cpuinfo 2>/dev/null; then flags+=(-mfma); fi
case "$mode" in
    plain) ;;
    tsan) flags+=(-fsanitize=thread) ;;
    asan) flags+=(-fsanitize=address -fno-omit-frame-pointer) ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
g++ "${flags[@]}" -I "$out" -I "$here" "$here/shim.cpp" -o "$out/libnino_shim.so"
echo "$out/libnino_shim.so ($mode, $(wc -l <"$out/registry.inc") kernels)"
