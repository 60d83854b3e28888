/* sb_histo.h - a latency histogram for metrics: fixed buckets on a 1-2.5-5
 * scale from 50 us to 10 s, updated with relaxed atomics from any thread
 * (the I/O loop, workers) and read by the metrics endpoint. Cumulative
 * counts per upper bound, as Prometheus wants them, are made when read. */
#ifndef SB_COMMON_HISTO_H
#define SB_COMMON_HISTO_H

#include <stdint.h>

#define SB_HISTO_BUCKETS 18 /* the last is +Inf */

static const int64_t sb_histo_bounds_us[SB_HISTO_BUCKETS - 1] = {
	50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000,
};

struct sb_histo {
	uint64_t count;
	uint64_t sum_us;
	uint64_t bucket[SB_HISTO_BUCKETS]; /* not cumulative */
};

static inline void sb_histo_add(struct sb_histo *h, int64_t us)
{
	int i = 0;
	if (us < 0)
		us = 0;
	while (i < SB_HISTO_BUCKETS - 1 && us > sb_histo_bounds_us[i])
		i++;
	__atomic_fetch_add(&h->bucket[i], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->sum_us, (uint64_t)us, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
}

#endif
