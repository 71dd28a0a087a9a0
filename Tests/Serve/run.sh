#!/usr/bin/env bash
# The `spikerun serve` tests (make test): the official openai client against a running server,
# the 16-client load test, and 2 replicas behind nginx. Loopback only; each step is bounded.
set -euo pipefail
cd "$(dirname "$0")/../.."
export SPIKERUN=${SPIKERUN:-.build/release/spikerun}
start=$(date +%s)
timeout 600 python3 Tests/Serve/test_openai.py
timeout 600 python3 Tests/Serve/load_test.py
timeout 600 python3 Tests/Serve/router_test.py
echo "serve tests: ok in $(( $(date +%s) - start ))s" >&2
