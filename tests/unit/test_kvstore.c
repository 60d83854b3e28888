/* test_kvstore.c - the partition key store against a model map: a seeded
 * workload of keyed records (overwrites, tombstones, keyless records,
 * headers) appended to a real sb_log on the simulated file system, with a
 * 1 MiB memtable so that flushes and merges run many times; every key is
 * checked after every phase, after close and reopen (replay), after a power
 * loss, after a damaged table (rebuild) and with the worker stepping on
 * another thread while lookups run. */
#include "sb_test.h"

#include "sb_aio.h"
#include "sb_batch.h"
#include "sb_ioloop.h"
#include "sb_kvstore.h"
#include "sb_limits.h"
#include "sb_log.h"
#include "sb_simfs.h"
#include "sb_time.h"
#include "sb_vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIR "/p0"
#define KEYS 400
#define TS0 1700000000000ll

/* Performance only, no check is weakened (as in test_crash.c): ASan clears
 * the shadow of every large mapping with madvise by default, and the store's
 * 1 MiB log reads and 256 KiB arena blocks make that most of the run time.
 * The name is the sanitizer's documented hook. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "clear_shadow_mmap_threshold=1073741824";
}

struct model {
	int64_t offset[KEYS]; /* newest record of key i; -1: none or deleted */
	int64_t next;         /* offset of the next record */
};

struct fx {
	struct sb_simfs *fs;
	struct sb_ioloop *loop;
	struct sb_log *log;
	struct sb_kvstore *kv;
	struct sb_kvstore_config kcfg;
	struct model m;
	uint64_t rng;
	int acked, failed;
};

static void on_ack(void *arg, int64_t base, int result)
{
	struct fx *f = arg;
	(void)base;
	if (result)
		f->failed++;
	else
		f->acked++;
}

static void key_of(int i, char *buf, uint32_t *len)
{
	*len = (uint32_t)snprintf(buf, 32, "key-%05d", i);
}

/* The value of the record at offset o: deterministic, 0-299 bytes. */
static uint32_t value_of(int64_t o, uint8_t *buf)
{
	uint32_t n = (uint32_t)((o * 2654435761u) % 300);
	for (uint32_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(o + i * 7);
	return n;
}

static void open_all(struct fx *f)
{
	struct sb_aio *aio = NULL;
	struct sb_log_config cfg;
	sb_log_config_default(&cfg);
	cfg.segment_bytes = 256 << 10;
	cfg.retention_ms = -1;
	cfg.retention_bytes = -1;
	assert_int_equal(sb_aio_sync_new(sb_simfs_vfs(f->fs), 0, &aio), 0);
	assert_int_equal(sb_ioloop_new(aio, 10, &f->loop), 0);
	assert_int_equal(sb_log_open(sb_simfs_vfs(f->fs), f->loop, DIR, "kv/0", &cfg, &f->log), 0);
	assert_int_equal(sb_kvstore_open(sb_simfs_vfs(f->fs), f->log, DIR, "kv/0", &f->kcfg, &f->kv), 0);
}

static void close_all(struct fx *f)
{
	sb_kvstore_close(f->kv);
	sb_log_close(f->log);
	sb_ioloop_free(f->loop);
	f->kv = NULL;
	f->log = NULL;
	f->loop = NULL;
}

static void fx_init(struct fx *f, uint64_t seed)
{
	memset(f, 0, sizeof *f);
	f->rng = seed;
	for (int i = 0; i < KEYS; i++)
		f->m.offset[i] = -1;
	assert_int_equal(sb_simfs_new(seed, &f->fs), 0);
	assert_int_equal(sb_vfs_mkdir_durable(sb_simfs_vfs(f->fs), DIR), 0);
	sb_kvstore_config_default(&f->kcfg);
	f->kcfg.memtable_bytes = SB_MEMTABLE_BYTES_MIN; /* 1 MiB: many flushes */
	f->kcfg.replay_bytes_max = 2 << 20;
	f->kcfg.compaction_rate_bytes = 0;
	f->kcfg.delete_retention_ms = 0; /* tombstones go in bottom-most merges */
	open_all(f);
}

static void fx_fini(struct fx *f)
{
	close_all(f);
	sb_simfs_free(f->fs);
}

/* Appends one batch of n records (keys from the model's key space, 1 in 10
 * a tombstone, 1 in 20 keyless) and waits for its acknowledgement. */
static void append_batch(struct fx *f, int n)
{
	struct sb_batch_builder b;
	uint8_t val[300];
	char key[32];
	const void *out;
	size_t len;
	int64_t at = f->m.next;
	int done = f->acked;
	int key_idx[64];
	assert_true(n <= 64);
	assert_int_equal(sb_batch_builder_init(&b, SB_BATCH_BYTES_MAX), 0);
	for (int i = 0; i < n; i++) {
		struct sb_record_in r = {0};
		struct sb_header_in h = {"h", 1, val, 8};
		uint64_t x = sbt_rand(&f->rng);
		int k = (int)(x % KEYS);
		uint32_t klen;
		key_of(k, key, &klen);
		r.timestamp_ms = TS0 + at + i;
		key_idx[i] = x % 20 == 0 ? -1 : k;
		if (key_idx[i] >= 0) {
			r.key = key;
			r.key_len = klen;
		}
		if (key_idx[i] >= 0 && x % 10 == 1) {
			r.attributes = SB_RECORD_ATTR_TOMBSTONE;
		} else {
			r.value = val;
			r.value_len = value_of(at + i, val);
			if (x % 3 == 0 && r.value_len >= 8) {
				r.headers = &h;
				r.header_count = 1;
			}
		}
		assert_int_equal(sb_batch_builder_add(&b, &r), 0);
		if (key_idx[i] >= 0)
			f->m.offset[k] = r.attributes ? -1 : at + i;
	}
	assert_int_equal(sb_batch_builder_finish(&b, &out, &len), 0);
	assert_int_equal(sb_log_append(f->log, out, len, 0, on_ack, f), 0);
	sb_batch_builder_fini(&b);
	while (f->acked == done)
		assert_true(sb_ioloop_run_once(f->loop, 10) >= 0);
	assert_int_equal(f->failed, 0);
	f->m.next += n;
}

/* Every key agrees with the model. */
static void check_all(struct fx *f)
{
	uint8_t val[300];
	char key[32];
	for (int i = 0; i < KEYS; i++) {
		struct sb_kv_result r;
		uint32_t klen;
		key_of(i, key, &klen);
		assert_int_equal(sb_kvstore_get(f->kv, (const uint8_t *)key, klen, &r), 0);
		if (f->m.offset[i] < 0) {
			if (r.found)
				fail_msg("key %d: found at %lld, expected none", i, (long long)r.offset);
			continue;
		}
		if (!r.found || r.offset != f->m.offset[i])
			fail_msg("key %d: found=%d offset %lld, expected %lld", i, r.found, (long long)r.offset,
				 (long long)f->m.offset[i]);
		uint32_t n = value_of(r.offset, val);
		assert_int_equal(r.value_len, n);
		assert_memory_equal(r.value ? r.value : val, val, n);
		assert_int_equal(r.timestamp_ms, TS0 + r.offset);
		sb_kv_result_free(&r);
	}
}

static void steps(struct fx *f)
{
	while (sb_kvstore_step(f->kv, sb_wall_ms()) > 0)
		;
}

static void test_lookups_follow_the_log_through_flushes_and_merges(void **state)
{
	struct fx f;
	struct sb_kvstore_stats st;
	(void)state;
	fx_init(&f, 11);
	for (int round = 0; round < 40; round++) {
		for (int i = 0; i < 50; i++)
			append_batch(&f, 1 + (int)(sbt_rand(&f.rng) % 40));
		if (round % 3 == 0)
			check_all(&f); /* the lookup applies what the worker has not */
		steps(&f);
		check_all(&f);
	}
	sb_kvstore_stats(f.kv, &st);
	printf("[kv] %lld records, %llu flushes, %llu merges, %u tables, %llu table bytes, memtable %llu entries\n",
	       (long long)f.m.next, (unsigned long long)st.flushes, (unsigned long long)st.compactions, st.tables,
	       (unsigned long long)st.table_bytes, (unsigned long long)st.memtable_entries);
	assert_true(st.flushes >= 5);
	assert_true(st.compactions >= 1);
	assert_true(st.tables < SB_KV_TABLES_MAX);
	assert_int_equal(st.applied_end, f.m.next);

	/* Close and reopen: the memtable was flushed, nothing to replay. */
	close_all(&f);
	open_all(&f);
	check_all(&f);
	fx_fini(&f);
}

static void test_replay_after_power_loss(void **state)
{
	struct fx f;
	(void)state;
	fx_init(&f, 12);
	for (int i = 0; i < 400; i++)
		append_batch(&f, 20);
	steps(&f); /* some tables */
	for (int i = 0; i < 100; i++)
		append_batch(&f, 20); /* in the memtable only */
	check_all(&f);
	/* Power loss without a clean close: the log (fsync always) keeps every
	 * acknowledged record; the key store replays them after its tables. */
	sb_simfs_crash(f.fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
	sb_kvstore_close(f.kv); /* its flush fails on the dead fds: best effort */
	sb_log_close(f.log);
	sb_ioloop_free(f.loop);
	open_all(&f);
	check_all(&f);
	fx_fini(&f);
}

/* Damages one byte in the middle of every table file. */
struct damage {
	struct sb_vfs *vfs;
	int n;
};

static int damage_cb(void *arg, const char *name, int is_dir)
{
	struct damage *d = arg;
	char path[256];
	uint64_t size;
	if (is_dir || !strstr(name, ".sst"))
		return 0;
	snprintf(path, sizeof path, "%s/%s/%s", DIR, SB_KV_DIR, name);
	int fd = d->vfs->ops->open(d->vfs, path, O_RDWR, 0);
	assert_true(fd >= 0);
	assert_int_equal(d->vfs->ops->fsize(d->vfs, fd, &size), 0);
	uint8_t b = 0x5a;
	assert_int_equal(d->vfs->ops->pwrite(d->vfs, fd, &b, 1, size / 3), 1);
	assert_int_equal(d->vfs->ops->datasync(d->vfs, fd), 0);
	d->vfs->ops->close(d->vfs, fd);
	d->n++;
	return 0;
}

static void test_damaged_tables_are_rebuilt_from_the_log(void **state)
{
	struct fx f;
	struct damage d = {0};
	struct sb_kvstore_stats st;
	(void)state;
	fx_init(&f, 13);
	for (int i = 0; i < 300; i++)
		append_batch(&f, 20);
	steps(&f);
	close_all(&f);
	d.vfs = sb_simfs_vfs(f.fs);
	assert_int_equal(d.vfs->ops->list_dir(d.vfs, DIR "/" SB_KV_DIR, damage_cb, &d), 0);
	assert_true(d.n > 0);
	open_all(&f); /* footer/index damage is caught here, block damage on a lookup */
	struct sb_kv_result r;
	int corrupt = 0;
	for (int i = 0; i < KEYS; i++) {
		char key[32];
		uint32_t klen;
		key_of(i, key, &klen);
		int rc = sb_kvstore_get(f.kv, (const uint8_t *)key, klen, &r);
		corrupt += rc == SB_ECORRUPT;
		assert_true(rc == 0 || rc == SB_ECORRUPT);
		sb_kv_result_free(&r);
	}
	steps(&f); /* a lookup that met a damaged block asked for the rebuild */
	check_all(&f);
	sb_kvstore_stats(f.kv, &st);
	printf("[kv] %d tables damaged, %d lookups met damage, %llu rebuilds\n", d.n, corrupt,
	       (unsigned long long)st.rebuilds);
	assert_true(st.rebuilds >= 1);
	fx_fini(&f);
}

/* The worker steps on its own thread while this thread appends and looks
 * up (ASan/TSan-style interleavings; the checks are the model's). */
struct worker {
	struct fx *f;
	int stop;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE))
		if (sb_kvstore_step(w->f->kv, sb_wall_ms()) <= 0)
			usleep(1000);
	return NULL;
}

static void test_worker_thread_beside_lookups(void **state)
{
	struct fx f;
	struct worker w;
	pthread_t th;
	(void)state;
	fx_init(&f, 14);
	w.f = &f;
	w.stop = 0;
	assert_int_equal(pthread_create(&th, NULL, worker_main, &w), 0);
	for (int round = 0; round < 30; round++) {
		for (int i = 0; i < 40; i++)
			append_batch(&f, 30);
		check_all(&f);
	}
	__atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	check_all(&f);
	fx_fini(&f);
}

/* A topic without keys costs the key store nothing to follow (the batches
 * carry SB_BATCH_ATTR_NO_KEYS and the log's keyed_end says where keys stop),
 * yet it still records how far it got, so a restart does not replay the
 * whole log. */
static void test_keyless_batches_are_skipped_but_bound_the_replay(void **state)
{
	struct fx f;
	struct sb_kvstore_stats st;
	struct sb_log_info li;
	(void)state;
	fx_init(&f, 15);
	append_batch(&f, 10); /* some keys first */
	for (int i = 0; i < 400; i++) {
		struct sb_batch_builder b;
		struct sb_record_in r = {0};
		uint8_t val[1000];
		const void *out;
		size_t len;
		int done = f.acked;
		memset(val, 'x', sizeof val);
		r.value = val;
		r.value_len = sizeof val;
		assert_int_equal(sb_batch_builder_init(&b, SB_BATCH_BYTES_MAX), 0);
		for (int k = 0; k < 10; k++) {
			r.timestamp_ms = TS0 + f.m.next + k;
			assert_int_equal(sb_batch_builder_add(&b, &r), 0);
		}
		assert_int_equal(sb_batch_builder_finish(&b, &out, &len), 0);
		assert_true(((const uint8_t *)out)[21] & SB_BATCH_ATTR_NO_KEYS);
		assert_int_equal(sb_log_append(f.log, out, len, 0, on_ack, &f), 0);
		sb_batch_builder_fini(&b);
		while (f.acked == done)
			assert_true(sb_ioloop_run_once(f.loop, 10) >= 0);
		f.m.next += 10;
	}
	sb_log_info(f.log, &li);
	assert_true(li.keyed_end <= 10);
	steps(&f);
	sb_kvstore_stats(f.kv, &st);
	assert_int_equal(st.applied_end, f.m.next);
	assert_true(st.flushes >= 1); /* 4 MB of log since the last freeze > 2 MiB */
	check_all(&f);
	fx_fini(&f);
}

/* Builds the state the crash test starts from: three flushed tables, and a
 * full memtable whose next step flushes a fourth table and merges the four
 * (size-tiered). Deterministic for a seed. */
static void prepare_flush_and_merge(struct fx *f, uint64_t seed)
{
	struct sb_kvstore_stats st;
	fx_init(f, seed);
	for (int t = 0; t < 3; t++) {
		do
			append_batch(f, 40);
		while (sb_kvstore_step(f->kv, sb_wall_ms()) >= 0 && (sb_kvstore_stats(f->kv, &st), st.flushes < (uint64_t)t + 1));
	}
	/* About one more table's worth of records (a third of those that made
	 * three), appended without stepping: the next step flushes it. */
	int64_t target = f->m.next + f->m.next / 3 + 40;
	while (f->m.next < target)
		append_batch(f, 40);
}

static void test_power_loss_at_every_step_of_flush_and_merge(void **state)
{
	struct fx f;
	struct sb_kvstore_stats st;
	uint64_t ops, start;
	int runs = 0;
	(void)state;
	prepare_flush_and_merge(&f, 21);
	start = sb_simfs_op_count(f.fs);
	while (sb_kvstore_step(f.kv, sb_wall_ms()) > 0)
		;
	ops = sb_simfs_op_count(f.fs) - start;
	sb_kvstore_stats(f.kv, &st);
	assert_true(st.flushes >= 4 && st.compactions >= 1); /* the step flushed and merged */
	check_all(&f);
	fx_fini(&f);
	/* Every op with DROP_UNSYNCED; every third with RANDOM (torn writes). */
	for (int mode = 0; mode < 2; mode++)
		for (uint64_t k = mode; k < ops; k += mode ? 3 : 1) {
			prepare_flush_and_merge(&f, 21);
			sb_simfs_power_off_at(f.fs, sb_simfs_op_count(f.fs) + k);
			while (sb_kvstore_step(f.kv, sb_wall_ms()) > 0)
				;
			sb_kvstore_close(f.kv); /* writes fail on the dead disk: best effort */
			sb_log_close(f.log);
			sb_ioloop_free(f.loop);
			sb_simfs_crash(f.fs, mode ? SB_SIMFS_CRASH_RANDOM : SB_SIMFS_CRASH_DROP_UNSYNCED);
			open_all(&f);
			check_all(&f); /* every acknowledged record: the log replays what tables lost */
			steps(&f);     /* and the store goes on: flush, merge, lookups */
			append_batch(&f, 40);
			check_all(&f);
			fx_fini(&f);
			runs++;
		}
	printf("[kv] %d power cuts over %llu ops of a flush and a merge (2 crash modes); every lookup agreed with "
	       "the log\n", runs, (unsigned long long)ops);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lookups_follow_the_log_through_flushes_and_merges),
		cmocka_unit_test(test_replay_after_power_loss),
		cmocka_unit_test(test_damaged_tables_are_rebuilt_from_the_log),
		cmocka_unit_test(test_worker_thread_beside_lookups),
		cmocka_unit_test(test_keyless_batches_are_skipped_but_bound_the_replay),
		cmocka_unit_test(test_power_loss_at_every_step_of_flush_and_merge),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
