// sr-fpga.h - the FPGA backend (AMD Versal VCK190, XRT): spike matrix-vector products on the
// spk_acc kernel (firmware/).
//
// XRT is loaded at run time (dlopen of libxrt_coreutil.so.2) and is touched only by the
// functions below that say so; nothing here exposes XRT types. On x86 XRT terminates the
// process when XILINX_XRT is unset or wrong, so every entry point that would reach XRT first
// checks that XILINX_XRT names a directory holding lib/libxrt_core.so.2 (or the shim that
// XCL_EMULATION_MODE selects, e.g. lib/libxrt_noop.so.2) and otherwise returns
// SR_ERR_NO_DEVICE with the reason in sr_last_error().
//
// Flow: sr_fpga_open (device + xclbin + kernel) -> sr_fpga_upload_weights once (all linear
// layers, packed into device buffers split over DDR4 and LPDDR4) -> per token, per group of
// layers that can run together, sr_fpga_step (only spike planes go in and float outputs
// come out) -> sr_fpga_close.
//
// Numerics: the spike kernel contract of sr-spike.h, bit for bit. Weights are uploaded as
// sr_spike_weights (packed by sr_spike_weights_pack_*), inputs are sr_spike_planes, and
// every step is accepted or rejected by the same sr_spike_matvec_check as the CPU kernels;
// outputs equal sr_spike_matvec's (checked in C-simulation, firmware/tb).
#ifndef SPIKERUN_SR_FPGA_H
#define SPIKERUN_SR_FPGA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sr-common.h"
#include "sr-spike.h"
#include "sr-status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sr_fpga sr_fpga;  // one open device + loaded xclbin + kernel + buffers

typedef struct sr_fpga_params {
    const char *xclbin_path;  // required: firmware/build/spk_acc.hw.xclbin (`make -C firmware
                              //   package`), the test one, or with `emulate` the emulated
                              //   kernel firmware/build/spk_acc.emu.so (`make -C firmware emu`)
    const char *kernel_name;  // NULL = "spk_acc"
    int32_t  device_index;    // 0
    uint32_t timeout_ms;      // per kernel run; 0 = 10000 (600000 emulated)
    float    port_share[3];   // share of each matrix's row chunks per weight port (w0 DDR4,
                              //   w1 and w2 LPDDR4);
                              //   all 0 = by bandwidth, 0.45 / 0.275 / 0.275
    bool     blocking_wait;   // false (default): poll the run state; true: xrtRunWaitFor
    bool     emulate;         // true: no XRT; the C-simulation build of the HLS kernel
                              //   (xclbin_path) runs in process as the device (sr-fpga-emu.c)
    bool     token_program;   // true: also open the spk_token kernel (one run per token,
                              //   firmware/kernels/spk_token.h); the xclbin must have it
} sr_fpga_params;

typedef struct sr_fpga_device_info {
    int32_t index;            // XRT device index
    char    shim[16];         // "hw", "noop", "sw_emu" or "hw_emu"
} sr_fpga_device_info;

/// One linear layer to upload: packed sr-spike weights (any sr_spike_format; n_in <= 16384).
typedef struct sr_fpga_matrix {
    const sr_spike_weights *w;  // read during sr_fpga_upload_weights only
    int32_t input_slot;         // matrices with the same slot read the same activation
                                //   (e.g. q, k, v); slots are numbered from 0
} sr_fpga_matrix;

/// The encoded activation of one input slot for one step (T <= 16 planes on the FPGA).
typedef struct sr_fpga_input {
    int32_t slot;                 // input_slot of the matrices that read it
    const sr_spike_planes *x;     // read during sr_fpga_step only
} sr_fpga_input;

typedef struct sr_fpga_stats {
    uint64_t runs;                // kernel runs completed
    uint64_t jobs;                // job descriptors executed
    uint64_t timeouts;            // runs that did not complete in time
    uint64_t weight_bytes[3];     // device bytes per weight port (w0, w1, w2), padding included
    uint64_t bytes_to_device;     // spike/input bytes synced to the device by steps
    uint64_t bytes_from_device;   // output bytes synced back by steps
    double   seconds_in_runs;     // wall time from start to completion, summed
    uint64_t token_runs;          // runs of the spk_token kernel (one per token), also in `runs`
    uint64_t token_passes;        // spk_acc dataflow passes (MATVEC descriptors) inside them
} sr_fpga_stats;

/// Defaults: kernel "spk_acc", device 0, 10 s timeout, shares by bandwidth, polling wait.
SR_API sr_fpga_params sr_fpga_default_params(void);

/// Whether the backend could be used: checks the environment (see above) and loads
/// libxrt_coreutil.so.2. Never opens a device. SR_OK, or SR_ERR_NO_DEVICE and the reason in
/// sr_last_error().
SR_API sr_status sr_fpga_probe(void);

/// Lists the XRT devices that open (calls XRT; probe first). Writes up to cap entries and
/// the number found to *n_found (the noop shim reports one).
SR_API sr_status sr_fpga_list_devices(sr_fpga_device_info *out, int32_t cap, int32_t *n_found);

/// Opens device p->device_index, loads p->xclbin_path and opens the kernel. *out is set only
/// on success; free with sr_fpga_close.
SR_API sr_status sr_fpga_open(const sr_fpga_params *p, sr_fpga **out);

/// Packs and uploads the weights of n matrices into device buffers (one per weight port,
/// allocated in the memory bank the xclbin connects that port to) plus the job table and
/// the input/output areas. Replaces earlier uploads. Matrix i is referred to by index i.
SR_API sr_status sr_fpga_upload_weights(sr_fpga *f, const sr_fpga_matrix *m, int32_t n);

/// Number of floats sr_fpga_step writes for matrices [first, first + count): the sum of
/// their n_out; -1 if the range is invalid.
SR_API int64_t sr_fpga_step_outputs(const sr_fpga *f, int32_t first, int32_t count);

/// One kernel run over matrices [first, first + count): checks every (matrix, input) pair
/// with sr_spike_matvec_check (same acceptance as the CPU), uploads the n_inputs spike
/// inputs (every input slot those matrices read must be given), runs, waits up to the
/// timeout and writes the outputs to y (sr_fpga_step_outputs floats, matrices in order,
/// each matrix's n_out rows). On SR_ERR_TIMEOUT the run may still be in flight: the next
/// step first waits for it again.
SR_API sr_status sr_fpga_step(sr_fpga *f, int32_t first, int32_t count,
                              const sr_fpga_input *inputs, int32_t n_inputs, float *y);

// ---------------------------------------------------------------------------------------
// The token program (opened with params.token_program): one spk_token run computes a whole
// token from a descriptor chain in device memory (firmware/kernels/spk_token.h).

/// Whether the device was opened with the token program's kernel.
SR_API bool sr_fpga_has_token_program(const sr_fpga *f);

/// sr_fpga_upload_weights for a token program: pin is NULL or, per matrix, -1 (chunks split
/// by port share) or the engine 0..2 that holds all of a matrix's chunks (the K/V caches:
/// engine 0, which the program writes); matrices whose weights pointer repeats an earlier
/// one's (with the same pin) share its shard. Reserves n_desc descriptor lines after the job
/// table and arena_lines lines after the outputs.
SR_API sr_status sr_fpga_upload_program(sr_fpga *f, const sr_fpga_matrix *m, int32_t n,
                                        const int8_t *pin, uint32_t n_desc, uint32_t arena_lines);

typedef struct sr_fpga_layout {
    uint32_t program_line;   // first descriptor line in the `jobs` buffer
    uint32_t n_desc;         // descriptor lines reserved
    uint32_t arena_line;     // first arena line in the `out` buffer (the token header)
    uint32_t arena_lines;
} sr_fpga_layout;

SR_API sr_status sr_fpga_program_layout(const sr_fpga *f, sr_fpga_layout *out);
/// Line in `out` of matrix i's outputs / line in `spk` of input slot k; -1 if none.
SR_API int64_t sr_fpga_matrix_out_line(const sr_fpga *f, int32_t i);
SR_API int64_t sr_fpga_slot_line(const sr_fpga *f, int32_t slot);
/// Writes the descriptors (64-byte lines) and syncs them to the device.
SR_API sr_status sr_fpga_write_program(sr_fpga *f, const void *desc, uint32_t n_desc);
/// Writes n floats at float index i of the `out` buffer (the arena) and syncs them.
SR_API sr_status sr_fpga_write_out(sr_fpga *f, uint64_t float_index, const void *src, uint64_t n_floats);
/// One spk_token run: writes the token header (token, position, whether logits are wanted),
/// starts the run, waits, checks the kernel's status and, when logits is not NULL, copies the
/// outputs of matrix logits_matrix (its n_out floats).
SR_API sr_status sr_fpga_run_token(sr_fpga *f, int32_t token, int32_t pos, uint32_t n_vocab, uint32_t n_ctx,
                                   int32_t logits_matrix, float *logits);

/// Counters since open (never fails; zeros for NULL).
SR_API void sr_fpga_get_stats(const sr_fpga *f, sr_fpga_stats *out);

/// The xclbin's platform name (e.g. "xilinx_vck190_base_202210_1"); "" if unknown.
SR_API const char *sr_fpga_platform(const sr_fpga *f);

/// Frees buffers, run, kernel, xclbin and device (waits up to the timeout for a run still in
/// flight). Accepts NULL. Devices still open when the process exits are closed by an atexit
/// handler before XRT's own static destructors run (which would crash on them); sr_fpga_close
/// then only frees the handle, and steps fail with SR_ERR_NO_DEVICE.
SR_API void sr_fpga_close(sr_fpga *f);

#ifdef __cplusplus
}
#endif

#endif // SPIKERUN_SR_FPGA_H
