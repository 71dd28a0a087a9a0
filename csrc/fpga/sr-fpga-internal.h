// sr-fpga-internal.h - PRIVATE test hooks of the FPGA backend (not part of the public API).
#ifndef SR_FPGA_INTERNAL_H
#define SR_FPGA_INTERNAL_H

#include <stdint.h>

#include "spikerun/sr-fpga.h"
#include "../../firmware/kernels/spk_acc.h"

#ifdef __cplusplus
extern "C" {
#endif

// Called by sr_fpga_step after xrtRunStart and before the wait, with the host mappings of
// the six buffer arguments (index = enum spk_acc_arg) and the run's scalars. Under XRT's
// noop shim the kernel never runs; a test installs a hook that runs the C-simulation kernel
// on these buffers, which makes the whole host flow checkable end to end.
typedef void (*sr_fpga_run_hook)(void *user, void *const bufs[6], uint32_t job_first,
                                 uint32_t n_jobs);
void sr_fpga_set_run_hook(sr_fpga *f, sr_fpga_run_hook hook, void *user);

// Memory group (bank index) used for the buffer of argument i, or -1.
int sr_fpga_arg_group(const sr_fpga *f, int i);

// Control-register offset XRT reports for argument i (0xffffffff if none).
uint32_t sr_fpga_arg_offset(const sr_fpga *f, int i);

// Size in bytes of the buffer of argument i (0 before upload).
uint64_t sr_fpga_buffer_bytes(const sr_fpga *f, int i);

#ifdef __cplusplus
}
#endif

#endif // SR_FPGA_INTERNAL_H
