#!/usr/bin/env python3
"""Breaks the CUDA kernels on purpose, one mutation at a time, and shows what the host-shim tests say.

Each mutation is applied to a temporary copy of nino-cuda/kernels (the committed sources are never
touched), compiled into the shim (plain, and with ThreadSanitizer for removed barriers), and the debug-net
tests run against it. A mutation is caught when a test fails or TSan reports a race.
Usage: scripts/cuda_mutations.py [NAME...]   (after `cargo test --workspace --test golden_cuda --no-run`)
"""
import json, os, shutil, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = os.path.join(ROOT, "nino-cuda", "kernels")

# name: (file, original text, mutated text, test filter, run TSan)
MUTATIONS = {
    "layer-barrier": ("nowcast_node.cu",
        "            ekind[r] = kind[e];\n        }\n        __syncthreads();\n",
        "            ekind[r] = kind[e];\n        }\n",
        "nino_step_debug", True),
    "chain-barrier": ("nowcast.cuh",
        "                           const int* edst, const int* ekind, Row* a, Row* b) {\n    __syncthreads();\n",
        "                           const int* edst, const int* ekind, Row* a, Row* b) {\n",
        "nino_step_debug", True),
    "head-barrier": ("nowcast_edge.cu",
        "        for (int r = 0; r < ROWS; r++) hid[r][col] = silu(acc[r] + ldw(bt + (typed ? ekind[r] : 0) * h + col));\n    }\n    __syncthreads();\n",
        "        for (int r = 0; r < ROWS; r++) hid[r][col] = silu(acc[r] + ldw(bt + (typed ? ekind[r] : 0) * h + col));\n    }\n",
        "nino_step_debug", True),
    "reduction-barrier": ("common.cuh",
        "        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];\n        __syncthreads();\n",
        "        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];\n",
        "nino_step_debug", True),
    "xent-barrier": ("train_dense.cu",
        "    }\n    __syncthreads();\n    if (threadIdx.x == 0) {\n        float total",
        "    }\n    if (threadIdx.x == 0) {\n        float total",
        "training_debug", True),
    "message-source-index": ("nowcast_node.cu",
        "float v = uv[(size_t)esrc[r] * 2 * h + h + col];",
        "float v = uv[(size_t)t * 2 * h + h + col];",
        "nino_step_debug", False),
    "head-horizon-index": ("nowcast_edge.cu",
        "int row = f * d.s + k - 1;",
        "int row = f * d.s + k;",
        "nino_step_debug", False),
    "residual-state-index": ("nowcast_edge.cu",
        "e, f * d.c + d.c - 1);",
        "e, f * d.c + d.c - 2);",
        "nino_step_debug", False),
    "conv-column-index": ("train_conv.cu",
        "            int ix = ox * stride + kx - pad;\n            if (ix < 0 || ix >= iw) continue;",
        "            int ix = ox * stride + kx - pad + 1;\n            if (ix < 0 || ix >= iw) continue;",
        "training_debug", False),
    "linear-grad-index": ("train_dense.cu",
        "acc = fmaf(dy[(size_t)b * n_out + o], x[(size_t)b * n_in + k], acc);",
        "acc = fmaf(dy[(size_t)b * n_out + o], x[(size_t)b * n_in + (k + 1) % n_in], acc);",
        "training_debug", False),
}


def test_binary():
    out = subprocess.run(["cargo", "test", "--workspace", "--test", "golden_cuda", "--no-run", "--message-format=json"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        m = json.loads(line)
        if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "golden_cuda" and m.get("executable"):
            return m["executable"]
    sys.exit("golden_cuda test binary not found")


def first_failure(text):
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "SUMMARY: ThreadSanitizer" in line:
            return line.strip()
        if "panicked" in line and i + 1 < len(lines):
            return lines[i + 1].strip()
    for line in text.splitlines():
        if "assert" in line or "Error" in line:
            return line.strip()
    return text.strip().splitlines()[-1] if text.strip() else ""


def run(binary, lib, flt, tsan):
    env = dict(os.environ, NINO_SHIM_LIB=lib, NINO_REQUIRE_SHIM="1")
    if tsan:
        libtsan = subprocess.run(["g++", "-print-file-name=libtsan.so"], capture_output=True, text=True).stdout.strip()
        env.update(LD_PRELOAD=libtsan, TSAN_OPTIONS="halt_on_error=1 exitcode=66 ignore_noninstrumented_modules=1")
    try:
        p = subprocess.run([binary, "--test-threads", "1", flt], env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return False, "timed out (deadlock?)"
    return p.returncode == 0, first_failure(p.stdout + p.stderr)


def main():
    names = sys.argv[1:] or list(MUTATIONS)
    binary = test_binary()
    build = os.path.join(ROOT, "nino-cuda", "shim", "build.sh")
    for name in names:
        f, old, new, flt, tsan = MUTATIONS[name]
        with tempfile.TemporaryDirectory() as tmp:
            kdir = os.path.join(tmp, "kernels")
            shutil.copytree(K, kdir)
            path = os.path.join(kdir, f)
            src = open(path).read()
            assert src.count(old) == 1, f"{name}: the original text is not in {f} exactly once"
            open(path, "w").write(src.replace(old, new))
            verdicts = []
            for mode in ["plain"] + (["tsan"] if tsan else []):
                out = os.path.join(tmp, mode)
                subprocess.run(["bash", build, out, mode], env=dict(os.environ, NINO_KERNELS_DIR=kdir),
                               check=True, capture_output=True)
                ok, why = run(binary, os.path.join(out, "libnino_shim.so"), flt, mode == "tsan")
                verdicts.append(f"{mode}: {'NOT CAUGHT' if ok else 'caught: ' + why}")
            print(f"{name} ({flt}):\n    " + "\n    ".join(verdicts), flush=True)


if __name__ == "__main__":
    main()
