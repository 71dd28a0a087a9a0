#!/usr/bin/env bash
# pip install PKG... for $PYTHON (default python3). Debian 12's own python3 is "externally
# managed" (PEP 668) and refuses plain `pip install`; there the packages go beside apt's with
# --break-system-packages (into /usr/local, not touching Debian's files).
set -euo pipefail
PY=${PYTHON:-python3}
flags=(--quiet --disable-pip-version-check)
if out=$("$PY" -m pip install "${flags[@]}" "$@" 2>&1); then
    grep -v "Running pip as the 'root' user" <<<"$out" || true
    exit 0
fi
if grep -q "externally-managed-environment" <<<"$out"; then
    "$PY" -m pip install "${flags[@]}" --break-system-packages "$@" 2>&1 | grep -v "Running pip as the 'root' user" || true
    exit "${PIPESTATUS[0]}"
fi
echo "$out" >&2
exit 1
