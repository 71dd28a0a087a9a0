#!/usr/bin/env bash
# Builds llama.cpp's own command-line tools (llama-perplexity, llama-quantize, llama-bench)
# from the vendored source in the PyPI sdist of llama-cpp-python (the oracle version the
# fixtures record), into the git-ignored .build-llamacpp/<flavour>/bin/. Nothing is committed.
#
#   tools/llamacpp/build.sh [avx2|native] [--server]
#
# avx2   (default) GGML_NATIVE=OFF with AVX2/FMA/F16C only: the code path the dense engine is
#        bit-identical to (the fixtures' oracle, whatever the machine).
# native GGML_NATIVE=ON: what a user who builds llama.cpp on this machine gets (speed peer).
# --server also builds llama-server (the serving peer of bench/serve_throughput.py).
# JOBS=N sets the build's parallelism (default: nproc).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
VERSION=0.3.36
FLAVOUR=${1:-avx2}
SERVER=OFF
case "${2:-}" in
    --server) SERVER=ON ;;
    "") ;;
    *) echo "usage: $0 [avx2|native] [--server]" >&2; exit 64 ;;
esac
ROOT=.build-llamacpp
SRC=$ROOT/src/llama.cpp
OUT=$ROOT/$FLAVOUR

if [ ! -f "$SRC/CMakeLists.txt" ]; then
    mkdir -p "$ROOT/src"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "llama.cpp: downloading the llama-cpp-python==$VERSION sdist from PyPI"
    $PY -m pip download --quiet --disable-pip-version-check --no-deps --no-binary llama-cpp-python \
        -d "$tmp" "llama-cpp-python==$VERSION"
    sdist=$(find "$tmp" -maxdepth 1 -name 'llama*cpp*python*.tar.gz' | head -n 1)
    [ -n "$sdist" ] || { echo "llama.cpp: error: sdist not found" >&2; exit 1; }
    tar -xzf "$sdist" -C "$tmp"
    rm -rf "$SRC"
    mv "$(find "$tmp" -maxdepth 3 -type d -path '*/vendor/llama.cpp' | head -n 1)" "$SRC"
    echo "$VERSION" > "$SRC/LLAMA_CPP_PYTHON_VERSION"
fi
command -v cmake >/dev/null || PYTHON=$PY bash tools/pip_install.sh cmake
case "$FLAVOUR" in
    avx2) read -ra flags < tools/llamacpp/avx2.flags ;;   # also the fixtures' llama-cpp-python (Makefile)
    native) flags=(-DGGML_NATIVE=ON) ;;
    *) echo "usage: $0 [avx2|native] [--server]" >&2; exit 64 ;;
esac
cmake -S "$SRC" -B "$OUT" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_SERVER=$SERVER -DLLAMA_BUILD_TESTS=OFF "${flags[@]}" >/dev/null
targets=(llama-perplexity llama-quantize llama-bench)
[ "$SERVER" = ON ] && targets+=(llama-server)
cmake --build "$OUT" -j "${JOBS:-$(nproc)}" --target "${targets[@]}" >/dev/null
echo "llama.cpp $VERSION ($FLAVOUR): $OUT/bin/{$(IFS=,; echo "${targets[*]}")}"
