/* bench_crc32c.c - throughput of CRC32C: the implementation chosen at run time
 * (sb_crc32c) against the portable slicing-by-8 one, on buffers of 64 B,
 * 1 KiB, 16 KiB and 1 MiB. Each cell is the median of 5 timed runs
 * (CLOCK_MONOTONIC); a run repeats the CRC until it has taken about 50 ms.
 * GB/s means 10^9 bytes per second. Buffers stay cache-resident, so this
 * measures the CRC code, not memory bandwidth. */
#include "sb_crc32c.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define RUNS 5
#define RUN_NS_MIN 50000000ull /* 50 ms per timed run */
#define BUF_BYTES_MAX (1u << 20)

typedef uint32_t crc_fn(const uint8_t *buf, size_t len);

static uint32_t crc_chosen(const uint8_t *buf, size_t len)
{
	return sb_crc32c(buf, len);
}
static uint32_t crc_portable(const uint8_t *buf, size_t len)
{
	return sb_crc32c_extend_portable(0, buf, len);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Runs fn iters times; returns elapsed ns. The CRCs are folded into *sink so
 * the calls cannot be dropped. */
static uint64_t time_iters(crc_fn *fn, const uint8_t *buf, size_t len, uint64_t iters,
                           uint32_t *sink)
{
	uint32_t acc = 0;
	uint64_t t0 = now_ns();
	for (uint64_t i = 0; i < iters; i++)
		acc += fn(buf, len);
	uint64_t t1 = now_ns();
	*sink += acc;
	return t1 - t0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Median GB/s over RUNS runs of fn on buf[0..len). */
static double measure_gbps(crc_fn *fn, const uint8_t *buf, size_t len, uint32_t *sink)
{
	uint64_t iters = 1;
	double gbps[RUNS];

	/* Calibrate: double the iteration count until one run is long enough. */
	while (time_iters(fn, buf, len, iters, sink) < RUN_NS_MIN / 4)
		iters *= 2;
	iters *= 4;
	for (int r = 0; r < RUNS; r++) {
		uint64_t ns = time_iters(fn, buf, len, iters, sink);
		gbps[r] = (double)len * (double)iters / (double)(ns ? ns : 1);
	}
	qsort(gbps, RUNS, sizeof(gbps[0]), cmp_double);
	return gbps[RUNS / 2];
}

int main(void)
{
	static const struct {
		const char *label;
		size_t bytes;
	} sizes[] = {{"64 B", 64}, {"1 KiB", 1024}, {"16 KiB", 16384}, {"1 MiB", 1u << 20}};
	uint8_t *buf = aligned_alloc(64, BUF_BYTES_MAX);
	uint64_t x = 0x9E3779B97F4A7C15ull;
	uint32_t sink = 0;

	if (!buf) {
		fprintf(stderr, "bench_crc32c: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < BUF_BYTES_MAX; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (uint8_t)(x >> 56);
	}
	if (sb_crc32c(buf, BUF_BYTES_MAX) != sb_crc32c_extend_portable(0, buf, BUF_BYTES_MAX)) {
		fprintf(stderr, "bench_crc32c: implementations disagree\n");
		free(buf);
		return 1;
	}

	printf("crc32c: chosen implementation \"%s\"; GB/s (10^9 B/s), median of %d runs\n",
	       sb_crc32c_impl(), RUNS);
	printf("%-8s %12s %12s %8s\n", "size", "chosen", "portable", "speedup");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		double chosen = measure_gbps(crc_chosen, buf, sizes[i].bytes, &sink);
		double portable = measure_gbps(crc_portable, buf, sizes[i].bytes, &sink);
		printf("%-8s %12.2f %12.2f %7.1fx\n", sizes[i].label, chosen, portable,
		       chosen / portable);
	}
	printf("(checksum %08x)\n", sink);
	free(buf);
	return 0;
}
