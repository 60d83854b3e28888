/* test_index.c - sparse offset and time index lookups agree with a linear
 * scan oracle; index files round-trip and are rejected when they do not
 * match the segment. */
#include "sb_test.h"

#include "sb_index.h"
#include "sb_vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct layout {
	int64_t base[3000];
	int64_t next[3000];
	uint64_t pos[3000];
	int64_t max_ts[3000];
	int n;
};

/* A random segment layout: batches of random sizes and record counts,
 * timestamps that mostly rise but sometimes go back. */
static void make_layout(struct layout *l, struct sb_index *idx, uint64_t seed, int64_t seg_base)
{
	uint64_t s = seed, pos = 0;
	int64_t off = seg_base, ts = 1000;
	l->n = 3000;
	for (int i = 0; i < l->n; i++) {
		struct sb_batch_header h = {0};
		uint32_t count = 1 + (uint32_t)(sbt_rand(&s) % 20);
		uint32_t bytes = 61 + (uint32_t)(sbt_rand(&s) % 2000);
		ts += (int64_t)(sbt_rand(&s) % 100) - 20;
		h.base_offset = off;
		h.last_offset_delta = count - 1;
		h.record_count = count;
		h.max_timestamp_ms = ts;
		l->base[i] = off;
		l->next[i] = off + count;
		l->pos[i] = pos;
		l->max_ts[i] = ts;
		assert_int_equal(sb_index_add(idx, seg_base, &h, pos), 0);
		off += count;
		pos += bytes;
	}
}

static void test_offset_lookup_matches_linear_scan(void **state)
{
	static struct layout l;
	(void)state;
	for (uint32_t interval = 1; interval <= 65536; interval *= 8) {
		struct sb_index idx;
		sb_index_init(&idx, interval);
		make_layout(&l, &idx, interval, 500);
		for (int64_t o = 500; o < l.next[l.n - 1]; o++) {
			uint64_t p = sb_index_lookup(&idx, (uint32_t)(o - 500));
			/* The oracle: the batch containing o. */
			int b = 0;
			while (l.next[b] <= o)
				b++;
			/* p must be a batch start at or before that batch, within one
			 * interval (plus one batch) of it. */
			int k = 0;
			while (l.pos[k] < p)
				k++;
			assert_int_equal(l.pos[k], p);
			assert_true(k <= b);
			assert_true(l.pos[b] - p < interval + 2061);
		}
		assert_int_equal(sb_index_lookup(&idx, 0), 0);
		sb_index_fini(&idx);
	}
}

static void test_time_lookup_never_skips_a_matching_record(void **state)
{
	static struct layout l;
	struct sb_index idx;
	(void)state;
	sb_index_init(&idx, 4096);
	make_layout(&l, &idx, 42, 0);
	for (int64_t ts = 900; ts < l.max_ts[l.n - 1] + 10; ts += 3) {
		uint64_t p = sb_index_lookup_time(&idx, ts);
		/* Oracle: the first batch whose max timestamp is >= ts. */
		int first = 0;
		while (first < l.n && l.max_ts[first] < ts)
			first++;
		if (first < l.n)
			assert_true(p <= l.pos[first]);
	}
	sb_index_fini(&idx);
}

static void test_index_files_round_trip_and_reject_mismatches(void **state)
{
	static struct layout l;
	char *dir = sbt_tmpdir("index-files"), path[4200];
	struct sb_index a, b;
	(void)state;
	sb_index_init(&a, 4096);
	make_layout(&l, &a, 7, 100);
	uint64_t size = l.pos[l.n - 1] + 100;
	assert_int_equal(sb_index_save(sb_vfs_posix(), dir, "00000000000000000100", 100, size, &a), 0);
	sb_index_init(&b, 4096);
	assert_int_equal(sb_index_load(sb_vfs_posix(), dir, "00000000000000000100", 100, size, &b), 0);
	assert_int_equal(a.n_off, b.n_off);
	assert_int_equal(a.n_time, b.n_time);
	assert_memory_equal(a.off, b.off, a.n_off * sizeof *a.off);
	assert_memory_equal(a.time, b.time, a.n_time * sizeof *a.time);
	sb_index_fini(&b);
	/* Wrong segment size or base: rejected. */
	sb_index_init(&b, 4096);
	assert_int_equal(sb_index_load(sb_vfs_posix(), dir, "00000000000000000100", 100, size + 1, &b), SB_ECORRUPT);
	assert_int_equal(sb_index_load(sb_vfs_posix(), dir, "00000000000000000100", 101, size, &b), SB_ECORRUPT);
	/* A flipped byte in the entries: rejected by the CRC. */
	snprintf(path, sizeof path, "%s/00000000000000000100.index", dir);
	int fd = open(path, O_RDWR);
	uint8_t x;
	assert_int_equal(pread(fd, &x, 1, 100), 1);
	x ^= 0x10;
	assert_int_equal(pwrite(fd, &x, 1, 100), 1);
	close(fd);
	assert_int_equal(sb_index_load(sb_vfs_posix(), dir, "00000000000000000100", 100, size, &b), SB_ECORRUPT);
	assert_int_equal(b.n_off, 0);
	assert_int_equal(sb_index_save(sb_vfs_posix(), dir, "00000000000000000100", 100, size, &a), 0);
	snprintf(path, sizeof path, "%s/00000000000000000100.timeindex", dir);
	unlink(path);
	assert_int_equal(sb_index_load(sb_vfs_posix(), dir, "00000000000000000100", 100, size, &b), -ENOENT);
	sb_index_fini(&b);
	sb_index_fini(&a);
	assert_int_equal(sb_vfs_remove_tree(sb_vfs_posix(), dir), 0);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_offset_lookup_matches_linear_scan),
		cmocka_unit_test(test_time_lookup_never_skips_a_matching_record),
		cmocka_unit_test(test_index_files_round_trip_and_reject_mismatches),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
