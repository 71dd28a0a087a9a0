// Status codes and the thread-local error sentence shared by every part of the C runtime.
#ifndef SPIKERUN_SR_STATUS_H
#define SPIKERUN_SR_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

// Marks an enum that Swift imports as a closed Swift enum (cases lose their common prefix).
// sr_status itself stays a plain C enum so Swift code can compare against SR_OK & co.
#if defined(__clang__)
#define SR_CLOSED_ENUM __attribute__((enum_extensibility(closed)))
#else
#define SR_CLOSED_ENUM
#endif

typedef enum sr_status {
    SR_OK = 0,
    SR_ERR_INVALID_ARG,
    SR_ERR_IO,
    SR_ERR_FORMAT,
    SR_ERR_UNSUPPORTED,
    SR_ERR_NO_MEMORY,
    SR_ERR_NO_DEVICE,
    SR_ERR_CONTEXT_FULL,
    SR_ERR_ABORTED,
    SR_ERR_NUMERIC,      // NaN/Inf where a finite value is required
    SR_ERR_DEVICE,       // a device call failed (XRT), see sr_last_error()
    SR_ERR_TIMEOUT,
} sr_status;

/// Short name of a status ("invalid argument", ...).
const char *sr_status_str(sr_status s);
/// The sentence describing this thread's last failure ("" if none).
const char *sr_last_error(void);
/// Record this thread's error sentence (printf-style) and return `s` for `return sr_fail(...)`.
sr_status sr_fail(sr_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sr_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
