#!/usr/bin/env bash
# The model confirmation of docs/results/nino-pp-meta-training.md: a NiNo++ candidate against the published
# nino_no_posw on seeds that no choice looked at, under static 1000 (the default) and `dynamic` + rollback,
# `--eval-fine 10`, on FM-16, FM-32 and a Fashion-MNIST net that no collected trajectory came from
# (`heldout`: conv:24,48,48, target 90.0%, midway between FM-16's 89.5% and FM-32's 90.5%; fixed before any
# run of it). Per task, nino_no_posw's arms run first, then the candidate's; each task's table (with the
# paired comparison) lands in OUT_DIR/TASK/table.md.
#
# Usage: scripts/confirm-model.sh CANDIDATE OUT_DIR [SEEDS]
#   SEEDS: 306-310 by default, the model-confirmation seeds still unused (docs/results/seeds.md).
#   TASKS ("fm16 fm32 heldout") picks and orders the tasks; STEPS (10000) is each run's budget.
#   BY_SEED=1 runs one seed's four arms before the next seed's, so a stopped confirmation leaves paired
#   seeds rather than one model's arms alone; the task's table is rebuilt over all SEEDS at the end.
#   Resumable: finished runs are kept (`nino experiment --resume`). Runs at nice ${NICE:-19}.
set -euo pipefail
# One block, read whole before any of it runs: editing this file during a run (they take hours) cannot
# change what the run does (bash otherwise reads a script as it goes).
{
candidate=${1:?candidate model (safetensors)}
out=${2:?output folder}
seeds=${3:-306-310}
nino=${NINO:-target/release/nino}
[ -x "$nino" ] || { echo "build first: cargo build --release -p nino-host" >&2; exit 2; }
[ -f "$candidate" ] || { echo "no such model: $candidate" >&2; exit 2; }
mkdir -p "$out"
# "306-310" or "306,308" -> one seed per word.
expand_seeds() {
  local part
  for part in ${1//,/ }; do
    if [[ $part == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
  done
}
base="nino:1000,nino:dynamic+rollback"
both="$base,nino:1000@pp,nino:dynamic+rollback@pp"
for task in ${TASKS:-fm16 fm32 heldout}; do
  case $task in
    fm16 | fm32) where=(--task "$task") ;;
    heldout) where=(--arch conv:24,48,48 --target 90.0) ;;
    *) echo "unknown task: $task (fm16, fm32 or heldout)" >&2; exit 2 ;;
  esac
  batches=()
  [ "${BY_SEED:-0}" = 1 ] && mapfile -t batches < <(expand_seeds "$seeds")
  batches+=("$seeds")
  for batch in "${batches[@]}"; do
    for runs in "$base" "$both"; do
      echo "$(date -u +%FT%TZ) $task (seeds $batch): $runs" >>"$out/log.txt"
      nice -n "${NICE:-19}" "$nino" experiment "${where[@]}" --runs "$runs" --model "pp=$candidate" \
        --seeds "$batch" --eval-fine 10 --steps "${STEPS:-10000}" --out "$out/$task" --resume --no-progress \
        >>"$out/log.txt" 2>&1
    done
  done
done
echo "tables: $out/*/table.md"
exit
}
