/* test_retention.c - retention by bytes and by age deletes whole sealed
 * segments oldest first, advances the log start, never touches the active
 * segment, and is safe for concurrent readers. */
#include "sb_test.h"
#include "sb_test_batch.h"

#include "sb_ioloop.h"
#include "sb_limits.h"
#include "sb_log.h"
#include "sb_segment.h"
#include "sb_vfs.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TS0 1700000000000ll

struct ctx {
	char *dir;
	struct sb_ioloop *loop;
	struct sb_log *log;
	int64_t acked, next_id;
};

static void on_ack(void *arg, int64_t base, int result)
{
	struct ctx *c = arg;
	(void)base;
	assert_int_equal(result, 0);
	__atomic_fetch_add(&c->acked, 1, __ATOMIC_RELEASE);
}

static void ctx_open(struct ctx *c, const char *name, int64_t retention_bytes, int64_t retention_ms)
{
	struct sb_log_config cfg;
	memset(c, 0, sizeof *c);
	c->dir = sbt_tmpdir(name);
	sb_log_config_default(&cfg);
	cfg.segment_bytes = 8192;
	cfg.retention_bytes = retention_bytes;
	cfg.retention_ms = retention_ms;
	assert_int_equal(sb_ioloop_new(sbt_open_aio(), 5, &c->loop), 0);
	assert_int_equal(sb_log_open(sb_vfs_posix(), c->loop, c->dir, "r/0", &cfg, &c->log), 0);
}

static void ctx_close(struct ctx *c)
{
	sb_log_close(c->log);
	sb_ioloop_free(c->loop);
	assert_int_equal(sb_vfs_remove_tree(sb_vfs_posix(), c->dir), 0);
	free(c->dir);
}

/* Appends n batches of 10 x 100 B records with timestamps TS0 + id. */
static void fill(struct ctx *c, int n, int64_t ts0)
{
	int64_t want = c->acked + n;
	for (int i = 0; i < n; i++) {
		size_t len;
		uint8_t *b = sbt_batch((uint64_t)c->next_id, 10, 100, ts0, &len);
		assert_int_equal(sb_log_append(c->log, b, len, 0, on_ack, c), 0);
		free(b);
		c->next_id += 10;
	}
	while (c->acked < want)
		assert_true(sb_ioloop_run_once(c->loop, 10) >= 0);
}

static int segment_file_exists(struct ctx *c, int64_t base)
{
	char path[SB_PATH_MAX];
	struct stat st;
	sb_segment_path(c->dir, base, ".log", path);
	return stat(path, &st) == 0;
}

static void test_retention_by_bytes_deletes_oldest_segments(void **state)
{
	struct ctx c;
	struct sb_log_info before, after;
	(void)state;
	ctx_open(&c, "ret-bytes", 20000, -1);
	fill(&c, 60, TS0); /* ~70 KiB over ~9 segments */
	sb_log_info(c.log, &before);
	assert_true(before.segments >= 6);
	int n = sb_log_apply_retention(c.log, TS0);
	assert_true(n > 0);
	sb_log_info(c.log, &after);
	assert_int_equal(after.segments, before.segments - (uint32_t)n);
	assert_true(after.size_bytes >= 20000 - 8192 && after.size_bytes < 20000 + 8192);
	assert_true(after.log_start > 0);
	assert_int_equal(after.stable_end, before.stable_end);
	assert_false(segment_file_exists(&c, 0));
	assert_true(segment_file_exists(&c, after.log_start));
	struct sb_log_read rd;
	assert_int_equal(sb_log_read(c.log, after.log_start - 1, 1 << 20, &rd), SB_ERANGE_LOW);
	assert_int_equal(rd.log_start, after.log_start);
	assert_int_equal(sb_log_read(c.log, after.log_start, 1 << 20, &rd), 0);
	assert_true(sbt_check_batches(rd.data, rd.len, 100, TS0, after.log_start) > 0);
	free(rd.buf);
	/* Applying again with nothing over the limit deletes nothing. */
	assert_int_equal(sb_log_apply_retention(c.log, TS0), 0);
	/* Reopen: the start offset is where retention left it. */
	sb_log_close(c.log);
	struct sb_log_config cfg;
	sb_log_config_default(&cfg);
	cfg.segment_bytes = 8192;
	cfg.retention_ms = -1;
	assert_int_equal(sb_log_open(sb_vfs_posix(), c.loop, c.dir, "r/0", &cfg, &c.log), 0);
	sb_log_info(c.log, &before);
	assert_int_equal(before.log_start, after.log_start);
	ctx_close(&c);
}

static void test_retention_by_age_keeps_recent_and_active(void **state)
{
	struct ctx c;
	struct sb_log_info info;
	(void)state;
	ctx_open(&c, "ret-age", -1, 60000);
	fill(&c, 40, TS0);            /* old records */
	assert_int_equal(sb_log_roll(c.log), 0);
	int64_t recent_start = c.next_id;
	fill(&c, 20, TS0 + 3600000); /* an hour later */
	int n = sb_log_apply_retention(c.log, TS0 + 3600000 + 1000);
	assert_true(n > 0);
	sb_log_info(c.log, &info);
	assert_int_equal(info.log_start, recent_start);
	/* Everything old: even so the active segment stays. */
	n = sb_log_apply_retention(c.log, TS0 + 999999999999ll);
	sb_log_info(c.log, &info);
	assert_true(info.segments == 1);
	assert_int_equal(info.stable_end, c.next_id);
	ctx_close(&c);
}

struct reader {
	struct sb_log *log;
	int stop;
	long reads, errors;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		struct sb_log_info info;
		struct sb_log_read rd;
		sb_log_info(r->log, &info);
		int rc = sb_log_read(r->log, info.log_start, 64 << 10, &rd);
		if (rc == 0 && rd.len > 0 && sbt_check_batches(rd.data, rd.len, 100, TS0, -1) <= 0)
			r->errors++;
		else if (rc != 0 && rc != SB_ERANGE_LOW)
			r->errors++;
		free(rd.buf);
		r->reads++;
	}
	return NULL;
}

static void test_retention_is_safe_for_concurrent_readers(void **state)
{
	struct ctx c;
	struct reader r = {0};
	pthread_t th;
	(void)state;
	ctx_open(&c, "ret-race", 16384, -1);
	r.log = c.log;
	assert_int_equal(pthread_create(&th, NULL, reader_main, &r), 0);
	for (int round = 0; round < 30; round++) {
		fill(&c, 10, TS0);
		assert_true(sb_log_apply_retention(c.log, TS0) >= 0);
	}
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	assert_true(r.reads > 0);
	assert_int_equal(r.errors, 0);
	ctx_close(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_retention_by_bytes_deletes_oldest_segments),
		cmocka_unit_test(test_retention_by_age_keeps_recent_and_active),
		cmocka_unit_test(test_retention_is_safe_for_concurrent_readers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
