#!/bin/sh
# flash.sh - write an SD card image (build/pkg/sd_card.img from `make package`) to a microSD
# card for the VCK190 and verify it by reading it back.
#
#   firmware/flash.sh [--yes] [--force-not-removable] IMAGE DEVICE
#
# Safety: DEVICE must be a whole block device whose /sys/block/<dev>/removable is 1 (an SD
# reader slot or USB card reader), and none of its partitions may be mounted. Anything else
# (a fixed disk, a partition, a regular file, a loop device) is refused unless
# --force-not-removable is given - the tests use that with a regular file or a loop file.
# Without --yes it asks before writing. After writing (dd, fsync), it reads back exactly the
# image's size from DEVICE and compares SHA-256 sums; exit 0 only if they match.
# Exit codes: 0 written and verified, 1 write or verify failed, 2 refused, 64 usage.
set -eu

usage() {
    echo "usage: flash.sh [--yes] [--force-not-removable] IMAGE DEVICE" >&2
    exit 64
}

YES=0
FORCE=0
while [ $# -gt 0 ]; do
    case "$1" in
    --yes | -y) YES=1 ;;
    --force-not-removable) FORCE=1 ;;
    --help | -h) usage ;;
    -*) echo "flash.sh: unknown option $1" >&2; usage ;;
    *) break ;;
    esac
    shift
done
[ $# -eq 2 ] || usage
IMG=$1
DEV=$2
SYSFS=${FLASH_SYSFS:-/sys}   # tests point this at a fake /sys

refuse() {
    echo "flash.sh: refusing to write $DEV: $*" >&2
    exit 2
}

[ -f "$IMG" ] && [ -r "$IMG" ] || { echo "flash.sh: image '$IMG' is not a readable file" >&2; exit 1; }
IMG_BYTES=$(wc -c <"$IMG" | tr -d ' ')
[ "$IMG_BYTES" -gt 0 ] || { echo "flash.sh: image '$IMG' is empty" >&2; exit 1; }
command -v sha256sum >/dev/null 2>&1 || { echo "flash.sh: sha256sum not found" >&2; exit 1; }

if [ -b "$DEV" ]; then
    # a block device: must be a whole, removable, unmounted disk
    real=$(readlink -f "$DEV")
    name=$(basename "$real")
    if [ -e "$SYSFS/class/block/$name/partition" ]; then
        refuse "it is a partition; give the whole card (e.g. /dev/sdX, not /dev/sdX1)"
    fi
    removable=$(cat "$SYSFS/block/$name/removable" 2>/dev/null || echo "?")
    if [ "$removable" != 1 ] && [ "$FORCE" != 1 ]; then
        refuse "/sys/block/$name/removable is '$removable', not 1 (not a removable card); pass --force-not-removable only if you are sure"
    fi
    if grep -q "^$real[p0-9]* " /proc/mounts 2>/dev/null || grep -q "^$DEV[p0-9]* " /proc/mounts 2>/dev/null; then
        refuse "it (or a partition of it) is mounted; unmount it first"
    fi
    size_file="$SYSFS/block/$name/size"
    if [ -r "$size_file" ]; then
        dev_bytes=$(( $(cat "$size_file") * 512 ))
        [ "$dev_bytes" -ge "$IMG_BYTES" ] || refuse "the card holds $dev_bytes bytes, the image needs $IMG_BYTES"
    fi
    KIND="block device"
elif [ -e "$DEV" ] && [ ! -f "$DEV" ]; then
    refuse "it is neither a block device nor a regular file"
else
    # a regular file (or a new one): only as an explicit test target
    [ "$FORCE" = 1 ] || refuse "it is not a block device (a card is /dev/sdX or /dev/mmcblkN); a file target needs --force-not-removable"
    KIND="file"
fi

if [ "$YES" != 1 ]; then
    printf 'flash.sh: write %s (%s bytes) to %s %s, destroying its contents? [y/N] ' "$IMG" "$IMG_BYTES" "$KIND" "$DEV"
    read -r answer
    case "$answer" in y | Y | yes | YES) ;; *) echo "flash.sh: not written" >&2; exit 2 ;; esac
fi

echo "flash.sh: writing $IMG to $DEV"
if [ "$KIND" = file ]; then
    dd if="$IMG" of="$DEV" bs=4M conv=fsync,notrunc status=none
else
    dd if="$IMG" of="$DEV" bs=4M conv=fsync status=progress
fi
sync

echo "flash.sh: verifying (reading back $IMG_BYTES bytes)"
# drop cached pages of the device so the read-back comes from the card, where possible
if [ "$KIND" = "block device" ] && command -v blockdev >/dev/null 2>&1; then
    blockdev --flushbufs "$DEV" 2>/dev/null || true
fi
want=$(sha256sum <"$IMG" | cut -d' ' -f1)
got=$(head -c "$IMG_BYTES" "$DEV" | sha256sum | cut -d' ' -f1)
if [ "$want" != "$got" ]; then
    echo "flash.sh: VERIFY FAILED: image sha256 $want, $DEV reads back $got" >&2
    exit 1
fi
echo "flash.sh: ok, $IMG_BYTES bytes written and verified (sha256 $want)"
