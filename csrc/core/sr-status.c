#include "spikerun/sr-status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char sr_error_buf[512];

const char *sr_status_str(sr_status s) {
    switch (s) {
    case SR_OK: return "ok";
    case SR_ERR_INVALID_ARG: return "invalid argument";
    case SR_ERR_IO: return "i/o error";
    case SR_ERR_FORMAT: return "bad format";
    case SR_ERR_UNSUPPORTED: return "unsupported";
    case SR_ERR_NO_MEMORY: return "out of memory";
    case SR_ERR_NO_DEVICE: return "no device";
    case SR_ERR_CONTEXT_FULL: return "context full";
    case SR_ERR_ABORTED: return "aborted";
    case SR_ERR_NUMERIC: return "non-finite value";
    case SR_ERR_DEVICE: return "device error";
    case SR_ERR_TIMEOUT: return "timed out";
    }
    return "unknown status";
}

const char *sr_last_error(void) { return sr_error_buf; }

void sr_clear_error(void) { sr_error_buf[0] = 0; }

sr_status sr_fail(sr_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sr_error_buf, sizeof sr_error_buf, fmt, ap);
    va_end(ap);
    return s;
}
