/* test_logmgr.c - topics over a data directory: names, create, list,
 * acquire, persistence across restarts, delete while readers hold the topic,
 * config file round trips and rejection of bad settings. */
#include "sb_test.h"
#include "sb_test_batch.h"

#include "sb_limits.h"
#include "sb_logmgr.h"
#include "sb_vfs.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TS0 1700000000000ll

static struct sb_logmgr *open_mgr(const char *dir)
{
	struct sb_logmgr_options opt = {0};
	struct sb_logmgr *mgr = NULL;
	opt.data_dir = dir;
	opt.aio = sbt_open_aio();
	opt.threaded = 1;
	sb_topic_config_default(&opt.defaults);
	opt.defaults.log.retention_ms = -1;
	assert_int_equal(sb_logmgr_open(&opt, &mgr), 0);
	return mgr;
}

static void test_topic_names_follow_the_rules(void **state)
{
	char long_name[SB_TOPIC_NAME_MAX + 2];
	(void)state;
	assert_true(sb_topic_name_valid("orders"));
	assert_true(sb_topic_name_valid("a.b_c-D9"));
	assert_true(sb_topic_name_valid("..."));
	assert_false(sb_topic_name_valid(""));
	assert_false(sb_topic_name_valid("."));
	assert_false(sb_topic_name_valid(".."));
	assert_false(sb_topic_name_valid("a/b"));
	assert_false(sb_topic_name_valid("a b"));
	assert_false(sb_topic_name_valid("é"));
	memset(long_name, 'x', SB_TOPIC_NAME_MAX);
	long_name[SB_TOPIC_NAME_MAX] = 0;
	assert_true(sb_topic_name_valid(long_name));
	long_name[SB_TOPIC_NAME_MAX] = 'x';
	long_name[SB_TOPIC_NAME_MAX + 1] = 0;
	assert_false(sb_topic_name_valid(long_name));
}

static void test_config_round_trips_and_rejects_bad_values(void **state)
{
	struct sb_topic_config a, b;
	char text[1024];
	(void)state;
	sb_topic_config_default(&a);
	a.partitions = 7;
	a.log.fsync_policy = SB_FSYNC_INTERVAL;
	a.log.retention_bytes = 12345678;
	snprintf(a.cleanup_policy, sizeof a.cleanup_policy, "compact,delete");
	int n = sb_topic_config_format(&a, text, sizeof text);
	assert_true(n > 0);
	sb_topic_config_default(&b);
	assert_int_equal(sb_topic_config_parse(text, (size_t)n, &b), 0);
	assert_memory_equal(&a, &b, sizeof a);
	const char *commented = "# a comment\npartitions=4   # trailing\r\n\nfsync_policy=never\n";
	sb_topic_config_default(&b);
	assert_int_equal(sb_topic_config_parse(commented, strlen(commented), &b), 0);
	assert_int_equal(b.partitions, 4);
	assert_int_equal(b.log.fsync_policy, SB_FSYNC_NEVER);
	const char *bad[] = {"partitions=0\n", "partitions=abc\n", "no_such_key=1\n", "fsync_policy=sometimes\n",
			     "segment_bytes=10\n", "cleanup_policy=shred\n", "version=2\n", "justtext\n",
			     "min_insync_replicas=3\n"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		sb_topic_config_default(&b);
		assert_int_equal(sb_topic_config_parse(bad[i], strlen(bad[i]), &b), SB_EBADCONFIG);
	}
}

struct names {
	char list[8][64];
	int n;
};

static int collect(void *arg, const char *name, const struct sb_topic_config *cfg)
{
	struct names *ns = arg;
	(void)cfg;
	snprintf(ns->list[ns->n++], 64, "%s", name);
	return 0;
}

static void on_ack(void *arg, int64_t base, int result)
{
	(void)base;
	assert_int_equal(result, 0);
	__atomic_fetch_add((int *)arg, 1, __ATOMIC_RELEASE);
}

static void append_and_wait(struct sb_log *log, uint64_t first, uint32_t n)
{
	int acked = 0;
	size_t len;
	uint8_t *b = sbt_batch(first, n, 32, TS0, &len);
	assert_int_equal(sb_log_append(log, b, len, 0, on_ack, &acked), 0);
	free(b);
	while (!__atomic_load_n(&acked, __ATOMIC_ACQUIRE))
		;
}

static void test_topics_persist_across_restart(void **state)
{
	char *dir = sbt_tmpdir("mgr-persist");
	struct sb_topic_config cfg = {0};
	struct sb_topic *t;
	struct sb_log *log;
	struct names ns = {0};
	(void)state;
	struct sb_logmgr *mgr = open_mgr(dir);
	cfg.partitions = 3;
	assert_int_equal(sb_logmgr_create_topic(mgr, "beta", &cfg), 0);
	cfg.partitions = 1;
	assert_int_equal(sb_logmgr_create_topic(mgr, "alpha", &cfg), 0);
	assert_int_equal(sb_logmgr_create_topic(mgr, "alpha", &cfg), SB_EEXISTS);
	assert_int_equal(sb_logmgr_create_topic(mgr, "bad/name", &cfg), SB_EBADNAME);
	cfg.partitions = SB_PARTITIONS_MAX + 1;
	assert_int_equal(sb_logmgr_create_topic(mgr, "gamma", &cfg), SB_EBADCONFIG);
	assert_int_equal(sb_logmgr_acquire(mgr, "beta", &t), 0);
	assert_int_equal(sb_topic_partitions(t), 3);
	assert_int_equal(sb_topic_log(t, 3, &log), SB_ENOPARTITION);
	assert_int_equal(sb_topic_log(t, -1, &log), SB_ENOPARTITION);
	assert_int_equal(sb_topic_log(t, 2, &log), 0);
	append_and_wait(log, 0, 5);
	sb_topic_release(t);
	sb_logmgr_close(mgr);

	mgr = open_mgr(dir);
	assert_int_equal(sb_logmgr_list_topics(mgr, collect, &ns), 0);
	assert_int_equal(ns.n, 2);
	assert_string_equal(ns.list[0], "alpha");
	assert_string_equal(ns.list[1], "beta");
	assert_int_equal(sb_logmgr_acquire(mgr, "beta", &t), 0);
	assert_int_equal(sb_topic_log(t, 2, &log), 0);
	struct sb_log_info info;
	sb_log_info(log, &info);
	assert_int_equal(info.stable_end, 5);
	sb_topic_release(t);
	assert_int_equal(sb_logmgr_acquire(mgr, "nope", &t), SB_ENOTOPIC);
	sb_logmgr_close(mgr);
	assert_int_equal(sb_vfs_remove_tree(sb_vfs_posix(), dir), 0);
	free(dir);
}

static int count_entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;
	assert_non_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.' || (e->d_name[1] && strcmp(e->d_name, ".."));
	closedir(d);
	return n;
}

static void test_delete_waits_for_readers_then_removes_files(void **state)
{
	char *dir = sbt_tmpdir("mgr-delete"), path[SB_PATH_MAX];
	struct sb_topic_config cfg = {0};
	struct sb_topic *t;
	struct sb_log *log;
	struct stat st;
	(void)state;
	struct sb_logmgr *mgr = open_mgr(dir);
	assert_int_equal(sb_logmgr_create_topic(mgr, "doomed", &cfg), 0);
	assert_int_equal(sb_logmgr_acquire(mgr, "doomed", &t), 0);
	assert_int_equal(sb_topic_log(t, 0, &log), 0);
	append_and_wait(log, 0, 10);
	assert_int_equal(sb_logmgr_delete_topic(mgr, "doomed"), 0);
	assert_int_equal(sb_logmgr_delete_topic(mgr, "doomed"), SB_ENOTOPIC);
	struct sb_topic *t2;
	assert_int_equal(sb_logmgr_acquire(mgr, "doomed", &t2), SB_ENOTOPIC);
	/* The holder still reads its data. */
	struct sb_log_read rd;
	assert_int_equal(sb_log_read(log, 0, 1 << 20, &rd), 0);
	assert_int_equal(sbt_check_batches(rd.data, rd.len, 32, TS0, 0), 10);
	free(rd.buf);
	snprintf(path, sizeof path, "%s/topics/doomed", dir);
	assert_int_not_equal(stat(path, &st), 0);
	snprintf(path, sizeof path, "%s/deleting", dir);
	assert_int_equal(count_entries(path), 1); /* moved aside, still readable */
	sb_topic_release(t); /* last reference: files go */
	assert_int_equal(count_entries(path), 0);
	/* A topic of the same name can be made again, empty. */
	assert_int_equal(sb_logmgr_create_topic(mgr, "doomed", &cfg), 0);
	assert_int_equal(sb_logmgr_acquire(mgr, "doomed", &t), 0);
	assert_int_equal(sb_topic_log(t, 0, &log), 0);
	struct sb_log_info info;
	sb_log_info(log, &info);
	assert_int_equal(info.stable_end, 0);
	sb_topic_release(t);
	sb_logmgr_close(mgr);
	assert_int_equal(sb_vfs_remove_tree(sb_vfs_posix(), dir), 0);
	free(dir);
}

static void test_leftovers_of_interrupted_creates_are_removed(void **state)
{
	char *dir = sbt_tmpdir("mgr-leftover"), path[SB_PATH_MAX];
	struct stat st;
	struct names ns = {0};
	(void)state;
	snprintf(path, sizeof path, "%s/creating", dir);
	assert_int_equal(sb_vfs_mkdir_durable(sb_vfs_posix(), path), 0);
	snprintf(path, sizeof path, "%s/creating/half", dir);
	assert_int_equal(mkdir(path, 0755), 0);
	struct sb_logmgr *mgr = open_mgr(dir);
	assert_int_not_equal(stat(path, &st), 0);
	assert_int_equal(sb_logmgr_list_topics(mgr, collect, &ns), 0);
	assert_int_equal(ns.n, 0);
	sb_logmgr_close(mgr);
	assert_int_equal(sb_vfs_remove_tree(sb_vfs_posix(), dir), 0);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topic_names_follow_the_rules),
		cmocka_unit_test(test_config_round_trips_and_rejects_bad_values),
		cmocka_unit_test(test_topics_persist_across_restart),
		cmocka_unit_test(test_delete_waits_for_readers_then_removes_files),
		cmocka_unit_test(test_leftovers_of_interrupted_creates_are_removed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
