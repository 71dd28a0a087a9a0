// sr-common.h - tiny shared definitions for the spikerun C runtime headers.
#ifndef SPIKERUN_SR_COMMON_H
#define SPIKERUN_SR_COMMON_H

// SR_API marks every exported function of the C runtime.
#if defined(_WIN32)
#  define SR_API
#else
#  define SR_API __attribute__((visibility("default")))
#endif

#endif // SPIKERUN_SR_COMMON_H
