/*
 * Counters with one writer and any number of readers: the writer adds
 * without a lock prefix, readers load with relaxed atomics and sum.
 */
#ifndef EF_CORE_STAT_H
#define EF_CORE_STAT_H

#include <stdatomic.h>
#include <stdint.h>

typedef _Atomic uint64_t stat_t;

/* Adds n from the owning thread: no lock prefix, single writer. */
static inline void stat_add(stat_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static inline void stat_sub(stat_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - n,
			      memory_order_relaxed);
}

#endif
