#!/usr/bin/env bash
# The project's main job in one command: Adam vs Adam+NiNo (static period 1000, the default) on FM-16, seed 1000,
# with the table and the plots in results/main-fm16/. Adam runs on to its target (at most 20,000 steps) while
# NiNo keeps the reference's 10,000-step budget (it sizes NiNo's horizon schedule), so the table ends with
# steps and wall time to target of both, side by side, and their ratios.
#
# Uses Debian's Fashion-MNIST at /usr/share/datasets/fashion-mnist (installed with apt-get when missing and
# possible); without it, falls back to the bundled fixtures/fashion-mnist-mini subset on the debug task, and
# says so. Extra arguments go to `nino experiment` (e.g. `--seeds 1000,2000,3000` or `--steps 2000`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DATA="${NINO_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"  # overridable, to test the fallback
have_data() { [ -e "$DATA/train-images-idx3-ubyte" ] || [ -e "$DATA/train-images-idx3-ubyte.gz" ]; }

if ! have_data && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
    fi
    if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
        echo "Fashion-MNIST not found at $DATA: installing Debian's dataset-fashion-mnist"
        $SUDO apt-get install -y dataset-fashion-mnist \
            || { $SUDO apt-get update && $SUDO apt-get install -y dataset-fashion-mnist; } \
            || echo "apt-get could not install dataset-fashion-mnist"
    fi
fi

if have_data; then
    OUT=results/main-fm16
    ARGS=(--task fm16 --data "$DATA" --seeds 1000)
else
    OUT=results/main-debug
    ARGS=(--task debug --data fixtures/fashion-mnist-mini --seeds 1000)
    echo "NOTICE: full Fashion-MNIST is not available ($DATA missing, not installable here); running the debug"
    echo "        task on the bundled fixtures/fashion-mnist-mini subset instead (6,000 train / 1,000 test images)."
fi

cargo build --release -p nino-host
target/release/nino experiment --preset main --adam-steps 20000 "${ARGS[@]}" --out "$OUT" "$@" >/dev/null

echo
cat "$OUT/table.md"
echo
echo "Plots:       $OUT/accuracy_vs_steps.png, $OUT/accuracy_vs_wall.png"
echo "All results: $OUT/results.json (per-run metrics and summaries in $OUT/runs/)"
