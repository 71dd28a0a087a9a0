#!/usr/bin/env bash
# Real English text for evaluation and calibration, fetched from packages (git-ignored):
#   data/text/botchan.txt       "Botchan" (Project Gutenberg #8868, public domain), from the PyPI
#                               sdist sentencepiece==0.2.3 (test/botchan.txt): evaluation text.
#   data/text/pydoc_topics.txt  CPython's pydoc_data topics (PSF licence, in every Python):
#                               calibration text, disjoint from the evaluation text.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p data/text
PY=${PYTHON:-python3}

if [ ! -s data/text/botchan.txt ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "text: downloading the sentencepiece==0.2.3 sdist from PyPI for botchan.txt"
    $PY -m pip download --quiet --disable-pip-version-check --no-deps --no-binary sentencepiece \
        -d "$tmp" sentencepiece==0.2.3
    tar -xzf "$tmp"/sentencepiece-0.2.3.tar.gz -C "$tmp" --wildcards '*/botchan.txt'
    src=$(find "$tmp" -name botchan.txt | head -n 1)
    [ -n "$src" ] || { echo "text: error: botchan.txt not found in the sdist" >&2; exit 1; }
    cp "$src" data/text/botchan.txt.part && mv data/text/botchan.txt.part data/text/botchan.txt
fi
if [ ! -s data/text/pydoc_topics.txt ]; then
    $PY - <<'PY'
import pydoc_data.topics as t
text = "\n\n".join(t.topics[k] for k in sorted(t.topics))
open("data/text/pydoc_topics.txt.part", "w", encoding="utf-8").write(text)
PY
    mv data/text/pydoc_topics.txt.part data/text/pydoc_topics.txt
fi
echo "text: data/text ready ($(wc -c < data/text/botchan.txt) + $(wc -c < data/text/pydoc_topics.txt) bytes)"
