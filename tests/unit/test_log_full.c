/* test_log_full.c - a full disk is not a failed disk: the partition log on
 * the simulated file system (sb_simfs.h, inline sync engine, loop driven by
 * hand) runs out of space, refuses appends with -ENOSPC while nothing is
 * lost, and takes appends again without a restart once there is room
 * (RELIABILITY.md: "writes resume when space returns"). An fdatasync error
 * stays fatal whatever its errno (pages may be gone).
 *
 * Every test appends records whose ids equal their offsets (sb_test_batch.h),
 * so a read-back checks every byte; failed appends hand their offsets back,
 * and the next batch reuses them. */
#include "sb_test.h"
#include "sb_test_batch.h"

#include "sb_aio.h"
#include "sb_ioloop.h"
#include "sb_limits.h"
#include "sb_log.h"
#include "sb_simfs.h"
#include "sb_time.h"
#include "sb_vfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TS0 1700000000000ll
#define DIR "/log"
#define VLEN 200

struct fx {
	struct sb_simfs *fs;
	struct sb_ioloop *loop;
	struct sb_log *log;
	struct sb_log_config cfg;
};

struct acks {
	int64_t ok, failed;
	int last_err;
	int64_t acked_end; /* end of the last acked append */
};

struct pending {
	struct acks *a;
	int64_t end;
};

static void on_ack(void *arg, int64_t base, int result)
{
	struct pending *p = arg;
	(void)base;
	if (result) {
		p->a->failed++;
		p->a->last_err = result;
	} else {
		p->a->ok++;
		if (p->end > p->a->acked_end)
			p->a->acked_end = p->end;
	}
	free(p);
}

static void fx_open(struct fx *f)
{
	struct sb_aio *aio = NULL;
	assert_int_equal(sb_aio_sync_new(sb_simfs_vfs(f->fs), 0, &aio), 0);
	assert_int_equal(sb_ioloop_new(aio, 10, &f->loop), 0);
	assert_int_equal(sb_log_open(sb_simfs_vfs(f->fs), f->loop, DIR, "full/0", &f->cfg, &f->log), 0);
}

static void fx_close(struct fx *f)
{
	sb_log_close(f->log);
	sb_ioloop_free(f->loop);
	f->log = NULL;
	f->loop = NULL;
}

static void fx_init(struct fx *f, enum sb_fsync_policy policy, uint64_t segment_bytes)
{
	memset(f, 0, sizeof *f);
	assert_int_equal(sb_simfs_new(7, &f->fs), 0);
	assert_int_equal(sb_vfs_mkdir_durable(sb_simfs_vfs(f->fs), DIR), 0);
	sb_log_config_default(&f->cfg);
	f->cfg.fsync_policy = policy;
	f->cfg.segment_bytes = segment_bytes;
	f->cfg.index_interval_bytes = 1024;
	f->cfg.retention_ms = -1;
	f->cfg.retention_bytes = -1;
	fx_open(f);
}

static void fx_fini(struct fx *f)
{
	fx_close(f);
	sb_simfs_free(f->fs);
}

static void drive(struct fx *f, int ms)
{
	int64_t until = sb_mono_ms() + ms;
	do
		assert_true(sb_ioloop_run_once(f->loop, 1) >= 0);
	while (sb_mono_ms() < until);
}

/* Appends one batch of n records with ids from the log's next offset.
 * Returns sb_log_append's result. */
static int append_one(struct fx *f, struct acks *a, uint32_t n)
{
	struct sb_log_info info;
	size_t len;
	sb_log_info(f->log, &info);
	uint8_t *b = sbt_batch((uint64_t)info.next_offset, n, VLEN, TS0, &len);
	struct pending *p = malloc(sizeof *p);
	assert_non_null(p);
	p->a = a;
	p->end = info.next_offset + n;
	int rc = sb_log_append(f->log, b, len, 0, on_ack, p);
	if (rc)
		free(p);
	free(b);
	return rc;
}

/* Appends and drives the loop until an append is refused (returns its
 * error) or max appends were acknowledged (returns 0). */
static int append_until_refused(struct fx *f, struct acks *a, int max)
{
	for (int i = 0; i < max; i++) {
		int rc;
		for (int k = 0; k < 4; k++) /* a few in flight: group commit */
			if ((rc = append_one(f, a, 5)) != 0 && rc != SB_EBUSY)
				return rc;
		for (int s = 0; s < 100; s++)
			assert_true(sb_ioloop_run_once(f->loop, 0) >= 0);
	}
	return 0;
}

/* Reads the whole log: every record is its id, offsets contiguous from 0.
 * Returns the end. */
static int64_t read_check(struct sb_log *log)
{
	int64_t at = 0;
	for (;;) {
		struct sb_log_read rd;
		assert_int_equal(sb_log_read(log, at, 64 << 10, &rd), 0);
		if (rd.len == 0) {
			assert_int_equal(rd.next_offset, at); /* no gap */
			return at;
		}
		int64_t n = sbt_check_batches(rd.data, rd.len, VLEN, TS0, at);
		assert_true(n > 0);
		assert_int_equal(rd.next_offset, at + n);
		at = rd.next_offset;
		free(rd.buf);
	}
}

/* Closes the log, loses power (only what was fsynced survives), reopens and
 * checks every acknowledged record; returns the recovered end. */
static int64_t power_loss_and_check(struct fx *f)
{
	fx_close(f);
	sb_simfs_crash(f->fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
	fx_open(f);
	return read_check(f->log);
}

/* The shared scenario: fill the disk, check the refusal and that nothing
 * acknowledged is lost, make room, check that appends resume on the same
 * offsets, restart and lose power, check again. */
static void full_then_room(enum sb_fsync_policy policy, uint64_t segment_bytes, uint64_t capacity)
{
	struct fx f;
	struct acks a = {0};
	struct sb_log_info info;
	fx_init(&f, policy, segment_bytes);
	sb_simfs_set_capacity(f.fs, capacity);

	int rc = append_until_refused(&f, &a, 100000);
	assert_int_equal(rc, -ENOSPC); /* RESOURCE_EXHAUSTED, not UNAVAILABLE */
	drive(&f, 20);
	assert_true(a.ok > 0);
	assert_true(a.failed > 0);
	assert_true(a.last_err == -ENOSPC || a.last_err == -EDQUOT);
	sb_log_info(f.log, &info);
	assert_int_equal(info.failed, -ENOSPC);
	assert_int_equal(read_check(f.log), a.acked_end);
	assert_int_equal(info.stable_end, a.acked_end);

	/* Still full: a retry fails again, and nothing acknowledged moves. */
	drive(&f, SB_LOG_FULL_RETRY_MS + 200);
	rc = append_until_refused(&f, &a, 20);
	assert_int_equal(rc, -ENOSPC);
	drive(&f, 20);
	assert_int_equal(read_check(f.log), a.acked_end);

	/* Room again: appends are taken after the next retry, on the offsets
	 * the failed ones had. */
	int64_t end_full = a.acked_end, ok_full = a.ok;
	sb_simfs_set_capacity(f.fs, 0);
	drive(&f, SB_LOG_FULL_RETRY_MS + 200);
	sb_log_info(f.log, &info);
	assert_int_equal(info.failed, 0);
	assert_int_equal(info.next_offset, end_full);
	assert_int_equal(append_until_refused(&f, &a, 50), 0);
	drive(&f, 20);
	assert_true(a.ok >= ok_full + 200);
	assert_int_equal(read_check(f.log), a.acked_end);

	/* Restart, then power loss: every acknowledged record is there. */
	fx_close(&f);
	fx_open(&f);
	assert_int_equal(read_check(f.log), a.acked_end);
	assert_int_equal(append_until_refused(&f, &a, 5), 0);
	drive(&f, 20);
	int64_t end = power_loss_and_check(&f);
	if (policy == SB_FSYNC_ALWAYS)
		assert_int_equal(end, a.acked_end);
	else
		assert_true(end <= a.acked_end); /* close synced, but never lies */
	fx_fini(&f);
}

static void test_full_disk_always_resumes(void **state)
{
	(void)state;
	full_then_room(SB_FSYNC_ALWAYS, 1 << 20, 300 << 10);
}

static void test_full_disk_never_resumes(void **state)
{
	(void)state;
	full_then_room(SB_FSYNC_NEVER, 1 << 20, 300 << 10);
}

/* Small segments: the disk fills at rolls too (index files, new segments). */
static void test_full_disk_with_rolls_resumes(void **state)
{
	(void)state;
	for (uint64_t cap = 100 << 10; cap < 140 << 10; cap += 7 << 10)
		full_then_room(SB_FSYNC_ALWAYS, 16 << 10, cap);
}

/* ENOSPC on each metadata step of a roll (index files, the new segment's
 * create), including after the old segment was sealed: the roll is retried
 * and the log goes on. */
static void test_roll_refused_for_space_is_retried(void **state)
{
	(void)state;
	for (uint64_t nth = 0; nth < 6; nth++) {
		struct fx f;
		struct acks a = {0};
		struct sb_log_info info;
		fx_init(&f, SB_FSYNC_ALWAYS, 16 << 10);
		assert_int_equal(append_until_refused(&f, &a, 10), 0);
		sb_simfs_fail_nth(f.fs, SB_SIMFS_OP_META, nth, -ENOSPC);
		for (int i = 0; i < 200; i++) {
			int rc = append_one(&f, &a, 5);
			if (rc == -ENOSPC)
				break;
			assert_true(rc == 0 || rc == SB_EBUSY);
			for (int s = 0; s < 20; s++)
				assert_true(sb_ioloop_run_once(f.loop, 0) >= 0);
		}
		drive(&f, 20);
		sb_log_info(f.log, &info);
		assert_int_equal(info.failed, -ENOSPC);
		assert_int_equal(read_check(f.log), a.acked_end);
		drive(&f, SB_LOG_FULL_RETRY_MS + 200);
		sb_log_info(f.log, &info);
		assert_int_equal(info.failed, 0);
		int64_t ok = a.ok;
		assert_int_equal(append_until_refused(&f, &a, 30), 0);
		drive(&f, 20);
		assert_true(a.ok > ok);
		assert_int_equal(read_check(f.log), a.acked_end);
		sb_log_info(f.log, &info);
		assert_true(info.segments > 2);
		assert_int_equal(power_loss_and_check(&f), a.acked_end);
		fx_fini(&f);
	}
}

/* A short write followed by ENOSPC leaves part of an append in the file past
 * what the log counts: the resume cuts it, so the next append lands right
 * after the acknowledged end and a restart finds a clean log. */
static void test_short_write_then_full_is_cut(void **state)
{
	struct fx f;
	struct acks a = {0};
	struct sb_log_info info;
	(void)state;
	fx_init(&f, SB_FSYNC_ALWAYS, 1 << 20);
	assert_int_equal(append_until_refused(&f, &a, 5), 0);
	sb_simfs_short_write_nth(f.fs, 0, 100);
	assert_int_equal(append_one(&f, &a, 20), 0);
	assert_true(sb_ioloop_run_once(f.loop, 0) >= 0); /* the short write */
	sb_simfs_fail_nth(f.fs, SB_SIMFS_OP_WRITE, 0, -ENOSPC); /* its rest */
	drive(&f, 20);
	sb_log_info(f.log, &info);
	assert_int_equal(info.failed, -ENOSPC);
	assert_int_equal(a.failed, 1);
	drive(&f, SB_LOG_FULL_RETRY_MS + 200);
	sb_log_info(f.log, &info);
	assert_int_equal(info.failed, 0);
	assert_int_equal(append_until_refused(&f, &a, 5), 0);
	drive(&f, 20);
	assert_int_equal(read_check(f.log), a.acked_end);
	assert_int_equal(power_loss_and_check(&f), a.acked_end);
	fx_fini(&f);
}

/* An fdatasync that fails with ENOSPC is a failed disk, not a full one:
 * the pages it was to write may be dropped (fsyncgate). No retry. */
static void test_fdatasync_enospc_stays_failed(void **state)
{
	struct fx f;
	struct acks a = {0};
	struct sb_log_info info;
	(void)state;
	fx_init(&f, SB_FSYNC_ALWAYS, 1 << 20);
	assert_int_equal(append_until_refused(&f, &a, 5), 0);
	sb_simfs_fail_nth(f.fs, SB_SIMFS_OP_SYNC, 0, -ENOSPC);
	assert_int_equal(append_one(&f, &a, 5), 0);
	drive(&f, SB_LOG_FULL_RETRY_MS + 300);
	sb_log_info(f.log, &info);
	assert_int_equal(info.failed, -ENOSPC);
	assert_int_equal(append_one(&f, &a, 5), SB_EFAILED);
	assert_int_equal(read_check(f.log), a.acked_end);
	fx_fini(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_disk_always_resumes),
		cmocka_unit_test(test_full_disk_never_resumes),
		cmocka_unit_test(test_full_disk_with_rolls_resumes),
		cmocka_unit_test(test_roll_refused_for_space_is_retried),
		cmocka_unit_test(test_short_write_then_full_is_cut),
		cmocka_unit_test(test_fdatasync_enospc_stays_failed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
