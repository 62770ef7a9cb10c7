/*
 * Monotonic time for timeouts and durations; wall time only for logs.
 */
#ifndef EF_CORE_CLOCK_H
#define EF_CORE_CLOCK_H

#include <stdint.h>

/* Microseconds on the monotonic clock. */
uint64_t clock_mono_us(void);

#endif
