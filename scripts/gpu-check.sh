#!/usr/bin/env bash
# The one command for a machine with an NVIDIA GPU (driver for CUDA 12.9 or newer; about 3 minutes, at
# most 8): prints the GPU and the driver, runs the GPU tests with NINO_REQUIRE_GPU=1 (so an absent or
# unusable GPU fails instead of skipping): device memory round trips, and parity of the kernels with
# nino-core and the reference on every golden fixture; then times the NiNo step and the training step
# on FM-16 beside the CPU path, and beside PyTorch on the same GPU where PyTorch is installed.
#
#   scripts/gpu-check.sh                   builds with cargo (a GPU machine with Rust and the crates)
#   scripts/gpu-check.sh --prepare DIR     builds the three binaries here (no GPU needed), stripped,
#                                          into DIR (a folder to carry to a machine without Rust)
#   NINO_PREBUILT=DIR scripts/gpu-check.sh runs those binaries instead of cargo
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The executable cargo builds for a target, from its JSON messages on stdin.
executable() {
    grep "\"name\":\"$1\"" | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -1
}

if [[ "${1:-}" == "--prepare" ]]; then
    dir="${2:?usage: scripts/gpu-check.sh --prepare DIR}"
    mkdir -p "$dir"
    tests=$(cargo test --workspace --test gpu --test golden_cuda --no-run --message-format=json)
    bench=$(cargo build --workspace --example gpu_bench --message-format=json)
    cp "$(executable gpu <<<"$tests")" "$dir/gpu"
    cp "$(executable golden_cuda <<<"$tests")" "$dir/golden_cuda"
    cp "$(executable gpu_bench <<<"$bench")" "$dir/gpu_bench"
    strip "$dir/gpu" "$dir/golden_cuda" "$dir/gpu_bench"
    ls -l "$dir"
    exit 0
fi

start=$SECONDS
echo "==================== GPU and driver ===================="
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv || nvidia-smi || true
else
    echo "nvidia-smi not found"
fi

export NINO_REQUIRE_GPU=1
export NINO_FIXTURES="$PWD/fixtures"
echo "==================== GPU tests (NINO_REQUIRE_GPU=1) ===================="
if [[ -n "${NINO_PREBUILT:-}" ]]; then
    timeout 300 "$NINO_PREBUILT/gpu" --nocapture
    timeout 300 "$NINO_PREBUILT/golden_cuda" --nocapture gpu_
else
    timeout 420 cargo test --workspace --test gpu --test golden_cuda -- --nocapture gpu
fi

echo "==================== timings: nino on the GPU and on the CPU ===================="
if [[ -n "${NINO_PREBUILT:-}" ]]; then
    timeout 180 "$NINO_PREBUILT/gpu_bench"
else
    timeout 300 cargo run --example gpu_bench
fi

echo "==================== timings: PyTorch on the same GPU ===================="
timeout 180 python3 scripts/gpu_bench_torch.py || echo "PyTorch baseline failed (exit $?)"
echo "==================== gpu-check done in $((SECONDS - start)) s ===================="
