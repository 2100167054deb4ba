#!/usr/bin/env bash
# GPU checks, for a machine that has an NVIDIA GPU: prints the driver first (the bindings need CUDA >= 12.4),
# then runs nino-cuda's tests with NINO_REQUIRE_GPU=1, so that an absent or unusable GPU fails instead of
# skipping. CI (.ci/run) has no GPU and runs the same tests without the variable (they print SKIP there).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "==================== nvidia-smi ===================="
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv || nvidia-smi || true
else
    echo "nvidia-smi not found"
fi

echo "==================== cargo test -p nino-cuda (GPU required) ===================="
NINO_REQUIRE_GPU=1 cargo test -p nino-cuda -- --nocapture
