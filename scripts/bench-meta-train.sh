#!/usr/bin/env bash
# Meta-training graphs/s of two or more builds of `nino`, in one run on the same trajectories: the rate
# `nino meta-train` prints (update loop only, start-up excluded) for each head, the loss it prints on its
# fixed sample (equal across builds that compute the same function), and each build's ratio to the first.
# The in-tree benchmark (`cargo bench -p nino-host --bench meta_train`) compares kernels inside one build;
# this script is how a build is compared with older ones (docs/results/meta-train-throughput.md).
#
# Usage: scripts/bench-meta-train.sh NINO_BASELINE NINO... DATA_DIR
#   DATA_DIR: a `nino collect` folder (e.g. FM-16 trajectories). HEADS ("mlp gru lstm"), UPDATES_MLP (30),
#   UPDATES_RNN (12), ROUNDS (1; the builds' order is reversed every other round, so drift in the
#   machine's speed does not favour one of them).
# Pause other CPU work first: the rates are only comparable on idle cores.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: scripts/bench-meta-train.sh NINO_BASELINE NINO... DATA_DIR" >&2; exit 2; }
data=${*: -1}
bins=("${@:1:$#-1}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { # binary head updates -> "graphs/s loss_after"
  local line
  line=$("$1" meta-train --data "$data" --out "$tmp/m.safetensors" --head "$2" --steps "$3" \
    --checkpoint-every 100000 --no-progress 2>&1 | tail -1)
  rm -f "$tmp"/m.*
  echo "$(sed -n 's/.* \([0-9.]*\) graphs\/s.*/\1/p' <<<"$line") $(sed -n 's/.*, \([0-9.]*\) after.*/\1/p' <<<"$line")"
}
printf '%-5s %5s %-24s %10s %10s %7s\n' head round build graphs/s loss ratio
for round in $(seq "${ROUNDS:-1}"); do
  for head in ${HEADS:-mlp gru lstm}; do
    n=${UPDATES_RNN:-12}
    [ "$head" = mlp ] && n=${UPDATES_MLP:-30}
    order=("${!bins[@]}")
    [ $((round % 2)) = 1 ] || mapfile -t order < <(printf '%s\n' "${order[@]}" | tac)
    declare -A rate=() loss=()
    for i in "${order[@]}"; do
      read -r rate[$i] loss[$i] < <(run "${bins[$i]}" "$head" "$n")
    done
    for i in "${!bins[@]}"; do
      printf '%-5s %5s %-24s %10s %10s %7s\n' "$head" "$round" "$(basename "${bins[$i]}")" "${rate[$i]}" \
        "${loss[$i]}" "$(echo "scale=2; ${rate[$i]} / ${rate[0]}" | bc)"
    done
    unset rate loss
  done
done
