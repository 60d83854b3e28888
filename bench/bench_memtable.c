/* bench_memtable.c - cost of the skip-list memtable with 16-byte random
 * keys and 100-byte values, at 100k, 1M and 10M keys (--quick: 100k only).
 *
 * One run builds a fresh table: put of every key in random order (ns per
 * put, arena allocation included), then 1M gets of random existing keys
 * (ns per get), then one full latest-only iteration, what the SSTable
 * flusher does (ns per entry).
 *
 * Each size is run once cold, then RUNS more times; cells are the median of
 * those RUNS. The cold run takes its arena from fresh pages, so its put
 * time includes the kernel's first-touch page faults (very slow on some
 * VMs); the bench keeps freed memory in the process (mallopt) so that the
 * later runs, like a server that has flushed a memtable before, reuse it.
 *
 * Times are thread CPU time (CLOCK_THREAD_CPUTIME_ID), which does not count
 * waiting for a CPU on a shared machine; wall-clock figures are printed
 * beside them. Nothing is asserted on time: the targets are printed as
 * [PASS]/[FAIL] lines for a human to read. As a floor, the bench measures a
 * dependent random load (pointer chase) over regions of a few sizes: a
 * lookup in a table larger than the caches cannot beat a few of those.
 *
 * A table's arena is capped at SB_MEMTABLE_BYTES_MAX. A size whose entries
 * cannot fit under it is measured at the largest multiple of 100k that
 * fits, and the table says so. */
#include "sb_memtable.h"

#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUNS 3
#define KEY_BYTES 16
#define VALUE_BYTES 100
#define GETS 1000000u
#define PUT_TARGET_NS 250.0
#define GET_TARGET_NS 150.0

struct clocks {
	uint64_t cpu, wall;
};

struct run {
	double put_ns, get_ns, iter_ns; /* CPU */
	double put_wall_ns, get_wall_ns;
	uint64_t arena_bytes;
};

static struct clocks now(void)
{
	struct timespec c, w;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c);
	clock_gettime(CLOCK_MONOTONIC, &w);
	return (struct clocks){(uint64_t)c.tv_sec * 1000000000ull + (uint64_t)c.tv_nsec,
	                       (uint64_t)w.tv_sec * 1000000000ull + (uint64_t)w.tv_nsec};
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(const struct run *r, size_t field_offset)
{
	double v[RUNS];
	for (int i = 0; i < RUNS; i++)
		memcpy(&v[i], (const char *)&r[i] + field_offset, sizeof v[i]);
	qsort(v, RUNS, sizeof v[0], cmp_double);
	return v[RUNS / 2];
}
#define MEDIAN(runs, field) median((runs), offsetof(struct run, field))

static double per(uint64_t ns, uint64_t n)
{
	return (double)ns / (double)n;
}

/* One run over keys[0..n); probe[] holds GETS indices into keys. */
static int run_once(uint64_t n, const uint8_t *keys, const uint32_t *probe, struct run *r,
                    uint64_t *sink)
{
	struct sb_memtable *mt = NULL;
	uint8_t value[VALUE_BYTES];
	struct sb_kv_entry e = {.key_len = KEY_BYTES, .value = value, .value_len = VALUE_BYTES};
	int rc = sb_memtable_new(SB_MEMTABLE_BYTES_MAX, &mt);
	if (rc)
		return rc;
	memset(value, 'v', sizeof value);

	struct clocks t0 = now();
	for (uint64_t i = 0; i < n; i++) {
		e.key = keys + i * KEY_BYTES;
		e.offset = (int64_t)i;
		e.timestamp_ms = (int64_t)i;
		rc = sb_memtable_put(mt, &e);
		if (rc)
			goto out;
	}
	struct clocks t1 = now();
	for (uint32_t k = 0; k < GETS; k++) {
		uint32_t i = probe[k];
		rc = sb_memtable_get(mt, keys + (uint64_t)i * KEY_BYTES, KEY_BYTES, &e);
		if (rc || e.offset != (int64_t)i) {
			rc = rc ? rc : SB_ECORRUPT;
			goto out;
		}
		*sink += e.value[0];
	}
	struct clocks t2 = now();
	struct sb_memtable_iter it;
	uint64_t seen = 0;
	sb_memtable_iter_init(mt, &it, 1);
	while (sb_memtable_iter_next(&it, &e) == 0) {
		*sink += e.key[0] + e.value[0];
		seen++;
	}
	struct clocks t3 = now();
	if (seen != n) { /* random 16-byte keys do not collide in practice */
		rc = SB_ECORRUPT;
		goto out;
	}
	r->put_ns = per(t1.cpu - t0.cpu, n);
	r->get_ns = per(t2.cpu - t1.cpu, GETS);
	r->iter_ns = per(t3.cpu - t2.cpu, n);
	r->put_wall_ns = per(t1.wall - t0.wall, n);
	r->get_wall_ns = per(t2.wall - t1.wall, GETS);
	r->arena_bytes = sb_memtable_bytes(mt);
out:
	sb_memtable_free(mt);
	return rc;
}

/* ns (CPU) per dependent load, chasing a random cycle through every 64-byte
 * line of a region of the given size. */
static double chase_ns(size_t bytes, uint64_t *s)
{
	size_t lines = bytes / 64, stride = 64 / sizeof(size_t);
	size_t *mem = malloc(lines * 64), *order = malloc(lines * sizeof *order);
	if (!mem || !order) {
		free(mem);
		free(order);
		return 0;
	}
	for (size_t i = 0; i < lines; i++)
		order[i] = i;
	for (size_t i = lines - 1; i > 0; i--) { /* Fisher-Yates */
		size_t j = xorshift(s) % (i + 1), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (size_t i = 0; i < lines; i++)
		mem[order[i] * stride] = order[(i + 1) % lines] * stride;
	size_t p = order[0] * stride, hops = lines * 4 > 4000000 ? lines * 4 : 4000000;
	struct clocks t0 = now();
	for (size_t i = 0; i < hops; i++)
		p = mem[p];
	struct clocks t1 = now();
	*s += p;
	free(order);
	free(mem);
	return per(t1.cpu - t0.cpu, hops);
}

static void print_load(const char *when)
{
	char buf[128] = "?";
	FILE *f = fopen("/proc/loadavg", "r");
	if (f) {
		if (!fgets(buf, sizeof buf, f))
			buf[0] = '\0';
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = '\0';
	printf("load average %s: %s\n", when, buf);
}

int main(int argc, char **argv)
{
	static const uint64_t sizes[] = {100000, 1000000, 10000000};
	int nsizes = 3;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			nsizes = 1;
		} else {
			fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* rows appear as they are measured */
	/* Keep freed arena blocks in the process for the runs after the first. */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 0x7fffffff);

	uint64_t n_max = sizes[nsizes - 1];
	uint8_t *keys = malloc(n_max * KEY_BYTES);
	uint32_t *probe = malloc(GETS * sizeof *probe);
	if (!keys || !probe) {
		fprintf(stderr, "bench_memtable: out of memory\n");
		return 1;
	}
	uint64_t s = 0x9E3779B97F4A7C15ull, sink = 0;
	for (uint64_t i = 0; i < n_max * KEY_BYTES; i += 8) {
		uint64_t x = xorshift(&s);
		memcpy(keys + i, &x, 8);
	}

	print_load("at start");
	printf("floor: dependent random load (CPU ns) within 256 KiB %.1f, 4 MiB %.1f, "
	       "16 MiB %.1f, 256 MiB %.1f\n",
	       chase_ns(256u << 10, &s), chase_ns(4u << 20, &s), chase_ns(16u << 20, &s),
	       chase_ns(256u << 20, &s));
	printf("memtable: %d B random keys, %d B values; get = %u random existing keys; "
	       "iter = full latest-only walk\n",
	       KEY_BYTES, VALUE_BYTES, GETS);
	printf("ns per op, thread CPU time, median of %d runs after a cold one; "
	       "\"put cold\" = the first run, on fresh pages\n",
	       RUNS);
	printf("%-10s %9s %9s %9s %9s | %9s %9s | %9s %8s\n", "keys", "put", "get", "iter",
	       "put cold", "put wall", "get wall", "arena MiB", "B/entry");
	double put_100k = 0, get_100k = 0, bytes_per_entry = 0;
	int rc = 0;
	for (int z = 0; z < nsizes; z++) {
		uint64_t n = sizes[z];
		const char *note = "";
		/* Shrink to what fits under the cap, from the footprint measured
		 * at the previous size (2% margin for block tails). */
		if (bytes_per_entry > 0 &&
		    (double)n * bytes_per_entry > 0.98 * SB_MEMTABLE_BYTES_MAX) {
			n = (uint64_t)(0.98 * SB_MEMTABLE_BYTES_MAX / bytes_per_entry) / 100000 *
			    100000;
			note = " *";
		}
		for (uint32_t k = 0; k < GETS; k++)
			probe[k] = (uint32_t)(xorshift(&s) % n);
		struct run cold = {0}, runs[RUNS] = {{0}};
		for (int i = -1; i < RUNS; i++) {
			rc = run_once(n, keys, probe, i < 0 ? &cold : &runs[i], &sink);
			if (rc) {
				fprintf(stderr, "bench_memtable: %llu keys: %s\n",
				        (unsigned long long)n, sb_strerror(rc));
				goto out;
			}
		}
		bytes_per_entry = (double)runs[0].arena_bytes / (double)n;
		char label[32];
		snprintf(label, sizeof label, "%llu%s", (unsigned long long)n, note);
		printf("%-10s %9.1f %9.1f %9.1f %9.1f | %9.1f %9.1f | %9.1f %8.1f\n", label,
		       MEDIAN(runs, put_ns), MEDIAN(runs, get_ns), MEDIAN(runs, iter_ns),
		       cold.put_ns, MEDIAN(runs, put_wall_ns), MEDIAN(runs, get_wall_ns),
		       (double)runs[0].arena_bytes / (1 << 20), bytes_per_entry);
		if (*note)
			printf("  * %llu keys would need ~%.0f MiB of arena, over "
			       "SB_MEMTABLE_BYTES_MAX "
			       "(%llu MiB): measured at the largest multiple of 100k that fits\n",
			       (unsigned long long)sizes[z],
			       (double)sizes[z] * bytes_per_entry / (1 << 20),
			       (unsigned long long)(SB_MEMTABLE_BYTES_MAX >> 20));
		if (z == 0) {
			put_100k = MEDIAN(runs, put_ns);
			get_100k = MEDIAN(runs, get_ns);
		}
	}
	printf("[%s] put <= %.0f ns at 100k (%.1f)\n", put_100k <= PUT_TARGET_NS ? "PASS" : "FAIL",
	       PUT_TARGET_NS, put_100k);
	printf("[%s] get <= %.0f ns at 100k (%.1f)\n", get_100k <= GET_TARGET_NS ? "PASS" : "FAIL",
	       GET_TARGET_NS, get_100k);
	print_load("at end");
	printf("(checksum %llu)\n", (unsigned long long)sink);
out:
	free(probe);
	free(keys);
	return rc ? 1 : 0;
}
