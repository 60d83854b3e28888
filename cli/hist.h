/* hist.h - a log-linear latency histogram for the bench (HdrHistogram's
 * idea: 128 linear sub-buckets per power of two, so every recorded value is
 * kept within 1% and percentiles cost one pass). Not thread-safe: one per
 * thread, merged at the end. */
#ifndef SB_CLI_HIST_H
#define SB_CLI_HIST_H

#include <stdint.h>

#define SBC_HIST_SUB_BITS 7
#define SBC_HIST_BUCKETS ((64 - SBC_HIST_SUB_BITS + 1) << SBC_HIST_SUB_BITS)

struct sbc_hist {
	uint64_t counts[SBC_HIST_BUCKETS];
	uint64_t total;
	uint64_t max;
	long double sum;
};

void sbc_hist_init(struct sbc_hist *h);
/* Records one value (e.g. nanoseconds); negative values count as 0. */
void sbc_hist_add(struct sbc_hist *h, int64_t v);
/* Adds every count of src to dst. */
void sbc_hist_merge(struct sbc_hist *dst, const struct sbc_hist *src);
/* The value at quantile q in [0, 1] (the bucket's midpoint; the exact max
 * for q = 1); 0 when empty. */
uint64_t sbc_hist_quantile(const struct sbc_hist *h, double q);
double sbc_hist_mean(const struct sbc_hist *h);

#endif
