#!/usr/bin/env bash
# How a model trained from scratch improves with the number of FM-16 trajectories it reads: the
# reference configuration (V0, LPE 8, MLP head, --lr 3e-3) on the first N long-recipe trajectories (12,000
# steps of the FM-16 net: `long-a`, `long-b`, then the scale recipe's `scale-a`, `scale-b` alternately), one
# run per N at the same budget, each keeping its model of lowest validation L1 (--best). Then `nino
# meta-eval` scores every kept model in OUT_DIR and nino_no_posw on the long validation trajectories at
# the nowcasts' horizons (OUT_DIR/val-horizons.json) and pooled (OUT_DIR/val.json).
# docs/results/data-scaling.md reads them.
#
# Usage: scripts/data-scaling.sh META_DIR OUT_DIR     (META_DIR: the meta-dataset folder)
#   SIZES ("7 14 27"), STEPS (4000 updates), VAL_EVERY (250), PRECISION (unset: the build's default, f32;
#   bf16 passes --precision bf16) override. EXTRA (comma-separated folders of META_DIR, e.g. fm16-a,fm16-b)
#   adds those folders whole to every run's data, outside N; the models are then named
#   scratch-nN+FOLDER+FOLDER so they never replace the plain runs. FLAGS (more `nino meta-train` flags, e.g.
#   "--weight-decay 0.1") needs TAG, a name for the variant appended to the model names; so does LR, the
#   peak rate in place of 3e-3 (e.g. LR=1e-3 FLAGS="--init fixtures/weights/nino_no_posw.safetensors"). SEED (0) seeds
#   the initialisation and sampler; another seed appends -sSEED to the model names. Resumable: finished models are kept
#   and a killed run continues from its checkpoint. Logs go to OUT_DIR/log.txt; runs at nice ${NICE:-19}.
set -euo pipefail
# One block, read whole before any of it runs (see scripts/nino-pp.sh).
{
meta=${1:?meta-dataset folder}
out=${2:?output folder}
nino=${NINO:-target/release/nino}
steps=${STEPS:-4000}
published=fixtures/weights/nino_no_posw.safetensors
[ -x "$nino" ] || { echo "build first: cargo build --release -p nino-host" >&2; exit 2; }
mkdir -p "$out"
log="$out/log.txt"
# The pool, in order, as groups ended by "--"; folders not collected yet are skipped. A group's folders are
# read alternately (a0, b0, a1, b1, ...): the scale recipe's two are collected side by side, one per core,
# so that the first N is what both lanes have finished. Validation: every long validation folder.
pool=()
for group in long-a long-b "scale-a scale-b"; do
  for d in $group; do
    [ -f "$meta/$d/manifest.json" ] && pool+=("$meta/$d")
  done
  pool+=(--)
done
val=
for d in val-long val-long-2 val-long-3; do
  [ -f "$meta/$d/manifest.json" ] && val+="$meta/$d,"
done
val=${val%,}
[ ${#pool[@]} -gt 3 ] && [ -n "$val" ] || { echo "no long-recipe folders in $meta (RECIPE=long scripts/meta-dataset.sh)" >&2; exit 2; }

# OUT_DIR/subsets/nN/<folder>: the first N trajectories of the pool, as collections of symbolic links and
# a manifest listing only them (what `nino meta-train` reads of a collection still being collected).
subset() {
  python3 - "$1" "$out/subsets/n$1" "${pool[@]}" <<'EOF'
import json, os, sys
n, dest, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
groups, group = [], []
for a in args:
    if a == "--":
        if group:
            groups.append(group)
        group = []
    else:
        group.append(a)
left, made = n, []
for group in groups:
    if left == 0:
        break
    manifests = [json.load(open(os.path.join(src, "manifest.json"))) for src in group]
    queues = [sorted(m["trajectories"], key=lambda t: t["index"]) for m in manifests]
    # Round robin over the group's folders, in index order within each.
    takes = [[] for _ in group]
    while left and any(queues):
        for q, take in zip(queues, takes):
            if left and q:
                take.append(q.pop(0))
                left -= 1
    for src, m, take in zip(group, manifests, takes):
        if not take:
            continue
        d = os.path.join(dest, os.path.basename(src))
        os.makedirs(d, exist_ok=True)
        for t in take:
            link = os.path.join(d, t["file"])
            if not os.path.lexists(link):
                os.symlink(os.path.abspath(os.path.join(src, t["file"])), link)
        m["trajectories"] = take
        tmp = os.path.join(d, "manifest.json.tmp")
        json.dump(m, open(tmp, "w"))
        os.replace(tmp, os.path.join(d, "manifest.json"))
        made.append(d)
if left:
    sys.exit(f"the pool holds fewer than {n} trajectories")
print(",".join(made))
EOF
}

extra= tag= extra_list=${EXTRA:-}
for d in ${extra_list//,/ }; do
  [ -f "$meta/$d/manifest.json" ] || { echo "EXTRA: no collection $meta/$d" >&2; exit 2; }
  extra+=",$meta/$d" tag+="+$d"
done
read -r -a more <<<"${FLAGS:-}"
if [ ${#more[@]} -gt 0 ] || [ -n "${LR:-}" ]; then
  [[ "${TAG:-}" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "FLAGS and LR need TAG (letters, digits, . _ -) to name their models" >&2; exit 2; }
  tag+="-$TAG"
fi
seed=${SEED:-0}
[[ "$seed" =~ ^[0-9]+$ ]] || { echo "SEED must be a whole number, not $seed" >&2; exit 2; }
[ "$seed" = 0 ] || tag+="-s$seed"
for n in ${SIZES:-7 14 27}; do
  data=$(subset "$n")$extra
  model=$out/scratch-n$n$tag.safetensors
  [ -f "$model" ] && continue
  flags=()
  [ -f "$out/scratch-n$n$tag.ckpt.safetensors" ] && flags=(--resume)
  [ -n "${PRECISION:-}" ] && flags+=(--precision "$PRECISION")
  flags+=("${more[@]}")
  echo "$(date -u +%FT%TZ) n=$n: meta-train --data $data" >>"$log"
  nice -n "${NICE:-19}" "$nino" meta-train --data "$data" --val "$val" --out "$model" --head mlp --lr "${LR:-3e-3}" \
    --spacing 200 --window-starts drawn --steps "$steps" --seed "$seed" --val-every "${VAL_EVERY:-250}" \
    --val-batches 8 --no-progress "${flags[@]}" >>"$log" 2>&1
done
# Every kept model in OUT_DIR, smallest N first, so the figures of earlier calls stay in the files.
weights=(--weights "$published")
while IFS= read -r m; do
  weights+=(--weights "$m")
done < <(find "$out" -maxdepth 1 -name 'scratch-n*.best.safetensors' | sort -V)
common=(meta-eval --data "$val" "${weights[@]}" --batches 8 --spacing 200 --window-starts drawn)
"$nino" "${common[@]}" --horizons 40,33,26,21,16 --json "$out/val-horizons.json" >>"$log" 2>&1
"$nino" "${common[@]}" --json "$out/val.json" >>"$log" 2>&1
echo "$(date -u +%FT%TZ) data-scaling done" >>"$log"
exit
}
