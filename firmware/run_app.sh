#!/bin/sh
# run_app.sh - on the VCK190 (PetaLinux from the Versal common image), from the SD card's
# FAT partition, which the image mounts at /run/media/mmcblk0p1 (or /media/sd-mmcblk0p1).
#
#   cd /run/media/mmcblk0p1 && ./run_app.sh [spikerun-fpga options]
#
# Default: the self test (spk_acc against the CPU kernels on the A72, random and model-shaped
# layers), then a decode-shaped throughput run. Pass --model model.gguf to use real weights.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
export XILINX_XRT=/usr
export XRT_INI_PATH="$HERE/xrt.ini"
XCLBIN="$HERE/spk_acc.hw.xclbin"
[ -f "$XCLBIN" ] || XCLBIN="$HERE/binary_container_1.xclbin"
[ -f "$XCLBIN" ] || { echo "run_app.sh: no xclbin next to $0" >&2; exit 1; }
echo "run_app.sh: kernel $XCLBIN, zocl: $(ls /dev/dri/renderD* 2>/dev/null | tr '\n' ' ')"
"$HERE/spikerun-fpga" --xclbin "$XCLBIN" --self-test "$@"
"$HERE/spikerun-fpga" --xclbin "$XCLBIN" --bench "$@"
