/* hist.c - log-linear latency histogram (hist.h). */
#include "hist.h"

#include <math.h>
#include <string.h>

#define SUB (1u << SBC_HIST_SUB_BITS)

void sbc_hist_init(struct sbc_hist *h)
{
	memset(h, 0, sizeof *h);
}

static unsigned bucket_of(uint64_t v)
{
	if (v < SUB)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - SBC_HIST_SUB_BITS;
	return ((shift + 1) << SBC_HIST_SUB_BITS) + (unsigned)((v >> shift) - SUB);
}

/* Lowest value of bucket i and its width. */
static void bucket_range(unsigned i, uint64_t *low, uint64_t *width)
{
	if (i < SUB) {
		*low = i;
		*width = 1;
		return;
	}
	unsigned shift = (i >> SBC_HIST_SUB_BITS) - 1;
	*low = ((uint64_t)(i & (SUB - 1)) + SUB) << shift;
	*width = (uint64_t)1 << shift;
}

void sbc_hist_add(struct sbc_hist *h, int64_t v)
{
	uint64_t u = v < 0 ? 0 : (uint64_t)v;
	h->counts[bucket_of(u)]++;
	h->total++;
	h->sum += (long double)u;
	if (u > h->max)
		h->max = u;
}

void sbc_hist_merge(struct sbc_hist *dst, const struct sbc_hist *src)
{
	for (unsigned i = 0; i < SBC_HIST_BUCKETS; i++)
		dst->counts[i] += src->counts[i];
	dst->total += src->total;
	dst->sum += src->sum;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t sbc_hist_quantile(const struct sbc_hist *h, double q)
{
	if (!h->total)
		return 0;
	if (q >= 1.0)
		return h->max;
	uint64_t rank = (uint64_t)ceil(q * (double)h->total), seen = 0;
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < SBC_HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= rank) {
			uint64_t low, width;
			bucket_range(i, &low, &width);
			uint64_t mid = low + width / 2;
			return mid > h->max ? h->max : mid;
		}
	}
	return h->max;
}

double sbc_hist_mean(const struct sbc_hist *h)
{
	return h->total ? (double)(h->sum / h->total) : 0.0;
}
