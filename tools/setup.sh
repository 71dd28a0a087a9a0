#!/usr/bin/env bash
# Installs what spikerun needs from Debian and PyPI, skipping what is already there.
# Debian: libnuma-dev (CPU backend), libxrt-dev (FPGA host headers, noop shim), build tools,
# nginx-light (the router in front of `spikerun serve` replicas in the scale-out test).
# PyPI: gguf (independent GGUF reader used by tests), scipy + scikit-learn (analysis cross-check),
# openai (the official client, against `spikerun serve`).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

debs=(libnuma-dev libxrt-dev build-essential unzip python3 python3-pip binutils nginx-light)
missing=()
for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing from Debian: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null; then
    echo "setup: error: swift is not on PATH; install Swift 6.x (https://www.swift.org/install/linux/) and retry" >&2
    exit 1
fi

PY=${PYTHON:-python3}
need_py=()
# gguf is pinned: tests compare our writer's bytes with its output.
$PY -c "import gguf, importlib.metadata as m; assert m.version('gguf') == '0.19.0'" 2>/dev/null || need_py+=("gguf==0.19.0")
$PY -c "import numpy" 2>/dev/null || need_py+=("numpy")
$PY -c "import scipy" 2>/dev/null || need_py+=("scipy")
$PY -c "import sklearn" 2>/dev/null || need_py+=("scikit-learn")
# The official OpenAI client drives the `spikerun serve` tests (Tests/Serve/).
$PY -c "import openai, importlib.metadata as m; assert m.version('openai') == '3.57.0'" 2>/dev/null || need_py+=("openai==3.57.0")
if [ ${#need_py[@]} -gt 0 ]; then
    echo "setup: installing from PyPI: ${need_py[*]}"
    PYTHON=$PY bash "$(dirname "$0")/pip_install.sh" "${need_py[@]}"
    $PY -c "import gguf, numpy, scipy, sklearn, openai" || { echo "setup: error: the Python packages did not install" >&2; exit 1; }
fi
echo "setup: ok"
