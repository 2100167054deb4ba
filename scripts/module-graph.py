#!/usr/bin/env python3
"""nino-host's module graph, from the `crate::` and `super::` paths of its source: fails on an import cycle,
on a layer that uses a layer above it, and on `clap` or `anyhow` outside the command line.

Usage: python3 scripts/module-graph.py [--edges]   (run from anywhere; exit 1 on a violation)

Modules are files (`src/io/data.rs` is `io::data`, `src/io/mod.rs` is `io`); an edge A -> B means A's file
names a path into B (in code, tests included; comments are ignored). The layers, bottom-up, are the order of
LAYERS below, which is also the order `src/lib.rs` lists them in; a module may use its own layer and the
layers before it. Cycles are looked for at module granularity, inside layers too.
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "nino-host", "src")
LAYERS = ["io", "kernels", "training", "nowcast", "run", "meta", "experiment", "cmd"]
# Where clap and anyhow may appear: the command line and the binary.
CLI = ("cmd", "main")


def module_of(path):
    rel = os.path.relpath(path, ROOT)[: -len(".rs")].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel == ["lib"]:
        return ""
    return "::".join(rel)


def code_lines(text):
    """The source without comments (line comments and block comments; strings are kept)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = []
    for line in text.splitlines():
        # A `//` inside a string literal is rare in this crate; cut at the first one outside quotes.
        in_str, cut = False, len(line)
        i = 0
        while i < len(line):
            c = line[i]
            if c == '"' and (i == 0 or line[i - 1] != "\\"):
                in_str = not in_str
            elif not in_str and line.startswith("//", i):
                cut = i
                break
            i += 1
        out.append(line[:cut])
    return out


def resolve(module, path, modules):
    """The longest known module that `path` (a list of segments after `crate` or `super`) names."""
    for n in range(len(path), 0, -1):
        cand = "::".join(path[:n])
        if cand in modules:
            return cand
    return None


def main():
    files = {}
    for d, _, names in os.walk(ROOT):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(d, n)
                files[module_of(p)] = p
    modules = set(files)
    edges = {m: set() for m in modules}
    problems = []
    for m, p in sorted(files.items()):
        text = open(p, encoding="utf-8").read()
        for no, line in enumerate(code_lines(text), 1):
            for prefix, rest in re.findall(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)", line):
                segs = rest.strip(":").split("::")
                if prefix == "crate":
                    base = []
                else:
                    # `super` in a.rs (module x::a) is x; in x/mod.rs (module x) it is x's parent.
                    # (Inside an inline module, such as `mod tests`, `super` is the file's own module; this
                    # reads it as the parent's, an edge to an ancestor, which cannot close a cycle unless the
                    # ancestor names the child by path, and then the cycle is real.)
                    base = (m.split("::") if m else [])[:-1]
                target = resolve(m, base + segs, modules)
                if target is not None and target not in (m, ""):
                    edges[m].add(target)
            top = m.split("::")[0]
            if top not in CLI and re.search(r"\b(clap|anyhow)\b", line):
                problems.append(f"{os.path.relpath(p, ROOT)}:{no}: `clap`/`anyhow` outside cmd/ and main.rs: {line.strip()}")

    # A layer may use only itself and the layers before it.
    order = {name: i for i, name in enumerate(LAYERS)}
    for m in sorted(modules):
        top = m.split("::")[0]
        if m in ("", "main"):
            continue
        if top not in order:
            problems.append(f"module {m} is in no layer (the layers: {', '.join(LAYERS)})")
            continue
        for t in sorted(edges[m]):
            tt = t.split("::")[0]
            if tt in order and order[tt] > order[top]:
                problems.append(f"{m} -> {t}: layer {top} uses {tt}, which is above it")

    # Cycles at module granularity (Tarjan's strongly connected components).
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            visit(v)
    for comp in sccs:
        problems.append("import cycle among: " + ", ".join(comp))

    if "--edges" in sys.argv:
        for m in sorted(modules):
            for t in sorted(edges[m]):
                print(f"{m or 'lib'} -> {t}")
    n_edges = sum(len(e) for e in edges.values())
    if problems:
        for p in problems:
            print("module-graph:", p, file=sys.stderr)
        print(f"module-graph: {len(problems)} problem(s) in {len(modules)} modules, {n_edges} edges", file=sys.stderr)
        return 1
    print(
        f"module-graph: nino-host has {len(modules)} modules and {n_edges} edges in {len(LAYERS)} layers "
        f"({' < '.join(LAYERS)}): no cycle, no upward edge, clap and anyhow only in cmd/ and main.rs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
