#!/usr/bin/env bash
# Bounded fuzz smoke test (CI): builds every fuzz target and runs each for a fixed time on its committed seed
# corpus, failing on the first crash, panic, timeout or out-of-memory. Needs the nightly toolchain; installs
# cargo-fuzz when it is missing. Run from anywhere: `bash tests/fuzz/smoke.sh [SECONDS_PER_TARGET]` (default 10).
# Long runs are `cargo +nightly fuzz run --fuzz-dir tests/fuzz TARGET ...` (see tests/fuzz/README.md).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

SECONDS_PER_TARGET="${1:-10}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz smoke: the nightly toolchain is missing; cargo-fuzz needs it. Install it with:" >&2
    echo "    rustup toolchain install nightly --profile minimal" >&2
    exit 1
fi
if ! command -v c++ >/dev/null 2>&1; then
    echo "fuzz smoke: no C++ compiler (libfuzzer-sys builds libFuzzer); install one: apt-get install g++" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
cargo +nightly --version
cargo +nightly fuzz --version

# The same build as a long run (address sanitizer, debug assertions and overflow checks, optimised), so CI
# and the README's numbers test the same binaries.
cargo +nightly fuzz build --fuzz-dir tests/fuzz

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The target list is taken apart from the loop: a failure inside `$(...)` in a `for` list is not caught by
# `set -e`, and an empty list would run nothing and pass. Every [[bin]] of the fuzz crate must be listed.
targets="$(cargo +nightly fuzz list --fuzz-dir tests/fuzz)"
declared=$(grep -c '^\[\[bin\]\]' tests/fuzz/Cargo.toml)
listed=$(printf '%s\n' "$targets" | grep -c . || true)
if [[ "$listed" -eq 0 || "$listed" -ne "$declared" ]]; then
    echo "fuzz smoke: FAILED: cargo fuzz lists $listed targets, tests/fuzz/Cargo.toml declares $declared" >&2
    exit 1
fi
failed=()
for target in $targets; do
    case "$target" in
        safetensors_* | train_checkpoint | meta_checkpoint | collection_shard) dict=safetensors ;;
        *) dict="$target" ;;
    esac
    mkdir -p "$work/$target"
    echo "---- $target: ${SECONDS_PER_TARGET}s"
    # New inputs go to a scratch corpus, crashes to tests/fuzz/artifacts/$target/ (ignored by git).
    # -malloc_limit_mb: no input here is over a few KB, so a 256 MB allocation is a size taken from a header.
    if ! cargo +nightly fuzz run --fuzz-dir tests/fuzz "$target" "$work/$target" "tests/fuzz/seeds/$target" -- \
        -dict="tests/fuzz/dicts/$dict.dict" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 \
        -malloc_limit_mb=256 -print_final_stats=1 >"$work/$target.log" 2>&1; then
        tail -n 60 "$work/$target.log"
        failed+=("$target")
    fi
    # A target that ran zero inputs (a seed folder that is gone, a harness that returns at once) tested nothing.
    units=$(grep -E '^stat::number_of_executed_units' "$work/$target.log" | grep -oE '[0-9]+$' || echo 0)
    echo "stat::number_of_executed_units: $units"
    if [[ "${units:-0}" -lt 100 ]]; then
        echo "fuzz smoke: $target executed only ${units:-0} inputs" >&2
        failed+=("$target")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz smoke: FAILED: ${failed[*]} (crash inputs under tests/fuzz/artifacts/; reproduce with" >&2
    echo "    cargo +nightly fuzz run --fuzz-dir tests/fuzz TARGET tests/fuzz/artifacts/TARGET/crash-...)" >&2
    exit 1
fi
echo "fuzz smoke: all $listed targets ran ${SECONDS_PER_TARGET}s each without a crash"
