/* test_simfs.c - unit tests for the simulated file system (storage/sb_simfs.h):
 * POSIX semantics and errors of every vfs op, the durability model (what each
 * crash mode keeps, directory entries needing sync_dir, atomic rename, the
 * prefix-consistency of RANDOM crashes over many seeds, determinism), every
 * fault (fail_nth, short writes, power-off, capacity) and every mutant. */
#include "sb_test.h"

#include "sb_simfs.h"
#include "sb_vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* One vfs call on the simulated file system. */
#define VOP(fs, op, ...) (sb_simfs_vfs(fs)->ops->op(sb_simfs_vfs(fs), __VA_ARGS__))

#define RDWR_CREAT (O_RDWR | O_CREAT)
#define JUNK_MAX 8192

static struct sb_simfs *new_fs(uint64_t seed)
{
	struct sb_simfs *fs = NULL;
	assert_int_equal(sb_simfs_new(seed, &fs), 0);
	assert_non_null(fs);
	return fs;
}

static int must_open(struct sb_simfs *fs, const char *path, int flags)
{
	int fd = VOP(fs, open, path, flags, 0644);
	if (fd < 0)
		fail_msg("open %s: %d", path, fd);
	return fd;
}

static void must_write(struct sb_simfs *fs, int fd, uint64_t off, const void *buf, size_t len)
{
	assert_int_equal(VOP(fs, pwrite, fd, buf, len, off), (int64_t)len);
}

/* Creates (or truncates) path with content s; datasyncs it if sync. */
static void make_file(struct sb_simfs *fs, const char *path, const char *s, int sync)
{
	int fd = must_open(fs, path, O_CREAT | O_TRUNC | O_WRONLY);
	must_write(fs, fd, 0, s, strlen(s));
	if (sync)
		assert_int_equal(VOP(fs, datasync, fd), 0);
	assert_int_equal(VOP(fs, close, fd), 0);
}

static void assert_bytes(struct sb_simfs *fs, const char *path, const void *want, uint64_t len)
{
	uint8_t *got = NULL;
	uint64_t n = 0;
	int rc = sb_simfs_read_whole(fs, path, &got, &n);
	if (rc)
		fail_msg("read %s: %d", path, rc);
	if (n != len || (len && memcmp(got, want, (size_t)len) != 0))
		fail_msg("%s: %llu bytes, not the %llu expected (or different)", path,
		         (unsigned long long)n, (unsigned long long)len);
	free(got);
}

static void assert_file(struct sb_simfs *fs, const char *path, const char *s)
{
	assert_bytes(fs, path, s, strlen(s));
}

static int exists(struct sb_simfs *fs, const char *path)
{
	struct sb_stat st;
	int rc = VOP(fs, stat, path, &st);
	assert_true(rc == 0 || rc == -ENOENT);
	return rc == 0;
}

/* Returns 1 if path holds exactly s. */
static int file_is(struct sb_simfs *fs, const char *path, const char *s)
{
	uint8_t *got = NULL;
	uint64_t n = 0;
	int same;
	if (sb_simfs_read_whole(fs, path, &got, &n))
		return 0;
	same = n == strlen(s) && memcmp(got, s, (size_t)n) == 0;
	free(got);
	return same;
}

/* ---- POSIX semantics ---- */

static void test_open_reports_posix_errors(void **state)
{
	struct sb_simfs *fs = new_fs(1);
	(void)state;
	assert_int_equal(VOP(fs, open, "/nope", O_RDONLY, 0), -ENOENT);
	assert_int_equal(VOP(fs, open, "/dir/f", RDWR_CREAT, 0644), -ENOENT);
	assert_int_equal(VOP(fs, mkdir, "/dir", 0755), 0);
	assert_int_equal(VOP(fs, open, "/dir", O_RDONLY, 0), -EISDIR);
	assert_int_equal(VOP(fs, open, "/", O_RDONLY, 0), -EISDIR);
	make_file(fs, "/dir/f", "x", 0);
	assert_int_equal(VOP(fs, open, "/dir/f", RDWR_CREAT | O_EXCL, 0644), -EEXIST);
	assert_int_equal(VOP(fs, open, "/dir", RDWR_CREAT | O_EXCL, 0644), -EEXIST);
	assert_int_equal(VOP(fs, open, "/dir/f/g", RDWR_CREAT, 0644), -ENOTDIR);
	assert_int_equal(VOP(fs, open, "/dir/f", O_ACCMODE, 0), -EINVAL);
	int fd = must_open(fs, "/dir/f", RDWR_CREAT); /* O_CREAT on an existing file */
	assert_int_equal(VOP(fs, close, fd), 0);
	assert_file(fs, "/dir/f", "x");
	assert_int_equal(VOP(fs, close, fd), -EBADF); /* double close */
	assert_int_equal(VOP(fs, close, -1), -EBADF);
	assert_int_equal(VOP(fs, close, 12345), -EBADF);
	sb_simfs_free(fs);
}

static void test_pread_pwrite_round_trip_with_holes_and_eof(void **state)
{
	struct sb_simfs *fs = new_fs(2);
	char buf[32];
	uint64_t size = 0;
	(void)state;
	int fd = must_open(fs, "/f", RDWR_CREAT);
	must_write(fs, fd, 0, "hello", 5);
	must_write(fs, fd, 8, "world", 5); /* a hole of 3 zeros */
	assert_int_equal(VOP(fs, fsize, fd, &size), 0);
	assert_int_equal(size, 13);
	assert_int_equal(VOP(fs, pread, fd, buf, sizeof(buf), 0), 13);
	assert_memory_equal(buf, "hello\0\0\0world", 13);
	assert_int_equal(VOP(fs, pread, fd, buf, 4, 10), 3); /* short at EOF */
	assert_memory_equal(buf, "rld", 3);
	assert_int_equal(VOP(fs, pread, fd, buf, 4, 13), 0);
	assert_int_equal(VOP(fs, pread, fd, buf, 4, 1000), 0);
	assert_int_equal(VOP(fs, pwrite, fd, "x", 0, 50), 0); /* empty write: no growth */
	assert_int_equal(VOP(fs, fsize, fd, &size), 0);
	assert_int_equal(size, 13);
	must_write(fs, fd, 1, "EL", 2);
	assert_bytes(fs, "/f", "hELlo\0\0\0world", 13);
	assert_int_equal(VOP(fs, close, fd), 0);
	assert_int_equal(VOP(fs, pread, fd, buf, 4, 0), -EBADF);
	assert_int_equal(VOP(fs, pwrite, fd, "x", 1, 0), -EBADF);
	assert_int_equal(VOP(fs, fsize, fd, &size), -EBADF);
	assert_int_equal(VOP(fs, datasync, fd), -EBADF);
	assert_int_equal(VOP(fs, truncate, fd, 0), -EBADF);
	sb_simfs_free(fs);
}

static void test_access_modes_are_enforced(void **state)
{
	struct sb_simfs *fs = new_fs(3);
	char buf[4];
	(void)state;
	make_file(fs, "/f", "abc", 0);
	int ro = must_open(fs, "/f", O_RDONLY);
	int wo = must_open(fs, "/f", O_WRONLY);
	assert_int_equal(VOP(fs, pwrite, ro, "x", 1, 0), -EBADF);
	assert_int_equal(VOP(fs, truncate, ro, 0), -EINVAL);
	assert_int_equal(VOP(fs, datasync, ro), 0); /* fdatasync works on any fd */
	assert_int_equal(VOP(fs, pread, wo, buf, 1, 0), -EBADF);
	must_write(fs, wo, 0, "X", 1);
	assert_int_equal(VOP(fs, pread, ro, buf, 3, 0), 3);
	assert_memory_equal(buf, "Xbc", 3);
	assert_int_equal(VOP(fs, close, ro), 0);
	assert_int_equal(VOP(fs, close, wo), 0);
	sb_simfs_free(fs);
}

static void test_truncate_o_trunc_and_o_append(void **state)
{
	struct sb_simfs *fs = new_fs(4);
	(void)state;
	make_file(fs, "/f", "abcdef", 0);
	int fd = must_open(fs, "/f", O_RDWR);
	assert_int_equal(VOP(fs, truncate, fd, 3), 0);
	assert_file(fs, "/f", "abc");
	assert_int_equal(VOP(fs, truncate, fd, 5), 0); /* grows with zeros */
	assert_bytes(fs, "/f", "abc\0\0", 5);
	assert_int_equal(VOP(fs, close, fd), 0);
	fd = must_open(fs, "/f", O_WRONLY | O_TRUNC);
	assert_file(fs, "/f", "");
	assert_int_equal(VOP(fs, close, fd), 0);
	fd = must_open(fs, "/f", O_WRONLY | O_APPEND);
	must_write(fs, fd, 0, "12", 2);
	must_write(fs, fd, 0, "34", 2); /* Linux: O_APPEND ignores the offset */
	assert_file(fs, "/f", "1234");
	assert_int_equal(VOP(fs, close, fd), 0);
	sb_simfs_free(fs);
}

static void test_unlinked_open_file_stays_usable(void **state)
{
	struct sb_simfs *fs = new_fs(5);
	char buf[8];
	uint64_t size = 0;
	(void)state;
	int fd = must_open(fs, "/u", RDWR_CREAT);
	must_write(fs, fd, 0, "abc", 3);
	assert_int_equal(VOP(fs, unlink, "/u"), 0);
	assert_false(exists(fs, "/u"));
	assert_int_equal(VOP(fs, unlink, "/u"), -ENOENT);
	must_write(fs, fd, 3, "de", 2);
	assert_int_equal(VOP(fs, pread, fd, buf, sizeof(buf), 0), 5);
	assert_memory_equal(buf, "abcde", 5);
	assert_int_equal(VOP(fs, fsize, fd, &size), 0);
	assert_int_equal(size, 5);
	assert_int_equal(VOP(fs, datasync, fd), 0);
	/* A new file under the same name is a different file. */
	make_file(fs, "/u", "new", 0);
	assert_int_equal(VOP(fs, pread, fd, buf, sizeof(buf), 0), 5);
	assert_int_equal(VOP(fs, close, fd), 0);
	assert_file(fs, "/u", "new");
	sb_simfs_free(fs);
}

static void test_rename_replaces_and_reports_posix_errors(void **state)
{
	struct sb_simfs *fs = new_fs(6);
	(void)state;
	make_file(fs, "/a", "A", 0);
	make_file(fs, "/b", "B", 0);
	assert_int_equal(VOP(fs, rename, "/a", "/b"), 0);
	assert_false(exists(fs, "/a"));
	assert_file(fs, "/b", "A");
	assert_int_equal(VOP(fs, rename, "/a", "/c"), -ENOENT);
	assert_int_equal(VOP(fs, rename, "/b", "/b"), 0); /* same file: nothing */
	assert_file(fs, "/b", "A");
	assert_int_equal(VOP(fs, mkdir, "/d", 0755), 0);
	assert_int_equal(VOP(fs, mkdir, "/e", 0755), 0);
	assert_int_equal(VOP(fs, rename, "/b", "/d"), -EISDIR);
	assert_int_equal(VOP(fs, rename, "/d", "/b"), -ENOTDIR);
	assert_int_equal(VOP(fs, rename, "/b", "/nodir/b"), -ENOENT);
	assert_int_equal(VOP(fs, rename, "/d", "/d/sub"), -EINVAL);
	assert_int_equal(VOP(fs, rename, "/", "/x"), -EBUSY);
	assert_int_equal(VOP(fs, rename, "/b", "/d/b"), 0); /* across directories */
	assert_file(fs, "/d/b", "A");
	assert_false(exists(fs, "/b"));
	assert_int_equal(VOP(fs, rename, "/e", "/d"), -ENOTEMPTY);
	assert_int_equal(VOP(fs, rename, "/d", "/e"), 0); /* over an empty directory */
	assert_file(fs, "/e/b", "A");
	assert_false(exists(fs, "/d"));
	sb_simfs_free(fs);
}

static void test_mkdir_rmdir_unlink_report_posix_errors(void **state)
{
	struct sb_simfs *fs = new_fs(7);
	(void)state;
	assert_int_equal(VOP(fs, mkdir, "/d", 0755), 0);
	assert_int_equal(VOP(fs, mkdir, "/d", 0755), -EEXIST);
	assert_int_equal(VOP(fs, mkdir, "/", 0755), -EEXIST);
	assert_int_equal(VOP(fs, mkdir, "/x/y", 0755), -ENOENT);
	make_file(fs, "/d/f", "f", 0);
	assert_int_equal(VOP(fs, mkdir, "/d/f", 0755), -EEXIST);
	assert_int_equal(VOP(fs, mkdir, "/d/f/g", 0755), -ENOTDIR);
	assert_int_equal(VOP(fs, rmdir, "/d"), -ENOTEMPTY);
	assert_int_equal(VOP(fs, rmdir, "/d/f"), -ENOTDIR);
	assert_int_equal(VOP(fs, rmdir, "/nope"), -ENOENT);
	assert_int_equal(VOP(fs, rmdir, "/"), -EBUSY);
	assert_int_equal(VOP(fs, unlink, "/d"), -EISDIR);
	assert_int_equal(VOP(fs, unlink, "/d/f"), 0);
	assert_int_equal(VOP(fs, rmdir, "/d"), 0);
	assert_false(exists(fs, "/d"));
	assert_int_equal(VOP(fs, sync_dir, "/d"), -ENOENT);
	make_file(fs, "/f", "f", 0);
	assert_int_equal(VOP(fs, sync_dir, "/f"), -ENOTDIR);
	sb_simfs_free(fs);
}

struct listed {
	struct sb_simfs *fs;
	char names[8][16];
	int is_dir[8];
	int n;
	int stop_at;
};

static int list_cb(void *arg, const char *name, int is_dir)
{
	struct listed *l = arg;
	struct sb_stat st;
	/* The callback may use the vfs: the listing holds no lock. */
	assert_int_equal(VOP(l->fs, stat, "/", &st), 0);
	assert_true(l->n < 8);
	strncpy(l->names[l->n], name, sizeof(l->names[0]) - 1);
	l->is_dir[l->n++] = is_dir;
	return l->n == l->stop_at ? 7 : 0;
}

static void test_list_dir_sorted_and_stoppable(void **state)
{
	struct sb_simfs *fs = new_fs(8);
	struct listed l = {.fs = fs};
	struct sb_stat st;
	(void)state;
	make_file(fs, "/b", "bb", 0);
	make_file(fs, "/a", "a", 0);
	assert_int_equal(VOP(fs, mkdir, "/d", 0755), 0);
	make_file(fs, "/c", "", 0);
	assert_int_equal(VOP(fs, list_dir, "/", list_cb, &l), 0);
	assert_int_equal(l.n, 4);
	assert_string_equal(l.names[0], "a");
	assert_string_equal(l.names[1], "b");
	assert_string_equal(l.names[2], "c");
	assert_string_equal(l.names[3], "d");
	assert_false(l.is_dir[0]);
	assert_true(l.is_dir[3]);
	memset(&l, 0, sizeof(l));
	l.fs = fs;
	l.stop_at = 2;
	assert_int_equal(VOP(fs, list_dir, "/", list_cb, &l), 7);
	assert_int_equal(l.n, 2);
	assert_int_equal(VOP(fs, list_dir, "/a", list_cb, &l), -ENOTDIR);
	assert_int_equal(VOP(fs, list_dir, "/zz", list_cb, &l), -ENOENT);
	assert_int_equal(VOP(fs, stat, "/b", &st), 0);
	assert_false(st.is_dir);
	assert_int_equal(st.size, 2);
	assert_int_equal(VOP(fs, stat, "/d", &st), 0);
	assert_true(st.is_dir);
	assert_int_equal(VOP(fs, stat, "/a/x", &st), -ENOTDIR);
	sb_simfs_free(fs);
}

static void test_paths_normalise_slashes_dots_and_relative(void **state)
{
	struct sb_simfs *fs = new_fs(9);
	char longname[300];
	(void)state;
	assert_int_equal(VOP(fs, mkdir, "a", 0755), 0); /* relative to "/" */
	assert_true(exists(fs, "/a"));
	assert_true(exists(fs, "//a///"));
	make_file(fs, "a//f", "x", 0);
	assert_file(fs, "/a/f", "x");
	assert_file(fs, "./a/./f", "x");
	assert_int_equal(VOP(fs, sync_dir, "."), 0);
	assert_int_equal(VOP(fs, sync_dir, "/"), 0);
	struct sb_stat st;
	assert_int_equal(VOP(fs, stat, "/a/../a/f", &st), -EINVAL);
	assert_int_equal(VOP(fs, stat, "", &st), -ENOENT);
	memset(longname, 'n', sizeof(longname));
	longname[0] = '/';
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(VOP(fs, stat, longname, &st), -ENAMETOOLONG);
	assert_int_equal(VOP(fs, open, longname, RDWR_CREAT, 0644), -ENAMETOOLONG);
	sb_simfs_free(fs);
}

/* ---- durability model ---- */

/* mkdir /d and make it durable in "/". */
static void durable_dir(struct sb_simfs *fs, const char *dir)
{
	assert_int_equal(VOP(fs, mkdir, dir, 0755), 0);
	assert_int_equal(VOP(fs, sync_dir, "/"), 0);
}

static void test_unsynced_write_lost_by_drop_kept_by_keep_all(void **state)
{
	(void)state;
	for (int mode = 0; mode < 2; mode++) {
		struct sb_simfs *fs = new_fs(10);
		durable_dir(fs, "/d");
		make_file(fs, "/d/f", "synced", 1);
		assert_int_equal(VOP(fs, sync_dir, "/d"), 0);
		int fd = must_open(fs, "/d/f", O_WRONLY);
		must_write(fs, fd, 6, "+more", 5);
		if (mode == 0) {
			sb_simfs_crash(fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
			assert_file(fs, "/d/f", "synced");
		} else {
			sb_simfs_crash(fs, SB_SIMFS_CRASH_KEEP_ALL);
			assert_file(fs, "/d/f", "synced+more");
		}
		/* The crash invalidated the fd. */
		assert_int_equal(VOP(fs, pwrite, fd, "x", 1, 0), -EBADF);
		assert_int_equal(VOP(fs, close, fd), -EBADF);
		/* And the result is durable: a second crash keeps it. */
		sb_simfs_crash(fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
		assert_file(fs, "/d/f", mode == 0 ? "synced" : "synced+more");
		sb_simfs_free(fs);
	}
}

static void test_synced_data_survives_every_mode(void **state)
{
	(void)state;
	for (uint64_t seed = 0; seed < 200; seed++) {
		struct sb_simfs *fs = new_fs(seed);
		durable_dir(fs, "/d");
		make_file(fs, "/d/f", "all of this was synced", 1);
		int fd = must_open(fs, "/d/f", O_RDWR);
		must_write(fs, fd, 4, "ALL", 3);
		assert_int_equal(VOP(fs, datasync, fd), 0);
		assert_int_equal(VOP(fs, sync_dir, "/d"), 0);
		sb_simfs_crash(fs, (enum sb_simfs_crash_mode)(seed % 3));
		assert_file(fs, "/d/f", "all ALLthis was synced");
		sb_simfs_free(fs);
	}
}

static void test_new_file_needs_dir_sync_to_survive(void **state)
{
	struct sb_simfs *fs = new_fs(11);
	(void)state;
	durable_dir(fs, "/d");
	make_file(fs, "/d/f", "data synced, entry not", 1);
	sb_simfs_crash(fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
	assert_false(exists(fs, "/d/f"));
	assert_true(exists(fs, "/d"));

	make_file(fs, "/d/f", "data and entry synced", 1);
	assert_int_equal(VOP(fs, sync_dir, "/d"), 0);
	sb_simfs_crash(fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
	assert_file(fs, "/d/f", "data and entry synced");

	/* Entry synced, data not: the file survives, empty. */
	make_file(fs, "/d/g", "entry synced, data not", 0);
	assert_int_equal(VOP(fs, sync_dir, "/d"), 0);
	sb_simfs_crash(fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
	assert_file(fs, "/d/g", "");
	sb_simfs_free(fs);
}

static void test_mkdir_needs_parent_sync_to_survive(void **state)
{
	struct sb_simfs *fs = new_fs(12);
	(void)state;
	assert_int_equal(VOP(fs, mkdir, "/d", 0755), 0);
	make_file(fs, "/d/f", "x", 1);
	assert_int_equal(VOP(fs, sync_dir, "/d"), 0);
	sb_simfs_crash(fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
	assert_false(exists(fs, "/d"));                  /* its parent "/" was never synced */
	assert_int_equal(VOP(fs, mkdir, "/d", 0755), 0); /* and the name is free */
	sb_simfs_free(fs);
}

static void test_unlink_without_dir_sync_comes_back(void **state)
{
	struct sb_simfs *fs = new_fs(13);
	(void)state;
	durable_dir(fs, "/d");
	make_file(fs, "/d/f", "still here", 1);
	assert_int_equal(VOP(fs, sync_dir, "/d"), 0);
	assert_int_equal(VOP(fs, unlink, "/d/f"), 0);
	sb_simfs_crash(fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
	assert_file(fs, "/d/f", "still here");
	assert_int_equal(VOP(fs, unlink, "/d/f"), 0);
	assert_int_equal(VOP(fs, sync_dir, "/d"), 0);
	sb_simfs_crash(fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
	assert_false(exists(fs, "/d/f"));
	sb_simfs_free(fs);
}

/* Survivors of a RANDOM crash among pending creates are a prefix of them. */
static void test_random_crash_keeps_a_prefix_of_entry_changes(void **state)
{
	int seen[4] = {0};
	(void)state;
	for (uint64_t seed = 0; seed < 300; seed++) {
		struct sb_simfs *fs = new_fs(seed);
		durable_dir(fs, "/d");
		make_file(fs, "/d/a", "a", 1);
		make_file(fs, "/d/b", "b", 1);
		make_file(fs, "/d/c", "c", 1);
		sb_simfs_crash(fs, SB_SIMFS_CRASH_RANDOM);
		int a = exists(fs, "/d/a"), b = exists(fs, "/d/b"), c = exists(fs, "/d/c");
		if ((b && !a) || (c && !b))
			fail_msg("seed %llu: a=%d b=%d c=%d is not a prefix",
			         (unsigned long long)seed, a, b, c);
		seen[a + b + c]++;
		if (c)
			assert_file(fs, "/d/c", "c"); /* data was synced */
		sb_simfs_free(fs);
	}
	for (int i = 0; i < 4; i++)
		assert_true(seen[i] > 0);
}

static void test_cross_directory_rename_per_mode(void **state)
{
	(void)state;
	for (int keep = 0; keep < 2; keep++) {
		struct sb_simfs *fs = new_fs(14);
		durable_dir(fs, "/x");
		durable_dir(fs, "/y");
		make_file(fs, "/x/f", "moved", 1);
		assert_int_equal(VOP(fs, sync_dir, "/x"), 0);
		assert_int_equal(VOP(fs, rename, "/x/f", "/y/f"), 0);
		sb_simfs_crash(fs, keep ? SB_SIMFS_CRASH_KEEP_ALL : SB_SIMFS_CRASH_DROP_UNSYNCED);
		assert_int_equal(exists(fs, "/x/f"), !keep);
		assert_int_equal(exists(fs, "/y/f"), keep);
		assert_file(fs, keep ? "/y/f" : "/x/f", "moved");
		sb_simfs_free(fs);
	}
}

/* Old content synced at /d/t; new content synced at /d/t.tmp, renamed over. */
static struct sb_simfs *rename_scenario(uint64_t seed, int sync_after)
{
	struct sb_simfs *fs = new_fs(seed);
	durable_dir(fs, "/d");
	make_file(fs, "/d/t", "old content", 1);
	assert_int_equal(VOP(fs, sync_dir, "/d"), 0);
	make_file(fs, "/d/t.tmp", "NEW CONTENT, LONGER", 1);
	assert_int_equal(VOP(fs, rename, "/d/t.tmp", "/d/t"), 0);
	if (sync_after)
		assert_int_equal(VOP(fs, sync_dir, "/d"), 0);
	return fs;
}

static void test_rename_is_atomic_across_crashes(void **state)
{
	int olds = 0, news = 0;
	(void)state;
	for (uint64_t seed = 0; seed < 500; seed++) {
		struct sb_simfs *fs = rename_scenario(seed, 0);
		sb_simfs_crash(fs, SB_SIMFS_CRASH_RANDOM);
		int is_old = file_is(fs, "/d/t", "old content");
		int is_new = file_is(fs, "/d/t", "NEW CONTENT, LONGER");
		if (!is_old && !is_new)
			fail_msg("seed %llu: /d/t is neither old nor new",
			         (unsigned long long)seed);
		olds += is_old;
		news += is_new;
		sb_simfs_free(fs);
	}
	assert_true(olds > 0 && news > 0);

	struct sb_simfs *fs = rename_scenario(1, 0);
	sb_simfs_crash(fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
	assert_file(fs, "/d/t", "old content");
	assert_false(exists(fs, "/d/t.tmp"));
	sb_simfs_free(fs);
	fs = rename_scenario(1, 0);
	sb_simfs_crash(fs, SB_SIMFS_CRASH_KEEP_ALL);
	assert_file(fs, "/d/t", "NEW CONTENT, LONGER");
	sb_simfs_free(fs);
	for (uint64_t seed = 0; seed < 50; seed++) {
		fs = rename_scenario(seed, 1);
		sb_simfs_crash(fs, SB_SIMFS_CRASH_RANDOM);
		assert_file(fs, "/d/t", "NEW CONTENT, LONGER");
		assert_false(exists(fs, "/d/t.tmp"));
		sb_simfs_free(fs);
	}
}

/* ---- RANDOM crash images are prefix-consistent ---- */

#define MODEL_MAX 512
#define BASE_LEN 64

/* A pending change as the test made it: a write, or a truncate (data NULL). */
struct tchange {
	uint64_t off;
	uint64_t len;
	const uint8_t *data;
};

struct model {
	uint8_t b[MODEL_MAX];
	uint64_t len;
};

static void model_resize(struct model *m, uint64_t len)
{
	if (len > m->len)
		memset(m->b + m->len, 0, (size_t)(len - m->len));
	m->len = len;
}

static void model_apply(struct model *m, const struct tchange *c, uint64_t limit)
{
	uint64_t n = c->len < limit ? c->len : limit;
	if (!c->data) {
		model_resize(m, c->len);
		return;
	}
	if (c->off + n > m->len)
		model_resize(m, c->off + n);
	memcpy(m->b + c->off, c->data, (size_t)n);
}

static int model_matches(const uint8_t *img, uint64_t len, const struct model *m, int junk)
{
	if (junk ? (len < m->len || len - m->len > JUNK_MAX) : len != m->len)
		return 0;
	return memcmp(img, m->b, (size_t)m->len) == 0;
}

/* Explains img as base + changes[0..k) + maybe a torn changes[k] (+ junk if
 * allowed). Returns 0 if impossible, else 1 and sets *torn, *k, *applied. */
static int explain(const uint8_t *img, uint64_t len, const struct model *base,
                   const struct tchange *ch, size_t n, int junk, int *torn, size_t *k_out,
                   uint64_t *applied)
{
	struct model m = *base, t;
	for (size_t k = 0; k <= n; k++) {
		if (k > 0)
			model_apply(&m, &ch[k - 1], UINT64_MAX);
		*k_out = k;
		*torn = 0;
		*applied = m.len;
		if (model_matches(img, len, &m, junk))
			return 1;
		for (uint64_t cut = 1; k < n && ch[k].data && cut < ch[k].len; cut++) {
			t = m;
			model_apply(&t, &ch[k], cut);
			*torn = 1;
			*applied = t.len;
			if (model_matches(img, len, &t, junk))
				return 1;
		}
	}
	return 0;
}

static uint8_t pattern_bytes[5][40];

static size_t pending_changes(struct tchange *ch)
{
	static const struct {
		uint64_t off, len;
		int write;
	} plan[] = {{10, 20, 1}, {60, 30, 1}, {50, 0, 0}, {100, 40, 1}, {12, 16, 1}};
	size_t n = sizeof(plan) / sizeof(plan[0]);
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < sizeof(pattern_bytes[0]); j++)
			pattern_bytes[i][j] = (uint8_t)(0x80 + i * 16 + j);
		ch[i].off = plan[i].write ? plan[i].off : 0;
		ch[i].len = plan[i].write ? plan[i].len : plan[i].off;
		ch[i].data = plan[i].write ? pattern_bytes[i] : NULL;
	}
	return n;
}

/* Builds /d/f = base (durable) + the pending changes, then crashes. */
static struct sb_simfs *pending_scenario(uint64_t seed, struct model *base, struct tchange *ch,
                                         size_t *n, enum sb_simfs_crash_mode mode)
{
	struct sb_simfs *fs = new_fs(seed);
	base->len = BASE_LEN;
	for (int i = 0; i < BASE_LEN; i++)
		base->b[i] = (uint8_t)(i * 7 + 1);
	*n = pending_changes(ch);
	durable_dir(fs, "/d");
	int fd = must_open(fs, "/d/f", RDWR_CREAT);
	must_write(fs, fd, 0, base->b, BASE_LEN);
	assert_int_equal(VOP(fs, datasync, fd), 0);
	assert_int_equal(VOP(fs, sync_dir, "/d"), 0);
	for (size_t i = 0; i < *n; i++) {
		if (ch[i].data)
			must_write(fs, fd, ch[i].off, ch[i].data, (size_t)ch[i].len);
		else
			assert_int_equal(VOP(fs, truncate, fd, ch[i].len), 0);
	}
	sb_simfs_crash(fs, mode);
	return fs;
}

struct outcome_counts {
	int durable, all, torn, junk_zero, junk_garbage;
};

static void classify(const uint8_t *img, uint64_t len, const struct model *base,
                     const struct tchange *ch, size_t n, struct outcome_counts *c)
{
	int torn;
	size_t k;
	uint64_t applied;
	int junk = 0;
	if (!explain(img, len, base, ch, n, 0, &torn, &k, &applied)) {
		junk = 1;
		if (!explain(img, len, base, ch, n, 1, &torn, &k, &applied))
			fail_msg("a %llu-byte image no prefix of the changes explains",
			         (unsigned long long)len);
	}
	c->durable += !junk && !torn && k == 0;
	c->all += !junk && !torn && k == n;
	c->torn += torn;
	if (junk) {
		int zero = 1;
		for (uint64_t i = applied; i < len; i++)
			zero &= img[i] == 0;
		c->junk_zero += zero;
		c->junk_garbage += !zero;
	}
}

static void test_random_crash_images_are_prefix_consistent(void **state)
{
	struct outcome_counts counts = {0};
	struct tchange ch[8];
	struct model base;
	size_t n;
	(void)state;
	for (uint64_t seed = 0; seed < 500; seed++) {
		struct sb_simfs *fs = pending_scenario(seed, &base, ch, &n, SB_SIMFS_CRASH_RANDOM);
		uint8_t *img = NULL;
		uint64_t len = 0;
		assert_int_equal(sb_simfs_read_whole(fs, "/d/f", &img, &len), 0);
		/* No pending change touches bytes [0, 10): always the durable ones. */
		assert_true(len >= 10);
		assert_memory_equal(img, base.b, 10);
		classify(img, len, &base, ch, n, &counts);
		free(img);
		sb_simfs_free(fs);
	}
	/* RANDOM really is random: every kind of outcome shows up. */
	assert_true(counts.durable > 0);
	assert_true(counts.all > 0);
	assert_true(counts.torn > 0);
	assert_true(counts.junk_zero > 0);
	assert_true(counts.junk_garbage > 0);
}

static void test_drop_and_keep_all_give_durable_and_volatile_images(void **state)
{
	struct tchange ch[8];
	struct model base, all;
	size_t n;
	(void)state;
	struct sb_simfs *fs = pending_scenario(1, &base, ch, &n, SB_SIMFS_CRASH_DROP_UNSYNCED);
	assert_bytes(fs, "/d/f", base.b, base.len);
	sb_simfs_free(fs);
	fs = pending_scenario(1, &base, ch, &n, SB_SIMFS_CRASH_KEEP_ALL);
	all = base;
	for (size_t i = 0; i < n; i++)
		model_apply(&all, &ch[i], UINT64_MAX);
	assert_bytes(fs, "/d/f", all.b, all.len);
	sb_simfs_free(fs);
}

/* FNV-1a over the content (or absence) of a few paths. */
static uint64_t image_digest(struct sb_simfs *fs)
{
	static const char *paths[] = {"/d/f", "/d/g", "/d/h", "/d/t"};
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		uint8_t *b = NULL;
		uint64_t len = 0;
		int rc = sb_simfs_read_whole(fs, paths[i], &b, &len);
		h = (h ^ (uint64_t)(rc + 1000)) * 1099511628211ull;
		for (uint64_t j = 0; rc == 0 && j < len; j++)
			h = (h ^ b[j]) * 1099511628211ull;
		h = (h ^ len) * 1099511628211ull;
		free(b);
	}
	return h;
}

static uint64_t random_crash_digest(uint64_t seed)
{
	struct tchange ch[8];
	struct model base;
	size_t n;
	struct sb_simfs *fs = pending_scenario(seed, &base, ch, &n, SB_SIMFS_CRASH_KEEP_ALL);
	make_file(fs, "/d/g", "gggg", 0);
	make_file(fs, "/d/h", "hhhhhhhh", 1);
	make_file(fs, "/d/t", "tt", 1);
	int fd = must_open(fs, "/d/f", O_WRONLY);
	must_write(fs, fd, 5, "pending", 7);
	sb_simfs_crash(fs, SB_SIMFS_CRASH_RANDOM);
	uint64_t h = image_digest(fs);
	sb_simfs_free(fs);
	return h;
}

static void test_same_seed_gives_same_image(void **state)
{
	uint64_t first = random_crash_digest(0);
	int differs = 0;
	(void)state;
	for (uint64_t seed = 0; seed < 50; seed++) {
		uint64_t h = random_crash_digest(seed);
		assert_true(h == random_crash_digest(seed));
		differs |= h != first;
	}
	assert_true(differs); /* and the seed matters */
}

static void test_crash_invalidates_fds_even_after_new_opens(void **state)
{
	struct sb_simfs *fs = new_fs(15);
	char buf[4];
	(void)state;
	durable_dir(fs, "/d");
	make_file(fs, "/d/a", "aaaa", 1);
	make_file(fs, "/d/b", "bbbb", 1);
	assert_int_equal(VOP(fs, sync_dir, "/d"), 0);
	int old = must_open(fs, "/d/a", O_RDONLY);
	sb_simfs_crash(fs, SB_SIMFS_CRASH_KEEP_ALL);
	int fresh = must_open(fs, "/d/b", O_RDONLY);
	assert_int_equal(VOP(fs, pread, old, buf, 4, 0), -EBADF);
	assert_int_equal(VOP(fs, pread, fresh, buf, 4, 0), 4);
	assert_memory_equal(buf, "bbbb", 4);
	assert_int_equal(VOP(fs, close, old), -EBADF);
	assert_int_equal(VOP(fs, close, fresh), 0);
	sb_simfs_free(fs);
}

/* ---- faults ---- */

static void test_fail_nth_hits_exactly_the_nth_matching_op(void **state)
{
	struct sb_simfs *fs = new_fs(16);
	char buf[8];
	struct sb_stat st;
	(void)state;
	int fd = must_open(fs, "/f", RDWR_CREAT);
	sb_simfs_fail_nth(fs, SB_SIMFS_OP_WRITE, 2, -EIO);
	must_write(fs, fd, 0, "a", 1);
	assert_int_equal(VOP(fs, pread, fd, buf, 1, 0), 1); /* other classes do not count */
	assert_int_equal(VOP(fs, datasync, fd), 0);
	must_write(fs, fd, 1, "b", 1);
	assert_int_equal(VOP(fs, pwrite, fd, "c", 1, 2), -EIO);
	assert_file(fs, "/f", "ab");   /* no effect */
	must_write(fs, fd, 2, "d", 1); /* one fault only */
	sb_simfs_crash(fs, SB_SIMFS_CRASH_KEEP_ALL);
	assert_file(fs, "/f", "abd"); /* the failed write left no pending change either */

	sb_simfs_fail_nth(fs, SB_SIMFS_OP_READ, 1, -EIO);
	assert_int_equal(VOP(fs, stat, "/f", &st), 0);
	assert_int_equal(VOP(fs, stat, "/f", &st), -EIO);
	assert_int_equal(VOP(fs, stat, "/f", &st), 0);

	sb_simfs_fail_nth(fs, SB_SIMFS_OP_WRITE, 0, -EIO);
	sb_simfs_fail_nth(fs, SB_SIMFS_OP_DIRSYNC, 0, EROFS); /* replaces; positive is negated */
	fd = must_open(fs, "/f", O_RDWR);
	must_write(fs, fd, 0, "A", 1);
	assert_int_equal(VOP(fs, datasync, fd), 0);
	assert_int_equal(VOP(fs, sync_dir, "/"), -EROFS);
	assert_int_equal(VOP(fs, sync_dir, "/"), 0);
	assert_int_equal(VOP(fs, close, fd), 0);
	sb_simfs_free(fs);
}

static void test_failed_meta_ops_change_nothing(void **state)
{
	struct sb_simfs *fs = new_fs(17);
	uint64_t size = 0;
	(void)state;
	make_file(fs, "/f", "content", 0);
	sb_simfs_fail_nth(fs, SB_SIMFS_OP_META, 0, -ENOSPC);
	assert_int_equal(VOP(fs, open, "/g", RDWR_CREAT, 0644), -ENOSPC);
	assert_false(exists(fs, "/g"));
	sb_simfs_fail_nth(fs, SB_SIMFS_OP_META, 0, -EIO);
	assert_int_equal(VOP(fs, open, "/f", O_WRONLY | O_TRUNC, 0), -EIO);
	assert_file(fs, "/f", "content");
	sb_simfs_fail_nth(fs, SB_SIMFS_OP_META, 0, -EIO);
	assert_int_equal(VOP(fs, rename, "/f", "/h"), -EIO);
	assert_true(exists(fs, "/f"));
	assert_false(exists(fs, "/h"));
	sb_simfs_fail_nth(fs, SB_SIMFS_OP_META, 0, -EIO);
	assert_int_equal(VOP(fs, unlink, "/f"), -EIO);
	assert_true(exists(fs, "/f"));
	sb_simfs_fail_nth(fs, SB_SIMFS_OP_META, 0, -EIO);
	assert_int_equal(VOP(fs, mkdir, "/d", 0755), -EIO);
	assert_false(exists(fs, "/d"));
	int fd = must_open(fs, "/f", O_RDWR);
	sb_simfs_fail_nth(fs, SB_SIMFS_OP_META, 0, -EIO);
	assert_int_equal(VOP(fs, truncate, fd, 1), -EIO);
	assert_int_equal(VOP(fs, fsize, fd, &size), 0);
	assert_int_equal(size, 7);
	assert_int_equal(VOP(fs, close, fd), 0);
	/* A failed datasync makes nothing durable. */
	assert_int_equal(VOP(fs, sync_dir, "/"), 0);
	fd = must_open(fs, "/f", O_RDWR);
	sb_simfs_fail_nth(fs, SB_SIMFS_OP_SYNC, 0, -EIO);
	assert_int_equal(VOP(fs, datasync, fd), -EIO);
	sb_simfs_crash(fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
	assert_file(fs, "/f", "");
	sb_simfs_free(fs);
}

static int count_cb(void *arg, const char *name, int is_dir)
{
	(void)name;
	(void)is_dir;
	(*(int *)arg)++;
	return 0;
}

static void test_op_count_counts_every_call_including_failures(void **state)
{
	struct sb_simfs *fs = new_fs(18);
	struct sb_stat st;
	uint8_t *b = NULL;
	uint64_t len;
	int entries = 0;
	(void)state;
	assert_int_equal(sb_simfs_op_count(fs), 0);
	make_file(fs, "/a", "a", 1); /* open, pwrite, datasync, close */
	make_file(fs, "/b", "b", 0); /* open, pwrite, close */
	assert_int_equal(sb_simfs_op_count(fs), 7);
	assert_int_equal(VOP(fs, stat, "/missing", &st), -ENOENT);
	assert_int_equal(VOP(fs, close, 99), -EBADF);
	assert_int_equal(VOP(fs, list_dir, "/", count_cb, &entries), 0);
	assert_int_equal(entries, 2);
	assert_int_equal(sb_simfs_op_count(fs), 10);
	assert_int_equal(sb_simfs_read_whole(fs, "/a", &b, &len), 0); /* a helper, not a call */
	free(b);
	sb_simfs_fail_nth(fs, SB_SIMFS_OP_ANY, 0, -EIO);
	assert_int_equal(VOP(fs, sync_dir, "/"), -EIO);
	assert_int_equal(sb_simfs_op_count(fs), 11);
	sb_simfs_free(fs);
}

static void test_power_off_fails_every_op_from_k_until_crash(void **state)
{
	struct sb_simfs *fs = new_fs(19);
	struct sb_stat st;
	(void)state;
	durable_dir(fs, "/d");
	int fd = must_open(fs, "/d/f", RDWR_CREAT);
	uint64_t k = sb_simfs_op_count(fs) + 2;
	sb_simfs_power_off_at(fs, k);
	must_write(fs, fd, 0, "one", 3);            /* ordinal k-2 */
	assert_int_equal(VOP(fs, datasync, fd), 0); /* ordinal k-1 */
	assert_int_equal(VOP(fs, sync_dir, "/d"), -EIO);
	assert_int_equal(VOP(fs, pwrite, fd, "two", 3, 3), -EIO);
	assert_int_equal(VOP(fs, stat, "/d", &st), -EIO);
	assert_int_equal(VOP(fs, mkdir, "/e", 0755), -EIO);
	assert_int_equal(VOP(fs, close, fd), -EIO);
	assert_file(fs, "/d/f", "one");
	sb_simfs_crash(fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
	assert_false(exists(fs, "/d/f")); /* the sync_dir never happened */
	assert_true(exists(fs, "/d"));    /* and power is back */

	/* A k already in the past takes effect at once; clear_faults ends it. */
	sb_simfs_power_off_at(fs, 0);
	assert_int_equal(VOP(fs, stat, "/d", &st), -EIO);
	sb_simfs_clear_faults(fs);
	assert_int_equal(VOP(fs, stat, "/d", &st), 0);
	sb_simfs_free(fs);
}

static void test_crash_clears_pending_faults(void **state)
{
	struct sb_simfs *fs = new_fs(20);
	(void)state;
	sb_simfs_fail_nth(fs, SB_SIMFS_OP_ANY, 0, -EIO);
	sb_simfs_short_write_nth(fs, 0, 1);
	sb_simfs_crash(fs, SB_SIMFS_CRASH_KEEP_ALL);
	make_file(fs, "/f", "whole", 0); /* neither failed nor cut short */
	assert_file(fs, "/f", "whole");
	sb_simfs_free(fs);
}

static void test_capacity_refuses_growth_without_partial_effect(void **state)
{
	struct sb_simfs *fs = new_fs(21);
	char big[100];
	(void)state;
	memset(big, 'x', sizeof(big));
	sb_simfs_set_capacity(fs, 100);
	int fd = must_open(fs, "/a", RDWR_CREAT);
	must_write(fs, fd, 0, big, 60);
	assert_int_equal(VOP(fs, pwrite, fd, big, 50, 60), -ENOSPC);
	assert_bytes(fs, "/a", big, 60);        /* nothing of it landed */
	must_write(fs, fd, 10, "overwrite", 9); /* no growth: fine when full-ish */
	must_write(fs, fd, 60, big, 40);
	int fd2 = must_open(fs, "/b", RDWR_CREAT);
	assert_int_equal(VOP(fs, pwrite, fd2, "y", 1, 0), -ENOSPC);
	/* Unlinked but open still holds space; closed and unlinked frees it. */
	assert_int_equal(VOP(fs, unlink, "/a"), 0);
	assert_int_equal(VOP(fs, pwrite, fd2, "y", 1, 0), -ENOSPC);
	assert_int_equal(VOP(fs, close, fd), 0);
	must_write(fs, fd2, 0, "y", 1);
	sb_simfs_set_capacity(fs, 0); /* no limit */
	must_write(fs, fd2, 1, big, 100);
	assert_int_equal(VOP(fs, close, fd2), 0);
	sb_simfs_free(fs);
}

static void test_short_write_nth_cuts_one_pwrite(void **state)
{
	struct sb_simfs *fs = new_fs(22);
	(void)state;
	int fd = must_open(fs, "/f", RDWR_CREAT);
	sb_simfs_short_write_nth(fs, 1, 3);
	must_write(fs, fd, 0, "0123456789", 10);
	assert_int_equal(VOP(fs, pwrite, fd, "abcdefghij", 10, 10), 3);
	must_write(fs, fd, 13, "ABCDEFGHIJ", 10);
	assert_file(fs, "/f", "0123456789abcABCDEFGHIJ");
	/* write_all loops over it... */
	sb_simfs_short_write_nth(fs, 0, 4);
	assert_int_equal(sb_vfs_write_all(sb_simfs_vfs(fs), fd, "klmnopqrst", 10, 0), 0);
	assert_file(fs, "/f", "klmnopqrstabcABCDEFGHIJ");
	/* ...and a zero-byte write makes it give up rather than spin. */
	sb_simfs_short_write_nth(fs, 0, 0);
	assert_int_equal(VOP(fs, pwrite, fd, "zz", 2, 0), 0);
	sb_simfs_short_write_nth(fs, 0, 0);
	assert_int_equal(sb_vfs_write_all(sb_simfs_vfs(fs), fd, "zz", 2, 0), -EIO);
	assert_int_equal(VOP(fs, close, fd), 0);
	sb_simfs_free(fs);
}

/* ---- mutants ---- */

/* Writes /d/f durably (as far as the disk claims), then loses power. Returns
 * whether the content survived. */
static int synced_write_survives(unsigned mutants, int inject_sync_error, int *sync_rc)
{
	struct sb_simfs *fs = new_fs(23);
	durable_dir(fs, "/d");
	sb_simfs_set_mutants(fs, mutants);
	int fd = must_open(fs, "/d/f", RDWR_CREAT);
	must_write(fs, fd, 0, "acked", 5);
	if (inject_sync_error)
		sb_simfs_fail_nth(fs, SB_SIMFS_OP_SYNC, 0, -EIO);
	*sync_rc = VOP(fs, datasync, fd);
	int dir_rc = VOP(fs, sync_dir, "/d");
	assert_int_equal(dir_rc, 0);
	sb_simfs_crash(fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
	int survived = file_is(fs, "/d/f", "acked");
	sb_simfs_free(fs);
	return survived;
}

static void test_mutants_break_exactly_what_they_say(void **state)
{
	int rc;
	(void)state;
	assert_true(synced_write_survives(SB_SIMFS_MUTANT_NONE, 0, &rc));
	assert_int_equal(rc, 0);
	/* SKIP_SYNC: datasync claims success, nothing becomes durable. */
	assert_false(synced_write_survives(SB_SIMFS_MUTANT_SKIP_SYNC, 0, &rc));
	assert_int_equal(rc, 0);
	/* SKIP_DIR_SYNC: the data is durable but the entry is not. */
	assert_false(synced_write_survives(SB_SIMFS_MUTANT_SKIP_DIR_SYNC, 0, &rc));
	assert_int_equal(rc, 0);
	/* IGNORE_SYNC_ERROR: only an injected error is swallowed. */
	assert_false(synced_write_survives(SB_SIMFS_MUTANT_NONE, 1, &rc));
	assert_int_equal(rc, -EIO);
	assert_false(synced_write_survives(SB_SIMFS_MUTANT_IGNORE_SYNC_ERROR, 1, &rc));
	assert_int_equal(rc, 0);
	assert_true(synced_write_survives(SB_SIMFS_MUTANT_IGNORE_SYNC_ERROR, 0, &rc));
	assert_int_equal(rc, 0);
}

/* ---- the durable-write helper on the simulated disk ---- */

static void test_write_file_durable_survives_drop_unsynced(void **state)
{
	struct sb_simfs *fs = new_fs(24);
	(void)state;
	assert_int_equal(sb_vfs_mkdir_durable(sb_simfs_vfs(fs), "/cfg/sub"), 0);
	assert_int_equal(sb_vfs_write_file_durable(sb_simfs_vfs(fs), "/cfg/sub", "meta", "v1", 2),
	                 0);
	sb_simfs_crash(fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
	assert_file(fs, "/cfg/sub/meta", "v1");
	assert_false(exists(fs, "/cfg/sub/meta.tmp"));
	sb_simfs_free(fs);
}

/* A fault at every step of the recipe: afterwards the file is old or new,
 * and new whenever the helper reported success. */
static void test_write_file_durable_is_atomic_under_faults(void **state)
{
	int failures = 0;
	(void)state;
	for (uint64_t nth = 0; nth < 12; nth++) {
		struct sb_simfs *fs = new_fs(nth);
		struct sb_vfs *vfs = sb_simfs_vfs(fs);
		assert_int_equal(sb_vfs_mkdir_durable(vfs, "/cfg"), 0);
		assert_int_equal(sb_vfs_write_file_durable(vfs, "/cfg", "meta", "old", 3), 0);
		sb_simfs_fail_nth(fs, SB_SIMFS_OP_ANY, nth, -EIO);
		int rc = sb_vfs_write_file_durable(vfs, "/cfg", "meta", "new!", 4);
		failures += rc != 0;
		sb_simfs_crash(fs, SB_SIMFS_CRASH_RANDOM);
		if (rc == 0)
			assert_file(fs, "/cfg/meta", "new!");
		else if (!file_is(fs, "/cfg/meta", "old") && !file_is(fs, "/cfg/meta", "new!"))
			fail_msg("fault at op %llu: /cfg/meta is neither old nor new",
			         (unsigned long long)nth);
		sb_simfs_free(fs);
	}
	assert_true(failures >= 4); /* open, write, datasync, rename, sync_dir */
}

/* ---- threads ---- */

struct worker {
	struct sb_simfs *fs;
	char path[16];
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct sb_vfs *vfs = sb_simfs_vfs(w->fs);
	for (int i = 0; i < 300; i++) {
		int fd = vfs->ops->open(vfs, w->path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd < 0 || vfs->ops->pwrite(vfs, fd, "x", 1, 0) != 1 ||
		    vfs->ops->datasync(vfs, fd) != 0 || vfs->ops->close(vfs, fd) != 0 ||
		    vfs->ops->sync_dir(vfs, "/") != 0)
			return (void *)1;
	}
	return NULL;
}

static void test_concurrent_use_is_safe(void **state)
{
	struct sb_simfs *fs = new_fs(25);
	struct worker w[2] = {{fs, "/w0"}, {fs, "/w1"}};
	pthread_t t[2];
	void *ret;
	char want[301];
	(void)state;
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(t[i], &ret), 0);
		assert_null(ret);
	}
	memset(want, 'x', 300);
	want[300] = '\0';
	sb_simfs_crash(fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
	assert_file(fs, "/w0", want);
	assert_file(fs, "/w1", want);
	assert_int_equal(sb_simfs_op_count(fs), 2 * 300 * 5);
	sb_simfs_free(fs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_reports_posix_errors),
	    cmocka_unit_test(test_pread_pwrite_round_trip_with_holes_and_eof),
	    cmocka_unit_test(test_access_modes_are_enforced),
	    cmocka_unit_test(test_truncate_o_trunc_and_o_append),
	    cmocka_unit_test(test_unlinked_open_file_stays_usable),
	    cmocka_unit_test(test_rename_replaces_and_reports_posix_errors),
	    cmocka_unit_test(test_mkdir_rmdir_unlink_report_posix_errors),
	    cmocka_unit_test(test_list_dir_sorted_and_stoppable),
	    cmocka_unit_test(test_paths_normalise_slashes_dots_and_relative),
	    cmocka_unit_test(test_unsynced_write_lost_by_drop_kept_by_keep_all),
	    cmocka_unit_test(test_synced_data_survives_every_mode),
	    cmocka_unit_test(test_new_file_needs_dir_sync_to_survive),
	    cmocka_unit_test(test_mkdir_needs_parent_sync_to_survive),
	    cmocka_unit_test(test_unlink_without_dir_sync_comes_back),
	    cmocka_unit_test(test_random_crash_keeps_a_prefix_of_entry_changes),
	    cmocka_unit_test(test_cross_directory_rename_per_mode),
	    cmocka_unit_test(test_rename_is_atomic_across_crashes),
	    cmocka_unit_test(test_random_crash_images_are_prefix_consistent),
	    cmocka_unit_test(test_drop_and_keep_all_give_durable_and_volatile_images),
	    cmocka_unit_test(test_same_seed_gives_same_image),
	    cmocka_unit_test(test_crash_invalidates_fds_even_after_new_opens),
	    cmocka_unit_test(test_fail_nth_hits_exactly_the_nth_matching_op),
	    cmocka_unit_test(test_failed_meta_ops_change_nothing),
	    cmocka_unit_test(test_op_count_counts_every_call_including_failures),
	    cmocka_unit_test(test_power_off_fails_every_op_from_k_until_crash),
	    cmocka_unit_test(test_crash_clears_pending_faults),
	    cmocka_unit_test(test_capacity_refuses_growth_without_partial_effect),
	    cmocka_unit_test(test_short_write_nth_cuts_one_pwrite),
	    cmocka_unit_test(test_mutants_break_exactly_what_they_say),
	    cmocka_unit_test(test_write_file_durable_survives_drop_unsynced),
	    cmocka_unit_test(test_write_file_durable_is_atomic_under_faults),
	    cmocka_unit_test(test_concurrent_use_is_safe),
	};
	return cmocka_run_group_tests_name("simfs", tests, NULL, NULL);
}
