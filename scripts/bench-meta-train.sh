#!/usr/bin/env bash
# Meta-training graphs/s of two builds of `nino`, side by side in one run on the same trajectories: the
# rate `nino meta-train` prints (update loop only, start-up excluded) for each head, and the ratio.
# The in-tree benchmark (`cargo bench -p nino-host --bench meta_train`) compares kernels inside one build;
# this script is how a build is compared with an older one (docs/results/meta-train-throughput.md).
#
# Usage: scripts/bench-meta-train.sh OLD_NINO NEW_NINO DATA_DIR
#   DATA_DIR: a `nino collect` folder (e.g. FM-16 trajectories). UPDATES_MLP (30), UPDATES_RNN (12).
# Pause other CPU work first: the rates are only comparable on idle cores.
set -euo pipefail
old=${1:?old nino binary}
new=${2:?new nino binary}
data=${3:?collection folder}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rate() { # binary head updates -> graphs/s
  "$1" meta-train --data "$data" --out "$tmp/m.safetensors" --head "$2" --steps "$3" --checkpoint-every 100000 \
    --no-progress 2>&1 | tail -1 | sed -n 's/.* \([0-9.]*\) graphs\/s.*/\1/p'
  rm -f "$tmp"/m.*
}
printf '%-5s %12s %12s %7s\n' head old_graphs/s new_graphs/s ratio
for head in mlp gru lstm; do
  n=${UPDATES_RNN:-12}
  [ "$head" = mlp ] && n=${UPDATES_MLP:-30}
  a=$(rate "$old" "$head" "$n")
  b=$(rate "$new" "$head" "$n")
  printf '%-5s %12s %12s %7s\n' "$head" "$a" "$b" "$(echo "scale=2; $b / $a" | bc)"
done
