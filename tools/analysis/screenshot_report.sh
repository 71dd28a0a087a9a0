#!/usr/bin/env bash
# Screenshot an HTML report with Debian's headless chromium.
#
# Usage: tools/analysis/screenshot_report.sh REPORT.html [OUT.png] [WIDTH] [HEIGHT]
# Defaults: OUT = REPORT.png next to the report, 1400 x 3000 pixels (a full-length page).
# Installs chromium with apt-get when it is missing and we are root.
set -euo pipefail

if [[ $# -lt 1 || ! -f "$1" ]]; then
    echo "screenshot_report.sh: error: usage: $0 REPORT.html [OUT.png] [WIDTH] [HEIGHT]" >&2
    exit 64
fi
report="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
out="${2:-${report%.html}.png}"
width="${3:-1400}"
height="${4:-3000}"

browser=""
for b in chromium chromium-browser google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then browser="$b"; break; fi
done
if [[ -z "$browser" ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "screenshot_report.sh: installing chromium (apt-get)" >&2
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
        browser=chromium
    else
        echo "screenshot_report.sh: error: chromium not found; install it with 'apt-get install chromium'" >&2
        exit 1
    fi
fi

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
# --no-sandbox: running as root in a container; the page is our own file and has no scripts.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
    --window-size="${width},${height}" --screenshot="$out" "file://$report" \
    >/dev/null 2>"$profile/stderr.log" || {
    echo "screenshot_report.sh: error: $browser failed:" >&2
    tail -5 "$profile/stderr.log" >&2
    exit 1
}
[[ -s "$out" ]] || { echo "screenshot_report.sh: error: no screenshot written to $out" >&2; exit 1; }
echo "$out"
