#!/usr/bin/env python3
"""The three-seed ablation's table and verdicts (docs/results/nino-pp-ablation.md) from the JSON files
`scripts/nino-pp.sh SEEDS=...` writes: rows are variants (NAME, NAME-s1, NAME-s2, ... are one row's
seeds), scored on the selection figure (val-horizons.json) beside the pooled L1 (val.json).

A factor pays if every seed of its row scores below every seed of the control's on the selection
figure, hurts if every one scores above, and is otherwise not resolved. A figure that is not a finite
number (`nino meta-eval` writes NaN as null) makes its row's verdict, or every verdict if it is the
control's, "not finite".

Usage: scripts/ablation-table.py OUT_DIR CONTROL   (CONTROL: the control row's name, e.g. mlp-v0-lpe8)
"""
import json
import math
import os
import re
import sys


def rows(path, key):
    """{row name: {seed: figure}} from one meta-eval JSON; `key` picks the figure from a model's entry."""
    with open(path, encoding="utf-8") as f:
        models = json.load(f)["models"]
    out = {}
    for m in models:
        name = os.path.basename(m["weights"]).removesuffix(".safetensors")
        seed = 0
        hit = re.fullmatch(r"(.*)-s(\d+)", name)
        if hit:
            name, seed = hit.group(1), int(hit.group(2))
        out.setdefault(name, {})[seed] = key(m)
    return out


def finite(xs):
    """Whether every figure is a finite number (null and NaN are not)."""
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def show(x):
    """A figure to five decimals, NaN for one that is not a finite number."""
    return f"{x:.5f}" if finite([x]) else "NaN"


def mean(xs):
    """The mean of the figures, NaN unless every one is finite."""
    return sum(xs) / len(xs) if finite(xs) else float("nan")


def verdict(row, control):
    """Pays, hurts or not resolved, by the rule above (lower is better)."""
    if not finite(row) or not finite(control):
        return "not finite"
    if len(row) < 2 or len(control) < 2:
        return "too few seeds"
    if max(row) < min(control):
        return "pays"
    if min(row) > max(control):
        return "hurts"
    return "not resolved"


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__.split("\n\n")[-1].strip() + "\n")
        return 2
    out, control = argv[1], argv[2]
    try:
        fig = rows(os.path.join(out, "val-horizons.json"), lambda m: m["horizons"]["l1"])
        pooled = rows(os.path.join(out, "val.json"), lambda m: m["masked_l1"])
    except (OSError, KeyError, ValueError, TypeError) as e:
        sys.stderr.write(f"ablation-table: cannot read {out}: {e}\n")
        return 1
    if control not in fig:
        sys.stderr.write(f"ablation-table: no control row {control} in {out}/val-horizons.json\n")
        return 1
    ctl = list(fig[control].values())
    print("| row | seeds | selection figure per seed | mean | pooled L1 mean | verdict vs control |")
    print("|---|---:|---|---:|---:|---|")
    for name, seeds in fig.items():
        vals = [seeds[s] for s in sorted(seeds)]
        p = [pooled.get(name, {}).get(s) for s in sorted(seeds)]
        v = "control" if name == control else ("reference" if len(vals) == 1 else verdict(vals, ctl))
        each = " / ".join(show(x) for x in vals)
        print(f"| {name} | {len(vals)} | {each} | {show(mean(vals))} | {show(mean(p))} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
