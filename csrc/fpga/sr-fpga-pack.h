// sr-fpga-pack.h - PRIVATE: sr-spike weights and planes -> the spk_acc device layouts of
// firmware/kernels/spk_acc.h. Pure functions, no XRT: used by the host backend (sr-fpga.c),
// by the C-simulation testbench (firmware/tb) and by the noop host test.
#ifndef SR_FPGA_PACK_H
#define SR_FPGA_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "spikerun/sr-spike.h"
#include "../../firmware/kernels/spk_acc.h"

#ifdef __cplusplus
extern "C" {
#endif

// Checks that packed weights can go to the kernel (format, shape, n_in <= SPK_MAX_COLS).
sr_status sr_fpga_check_weights(const sr_spike_weights *w, int32_t index);

// Device lines of chunks [c0, c1) of w (spk_chunk_lines per chunk).
uint64_t sr_fpga_shard_lines(const sr_spike_weights *w, int32_t c0, int32_t c1);

// Writes chunks [c0, c1) of w in the device layout to dst (sr_fpga_shard_lines lines).
void sr_fpga_pack_shard(const sr_spike_weights *w, int32_t c0, int32_t c1, void *dst);

// Largest slot (lines) for an activation of n_in inputs.
uint32_t sr_fpga_slot_capacity(int32_t n_in);

// Checks what only the FPGA limits (T <= SPK_MAX_T, encoding known); the shared rules are
// sr_spike_matvec_check's.
sr_status sr_fpga_check_planes(const sr_spike_planes *x, int32_t slot);

// Writes the slot of x (header, masks, scales) to dst; returns the lines written
// (spk_slot_lines(T, n_words, n_groups)).
uint32_t sr_fpga_pack_planes(const sr_spike_planes *x, void *dst);

// A copy of w's shape fields for sr_spike_matvec_check after the caller's weights are gone:
// `mem` and (if w has row sums) `row_sum` are non-NULL sentinels that the check only compares
// with NULL, so a step is accepted exactly when the CPU kernels would accept it.
sr_spike_weights sr_fpga_weights_shape(const sr_spike_weights *w);

#ifdef __cplusplus
}
#endif

#endif // SR_FPGA_PACK_H
