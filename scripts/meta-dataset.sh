#!/usr/bin/env bash
# The NiNo++ meta-dataset: Adam trajectories of the FM-16 net and of nearby nets of the same family
# (other widths and depths, MLPs, three learning rates) on Fashion-MNIST, one state every 20 steps, f16.
# Validation trajectories go to their own folder (`val`), which no meta-training run reads. The MLPs
# (`mlp`) are collected for completeness but left out of meta-training: on 784 inputs their neural graphs
# have 25,000-109,000 edges, 13-53x an FM-16 graph, so a uniform draw of trajectories would spend most of
# the budget on them.
#
# Usage: scripts/meta-dataset.sh OUT_DIR      (e.g. ../runs/meta, outside the repository)
#   Resumable: run it again after a kill; finished trajectories are kept (nino collect's manifest).
#   Safe in the background: it runs at nice 19, two single-threaded collectors side by side (one per
#   core, measured 5% faster than one two-threaded collector), and logs to OUT_DIR/log-*.txt.
#   LANES=1 runs one collector with both threads instead. The trajectories are bit-for-bit the same again
#   only with the same lanes (the training step's sums depend on the thread count) and a build whose
#   training step does the same operations (builds from cfac215 reproduce the collection build 3108cfa's;
#   docs/results/meta-train-throughput.md, Collection).
#   RECIPE=long collects the long recipe instead (below): 12,000-step FM-16 trajectories; RECIPE=scale
#   300 more of them (seeds 10001-10300); RECIPE=val32 two FM-32 validation trajectories (seeds 9017-9018).
# Size: 180 training (150 conv, which meta-training reads, 84 of them the FM-16 net; and 30 MLPs) and 12
# validation trajectories, about 2.9 GB (the MLPs are large graphs); about 4 h on two idle cores.
set -euo pipefail
# One block, read whole before any of it runs: editing this file during a run (they take hours) cannot
# change what the run does (bash otherwise reads a script as it goes).
{
out=${1:?output folder, e.g. ../runs/meta}
nino=${NINO:-target/release/nino}
lanes=${LANES:-2}
[ -x "$nino" ] || { echo "build first: cargo build --release -p nino-host" >&2; exit 2; }
mkdir -p "$out"

# folder|nino collect flags. Seeds 101-199 and 10001-10999 train, 9001-9099 validate: no such range is used to choose or
# evaluate a schedule or a model (docs/results/seeds.md).
common="--task fm16 --every 20 --no-progress"
if [ "${RECIPE:-base}" = base ]; then
common+=" --steps 8000"
lane_a=(
  "val|--arch conv:16,32,32;conv:8,16,16;conv:16,32 --lr 0.006 --seeds 9001-9004"
  "fm16-a|--seeds 101-125"
  "mix-small|--arch conv:8,16,16;conv:16,32 --lr 0.003,0.006,0.01 --seeds 101-106"
  "fm16-lr|--lr 0.003,0.01 --seeds 101-106"
  "fm16-c|--seeds 151-161"
)
# The FM-16 net first: it is the most valuable data and the others can be cut if time runs short; the
# MLPs, which no meta-training run reads, last.
lane_b=(
  "fm16-b|--seeds 126-150"
  "mix-large|--arch conv:16,32,32,32;conv:32,32,32 --lr 0.006 --seeds 101-105"
  "mix-small-2|--arch conv:8,16,16;conv:16,32 --lr 0.006 --seeds 107-116"
  "fm16-d|--seeds 162-172"
  "mlp|--arch mlp:128,64;mlp:64;mlp:32,32 --lr 0.003,0.006 --seeds 101-105"
)
elif [ "$RECIPE" = long ]; then
# The long recipe: the FM-16 net for 12,000 steps, so that windows at the nowcasts' own spacing (200 steps)
# reach horizon 40 (45 spacings, 9,000 steps) from any start in the first 3,000 steps, where static
# 1000's first nowcasts read; 8,000-step trajectories hold no such window. 513 MB (17.3 MB a trajectory);
# measured 77 min on two cores, 248-300 s a trajectory.
common+=" --steps 12000"
lane_a=(
  "val-long|--seeds 9005-9008"
  "long-a|--seeds 173-186"
)
lane_b=(
  "long-b|--seeds 187-199"
)
elif [ "$RECIPE" = scale ]; then
# The scale recipe: the long recipe's FM-16 net and length for 300 more seeds (the reference's FM-16 count),
# the data a model trained from scratch needs (the control from scratch overfit 120 trajectories), and 8
# more validation trajectories so that a selection reads 12 FM-16 runs, not 4. 5.3 GB; about 10.5 h on two
# idle cores at the long recipe's 248-300 s a trajectory, so it spans several sessions (it resumes).
common+=" --steps 12000"
lane_a=(
  "val-long-2|--seeds 9009-9012"
  "scale-a|--seeds 10001-10150"
)
lane_b=(
  "val-long-3|--seeds 9013-9016"
  "scale-b|--seeds 10151-10300"
)
elif [ "$RECIPE" = val32 ]; then
# FM-32 validation: two 12,000-step runs of the FM-32 net (4x the FM-16 net's parameters), which no
# meta-training run reads, to see whether a model trained on FM-16 trajectories carries over to the other
# net the done-when names. About 20-25 minutes each on one idle core.
common=${common/--task fm16/--task fm32}
common+=" --steps 12000"
lane_a=(
  "val-fm32-a|--seeds 9017"
)
lane_b=(
  "val-fm32-b|--seeds 9018"
)
else
  echo "RECIPE is base, long, scale or val32, not $RECIPE" >&2
  exit 2
fi

run_lane() {
  local name=$1 cpu=$2
  shift 2
  local pin=()
  [ "$cpu" = any ] || pin=(taskset -c "$cpu")
  for item in "$@"; do
    local dir=${item%%|*} flags=${item#*|}
    echo "$(date -u +%FT%TZ) $dir: nino collect $flags $common" >>"$out/log-$name.txt"
    # shellcheck disable=SC2086 # flags are word lists by design
    nice -n "${NICE:-19}" "${pin[@]}" "$nino" collect --out "$out/$dir" $common $flags >>"$out/log-$name.txt" 2>&1
  done
  echo "$(date -u +%FT%TZ) lane $name done" >>"$out/log-$name.txt"
}

if [ "$lanes" = 1 ]; then
  run_lane one any "${lane_a[@]}" "${lane_b[@]}"
else
  run_lane a 0 "${lane_a[@]}" &
  run_lane b 1 "${lane_b[@]}" &
  wait
fi
echo "meta-dataset complete in $out"
exit
}
