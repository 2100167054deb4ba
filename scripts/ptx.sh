#!/usr/bin/env bash
# Regenerates nino-cuda/ptx/*.ptx from nino-cuda/kernels/*.cu with NVRTC 12.9 from the pinned PyPI wheel
# (no GPU, no CUDA toolkit), then rebuilds and checks them (committed PTX = NVRTC's output, no register
# spills or shared memory over the limit on sm_80 and sm_90). Commit the PTX with the source change.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/nvrtc-env.sh
cargo build -q --workspace --example ptxgen
target/debug/examples/ptxgen write
# The PTX is compiled into the crate (include_str!): rebuild before checking.
cargo build -q --workspace --example ptxgen
target/debug/examples/ptxgen check
