#!/usr/bin/env bash
# Paired schedule study: every configuration on the same seeds, one `nino experiment` call per run so a
# kill loses at most the run in progress. Finished runs (OUT/TASK/runs/NAME-seedS.json) are skipped; the
# paired table is rebuilt from them with `nino experiment ... --resume --report-only` (add --adopt for runs
# of builds that record no settings; docs/results/schedule-confirmation.md).
# Several copies may run on the same arguments (one per core): each run is claimed by the first copy
# that reaches it, and a claim whose process is gone is taken over.
#
# Usage: scripts/schedule-study.sh OUT_DIR ROLE TASK SEEDS RUNS
#   ROLE  `tuning` or `confirmation` (only labels the log; the seed roles are listed in docs/results/seeds.md)
#   SEEDS comma list; RUNS comma list of `nino experiment --runs` items
# Example: scripts/schedule-study.sh ../runs/schedule tuning fm16 1000,2000 nino:1000,nino:dynamic+rollback
# Runs at nice 19 and logs to OUT_DIR/log.txt, so it can share the machine with interactive work.
set -euo pipefail
out=${1:?output folder}
role=${2:?tuning or confirmation}
task=${3:?fm16 or fm32}
seeds=${4:?comma list of seeds}
runs=${5:?comma list of runs}
nino=${NINO:-target/release/nino}
steps=${STEPS:-10000}
extra=${EXTRA:-}
[ -x "$nino" ] || { echo "build first: cargo build --release -p nino-host" >&2; exit 2; }
mkdir -p "$out/$task/runs"
log="$out/log.txt"
IFS=, read -r -a seed_list <<<"$seeds"
IFS=, read -r -a run_list <<<"$runs"
for seed in "${seed_list[@]}"; do
  for run in "${run_list[@]}"; do
    stem=$(printf '%s' "$run" | sed 's/[^A-Za-z0-9.]/-/g')
    [ -f "$out/$task/runs/$stem-seed$seed.json" ] && continue
    claim="$out/$task/claim-$stem-$seed"
    if [ -f "$claim" ] && kill -0 "$(cat "$claim")" 2>/dev/null; then continue; fi
    echo $$ >"$claim"
    tmp="$out/$task/tmp-$stem-$seed"
    rm -rf "$tmp"
    echo "$(date -u +%FT%TZ) $role $task $run seed $seed" >>"$log"
    # shellcheck disable=SC2086 # EXTRA is a word list by design
    nice -n 19 "$nino" experiment --task "$task" --runs "$run" --seeds "$seed" --steps "$steps" \
      --eval-fine 10 --out "$tmp" --no-progress $extra >>"$log" 2>&1
    mv "$tmp/runs/$stem-seed$seed.csv" "$out/$task/runs/"
    # builds since the paired protocol record each run's settings (read back by --resume)
    if [ -f "$tmp/runs/$stem-seed$seed.settings.json" ]; then mv "$tmp/runs/$stem-seed$seed.settings.json" "$out/$task/runs/"; fi
    mv "$tmp/runs/$stem-seed$seed.json" "$out/$task/runs/"  # last: its presence marks the run finished
    rm -rf "$tmp" "$claim"
  done
done
echo "$(date -u +%FT%TZ) $role $task done" >>"$log"
