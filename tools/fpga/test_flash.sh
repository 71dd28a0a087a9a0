#!/bin/sh
# test_flash.sh - tests firmware/flash.sh without an SD card.
#
# Always (no root needed): refusals for a regular file without --force-not-removable, for a
# character device and for a missing image; a write to a regular file with the override,
# read back and compared; a write over a larger file (only the image's bytes count); a
# corrupted write (a `dd` shim on PATH that flips one byte after writing) must fail the
# SHA-256 verify.
# With root and losetup: a loop device over a file is a real block device whose
# /sys/block/loopN/removable is 0, so it must be refused without the override and written
# and verified with it; with a fake sysfs (FLASH_SYSFS) that says removable=1 it is accepted
# without the override; a fake sysfs that marks it a partition, or too small, is refused.
# Prints "test_flash: N passed, M failed (loop device: used|skipped: why)"; exit 1 on failure.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FLASH="$ROOT/firmware/flash.sh"
W=$(mktemp -d)
LOOP=""
cleanup() {
    if [ -n "$LOOP" ]; then losetup -d "$LOOP" 2>/dev/null; fi
    rm -rf "$W"
}
trap cleanup EXIT INT TERM
pass=0
failn=0
ok() { pass=$((pass + 1)); echo "ok $*"; }
bad() { failn=$((failn + 1)); echo "FAIL $*"; }
expect() {  # expect CODE DESCRIPTION -- command...
    want=$1; what=$2; shift 3
    "$@" >"$W/out.txt" 2>&1
    got=$?
    if [ "$got" -eq "$want" ]; then ok "$what (exit $got)"; else bad "$what: exit $got, wanted $want"; sed 's/^/    /' "$W/out.txt"; fi
}

# an image with structure: 3 MiB random + a tail that is not a multiple of the dd block size
head -c 3145728 /dev/urandom >"$W/sd_card.img"
printf 'spikerun-sd-image-end' >>"$W/sd_card.img"
IMG_SHA=$(sha256sum <"$W/sd_card.img" | cut -d' ' -f1)
IMG_BYTES=$(wc -c <"$W/sd_card.img" | tr -d ' ')

# --- regular files ---
expect 2 "regular file refused without --force-not-removable" -- "$FLASH" --yes "$W/sd_card.img" "$W/target.img"
[ ! -e "$W/target.img" ] && ok "refused target was not created" || bad "refused target exists"
expect 64 "usage error without a device" -- "$FLASH" --yes "$W/sd_card.img"
expect 1 "missing image" -- "$FLASH" --yes --force-not-removable "$W/nope.img" "$W/target.img"
expect 2 "character device refused even with the override" -- "$FLASH" --yes --force-not-removable "$W/sd_card.img" /dev/null
expect 2 "no answer to the prompt means no write" -- sh -c "echo n | '$FLASH' --force-not-removable '$W/sd_card.img' '$W/target.img'"
expect 0 "regular file written and verified with --force-not-removable" -- "$FLASH" --yes --force-not-removable "$W/sd_card.img" "$W/target.img"
if [ "$(sha256sum <"$W/target.img" | cut -d' ' -f1)" = "$IMG_SHA" ]; then ok "target content = image"; else bad "target content differs"; fi
grep -q "verified (sha256 $IMG_SHA)" "$W/out.txt" && ok "reported the image's sha256" || bad "no sha256 report"
head -c 8388608 /dev/urandom >"$W/bigger.img"
expect 0 "larger target: only the image's bytes are compared" -- "$FLASH" --yes --force-not-removable "$W/sd_card.img" "$W/bigger.img"
[ "$(wc -c <"$W/bigger.img" | tr -d ' ')" -eq 8388608 ] && ok "larger target kept its size (notrunc)" || bad "larger target truncated"

# --- a write that does not stick: verify must catch it ---
mkdir -p "$W/fakebin"
REAL_DD=$(command -v dd)
cat >"$W/fakebin/dd" <<EOF
#!/bin/sh
"$REAL_DD" "\$@" || exit \$?
for a in "\$@"; do case "\$a" in of=*) out=\${a#of=} ;; esac; done
printf 'X' | "$REAL_DD" of="\$out" bs=1 seek=1000 conv=notrunc status=none
EOF
chmod +x "$W/fakebin/dd"
expect 1 "corrupted write fails the sha256 verify" -- env PATH="$W/fakebin:$PATH" "$FLASH" --yes --force-not-removable "$W/sd_card.img" "$W/corrupt.img"
grep -q "VERIFY FAILED" "$W/out.txt" && ok "verify failure is reported" || bad "no verify failure message"

# --- a real block device: loop device over a file (root + losetup) ---
loop_note="skipped: "
if [ "$(id -u)" -ne 0 ]; then
    loop_note="${loop_note}not root"
elif ! command -v losetup >/dev/null 2>&1; then
    loop_note="${loop_note}no losetup"
else
    head -c 4194304 /dev/zero >"$W/card.bin"
    LOOP=$(losetup -f --show "$W/card.bin" 2>"$W/losetup.err")
    if [ -z "$LOOP" ] || [ ! -b "$LOOP" ]; then
        loop_note="${loop_note}losetup failed ($(cat "$W/losetup.err"))"
        LOOP=""
    fi
fi
if [ -n "$LOOP" ]; then
    loop_note="used: $LOOP"
    name=$(basename "$LOOP")
    [ "$(cat /sys/block/"$name"/removable)" = 0 ] && ok "$LOOP is not removable per sysfs" || bad "loop removable?"
    expect 2 "non-removable block device refused" -- "$FLASH" --yes "$W/sd_card.img" "$LOOP"
    grep -q "removable is '0'" "$W/out.txt" && ok "refusal names /sys/block/$name/removable" || bad "refusal reason"
    expect 0 "loop device written and verified with --force-not-removable" -- "$FLASH" --yes --force-not-removable "$W/sd_card.img" "$LOOP"
    if [ "$(head -c "$IMG_BYTES" "$W/card.bin" | sha256sum | cut -d' ' -f1)" = "$IMG_SHA" ]; then ok "backing file holds the image"; else bad "backing file differs"; fi
    # fake sysfs: same device, reported removable -> accepted without the override
    mkdir -p "$W/sys/block/$name" "$W/sys/class/block/$name"
    echo 1 >"$W/sys/block/$name/removable"
    echo 8192 >"$W/sys/block/$name/size"
    expect 0 "removable block device accepted without the override" -- env FLASH_SYSFS="$W/sys" "$FLASH" --yes "$W/sd_card.img" "$LOOP"
    echo 16 >"$W/sys/block/$name/size"
    expect 2 "card smaller than the image refused" -- env FLASH_SYSFS="$W/sys" "$FLASH" --yes "$W/sd_card.img" "$LOOP"
    echo 8192 >"$W/sys/block/$name/size"
    touch "$W/sys/class/block/$name/partition"
    expect 2 "partition refused" -- env FLASH_SYSFS="$W/sys" "$FLASH" --yes "$W/sd_card.img" "$LOOP"
fi

echo "test_flash: $pass passed, $failn failed (loop device: $loop_note)"
[ "$failn" -eq 0 ]
