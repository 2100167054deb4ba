#!/usr/bin/env bash
# NiNo++ ablation (docs/results/nino-pp-ablation.md): every variant fine-tuned from nino_no_posw with the same
# budget on FM-16 trajectories, then steps to target over three seeds with the reference's static period 1000
# on TASK (fm16 or fm32). VARIANTS (names below, space-separated) runs a subset; checkpoints and finished
# evaluations already in OUT_DIR are kept, so a second task reuses the first one's checkpoints.
# Usage: [TASK=fm32] [VARIANTS="mlp-v0-lpe8 gru-v0-lpe8"] scripts/ablation.sh TRAJ_DIR OUT_DIR
#   (TRAJ_DIR from `nino collect --task fm16`)
set -euo pipefail
traj=${1:?collection folder from nino collect}
out=${2:?output folder}
nino=${NINO:-target/release/nino}
limit=${LIMIT:-10000}  # the step limit also sizes the reference horizon schedule
task=${TASK:-fm16}
mkdir -p "$out"
variants=(
  "mlp-v0-lpe8|--head mlp"
  "mlp-v0s-lpe8|--head mlp --centrality"
  "mlp-v0-lpe4|--head mlp --lpe 4"
  "mlp-v0-lpe5|--head mlp --lpe 5"
  "mlp-v0-lpe8-hor20|--head mlp --hor 20"
  "mlp-v0-lpe8-hor10|--head mlp --hor 10"
  "gru-v0-lpe8|--head gru"
  "lstm-v0-lpe8|--head lstm"
  "lstm-v0s-lpe5|--head lstm --lpe 5 --centrality"
)
for want in ${VARIANTS:-}; do  # a misspelt name would otherwise run nothing, silently
  # Not `printf | grep -q`: grep leaving early fails printf with SIGPIPE, which pipefail reports.
  known=0
  for v in "${variants[@]}"; do [ "${v%%|*}" = "$want" ] && known=1; done
  [ $known = 1 ] || { echo "unknown variant: $want" >&2; exit 2; }
done
for v in "${variants[@]}"; do
  name=${v%%|*}
  flags=${v#*|}
  [ -z "${VARIANTS:-}" ] || [[ " $VARIANTS " == *" $name "* ]] || continue
  eval_dir="$out/eval-$name"  # FM-16's folders keep their first name
  [ "$task" = fm16 ] || eval_dir="$out/eval-$task-$name"
  [ -f "$out/$name.safetensors" ] || "$nino" meta-train --data "$traj" --out "$out/$name.safetensors" \
    --init fixtures/weights/nino_no_posw.safetensors --steps 100 --batch 2 --lr 1e-3 --seed 0 --no-progress $flags
  [ -f "$eval_dir/table.md" ] || "$nino" experiment --task "$task" --runs nino:1000 --nino "$out/$name.safetensors" \
    --seeds 1000,2000,3000 --steps "$limit" --out "$eval_dir" --no-progress
done
