#!/usr/bin/env bash
# The C ABI from C (CI step): builds libnino.a (nino-core/capi, release, panic=abort, fat LTO), checks that it
# references no allocator, compiles tests/capi/nino_capi_test.c against it and nino.h with the system C compiler
# (the program defines malloc, calloc, realloc, free, aligned_alloc and posix_memalign to abort), and runs it
# on the published weights and the debug golden fixture. Exit status 0 when everything passed.
# Run from anywhere: `bash tests/capi/run.sh`. CARGO_TARGET_DIR defaults to tests/nostd-check/target, which
# shares the release builds of nino-core's dependencies with the no_std proof.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/tests/nostd-check/target}"
CC="${CC:-cc}"

cargo build --release --manifest-path nino-core/capi/Cargo.toml
lib="$CARGO_TARGET_DIR/release/libnino.a"
ls -l "$lib"

# No allocator. On x86-64, nm reads the ELF symbols itself: its LLVM plugin is older than rustc's and fails
# on the bitcode sections of compiler_builtins' objects, hiding their symbols.
nm_=(nm)
if [[ "$(uname -m)" == x86_64 ]]; then nm_=(nm --target=elf64-x86-64); fi
undefined="$("${nm_[@]}" -A -u "$lib" 2>/dev/null)"
alloc='(malloc|calloc|realloc|free|aligned_alloc|posix_memalign|memalign|valloc|__rust_alloc|__rust_dealloc|__rust_realloc|__rust_alloc_zeroed|__rg_alloc|__rdl_alloc)'
if grep -Ew "U $alloc\$" <<<"$undefined"; then
    echo "libnino.a references an allocator (above)" >&2
    exit 1
fi
# nino's own code (not compiler_builtins) needs from the C side only abort and the mem* functions.
own="$(grep -E '^[^:]*:nino-[^:]*:' <<<"$undefined" | awk '{print $NF}' | sort -u)"
if [[ -z "$own" ]] || grep -Evx 'abort|memcpy|memmove|memset|memcmp|bcmp' <<<"$own"; then
    echo "libnino.a's own objects reference more than abort and the mem* functions (above), or nm found none" >&2
    exit 1
fi
echo "libnino.a needs from C: $(tr '\n' ' ' <<<"$own")"
# It exports exactly the functions nino.h declares.
exported="$("${nm_[@]}" --defined-only --format=just-symbols "$lib" 2>/dev/null | grep -E '^nino_' | sort -u)"
declared="$(grep -oE '\bnino_[a-z_]+\(' nino-core/capi/include/nino.h | tr -d '(' | sort -u)"
if [[ "$exported" != "$declared" ]]; then
    echo "libnino.a exports (left) other nino_ functions than nino.h declares (right):" >&2
    diff <(echo "$exported") <(echo "$declared") >&2 || true
    exit 1
fi

out="$CARGO_TARGET_DIR/capi"
mkdir -p "$out"
"$CC" -std=c11 -O2 -Wall -Wextra -Werror -pedantic -D_POSIX_C_SOURCE=200809L \
    -I nino-core/capi/include tests/capi/nino_capi_test.c "$lib" -o "$out/nino_capi_test"
# The example of docs/c-abi.md compiles as it is printed there.
awk '/^```c$/ {on = 1; next} /^```$/ {on = 0} on' docs/c-abi.md >"$out/example.c"
"$CC" -std=c11 -Wall -Wextra -Werror -pedantic -I nino-core/capi/include -c "$out/example.c" -o "$out/example.o"
# The header is also valid C++ (its declarations sit in extern "C").
if command -v c++ >/dev/null 2>&1; then
    c++ -std=c++11 -fsyntax-only -Wall -Wextra -Werror -pedantic -x c++ nino-core/capi/include/nino.h
fi
"$out/nino_capi_test" fixtures/weights/nino_no_posw.safetensors fixtures/golden/debug.safetensors
