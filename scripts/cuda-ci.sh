#!/usr/bin/env bash
# nino-cuda's checks for a machine without a GPU (run by .ci/run; about 3 minutes on 2 cores):
#   1. NVRTC from the pinned wheel recompiles every kernel: the committed PTX must be exactly what it
#      makes of the sources, and the sm_80 and sm_90 builds must have no register spill, fit the 48 KiB
#      of static shared memory and the register file (ptxgen check);
#   2. the host shim (the same CUDA C compiled by g++, one host thread per CUDA thread) runs
#      tests/golden_cuda.rs: the NiNo step and the training step against nino-core and the golden
#      fixtures (debug, FM-16 and the MLP);
#   3. the debug-net tests again with the shim under ThreadSanitizer.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/nvrtc-env.sh

t=$SECONDS
cargo build -q --workspace --example ptxgen
timeout 300 target/debug/examples/ptxgen check
echo "---- PTX and ptxas checks: $((SECONDS - t)) s"

t=$SECONDS
out=target/shim
bash nino-cuda/shim/build.sh "$out/plain" plain
bash nino-cuda/shim/build.sh "$out/tsan" tsan
bin=$(cargo test -q --workspace --test golden_cuda --no-run --message-format=json |
    grep '"name":"golden_cuda"' | grep -o '"executable":"[^"]*"' | cut -d'"' -f4)
[[ -x "$bin" ]] || { echo "golden_cuda test binary not found" >&2; exit 1; }
echo "---- shim builds: $((SECONDS - t)) s"

t=$SECONDS
NINO_SHIM_LIB="$PWD/$out/plain/libnino_shim.so" NINO_REQUIRE_SHIM=1 timeout 600 "$bin" --test-threads 1
echo "---- golden tests through the shim: $((SECONDS - t)) s"

t=$SECONDS
# Rust's own code is not instrumented: its interceptor calls are ignored, the kernels' accesses are not.
LD_PRELOAD="$(g++ -print-file-name=libtsan.so)" \
    TSAN_OPTIONS="halt_on_error=1 exitcode=66 ignore_noninstrumented_modules=1" \
    NINO_SHIM_LIB="$PWD/$out/tsan/libnino_shim.so" NINO_REQUIRE_SHIM=1 timeout 600 "$bin" --test-threads 1 debug
echo "---- debug-net tests under ThreadSanitizer: $((SECONDS - t)) s"
