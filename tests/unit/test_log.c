/* test_log.c - the partition log on the real file system, once per I/O
 * backend (SB_TEST_IO): appends and acks, reads at every boundary, rolls,
 * recovery, torn tails, index rebuilds, back-pressure, fencing, timestamps. */
#include "sb_test.h"
#include "sb_test_batch.h"

#include "sb_aio.h"
#include "sb_batch.h"
#include "sb_ioloop.h"
#include "sb_limits.h"
#include "sb_log.h"
#include "sb_log_internal.h" /* staging memory, for the idle-trim test */
#include "sb_path.h"
#include "sb_segment.h"
#include "sb_vfs.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TS0 1700000000000ll

struct fixture {
	char *dir;
	struct sb_ioloop *loop;
	struct sb_log *log;
	struct sb_log_config cfg;
};

struct acks {
	int64_t n, failed, last_base;
	int last_err;
	int64_t bases[4096];
};

static void on_ack(void *arg, int64_t base, int result)
{
	struct acks *a = arg;
	if (result) {
		a->failed++;
		a->last_err = result;
	} else {
		if (a->n < 4096)
			a->bases[a->n] = base;
		a->n++;
		a->last_base = base;
	}
}

static void fx_open(struct fixture *f, int threaded)
{
	if (!f->loop) {
		assert_int_equal(sb_ioloop_new(sbt_open_aio(), 5, &f->loop), 0);
		if (threaded)
			assert_int_equal(sb_ioloop_start(f->loop), 0);
	}
	assert_int_equal(sb_log_open(sb_vfs_posix(), f->loop, f->dir, "t/0", &f->cfg, &f->log), 0);
}

static void fx_init(struct fixture *f, const char *name, int threaded)
{
	memset(f, 0, sizeof *f);
	f->dir = sbt_tmpdir(name);
	sb_log_config_default(&f->cfg);
	f->cfg.retention_ms = -1; /* test timestamps are years old */
	fx_open(f, threaded);
}

static void fx_fini(struct fixture *f)
{
	sb_log_close(f->log);
	sb_ioloop_free(f->loop);
	int rc = sb_vfs_remove_tree(sb_vfs_posix(), f->dir);
	assert_int_equal(rc, 0);
	free(f->dir);
}

static void run_until_acked(struct fixture *f, struct acks *a, int64_t want)
{
	for (int i = 0; i < 100000 && a->n + a->failed < want; i++)
		assert_true(sb_ioloop_run_once(f->loop, 10) >= 0);
	assert_int_equal(a->n + a->failed, want);
}

/* Appends `batches` batches of `per` records; ids continue from *next_id. */
static void append_many(struct fixture *f, struct acks *a, int batches, uint32_t per, uint32_t vlen,
			uint64_t *next_id)
{
	int64_t want = a->n + a->failed;
	for (int i = 0; i < batches; i++) {
		size_t len;
		uint8_t *b = sbt_batch(*next_id, per, vlen, TS0, &len);
		int rc;
		while ((rc = sb_log_append(f->log, b, len, 0, on_ack, a)) == SB_EBUSY)
			assert_true(sb_ioloop_run_once(f->loop, 1) >= 0);
		assert_int_equal(rc, 0);
		free(b);
		*next_id += per;
		want++;
	}
	run_until_acked(f, a, want);
}

/* Reads everything from `from` to the end and checks every record. */
static int64_t read_all_check(struct sb_log *log, int64_t from, uint32_t vlen, size_t max_bytes)
{
	int64_t at = from, total = 0;
	for (;;) {
		struct sb_log_read rd;
		int rc = sb_log_read(log, at, max_bytes, &rd);
		assert_int_equal(rc, 0);
		if (rd.len == 0)
			break;
		int64_t n = sbt_check_batches(rd.data, rd.len, vlen, TS0, at);
		assert_true(n > 0);
		total += n;
		assert_true(rd.next_offset > at);
		at = rd.next_offset;
		free(rd.buf);
	}
	return total;
}

static void test_appends_are_acked_in_order_and_read_back(void **state)
{
	struct fixture f;
	struct acks a = {0};
	uint64_t id = 0;
	(void)state;
	fx_init(&f, "log-basic", 0);
	append_many(&f, &a, 200, 10, 100, &id);
	assert_int_equal(a.failed, 0);
	for (int i = 0; i < 200; i++)
		assert_int_equal(a.bases[i], i * 10);
	assert_int_equal(read_all_check(f.log, 0, 100, 1 << 20), 2000);
	struct sb_log_info info;
	sb_log_info(f.log, &info);
	assert_int_equal(info.stable_end, 2000);
	assert_int_equal(info.log_start, 0);
	assert_int_equal(info.inflight_bytes, 0);
	fx_fini(&f);
}

static void test_threaded_loop_acks_concurrent_appends(void **state)
{
	struct fixture f;
	struct acks a = {0};
	uint64_t id = 0;
	(void)state;
	fx_init(&f, "log-threaded", 1);
	for (int i = 0; i < 500; i++) {
		size_t len;
		uint8_t *b = sbt_batch(id, 20, 64, TS0, &len);
		int rc;
		while ((rc = sb_log_append(f.log, b, len, 0, on_ack, &a)) == SB_EBUSY)
			usleep(100);
		assert_int_equal(rc, 0);
		free(b);
		id += 20;
	}
	for (int i = 0; i < 20000 && __atomic_load_n(&a.n, __ATOMIC_ACQUIRE) < 500; i++)
		usleep(500);
	assert_int_equal(__atomic_load_n(&a.n, __ATOMIC_ACQUIRE), 500);
	assert_int_equal(read_all_check(f.log, 0, 64, 64 << 10), 10000);
	fx_fini(&f);
}

static void test_reads_at_every_boundary(void **state)
{
	struct fixture f;
	struct acks a = {0};
	uint64_t id = 0;
	(void)state;
	memset(&f, 0, sizeof f);
	f.dir = sbt_tmpdir("log-bounds");
	sb_log_config_default(&f.cfg);
	f.cfg.retention_ms = -1;
	f.cfg.segment_bytes = 8192; /* many segments */
	f.cfg.index_interval_bytes = 256;
	fx_open(&f, 0);
	append_many(&f, &a, 300, 7, 50, &id);
	struct sb_log_info info;
	sb_log_info(f.log, &info);
	assert_true(info.segments > 10);
	for (int64_t o = 0; o < (int64_t)id; o++) {
		struct sb_log_read rd;
		assert_int_equal(sb_log_read(f.log, o, 1, &rd), 0);
		assert_true(rd.len > 0);
		/* The first batch returned contains o; only one batch fits 1 byte. */
		struct sb_batch_header h;
		assert_int_equal(sb_batch_verify(rd.data, rd.len, &h), 0);
		assert_int_equal((int64_t)sb_batch_total_bytes(&h), (int64_t)rd.len);
		assert_true(h.base_offset <= o && o < sb_batch_next_offset(&h));
		assert_int_equal(rd.next_offset, sb_batch_next_offset(&h));
		assert_true(sbt_check_batches(rd.data, rd.len, 50, TS0, o) > 0);
		free(rd.buf);
	}
	struct sb_log_read rd;
	assert_int_equal(sb_log_read(f.log, (int64_t)id, 1 << 20, &rd), 0);
	assert_int_equal(rd.len, 0);
	assert_int_equal(sb_log_read(f.log, (int64_t)id + 1, 1 << 20, &rd), SB_ERANGE_HIGH);
	assert_int_equal(rd.stable_end, (int64_t)id);
	assert_int_equal(sb_log_read(f.log, -1, 1 << 20, &rd), SB_ERANGE_LOW);
	fx_fini(&f);
}

struct sealed {
	int n;
	int64_t last_base, last_end;
};

static void on_sealed(void *arg, struct sb_log *log, int64_t base, int64_t end)
{
	struct sealed *s = arg;
	(void)log;
	s->n++;
	assert_int_equal(base, s->last_end); /* contiguous */
	s->last_base = base;
	s->last_end = end;
}

static void test_roll_by_size_seals_and_notifies(void **state)
{
	struct fixture f;
	struct acks a = {0};
	struct sealed s = {0};
	uint64_t id = 0;
	(void)state;
	memset(&f, 0, sizeof f);
	f.dir = sbt_tmpdir("log-roll");
	sb_log_config_default(&f.cfg);
	f.cfg.retention_ms = -1;
	f.cfg.segment_bytes = 16384;
	fx_open(&f, 0);
	struct sb_log_listener l = {.on_sealed = on_sealed, .arg = &s};
	sb_log_set_listener(f.log, &l);
	append_many(&f, &a, 100, 10, 100, &id);
	struct sb_log_info info;
	sb_log_info(f.log, &info);
	assert_int_equal(s.n, (int)info.segments - 1);
	assert_true(s.n >= 5);
	/* Every sealed segment has its index files; none exceeds segment_bytes. */
	char path[SB_PATH_MAX];
	struct stat st;
	sb_segment_path(f.dir, s.last_base, ".index", path);
	assert_int_equal(stat(path, &st), 0);
	sb_segment_path(f.dir, s.last_base, ".timeindex", path);
	assert_int_equal(stat(path, &st), 0);
	sb_segment_path(f.dir, s.last_base, ".log", path);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size <= 16384);
	assert_int_equal(sb_log_roll(f.log), 0);
	assert_int_equal(s.n, (int)info.segments);
	fx_fini(&f);
}

static void test_reopen_recovers_everything(void **state)
{
	struct fixture f;
	struct acks a = {0};
	uint64_t id = 0;
	(void)state;
	memset(&f, 0, sizeof f);
	f.dir = sbt_tmpdir("log-reopen");
	sb_log_config_default(&f.cfg);
	f.cfg.retention_ms = -1;
	f.cfg.segment_bytes = 32768;
	fx_open(&f, 0);
	append_many(&f, &a, 100, 10, 100, &id);
	sb_log_close(f.log);
	fx_open(&f, 0);
	struct sb_log_info info;
	sb_log_info(f.log, &info);
	assert_int_equal(info.stable_end, 1000);
	assert_int_equal(read_all_check(f.log, 0, 100, 1 << 20), 1000);
	append_many(&f, &a, 10, 10, 100, &id); /* continues at 1000 */
	assert_int_equal(a.last_base, 1090);
	assert_int_equal(read_all_check(f.log, 0, 100, 1 << 20), 1100);
	fx_fini(&f);
}

static void test_missing_or_corrupt_index_is_rebuilt(void **state)
{
	struct fixture f;
	struct acks a = {0};
	uint64_t id = 0;
	char path[SB_PATH_MAX];
	(void)state;
	memset(&f, 0, sizeof f);
	f.dir = sbt_tmpdir("log-index");
	sb_log_config_default(&f.cfg);
	f.cfg.retention_ms = -1;
	f.cfg.segment_bytes = 32768;
	f.cfg.index_interval_bytes = 512;
	fx_open(&f, 0);
	append_many(&f, &a, 60, 10, 100, &id);
	sb_log_close(f.log);
	sb_segment_path(f.dir, 0, ".index", path);
	assert_int_equal(unlink(path), 0);
	/* Corrupt the second sealed segment's index: a flipped byte. */
	struct sb_log *tmp;
	fx_open(&f, 0);
	tmp = f.log;
	struct sb_log_info info;
	sb_log_info(tmp, &info);
	assert_true(info.segments >= 3);
	sb_log_close(tmp);
	sb_segment_path(f.dir, 0, ".index", path);
	struct stat st;
	assert_int_equal(stat(path, &st), 0); /* rebuilt and saved */
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t junk = 0xA5;
	assert_int_equal(pwrite(fd, &junk, 1, 44), 1);
	close(fd);
	fx_open(&f, 0);
	assert_int_equal(read_all_check(f.log, 0, 100, 1 << 20), 600);
	for (int64_t o = 0; o < 600; o += 37) {
		struct sb_log_read rd;
		assert_int_equal(sb_log_read(f.log, o, 1, &rd), 0);
		assert_true(sbt_check_batches(rd.data, rd.len, 100, TS0, o) > 0);
		free(rd.buf);
	}
	fx_fini(&f);
}

static void append_bytes(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	close(fd);
}

struct cut_count {
	int n;
};

static void test_torn_tail_is_truncated_and_kept(void **state)
{
	struct fixture f;
	struct acks a = {0};
	uint64_t id = 0;
	char path[SB_PATH_MAX];
	(void)state;
	fx_init(&f, "log-torn", 0);
	append_many(&f, &a, 10, 10, 100, &id);
	sb_log_close(f.log);
	/* A torn write: the first 300 bytes of the next batch. */
	size_t len;
	uint8_t *b = sbt_batch(100, 10, 100, TS0, &len);
	sb_batch_set_base_offset(b, 100);
	sb_segment_path(f.dir, 0, ".log", path);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	off_t good = st.st_size;
	append_bytes(path, b, 300);
	free(b);
	fx_open(&f, 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, good);
	char cut[SB_PATH_MAX + 64];
	snprintf(cut, sizeof cut, "%s.cut-%lld", path, (long long)good);
	assert_int_equal(stat(cut, &st), 0);
	assert_int_equal(st.st_size, 300);
	assert_int_equal(read_all_check(f.log, 0, 100, 1 << 20), 100);
	append_many(&f, &a, 1, 10, 100, &id);
	assert_int_equal(a.last_base, 100);
	fx_fini(&f);
}

static void test_backpressure_returns_busy_not_memory(void **state)
{
	struct fixture f;
	struct acks a = {0};
	(void)state;
	memset(&f, 0, sizeof f);
	f.dir = sbt_tmpdir("log-busy");
	sb_log_config_default(&f.cfg);
	f.cfg.retention_ms = -1;
	f.cfg.inflight_bytes_max = SB_LOG_INFLIGHT_BYTES_MIN;
	fx_open(&f, 0); /* loop not driven: nothing completes */
	size_t len;
	uint8_t *b = sbt_batch(0, 10, 1000, TS0, &len);
	int accepted = 0, rc;
	while ((rc = sb_log_append(f.log, b, len, 0, on_ack, &a)) == 0)
		accepted++;
	assert_int_equal(rc, SB_EBUSY);
	assert_true((uint64_t)accepted * len <= SB_LOG_INFLIGHT_BYTES_MIN);
	assert_true(accepted > 0);
	run_until_acked(&f, &a, accepted);
	assert_int_equal(sb_log_append(f.log, b, len, 0, on_ack, &a), 0);
	run_until_acked(&f, &a, accepted + 1);
	free(b);
	fx_fini(&f);
}

static void test_bad_batches_and_old_epochs_are_rejected(void **state)
{
	struct fixture f;
	struct acks a = {0};
	(void)state;
	fx_init(&f, "log-reject", 0);
	size_t len;
	uint8_t *b = sbt_batch(0, 3, 10, TS0, &len);
	assert_int_equal(sb_log_append(f.log, b, 0, 0, on_ack, &a), SB_EBADBATCH);
	assert_int_equal(sb_log_append(f.log, b, len - 1, 0, on_ack, &a), SB_EBADBATCH);
	b[len - 1] ^= 1;
	assert_int_equal(sb_log_append(f.log, b, len, 0, on_ack, &a), SB_EBADBATCH);
	b[len - 1] ^= 1;
	assert_int_equal(sb_log_append(f.log, b, len, 5, on_ack, &a), 0);
	assert_int_equal(sb_log_append(f.log, b, len, 4, on_ack, &a), SB_EFENCED);
	run_until_acked(&f, &a, 1);
	struct sb_log_read rd;
	assert_int_equal(sb_log_read(f.log, 0, 1 << 20, &rd), 0);
	struct sb_batch_header h;
	assert_int_equal(sb_batch_verify(rd.data, rd.len, &h), 0);
	assert_int_equal(h.leader_epoch, 5);
	free(rd.buf);
	free(b);
	sb_log_close(f.log);
	fx_open(&f, 0);
	b = sbt_batch(3, 1, 1, TS0, &len);
	assert_int_equal(sb_log_append(f.log, b, len, 4, on_ack, &a), SB_EFENCED);
	free(b);
	fx_fini(&f);
}

static void test_offset_for_timestamp(void **state)
{
	struct fixture f;
	struct acks a = {0};
	uint64_t id = 0;
	(void)state;
	memset(&f, 0, sizeof f);
	f.dir = sbt_tmpdir("log-time");
	sb_log_config_default(&f.cfg);
	f.cfg.retention_ms = -1;
	f.cfg.segment_bytes = 8192;
	f.cfg.index_interval_bytes = 128;
	fx_open(&f, 0);
	append_many(&f, &a, 100, 5, 40, &id); /* record i has timestamp TS0 + i */
	for (int64_t o = 0; o < 500; o += 7) {
		int64_t got = -1;
		assert_int_equal(sb_log_offset_for_time(f.log, TS0 + o, &got), 0);
		assert_int_equal(got, o);
	}
	int64_t got;
	assert_int_equal(sb_log_offset_for_time(f.log, 0, &got), 0);
	assert_int_equal(got, 0);
	assert_int_equal(sb_log_offset_for_time(f.log, TS0 + 500, &got), SB_ENOTFOUND);
	assert_int_equal(got, 500);
	fx_fini(&f);
}

static void test_fsync_policies_all_ack(void **state)
{
	enum sb_fsync_policy p[3] = {SB_FSYNC_ALWAYS, SB_FSYNC_INTERVAL, SB_FSYNC_NEVER};
	(void)state;
	for (int i = 0; i < 3; i++) {
		struct fixture f;
		struct acks a = {0};
		uint64_t id = 0;
		memset(&f, 0, sizeof f);
		f.dir = sbt_tmpdir("log-policy");
		sb_log_config_default(&f.cfg);
	f.cfg.retention_ms = -1;
		f.cfg.fsync_policy = p[i];
		f.cfg.fsync_interval_ms = 5;
		fx_open(&f, i == 1);
		if (i == 1) {
			for (int k = 0; k < 50; k++) {
				size_t len;
				uint8_t *b = sbt_batch(id, 10, 10, TS0, &len);
				assert_int_equal(sb_log_append(f.log, b, len, 0, on_ack, &a), 0);
				free(b);
				id += 10;
			}
			for (int k = 0; k < 10000 && __atomic_load_n(&a.n, __ATOMIC_ACQUIRE) < 50; k++)
				usleep(200);
			assert_int_equal(__atomic_load_n(&a.n, __ATOMIC_ACQUIRE), 50);
		} else {
			append_many(&f, &a, 50, 10, 10, &id);
		}
		assert_int_equal(read_all_check(f.log, 0, 10, 1 << 20), 500);
		fx_fini(&f);
	}
}

static void on_wake(struct sb_log_waiter *w)
{
	(*(int *)w->arg)++;
}

static void test_tail_waiters_fire_once_on_append(void **state)
{
	struct fixture f;
	struct acks a = {0};
	uint64_t id = 0;
	int woken = 0, woken2 = 0;
	struct sb_log_waiter w = {.fn = on_wake, .arg = &woken}, w2 = {.fn = on_wake, .arg = &woken2};
	(void)state;
	fx_init(&f, "log-waiters", 0);
	assert_int_equal(sb_log_wait(f.log, 0, &w), 0);
	assert_int_equal(sb_log_wait(f.log, 0, &w2), 0);
	assert_int_equal(sb_log_wait_cancel(f.log, &w2), 1); /* disarmed: never fires */
	assert_int_equal(woken, 0);
	append_many(&f, &a, 1, 5, 10, &id);
	assert_int_equal(woken, 1);
	assert_int_equal(woken2, 0);
	assert_int_equal(sb_log_wait_cancel(f.log, &w), 0); /* already fired */
	append_many(&f, &a, 1, 5, 10, &id);
	assert_int_equal(woken, 1); /* once per arming */
	assert_int_equal(sb_log_wait(f.log, 3, &w), 1); /* end already past 3 */
	assert_int_equal(sb_log_wait(f.log, 10, &w), 0);
	append_many(&f, &a, 1, 5, 10, &id);
	assert_int_equal(woken, 2);
	fx_fini(&f);
}

static void test_trusted_appends_check_structure_and_read_back(void **state)
{
	struct fixture f;
	struct acks a = {0};
	(void)state;
	fx_init(&f, "log-trusted", 0);
	size_t l1, l2;
	uint8_t *b1 = sbt_batch(0, 3, 10, TS0, &l1), *b2 = sbt_batch(3, 4, 10, TS0, &l2);
	uint8_t *two = malloc(l1 + l2 + 8);
	memcpy(two, b1, l1);
	memcpy(two + l1, b2, l2);
	memset(two + l1 + l2, 0, 8);
	assert_int_equal(sb_log_append_trusted(f.log, two, 0, 0, on_ack, &a), SB_EBADBATCH);
	assert_int_equal(sb_log_append_trusted(f.log, two, l1 - 1, 0, on_ack, &a), SB_EBADBATCH);
	assert_int_equal(sb_log_append_trusted(f.log, two, l1 + 30, 0, on_ack, &a), SB_EBADBATCH);
	assert_int_equal(sb_log_append_trusted(f.log, two, l1 + l2 + 8, 0, on_ack, &a), SB_EBADBATCH);
	two[SB_BATCH_OFF_MAGIC] ^= 0x40;
	assert_int_equal(sb_log_append_trusted(f.log, two, l1 + l2, 0, on_ack, &a), SB_EBADBATCH);
	two[SB_BATCH_OFF_MAGIC] ^= 0x40;
	assert_int_equal(sb_log_append_trusted(f.log, two, l1 + l2, 2, on_ack, &a), 0);
	assert_int_equal(sb_log_append_trusted(f.log, b1, l1, 1, on_ack, &a), SB_EFENCED);
	run_until_acked(&f, &a, 1);
	assert_int_equal(a.bases[0], 0);
	assert_int_equal(a.failed, 0);
	assert_int_equal(read_all_check(f.log, 0, 10, 1 << 20), 7);
	free(b1);
	free(b2);
	free(two);
	fx_fini(&f);
}

/* One append of two batches that together overflow the segment: readers must
 * see both or neither, so the append stays whole in one segment. */
static void test_an_append_is_never_split_across_segments(void **state)
{
	struct fixture f;
	struct acks a = {0};
	(void)state;
	memset(&f, 0, sizeof f);
	f.dir = sbt_tmpdir("log-whole");
	sb_log_config_default(&f.cfg);
	f.cfg.retention_ms = -1;
	f.cfg.segment_bytes = 4096;
	fx_open(&f, 0);
	size_t l1, l2, l3;
	uint8_t *b1 = sbt_batch(0, 10, 240, TS0, &l1), *b2 = sbt_batch(10, 10, 240, TS0, &l2);
	uint8_t *b3 = sbt_batch(20, 10, 240, TS0, &l3);
	uint8_t *two = malloc(l1 + l2);
	memcpy(two, b1, l1);
	memcpy(two + l1, b2, l2);
	assert_true(l1 < 4096 && l1 + l2 > 4096);
	assert_int_equal(sb_log_append(f.log, two, l1 + l2, 0, on_ack, &a), 0);
	assert_int_equal(sb_log_append(f.log, b3, l3, 0, on_ack, &a), 0);
	for (int i = 0; i < 100000 && a.n + a.failed < 2; i++) {
		struct sb_log_info info;
		sb_log_info(f.log, &info);
		assert_true(info.stable_end == 0 || info.stable_end == 20 || info.stable_end == 30);
		assert_true(sb_ioloop_run_once(f.loop, 10) >= 0);
	}
	assert_int_equal(a.n, 2);
	assert_int_equal(a.bases[1], 20);
	char path[SB_PATH_MAX];
	struct stat st;
	sb_segment_path(f.dir, 0, ".log", path);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal((size_t)st.st_size, l1 + l2);
	sb_segment_path(f.dir, 20, ".log", path);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(read_all_check(f.log, 0, 240, 1 << 20), 30);
	free(b1);
	free(b2);
	free(b3);
	free(two);
	fx_fini(&f);
}

/* Every read returns the batch holding the offset, then following batches
 * while the total stays within max_bytes: checked against a model for every
 * offset and many limits, with several batches per index entry. */
static void test_reads_return_whole_batches_within_max_bytes(void **state)
{
	struct fixture f;
	struct acks a = {0};
	int64_t base[120], size[120];
	uint64_t id = 0;
	(void)state;
	memset(&f, 0, sizeof f);
	f.dir = sbt_tmpdir("log-maxbytes");
	sb_log_config_default(&f.cfg);
	f.cfg.retention_ms = -1;
	f.cfg.segment_bytes = 16384;
	f.cfg.index_interval_bytes = 700;
	fx_open(&f, 0);
	for (int i = 0; i < 120; i++) {
		size_t len;
		/* Uneven offsets per index entry: interpolated lookups must cope. */
		uint32_t n = i < 80 ? 1 + (uint32_t)(i * 7 % 5) : 30 + (uint32_t)(i % 11);
		uint8_t *b = sbt_batch(id, n, 30, TS0, &len);
		base[i] = (int64_t)id;
		size[i] = (int64_t)len;
		assert_int_equal(sb_log_append(f.log, b, len, 0, on_ack, &a), 0);
		free(b);
		id += n;
	}
	run_until_acked(&f, &a, 120);
	int seg_start[120]; /* a read never crosses into the next segment */
	for (int i = 0; i < 120; i++) {
		char path[SB_PATH_MAX];
		struct stat st;
		sb_segment_path(f.dir, base[i], ".log", path);
		seg_start[i] = stat(path, &st) == 0;
	}
	assert_true(seg_start[0]);
	const size_t limits[] = {1, 60, 61, 150, 300, 1000, 5000, 1 << 20};
	for (int k = 0; k < 120; k++) {
		int64_t end = k + 1 < 120 ? base[k + 1] : (int64_t)id;
		for (int64_t o = base[k]; o < end; o += o + 1 < end ? 1 + (end - o) / 3 : 1) {
			for (size_t li = 0; li < sizeof limits / sizeof *limits; li++) {
				struct sb_log_read rd;
				assert_int_equal(sb_log_read(f.log, o, limits[li], &rd), 0);
				int64_t want = size[k];
				int j = k + 1;
				struct sb_batch_header h;
				assert_int_equal(sb_batch_verify(rd.data, rd.len, &h), 0);
				assert_int_equal(h.base_offset, base[k]);
				while (j < 120 && !seg_start[j] && want + size[j] <= (int64_t)limits[li])
					want += size[j++];
				assert_int_equal((int64_t)rd.len, want);
				assert_int_equal(rd.next_offset, j < 120 ? base[j] : (int64_t)id);
				assert_true(sbt_check_batches(rd.data, rd.len, 30, TS0, o) > 0);
				free(rd.buf);
			}
		}
	}
	fx_fini(&f);
}

static void test_idle_log_gives_back_staging_memory(void **state)
{
	struct fixture f;
	struct acks a = {0};
	uint64_t id = 0;
	(void)state;
	fx_init(&f, "log-trim", 0);
	append_many(&f, &a, 50, 10, 100, &id);
	pthread_mutex_lock(&f.log->lock);
	assert_non_null(f.log->chunk_head);
	pthread_mutex_unlock(&f.log->lock);
	int idle = 0;
	for (int i = 0; i < 1000 && !idle; i++) {
		assert_true(sb_ioloop_run_once(f.loop, 5) >= 0);
		pthread_mutex_lock(&f.log->lock);
		idle = !f.log->chunk_head && !f.log->pool && f.log->npool == 0;
		pthread_mutex_unlock(&f.log->lock);
	}
	assert_true(idle); /* within SB_CHUNK_TRIM_MS or two */
	append_many(&f, &a, 5, 10, 100, &id); /* and staging comes back */
	assert_int_equal(read_all_check(f.log, 0, 100, 1 << 20), 550);
	fx_fini(&f);
}

struct appender_thread {
	struct sb_log *log;
	struct acks *acks;
	int n;
};

static void *append_loop(void *arg)
{
	struct appender_thread *t = arg;
	uint64_t id = 0;
	for (int i = 0; i < t->n; i++) {
		size_t len;
		uint8_t *b = sbt_batch(id, 10, 100, TS0, &len);
		int rc;
		while ((rc = sb_log_append(t->log, b, len, 0, on_ack, t->acks)) == SB_EBUSY)
			usleep(50);
		assert_int_equal(rc, 0);
		free(b);
		id += 10;
	}
	return NULL;
}

struct roller {
	struct sb_log *log;
	int rc;
};

static void *roll_once(void *arg)
{
	struct roller *r = arg;
	r->rc = sb_log_roll(r->log);
	return NULL;
}

/* A roll asked for while writes and datasyncs are in flight happens once
 * they are done (the request must survive being seen by a completion). */
static void test_roll_request_while_appending_is_served(void **state)
{
	struct fixture f;
	struct acks a = {0};
	pthread_t th;
	(void)state;
	fx_init(&f, "log-rollreq", 1);
	struct appender_thread t = {.log = f.log, .acks = &a, .n = 3000};
	assert_int_equal(pthread_create(&th, NULL, append_loop, &t), 0);
	for (int i = 0; i < 3; i++) {
		struct roller r = {.log = f.log, .rc = -1};
		pthread_t rt;
		struct timespec dl;
		usleep(2000);
		assert_int_equal(pthread_create(&rt, NULL, roll_once, &r), 0);
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += 20;
		assert_int_equal(pthread_timedjoin_np(rt, NULL, &dl), 0); /* else the request was lost */
		assert_int_equal(r.rc, 0);
	}
	assert_int_equal(pthread_join(th, NULL), 0);
	for (int i = 0; i < 20000 && __atomic_load_n(&a.n, __ATOMIC_ACQUIRE) < 3000; i++)
		usleep(500);
	assert_int_equal(__atomic_load_n(&a.n, __ATOMIC_ACQUIRE), 3000);
	struct sb_log_info info;
	sb_log_info(f.log, &info);
	assert_true(info.segments >= 2);
	assert_int_equal(read_all_check(f.log, 0, 100, 1 << 20), 30000);
	fx_fini(&f);
}

/* A follower's log takes the leader's batches as they are: offsets and
 * epochs kept, gaps, overlaps and epoch regressions refused; the bytes read
 * back are the leader's bytes. */
static void test_replica_appends_keep_the_leaders_offsets_and_bytes(void **state)
{
	struct fixture lead, fol;
	struct acks a = {0}, b = {0};
	uint64_t id = 0;
	(void)state;
	fx_init(&lead, "log-replica-leader", 0);
	fx_init(&fol, "log-replica-follower", 0);
	append_many(&lead, &a, 4, 10, 20, &id);                  /* epoch 0: [0, 40) */
	size_t len;
	uint8_t *e3 = sbt_batch(id, 5, 20, TS0, &len);
	assert_int_equal(sb_log_append(lead.log, e3, len, 3, on_ack, &a), 0); /* epoch 3: [40, 45) */
	run_until_acked(&lead, &a, 5);
	free(e3);

	struct sb_log_read rd;
	assert_int_equal(sb_log_read(lead.log, 0, 1 << 20, &rd), 0);
	assert_int_equal(rd.next_offset, 45);
	/* Not the next offset: refused; a batch from the middle: refused. */
	struct sb_batch_header h;
	assert_int_equal(sb_batch_parse_header(rd.data, rd.len, &h), 0);
	size_t first = (size_t)sb_batch_total_bytes(&h);
	assert_int_equal(sb_log_append_replica(fol.log, rd.data + first, rd.len - first, on_ack, &b),
			 SB_EINVAL);
	assert_int_equal(sb_log_append_replica(fol.log, rd.data, first, on_ack, &b), 0);
	assert_int_equal(sb_log_append_replica(fol.log, rd.data, first, on_ack, &b), SB_EINVAL);
	assert_int_equal(sb_log_append_replica(fol.log, rd.data + first, rd.len - first, on_ack, &b), 0);
	run_until_acked(&fol, &b, 2);
	assert_int_equal(b.bases[0], 0);
	assert_int_equal(b.bases[1], 10);

	struct sb_log_read rf;
	assert_int_equal(sb_log_read(fol.log, 0, 1 << 20, &rf), 0);
	assert_int_equal(rf.len, rd.len);
	assert_memory_equal(rf.data, rd.data, rd.len);
	struct sb_log_info li;
	sb_log_info(fol.log, &li);
	assert_int_equal(li.last_epoch, 3);
	free(rf.buf);

	/* A batch of an older epoch after epoch 3: fenced. */
	uint8_t *old = sbt_batch(45, 1, 20, TS0, &len);
	sb_batch_set_base_offset(old, 45);
	sb_batch_set_leader_epoch(old, 2);
	assert_int_equal(sb_log_append_replica(fol.log, old, len, on_ack, &b), SB_EFENCED);
	free(old);
	free(rd.buf);
	fx_fini(&fol);
	fx_fini(&lead);
}

/* The high-watermark cap: readers, offset lookups and waiters stop at the
 * cap while replication reads and stable waiters see every acknowledged
 * record; raising the cap fires the waiters it satisfies, and the readable
 * end never goes back. */
static void test_hw_cap_bounds_readers_but_not_replication(void **state)
{
	struct fixture f;
	struct acks a = {0};
	uint64_t id = 0;
	int woken = 0, woken_stable = 0, woken_far = 0;
	struct sb_log_waiter w = {.fn = on_wake, .arg = &woken};
	struct sb_log_waiter ws = {.fn = on_wake, .arg = &woken_stable};
	struct sb_log_waiter wf = {.fn = on_wake, .arg = &woken_far};
	(void)state;
	fx_init(&f, "log-hwcap", 0);
	sb_log_set_hw_cap(f.log, 0);
	assert_int_equal(sb_log_wait(f.log, 0, &w), 0);
	assert_int_equal(sb_log_wait_stable(f.log, 0, &ws), 0);
	assert_int_equal(sb_log_wait(f.log, 25, &wf), 0);
	append_many(&f, &a, 3, 10, 20, &id); /* [0, 30) acknowledged */
	assert_int_equal(woken_stable, 1);
	assert_int_equal(woken, 0);

	struct sb_log_read rd;
	assert_int_equal(sb_log_read(f.log, 0, 1 << 20, &rd), 0);
	assert_int_equal(rd.len, 0); /* nothing readable yet */
	assert_int_equal(sb_log_read(f.log, 5, 1 << 20, &rd), SB_ERANGE_HIGH);
	assert_int_equal(rd.stable_end, 0);
	assert_int_equal(sb_log_read_stable(f.log, 0, 1 << 20, &rd), 0);
	assert_int_equal(rd.next_offset, 30);
	assert_int_equal(rd.high_watermark, 0);
	free(rd.buf);

	sb_log_set_hw_cap(f.log, 20); /* fires w, not wf (waits past 25) */
	assert_int_equal(woken, 1);
	assert_int_equal(woken_far, 0);
	assert_int_equal(sb_log_read(f.log, 0, 1 << 20, &rd), 0);
	assert_int_equal(rd.next_offset, 20); /* the third batch is cut off */
	assert_int_equal(sbt_check_batches(rd.data, rd.len, 20, TS0, 0), 20);
	free(rd.buf);
	struct sb_log_info li;
	sb_log_info(f.log, &li);
	assert_int_equal(li.high_watermark, 20);
	assert_int_equal(li.stable_end, 30);

	sb_log_set_hw_cap(f.log, 10); /* never backwards */
	sb_log_info(f.log, &li);
	assert_int_equal(li.high_watermark, 20);
	sb_log_set_hw_cap(f.log, INT64_MAX);
	assert_int_equal(woken_far, 1);
	sb_log_info(f.log, &li);
	assert_int_equal(li.high_watermark, 30);
	fx_fini(&f);
}

/* A follower cuts a divergent suffix: the log ends at the cut, keeps what
 * was before it byte for byte, takes the next appends from there, and the
 * cut survives a reopen. Cuts that are not batch boundaries, that reach into
 * a sealed segment, or race appends are refused. */
static void test_truncate_cuts_the_active_segment_at_a_batch_boundary(void **state)
{
	struct fixture f;
	struct acks a = {0};
	uint64_t id = 0;
	(void)state;
	fx_init(&f, "log-truncate", 0);
	append_many(&f, &a, 3, 10, 20, &id);               /* [0, 30) */
	assert_int_equal(sb_log_roll(f.log), 0);             /* sealed [0, 30) */
	append_many(&f, &a, 4, 10, 20, &id);               /* active [30, 70) */
	struct sb_log_read before;
	assert_int_equal(sb_log_read(f.log, 30, 1 << 20, &before), 0);

	assert_int_equal(sb_log_truncate(f.log, 45), SB_EINVAL); /* inside a batch */
	assert_int_equal(sb_log_truncate(f.log, 70), 0);         /* at the end: nothing to do */
	assert_int_equal(sb_log_truncate(f.log, 50), 0);
	struct sb_log_info li;
	sb_log_info(f.log, &li);
	assert_int_equal(li.stable_end, 50);
	assert_int_equal(li.next_offset, 50);
	assert_int_equal(li.high_watermark, 50);
	struct sb_log_read rd;
	assert_int_equal(sb_log_read(f.log, 30, 1 << 20, &rd), 0);
	assert_int_equal(rd.next_offset, 50);
	assert_memory_equal(rd.data, before.data, rd.len); /* the kept prefix is untouched */
	free(rd.buf);
	free(before.buf);
	assert_int_equal(sb_log_read(f.log, 55, 1 << 20, &rd), SB_ERANGE_HIGH);

	/* Appends continue at 50, and everything reads back in order. */
	id = 50;
	append_many(&f, &a, 2, 10, 20, &id);
	assert_int_equal(a.last_base, 60);
	assert_int_equal(read_all_check(f.log, 0, 20, 1 << 20), 70);
	sb_log_close(f.log);
	fx_open(&f, 0);
	sb_log_info(f.log, &li);
	assert_int_equal(li.stable_end, 70);
	assert_int_equal(read_all_check(f.log, 0, 20, 1 << 20), 70);
	fx_fini(&f);
}

/* The end of an epoch is the base of the first batch of a later epoch, in
 * the active segment or a sealed one, or the log end. */
static void test_epoch_end_finds_the_first_batch_of_a_later_epoch(void **state)
{
	struct fixture f;
	struct acks a = {0};
	int64_t end;
	int want = 0;
	(void)state;
	fx_init(&f, "log-epoch-end", 0);
	static const int32_t epochs[] = {1, 1, 2, 2, 2, 5, 5};
	for (int i = 0; i < 7; i++) {
		size_t len;
		uint8_t *b = sbt_batch((uint64_t)i * 10, 10, 20, TS0, &len);
		assert_int_equal(sb_log_append(f.log, b, len, epochs[i], on_ack, &a), 0);
		free(b);
		run_until_acked(&f, &a, ++want);
		if (i == 3)
			assert_int_equal(sb_log_roll(f.log), 0); /* [0, 40) sealed: epochs 1, 2 */
	}
	assert_int_equal(sb_log_epoch_end(f.log, 0, &end), 0);
	assert_int_equal(end, 0);
	assert_int_equal(sb_log_epoch_end(f.log, 1, &end), 0);
	assert_int_equal(end, 20);  /* in the sealed segment */
	assert_int_equal(sb_log_epoch_end(f.log, 2, &end), 0);
	assert_int_equal(end, 50);  /* in the active one */
	assert_int_equal(sb_log_epoch_end(f.log, 3, &end), 0);
	assert_int_equal(end, 50);  /* epochs 3 and 4 never wrote */
	assert_int_equal(sb_log_epoch_end(f.log, 5, &end), 0);
	assert_int_equal(end, 70);  /* the latest epoch: the end */
	fx_fini(&f);
}

/* Copies path's bytes (all of them, or the first n if n >= 0) to dst. */
static void copy_file(const char *src, const char *dst, long n)
{
	FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
	char buf[65536];
	size_t got;
	assert_non_null(in);
	assert_non_null(out);
	while ((got = fread(buf, 1, sizeof buf, in)) > 0) {
		if (n >= 0 && (long)got > n)
			got = (size_t)n;
		assert_int_equal(fwrite(buf, 1, got, out), got);
		if (n >= 0 && (n -= (long)got) == 0)
			break;
	}
	fclose(in);
	assert_int_equal(fclose(out), 0);
}

/* A follower adopts whole sealed segments shipped as files: a bad file is
 * refused and removed without touching the log; good ones become sealed
 * segments byte for byte, reads see them, appends go on after them, and
 * everything survives a reopen. */
static void test_installed_segments_match_the_leaders_byte_for_byte(void **state)
{
	struct fixture lead, fol;
	struct acks a = {0}, b = {0};
	struct sb_log_segment_info si;
	uint64_t id = 0;
	char dir[SB_PATH_MAX], file[SB_PATH_MAX], src[SB_PATH_MAX];
	(void)state;
	fx_init(&lead, "log-install-leader", 0);
	fx_init(&fol, "log-install-follower", 0);
	append_many(&lead, &a, 5, 10, 50, &id);
	assert_int_equal(sb_log_roll(lead.log), 0); /* sealed [0, 50) */
	append_many(&lead, &a, 3, 10, 50, &id);
	assert_int_equal(sb_log_roll(lead.log), 0); /* sealed [50, 80) */
	append_many(&lead, &a, 1, 10, 50, &id);     /* active [80, 90) */
	assert_int_equal(sb_log_sealed_at(lead.log, 0, &si), 1);
	assert_int_equal(si.next_offset, 50);
	assert_int_equal(sb_log_sealed_at(lead.log, 10, &si), 0); /* not a segment base */
	assert_int_equal(sb_log_sealed_at(lead.log, 80, &si), 0); /* the active one */
	uint8_t head[64];
	assert_int_equal(sb_log_read_sealed(lead.log, 0, 0, head, sizeof head), (int64_t)sizeof head);
	assert_int_equal(sb_log_read_sealed(lead.log, 7, 0, head, sizeof head), SB_ENOTFOUND);

	sb_log_replica_path(fol.log, 0, dir, file);
	assert_int_equal(sb_vfs_mkdir_durable(sb_vfs_posix(), dir), 0);
	snprintf(src, sizeof src, "%s/%020d.log", lead.dir, 0);
	copy_file(src, file, (long)si.size - 3); /* cut short: a torn last batch */
	assert_int_equal(sb_log_install_segment(fol.log, 0), SB_ECORRUPT);
	assert_int_equal(access(file, F_OK), -1); /* removed, to be fetched again */
	struct sb_log_info li;
	sb_log_info(fol.log, &li);
	assert_int_equal(li.next_offset, 0);
	assert_int_equal(li.segments, 1);

	copy_file(src, file, -1);
	assert_int_equal(sb_log_install_segment(fol.log, 50), SB_EINVAL); /* the log ends at 0 */
	assert_int_equal(sb_log_install_segment(fol.log, 0), 0);
	sb_log_replica_path(fol.log, 50, NULL, file);
	snprintf(src, sizeof src, "%s/%020d.log", lead.dir, 50);
	copy_file(src, file, -1);
	assert_int_equal(sb_log_install_segment(fol.log, 50), 0);
	/* The tail comes as batches, after the installed segments. */
	struct sb_log_read rd;
	assert_int_equal(sb_log_read(lead.log, 80, 1 << 20, &rd), 0);
	assert_int_equal(sb_log_append_replica(fol.log, rd.data, rd.len, on_ack, &b), 0);
	run_until_acked(&fol, &b, 1);
	free(rd.buf);
	sb_log_info(fol.log, &li);
	assert_int_equal(li.stable_end, 90);
	assert_int_equal(li.segments, 3);
	assert_int_equal(read_all_check(fol.log, 0, 50, 1 << 20), 90);
	for (int base = 0; base <= 50; base += 50) {
		char x[SB_PATH_MAX], y[SB_PATH_MAX];
		snprintf(x, sizeof x, "%s/%020d.log", lead.dir, base);
		snprintf(y, sizeof y, "%s/%020d.log", fol.dir, base);
		size_t lx, ly;
		void *bx = NULL, *by = NULL;
		assert_int_equal(sb_vfs_read_file(sb_vfs_posix(), x, 1 << 24, &bx, &lx), 0);
		assert_int_equal(sb_vfs_read_file(sb_vfs_posix(), y, 1 << 24, &by, &ly), 0);
		assert_int_equal(lx, ly);
		assert_memory_equal(bx, by, lx);
		free(bx);
		free(by);
	}
	sb_log_close(fol.log);
	fx_open(&fol, 0);
	assert_int_equal(read_all_check(fol.log, 0, 50, 1 << 20), 90);
	fx_fini(&fol);
	fx_fini(&lead);
}

/* A cut inside a sealed segment: later segments go, that segment becomes
 * the active one again, appends continue there, and a reopen agrees. */
static void test_truncate_into_a_sealed_segment(void **state)
{
	struct fixture f;
	struct acks a = {0};
	uint64_t id = 0;
	(void)state;
	fx_init(&f, "log-truncate-sealed", 0);
	append_many(&f, &a, 3, 10, 20, &id);   /* [0, 30) */
	assert_int_equal(sb_log_roll(f.log), 0);
	append_many(&f, &a, 3, 10, 20, &id);   /* [30, 60) */
	assert_int_equal(sb_log_roll(f.log), 0);
	append_many(&f, &a, 2, 10, 20, &id);   /* active [60, 80) */
	struct sb_log_info li;
	sb_log_info(f.log, &li);
	assert_int_equal(li.segments, 3);
	assert_int_equal(sb_log_truncate(f.log, 40), 0); /* inside the second segment */
	sb_log_info(f.log, &li);
	assert_int_equal(li.segments, 2);
	assert_int_equal(li.stable_end, 40);
	assert_int_equal(li.active_base, 30);
	assert_int_equal(read_all_check(f.log, 0, 20, 1 << 20), 40);
	char path[SB_PATH_MAX];
	snprintf(path, sizeof path, "%s/%020d.log", f.dir, 60);
	assert_int_equal(access(path, F_OK), -1); /* the later segment's files are gone */
	id = 40;
	append_many(&f, &a, 2, 10, 20, &id);   /* appends continue in the reopened segment */
	assert_int_equal(a.last_base, 50);
	assert_int_equal(read_all_check(f.log, 0, 20, 1 << 20), 60);
	assert_int_equal(sb_log_truncate(f.log, 30), 0); /* exactly at a segment base */
	sb_log_info(f.log, &li);
	assert_int_equal(li.stable_end, 30);
	sb_log_close(f.log);
	fx_open(&f, 0);
	sb_log_info(f.log, &li);
	assert_int_equal(li.stable_end, 30);
	assert_int_equal(read_all_check(f.log, 0, 20, 1 << 20), 30);
	fx_fini(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_appends_are_acked_in_order_and_read_back),
		cmocka_unit_test(test_threaded_loop_acks_concurrent_appends),
		cmocka_unit_test(test_reads_at_every_boundary),
		cmocka_unit_test(test_roll_by_size_seals_and_notifies),
		cmocka_unit_test(test_reopen_recovers_everything),
		cmocka_unit_test(test_missing_or_corrupt_index_is_rebuilt),
		cmocka_unit_test(test_torn_tail_is_truncated_and_kept),
		cmocka_unit_test(test_backpressure_returns_busy_not_memory),
		cmocka_unit_test(test_bad_batches_and_old_epochs_are_rejected),
		cmocka_unit_test(test_offset_for_timestamp),
		cmocka_unit_test(test_fsync_policies_all_ack),
		cmocka_unit_test(test_tail_waiters_fire_once_on_append),
		cmocka_unit_test(test_trusted_appends_check_structure_and_read_back),
		cmocka_unit_test(test_an_append_is_never_split_across_segments),
		cmocka_unit_test(test_reads_return_whole_batches_within_max_bytes),
		cmocka_unit_test(test_idle_log_gives_back_staging_memory),
		cmocka_unit_test(test_roll_request_while_appending_is_served),
		cmocka_unit_test(test_replica_appends_keep_the_leaders_offsets_and_bytes),
		cmocka_unit_test(test_hw_cap_bounds_readers_but_not_replication),
		cmocka_unit_test(test_truncate_cuts_the_active_segment_at_a_batch_boundary),
		cmocka_unit_test(test_epoch_end_finds_the_first_batch_of_a_later_epoch),
		cmocka_unit_test(test_installed_segments_match_the_leaders_byte_for_byte),
		cmocka_unit_test(test_truncate_into_a_sealed_segment),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
