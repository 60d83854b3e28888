/* test_vfs.c - the POSIX vfs ops (results and error codes) and the
 * durable-write helpers of sb_vfs.h, including write_all over wrapping vfs
 * tables that return short writes, zero-byte writes and sync failures. */
#include "sb_test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb_vfs.h"

#define PATH_LEN 4096

static struct sb_vfs *V(void)
{
	return sb_vfs_posix();
}

/* sbt_tmpdir() hands out malloc'd paths; keep them to free at exit (LSan). */
static char *g_dirs[64];
static unsigned g_ndirs;

static char *tmpdir(void)
{
	char *d = sbt_tmpdir("vfs");
	assert_true(g_ndirs < 64);
	g_dirs[g_ndirs++] = d;
	return d;
}

static char *path_in(const char *dir, const char *name)
{
	static char buf[4][PATH_LEN];
	static unsigned next;
	char *p = buf[next++ % 4];
	snprintf(p, PATH_LEN, "%s/%s", dir, name);
	return p;
}

static void put_file(const char *path, const char *text)
{
	struct sb_vfs *v = V();
	int fd = v->ops->open(v, path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(sb_vfs_write_all(v, fd, text, strlen(text), 0), 0);
	assert_int_equal(v->ops->close(v, fd), 0);
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* ---- POSIX ops ---- */

static void test_open_missing_file_is_enoent(void **state)
{
	(void)state;
	char *dir = tmpdir();
	assert_int_equal(V()->ops->open(V(), path_in(dir, "nope"), O_RDONLY, 0), -ENOENT);
}

static void test_open_excl_on_existing_file_is_eexist(void **state)
{
	(void)state;
	char *dir = tmpdir();
	put_file(path_in(dir, "f"), "x");
	assert_int_equal(V()->ops->open(V(), path_in(dir, "f"), O_CREAT | O_EXCL | O_WRONLY, 0644),
			 -EEXIST);
}

static void test_open_sets_cloexec(void **state)
{
	(void)state;
	char *dir = tmpdir();
	int fd = V()->ops->open(V(), path_in(dir, "f"), O_CREAT | O_RDWR, 0644);
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(V()->ops->close(V(), fd), 0);
}

static void test_close_of_bad_fd_is_ebadf(void **state)
{
	(void)state;
	assert_int_equal(V()->ops->close(V(), 1 << 20), -EBADF);
}

static void test_pwrite_pread_truncate_fsize_roundtrip(void **state)
{
	(void)state;
	struct sb_vfs *v = V();
	char *dir = tmpdir();
	char buf[16] = {0};
	uint64_t size = 0;
	int fd = v->ops->open(v, path_in(dir, "f"), O_CREAT | O_RDWR, 0644);
	assert_true(fd >= 0);
	assert_int_equal(v->ops->pwrite(v, fd, "hello", 5, 10), 5);
	assert_int_equal(v->ops->fsize(v, fd, &size), 0);
	assert_int_equal(size, 15);
	assert_int_equal(v->ops->pread(v, fd, buf, sizeof(buf), 10), 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(v->ops->pread(v, fd, buf, sizeof(buf), 15), 0); /* EOF */
	assert_int_equal(v->ops->datasync(v, fd), 0);
	assert_int_equal(v->ops->truncate(v, fd, 12), 0);
	assert_int_equal(v->ops->fsize(v, fd, &size), 0);
	assert_int_equal(size, 12);
	assert_int_equal(v->ops->close(v, fd), 0);
	assert_int_equal(v->ops->pwrite(v, fd, "x", 1, 0), -EBADF);
	assert_int_equal(v->ops->datasync(v, fd), -EBADF);
}

static void test_rename_replaces_and_missing_source_is_enoent(void **state)
{
	(void)state;
	struct sb_vfs *v = V();
	char *dir = tmpdir();
	struct sb_stat st;
	put_file(path_in(dir, "a"), "aaaa");
	put_file(path_in(dir, "b"), "b");
	assert_int_equal(v->ops->rename(v, path_in(dir, "a"), path_in(dir, "b")), 0);
	assert_int_equal(v->ops->stat(v, path_in(dir, "b"), &st), 0);
	assert_int_equal(st.size, 4);
	assert_false(exists(path_in(dir, "a")));
	assert_int_equal(v->ops->rename(v, path_in(dir, "a"), path_in(dir, "c")), -ENOENT);
}

static void test_unlink_mkdir_rmdir_and_their_errors(void **state)
{
	(void)state;
	struct sb_vfs *v = V();
	char *dir = tmpdir();
	assert_int_equal(v->ops->unlink(v, path_in(dir, "nope")), -ENOENT);
	assert_int_equal(v->ops->mkdir(v, path_in(dir, "d"), 0755), 0);
	assert_int_equal(v->ops->mkdir(v, path_in(dir, "d"), 0755), -EEXIST);
	put_file(path_in(dir, "d/f"), "x");
	assert_int_equal(v->ops->rmdir(v, path_in(dir, "d")), -ENOTEMPTY);
	assert_int_equal(v->ops->unlink(v, path_in(dir, "d/f")), 0);
	assert_int_equal(v->ops->rmdir(v, path_in(dir, "d")), 0);
	assert_int_equal(v->ops->rmdir(v, path_in(dir, "d")), -ENOENT);
}

static void test_stat_reports_size_and_kind(void **state)
{
	(void)state;
	struct sb_vfs *v = V();
	char *dir = tmpdir();
	struct sb_stat st;
	put_file(path_in(dir, "f"), "123");
	assert_int_equal(v->ops->stat(v, path_in(dir, "f"), &st), 0);
	assert_false(st.is_dir);
	assert_int_equal(st.size, 3);
	assert_int_equal(v->ops->stat(v, dir, &st), 0);
	assert_true(st.is_dir);
	assert_int_equal(v->ops->stat(v, path_in(dir, "nope"), &st), -ENOENT);
}

static void test_sync_dir_works_and_missing_dir_is_enoent(void **state)
{
	(void)state;
	char *dir = tmpdir();
	assert_int_equal(V()->ops->sync_dir(V(), dir), 0);
	assert_int_equal(V()->ops->sync_dir(V(), path_in(dir, "nope")), -ENOENT);
}

struct listing {
	int files, dirs, other;
	int stop_after; /* 0 = never */
};

static int count_entry(void *arg, const char *name, int is_dir)
{
	struct listing *l = arg;
	if (strcmp(name, "f1") == 0 || strcmp(name, "f2") == 0)
		l->files += !is_dir;
	else if (strcmp(name, "sub") == 0)
		l->dirs += is_dir;
	else
		l->other++; /* ".", ".." or a wrong kind */
	if (l->stop_after && l->files + l->dirs + l->other == l->stop_after)
		return 42;
	return 0;
}

static void test_list_dir_reports_entries_with_kinds(void **state)
{
	(void)state;
	struct sb_vfs *v = V();
	char *dir = tmpdir();
	struct listing l = {0};
	put_file(path_in(dir, "f1"), "1");
	put_file(path_in(dir, "f2"), "2");
	assert_int_equal(v->ops->mkdir(v, path_in(dir, "sub"), 0755), 0);
	assert_int_equal(v->ops->list_dir(v, dir, count_entry, &l), 0);
	assert_int_equal(l.files, 2);
	assert_int_equal(l.dirs, 1);
	assert_int_equal(l.other, 0);
}

static void test_list_dir_stops_on_callback_result_and_missing_dir_is_enoent(void **state)
{
	(void)state;
	struct sb_vfs *v = V();
	char *dir = tmpdir();
	struct listing l = {.stop_after = 1};
	put_file(path_in(dir, "f1"), "1");
	put_file(path_in(dir, "f2"), "2");
	assert_int_equal(v->ops->list_dir(v, dir, count_entry, &l), 42);
	assert_int_equal(l.files + l.dirs + l.other, 1);
	assert_int_equal(v->ops->list_dir(v, path_in(dir, "nope"), count_entry, &l), -ENOENT);
}

/* ---- a wrapping vfs for fault injection ---- */

/* Forwards to the POSIX vfs (whose ops ignore their vfs argument) except for
 * the overridden ops below. */
struct wrap_vfs {
	struct sb_vfs vfs;
	struct sb_vfs_ops ops;
	uint32_t write_cap; /* > 0: each pwrite writes at most this many bytes */
	int write_zero;     /* pwrite returns 0 */
	int fail_datasync;  /* datasync returns this if non-zero */
	int pwrite_calls;
	int sync_dir_calls;
	int mkdir_calls;
};

static struct wrap_vfs *wrap_of(struct sb_vfs *v)
{
	return v->impl;
}

static int64_t wrap_pwrite(struct sb_vfs *v, int fd, const void *buf, size_t len, uint64_t off)
{
	struct wrap_vfs *w = wrap_of(v);
	w->pwrite_calls++;
	if (w->write_zero)
		return 0;
	if (w->write_cap && len > w->write_cap)
		len = w->write_cap;
	return V()->ops->pwrite(V(), fd, buf, len, off);
}

static int wrap_datasync(struct sb_vfs *v, int fd)
{
	struct wrap_vfs *w = wrap_of(v);
	return w->fail_datasync ? w->fail_datasync : V()->ops->datasync(V(), fd);
}

static int wrap_sync_dir(struct sb_vfs *v, const char *path)
{
	wrap_of(v)->sync_dir_calls++;
	return V()->ops->sync_dir(V(), path);
}

static int wrap_mkdir(struct sb_vfs *v, const char *path, unsigned mode)
{
	wrap_of(v)->mkdir_calls++;
	return V()->ops->mkdir(V(), path, mode);
}

static void wrap_init(struct wrap_vfs *w)
{
	memset(w, 0, sizeof(*w));
	w->ops = *V()->ops;
	w->ops.pwrite = wrap_pwrite;
	w->ops.datasync = wrap_datasync;
	w->ops.sync_dir = wrap_sync_dir;
	w->ops.mkdir = wrap_mkdir;
	w->vfs.ops = &w->ops;
	w->vfs.impl = w;
}

static void test_write_all_loops_over_short_writes(void **state)
{
	(void)state;
	struct wrap_vfs w;
	char *dir = tmpdir();
	char data[100], back[100];
	int fd;
	wrap_init(&w);
	w.write_cap = 7;
	for (int i = 0; i < 100; i++)
		data[i] = (char)('a' + i % 26);
	fd = w.ops.open(&w.vfs, path_in(dir, "f"), O_CREAT | O_RDWR, 0644);
	assert_true(fd >= 0);
	assert_int_equal(sb_vfs_write_all(&w.vfs, fd, data, sizeof(data), 3), 0);
	assert_int_equal(w.pwrite_calls, 15); /* ceil(100 / 7) */
	assert_int_equal(sb_vfs_read_all(V(), fd, back, sizeof(back), 3), 0);
	assert_memory_equal(back, data, sizeof(data));
	assert_int_equal(w.ops.close(&w.vfs, fd), 0);
}

static void test_write_all_with_zero_byte_writes_is_eio(void **state)
{
	(void)state;
	struct wrap_vfs w;
	char *dir = tmpdir();
	int fd;
	wrap_init(&w);
	w.write_zero = 1;
	fd = w.ops.open(&w.vfs, path_in(dir, "f"), O_CREAT | O_RDWR, 0644);
	assert_true(fd >= 0);
	assert_int_equal(sb_vfs_write_all(&w.vfs, fd, "abc", 3, 0), -EIO);
	assert_int_equal(w.ops.close(&w.vfs, fd), 0);
}

static void test_write_all_passes_errors_through(void **state)
{
	(void)state;
	assert_int_equal(sb_vfs_write_all(V(), 1 << 20, "abc", 3, 0), -EBADF);
}

static void test_read_all_past_eof_is_enodata(void **state)
{
	(void)state;
	char *dir = tmpdir();
	char buf[8];
	int fd;
	put_file(path_in(dir, "f"), "12345");
	fd = V()->ops->open(V(), path_in(dir, "f"), O_RDONLY, 0);
	assert_true(fd >= 0);
	assert_int_equal(sb_vfs_read_all(V(), fd, buf, 5, 0), 0);
	assert_int_equal(sb_vfs_read_all(V(), fd, buf, 6, 0), -ENODATA);
	assert_int_equal(V()->ops->close(V(), fd), 0);
}

/* ---- durable file replace and small-file reads ---- */

static void assert_file_is(const char *path, const char *text)
{
	void *data = NULL;
	size_t len = 0;
	assert_int_equal(sb_vfs_read_file(V(), path, 1 << 20, &data, &len), 0);
	assert_int_equal(len, strlen(text));
	assert_memory_equal(data, text, len);
	free(data);
}

static void test_write_file_durable_replaces_and_leaves_no_tmp(void **state)
{
	(void)state;
	struct wrap_vfs w;
	char *dir = tmpdir();
	wrap_init(&w);
	assert_int_equal(sb_vfs_write_file_durable(&w.vfs, dir, "conf", "v1", 2), 0);
	assert_file_is(path_in(dir, "conf"), "v1");
	assert_int_equal(sb_vfs_write_file_durable(&w.vfs, dir, "conf", "second", 6), 0);
	assert_file_is(path_in(dir, "conf"), "second");
	assert_false(exists(path_in(dir, "conf.tmp")));
	assert_int_equal(w.sync_dir_calls, 2); /* the directory is synced each time */
}

static void test_write_file_durable_failure_keeps_old_file_and_removes_tmp(void **state)
{
	(void)state;
	struct wrap_vfs w;
	char *dir = tmpdir();
	wrap_init(&w);
	assert_int_equal(sb_vfs_write_file_durable(&w.vfs, dir, "conf", "old", 3), 0);
	w.fail_datasync = -EIO;
	assert_int_equal(sb_vfs_write_file_durable(&w.vfs, dir, "conf", "new!", 4), -EIO);
	assert_file_is(path_in(dir, "conf"), "old");
	assert_false(exists(path_in(dir, "conf.tmp")));
	w.fail_datasync = 0;
	w.write_zero = 1;
	assert_int_equal(sb_vfs_write_file_durable(&w.vfs, dir, "conf", "new!", 4), -EIO);
	assert_file_is(path_in(dir, "conf"), "old");
	assert_false(exists(path_in(dir, "conf.tmp")));
}

static void test_write_file_durable_in_missing_dir_is_enoent(void **state)
{
	(void)state;
	char *dir = tmpdir();
	assert_int_equal(sb_vfs_write_file_durable(V(), path_in(dir, "nope"), "f", "x", 1),
			 -ENOENT);
}

static void test_read_file_larger_than_max_is_efbig(void **state)
{
	(void)state;
	char *dir = tmpdir();
	void *data = NULL;
	size_t len = 0;
	put_file(path_in(dir, "f"), "0123456789");
	assert_int_equal(sb_vfs_read_file(V(), path_in(dir, "f"), 9, &data, &len), -EFBIG);
	assert_null(data);
	assert_int_equal(sb_vfs_read_file(V(), path_in(dir, "f"), 10, &data, &len), 0);
	assert_int_equal(len, 10);
	free(data);
	assert_int_equal(sb_vfs_read_file(V(), path_in(dir, "nope"), 10, &data, &len), -ENOENT);
}

static void test_read_file_of_empty_file(void **state)
{
	(void)state;
	char *dir = tmpdir();
	void *data = NULL;
	size_t len = 99;
	put_file(path_in(dir, "f"), "");
	assert_int_equal(sb_vfs_read_file(V(), path_in(dir, "f"), 10, &data, &len), 0);
	assert_int_equal(len, 0);
	assert_non_null(data);
	free(data);
}

/* ---- trees ---- */

static void test_remove_tree_removes_nested_files_and_dirs(void **state)
{
	(void)state;
	struct sb_vfs *v = V();
	char *dir = tmpdir();
	char *root = strdup(path_in(dir, "t"));
	assert_int_equal(sb_vfs_mkdir_durable(v, path_in(root, "a/b/c")), 0);
	assert_int_equal(v->ops->mkdir(v, path_in(root, "empty"), 0755), 0);
	put_file(path_in(root, "top"), "1");
	put_file(path_in(root, "a/mid"), "2");
	put_file(path_in(root, "a/b/c/leaf"), "3");
	assert_int_equal(symlink(dir, path_in(root, "a/link-to-parent")), 0);
	assert_int_equal(sb_vfs_remove_tree(v, root), 0);
	assert_false(exists(root));
	assert_true(exists(dir)); /* the symlink was removed, not followed */
	assert_int_equal(sb_vfs_remove_tree(v, root), -ENOENT);
	free(root);
}

static void test_remove_tree_of_a_link_to_a_dir_removes_only_the_link(void **state)
{
	(void)state;
	char *dir = tmpdir();
	put_file(path_in(dir, "keep"), "1");
	assert_int_equal(symlink(dir, path_in(dir, "link")), 0);
	assert_int_equal(sb_vfs_remove_tree(V(), path_in(dir, "link")), 0);
	assert_false(exists(path_in(dir, "link")));
	assert_true(exists(path_in(dir, "keep")));
}

static void test_remove_tree_of_a_file_removes_it(void **state)
{
	(void)state;
	char *dir = tmpdir();
	put_file(path_in(dir, "f"), "1");
	assert_int_equal(sb_vfs_remove_tree(V(), path_in(dir, "f")), 0);
	assert_false(exists(path_in(dir, "f")));
}

static void test_mkdir_durable_creates_nested_path_and_syncs_each_parent(void **state)
{
	(void)state;
	struct wrap_vfs w;
	char *dir = tmpdir();
	struct sb_stat st;
	wrap_init(&w);
	assert_int_equal(sb_vfs_mkdir_durable(&w.vfs, path_in(dir, "x/y//z/")), 0);
	assert_int_equal(w.ops.stat(&w.vfs, path_in(dir, "x/y/z"), &st), 0);
	assert_true(st.is_dir);
	assert_int_equal(w.mkdir_calls, 3);
	assert_int_equal(w.sync_dir_calls, 3); /* dir, dir/x, dir/x/y */
	/* Existing path: nothing created, nothing synced. */
	assert_int_equal(sb_vfs_mkdir_durable(&w.vfs, path_in(dir, "x/y/z")), 0);
	assert_int_equal(w.mkdir_calls, 3);
	assert_int_equal(w.sync_dir_calls, 3);
	/* One missing level: one create, one sync of its parent. */
	assert_int_equal(sb_vfs_mkdir_durable(&w.vfs, path_in(dir, "x/y/z/w")), 0);
	assert_int_equal(w.mkdir_calls, 4);
	assert_int_equal(w.sync_dir_calls, 4);
}

static void test_mkdir_durable_through_a_file_is_enotdir(void **state)
{
	(void)state;
	char *dir = tmpdir();
	put_file(path_in(dir, "f"), "1");
	assert_int_equal(sb_vfs_mkdir_durable(V(), path_in(dir, "f")), -ENOTDIR);
	assert_int_equal(sb_vfs_mkdir_durable(V(), path_in(dir, "f/sub")), -ENOTDIR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_missing_file_is_enoent),
		cmocka_unit_test(test_open_excl_on_existing_file_is_eexist),
		cmocka_unit_test(test_open_sets_cloexec),
		cmocka_unit_test(test_close_of_bad_fd_is_ebadf),
		cmocka_unit_test(test_pwrite_pread_truncate_fsize_roundtrip),
		cmocka_unit_test(test_rename_replaces_and_missing_source_is_enoent),
		cmocka_unit_test(test_unlink_mkdir_rmdir_and_their_errors),
		cmocka_unit_test(test_stat_reports_size_and_kind),
		cmocka_unit_test(test_sync_dir_works_and_missing_dir_is_enoent),
		cmocka_unit_test(test_list_dir_reports_entries_with_kinds),
		cmocka_unit_test(test_list_dir_stops_on_callback_result_and_missing_dir_is_enoent),
		cmocka_unit_test(test_write_all_loops_over_short_writes),
		cmocka_unit_test(test_write_all_with_zero_byte_writes_is_eio),
		cmocka_unit_test(test_write_all_passes_errors_through),
		cmocka_unit_test(test_read_all_past_eof_is_enodata),
		cmocka_unit_test(test_write_file_durable_replaces_and_leaves_no_tmp),
		cmocka_unit_test(test_write_file_durable_failure_keeps_old_file_and_removes_tmp),
		cmocka_unit_test(test_write_file_durable_in_missing_dir_is_enoent),
		cmocka_unit_test(test_read_file_larger_than_max_is_efbig),
		cmocka_unit_test(test_read_file_of_empty_file),
		cmocka_unit_test(test_remove_tree_removes_nested_files_and_dirs),
		cmocka_unit_test(test_remove_tree_of_a_link_to_a_dir_removes_only_the_link),
		cmocka_unit_test(test_remove_tree_of_a_file_removes_it),
		cmocka_unit_test(test_mkdir_durable_creates_nested_path_and_syncs_each_parent),
		cmocka_unit_test(test_mkdir_durable_through_a_file_is_enotdir),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	for (unsigned i = 0; i < g_ndirs; i++)
		free(g_dirs[i]);
	return failed;
}
