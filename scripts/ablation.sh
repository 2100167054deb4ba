#!/usr/bin/env bash
# NiNo++ ablation on FM-16 (README, "NiNo++ ablation"): every variant fine-tuned from nino_no_posw with the
# same budget, then steps to target over three seeds with the reference's static period 1000.
# Usage: scripts/ablation.sh TRAJ_DIR OUT_DIR   (TRAJ_DIR from `nino collect --task fm16`)
set -euo pipefail
traj=${1:?collection folder from nino collect}
out=${2:?output folder}
nino=${NINO:-target/release/nino}
limit=${LIMIT:-10000}  # the step limit also sizes the reference horizon schedule
mkdir -p "$out"
variants=(
  "mlp-v0-lpe8|--head mlp"
  "mlp-v0s-lpe8|--head mlp --centrality"
  "mlp-v0-lpe4|--head mlp --lpe 4"
  "mlp-v0-lpe5|--head mlp --lpe 5"
  "mlp-v0-lpe8-hor20|--head mlp --hor 20"
  "gru-v0-lpe8|--head gru"
  "lstm-v0-lpe8|--head lstm"
  "lstm-v0s-lpe5|--head lstm --lpe 5 --centrality"
)
for v in "${variants[@]}"; do
  name=${v%%|*}
  flags=${v#*|}
  [ -f "$out/$name.safetensors" ] || "$nino" meta-train --data "$traj" --out "$out/$name.safetensors" \
    --init fixtures/weights/nino_no_posw.safetensors --steps 100 --batch 2 --lr 1e-3 --seed 0 --no-progress $flags
  [ -f "$out/eval-$name/table.md" ] || "$nino" experiment --task fm16 --runs nino:1000 --nino "$out/$name.safetensors" \
    --seeds 1000,2000,3000 --steps "$limit" --out "$out/eval-$name" --no-progress
done
