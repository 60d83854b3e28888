/* test_log_clean.c - the log cleaner's segment rewrite (sb_log_rewrite_sealed)
 * on the simulated file system: what it keeps and drops, reads across the
 * gaps it leaves, readers holding the old segment, and a power loss at every
 * file operation of a rewrite (crash modes DROP_UNSYNCED and RANDOM): after
 * recovery the segment holds either all its old records or exactly the kept
 * ones, every other segment is intact, the log ends where it did, and
 * appends go on. */
#include "sb_test.h"

#include "sb_aio.h"
#include "sb_batch.h"
#include "sb_ioloop.h"
#include "sb_limits.h"
#include "sb_log.h"
#include "sb_simfs.h"
#include "sb_vfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR "/c"
#define RECORDS 600
#define TS0 1700000000000ll

struct fx {
	struct sb_simfs *fs;
	struct sb_ioloop *loop;
	struct sb_log *log;
	int acked;
};

static void on_ack(void *arg, int64_t base, int result)
{
	struct fx *f = arg;
	(void)base;
	assert_int_equal(result, 0);
	f->acked++;
}

static void open_log(struct fx *f)
{
	struct sb_aio *aio = NULL;
	struct sb_log_config cfg;
	sb_log_config_default(&cfg);
	cfg.segment_bytes = 4096;
	cfg.index_interval_bytes = 512;
	cfg.retention_ms = -1;
	cfg.retention_bytes = -1;
	assert_int_equal(sb_aio_sync_new(sb_simfs_vfs(f->fs), 0, &aio), 0);
	assert_int_equal(sb_ioloop_new(aio, 10, &f->loop), 0);
	assert_int_equal(sb_log_open(sb_simfs_vfs(f->fs), f->loop, DIR, "clean/0", &cfg, &f->log), 0);
}

static void close_log(struct fx *f)
{
	sb_log_close(f->log);
	sb_ioloop_free(f->loop);
	f->log = NULL;
	f->loop = NULL;
}

/* Record o: key "k<o % 7>", value "v<o>". */
static void append(struct fx *f, int64_t from, int n)
{
	struct sb_batch_builder b;
	char key[16], val[32];
	const void *out;
	size_t len;
	int done = f->acked;
	assert_int_equal(sb_batch_builder_init(&b, SB_BATCH_BYTES_MAX), 0);
	for (int i = 0; i < n; i++) {
		struct sb_record_in r = {0};
		r.key = key;
		r.key_len = (uint32_t)snprintf(key, sizeof key, "k%d", (int)((from + i) % 7));
		r.value = val;
		r.value_len = (uint32_t)snprintf(val, sizeof val, "v%lld", (long long)(from + i));
		r.timestamp_ms = TS0 + from + i;
		assert_int_equal(sb_batch_builder_add(&b, &r), 0);
	}
	assert_int_equal(sb_batch_builder_finish(&b, &out, &len), 0);
	assert_int_equal(sb_log_append(f->log, out, len, 0, on_ack, f), 0);
	sb_batch_builder_fini(&b);
	while (f->acked == done)
		assert_true(sb_ioloop_run_once(f->loop, 10) >= 0);
}

static void fx_init(struct fx *f)
{
	memset(f, 0, sizeof *f);
	assert_int_equal(sb_simfs_new(5, &f->fs), 0);
	assert_int_equal(sb_vfs_mkdir_durable(sb_simfs_vfs(f->fs), DIR), 0);
	open_log(f);
	for (int64_t o = 0; o < RECORDS; o += 5)
		append(f, o, 5);
}

static void fx_fini(struct fx *f)
{
	if (f->log)
		close_log(f);
	sb_simfs_free(f->fs);
}

/* Keeps offsets divisible by 3. */
static int keep_third(void *arg, const struct sb_record_view *r)
{
	(void)arg;
	return r->offset % 3 == 0;
}

/* Reads the whole log: offsets increasing, each record's bytes right,
 * ending at RECORDS (plus extra). Fills present[o]. Returns the count. */
static int read_check(struct sb_log *log, int64_t end, uint8_t *present)
{
	int64_t at = 0, prev = -1;
	int n = 0;
	memset(present, 0, (size_t)end);
	for (;;) {
		struct sb_log_read rd;
		assert_int_equal(sb_log_read(log, at, 8192, &rd), 0);
		if (rd.len == 0) {
			if (rd.next_offset > at) {
				at = rd.next_offset;
				continue;
			}
			break;
		}
		for (size_t p = 0; p < rd.len;) {
			struct sb_batch_header h;
			struct sb_record_iter it;
			struct sb_record_view r;
			assert_int_equal(sb_batch_parse_header(rd.data + p, rd.len - p, &h), 0);
			sb_record_iter_init(&it, rd.data + p, &h);
			while (sb_record_iter_next(&it, &r) == 1) {
				char key[16], val[32];
				int kl = snprintf(key, sizeof key, "k%d", (int)(r.offset % 7));
				int vl = snprintf(val, sizeof val, "v%lld", (long long)r.offset);
				assert_true(r.offset > prev);
				assert_int_equal(r.key_len, kl);
				assert_memory_equal(r.key, key, (size_t)kl);
				assert_int_equal(r.value_len, vl);
				assert_memory_equal(r.value, val, (size_t)vl);
				assert_true(r.offset < end);
				present[r.offset] = 1;
				prev = r.offset;
				n++;
			}
			p += sb_batch_total_bytes(&h);
		}
		at = rd.next_offset;
		free(rd.buf);
	}
	assert_int_equal(at, end);
	return n;
}

static void test_rewrite_keeps_what_it_is_told_and_the_last_record(void **state)
{
	struct fx f;
	int64_t bases[64];
	uint32_t n;
	uint8_t present[RECORDS + 10];
	(void)state;
	fx_init(&f);
	assert_int_equal(sb_log_sealed_bases(f.log, bases, NULL, 64, &n), 0);
	assert_true(n >= 3);
	struct sb_log_info before;
	sb_log_info(f.log, &before);
	/* A reader holding the segment's old bytes. */
	struct sb_log_read old;
	assert_int_equal(sb_log_read(f.log, bases[1], 1 << 20, &old), 0);
	struct sb_clean_stats st;
	assert_int_equal(sb_log_rewrite_sealed(f.log, bases[1], keep_third, NULL, &st), 0);
	assert_true(st.records_dropped > 0 && st.bytes_after < st.bytes_before);
	free(old.buf); /* its bytes were intact to the end */
	read_check(f.log, RECORDS, present);
	for (int64_t o = 0; o < RECORDS; o++) {
		int in_seg = o >= bases[1] && o < bases[2];
		int want = !in_seg || o % 3 == 0 || o == bases[2] - 1;
		if (present[o] != want)
			fail_msg("offset %lld: present %d, want %d", (long long)o, present[o], want);
	}
	/* Reading at an offset inside a gap returns the next record. */
	int64_t gap = bases[1];
	while (gap % 3 == 0)
		gap++;
	struct sb_log_read rd;
	struct sb_batch_header gh;
	assert_int_equal(sb_log_read(f.log, gap, 1 << 20, &rd), 0);
	assert_true(rd.len > 0);
	assert_int_equal(sb_batch_parse_header(rd.data, rd.len, &gh), 0);
	assert_true(gh.base_offset > gap);
	free(rd.buf);
	/* Keeping everything changes nothing; a segment that is not sealed is not one. */
	assert_int_equal(sb_log_rewrite_sealed(f.log, bases[0], keep_third, NULL, &st), 0);
	struct sb_log_info info;
	sb_log_info(f.log, &info);
	assert_int_equal(sb_log_rewrite_sealed(f.log, (int64_t)info.active_base, keep_third, NULL, &st),
			 SB_ENOTFOUND);
	/* Restart: the same records; appends go on. */
	close_log(&f);
	open_log(&f);
	sb_log_info(f.log, &info);
	assert_int_equal(info.stable_end, before.stable_end);
	int count = read_check(f.log, RECORDS, present);
	append(&f, RECORDS, 5);
	assert_int_equal(read_check(f.log, RECORDS + 5, present), count + 5);
	fx_fini(&f);
}

/* The kept set of segment [a, b) after keep_third: all, or exactly the kept
 * ones. Returns 0 (old), 1 (new), or fails. */
static int segment_state(const uint8_t *present, int64_t a, int64_t b)
{
	int old = 1, neu = 1;
	for (int64_t o = a; o < b; o++) {
		old &= present[o] == 1;
		neu &= present[o] == (o % 3 == 0 || o == b - 1);
	}
	if (!old && !neu)
		fail_msg("segment [%lld, %lld) is neither its old nor its cleaned self", (long long)a, (long long)b);
	return neu && !old;
}

static void test_power_loss_at_every_step_of_a_rewrite(void **state)
{
	uint8_t present[RECORDS + 10];
	uint64_t ops = 0;
	int64_t bases[64];
	uint32_t n;
	int outcomes[2] = {0, 0}, runs = 0;
	(void)state;
	{ /* Dry run: how many file operations a rewrite makes. */
		struct fx f;
		struct sb_clean_stats st;
		fx_init(&f);
		assert_int_equal(sb_log_sealed_bases(f.log, bases, NULL, 64, &n), 0);
		uint64_t start = sb_simfs_op_count(f.fs);
		assert_int_equal(sb_log_rewrite_sealed(f.log, bases[1], keep_third, NULL, &st), 0);
		ops = sb_simfs_op_count(f.fs) - start;
		fx_fini(&f);
	}
	assert_true(ops > 5);
	for (int mode = 0; mode < 2; mode++)
		for (uint64_t k = 0; k <= ops; k++) {
			struct fx f;
			struct sb_clean_stats st;
			fx_init(&f);
			sb_simfs_power_off_at(f.fs, sb_simfs_op_count(f.fs) + k);
			int rc = sb_log_rewrite_sealed(f.log, bases[1], keep_third, NULL, &st);
			(void)rc; /* fails once the power is off (the log may fail-stop) */
			close_log(&f);
			sb_simfs_crash(f.fs, mode ? SB_SIMFS_CRASH_RANDOM : SB_SIMFS_CRASH_DROP_UNSYNCED);
			open_log(&f);
			read_check(f.log, RECORDS, present);
			for (int64_t o = 0; o < RECORDS; o++)
				if ((o < bases[1] || o >= bases[2]) && !present[o])
					fail_msg("k=%llu mode=%d: offset %lld of another segment is gone", (unsigned long long)k,
						 mode, (long long)o);
			outcomes[segment_state(present, bases[1], bases[2])]++;
			append(&f, RECORDS, 5);
			read_check(f.log, RECORDS + 5, present);
			fx_fini(&f);
			runs++;
		}
	printf("[clean] %d power cuts over %llu ops of a rewrite (2 crash modes): %d old segment, %d cleaned\n", runs,
	       (unsigned long long)ops, outcomes[0], outcomes[1]);
	assert_true(outcomes[0] > 0 && outcomes[1] > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rewrite_keeps_what_it_is_told_and_the_last_record),
		cmocka_unit_test(test_power_loss_at_every_step_of_a_rewrite),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
