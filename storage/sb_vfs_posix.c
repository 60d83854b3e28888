/* sb_vfs_posix.c - the POSIX implementation of struct sb_vfs: each op is one
 * plain syscall (or a short fixed sequence of them) returning -errno.
 *
 * Every fd is opened with O_CLOEXEC so that nothing leaks into child
 * processes. pread/pwrite/open/ftruncate retry EINTR; fdatasync and fsync are
 * never retried (after a failed sync the page state is unknown; the caller
 * must fail-stop, see RELIABILITY.md rule 4).
 */
#include "sb_vfs.h"

#include "sb_mutant.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h> /* rename */
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static int posix_open(struct sb_vfs *vfs, const char *path, int flags, unsigned mode)
{
	int fd;
	(void)vfs;
	do {
		fd = open(path, flags | O_CLOEXEC, (mode_t)mode);
	} while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : fd;
}

static int posix_close(struct sb_vfs *vfs, int fd)
{
	(void)vfs;
	/* Linux releases the fd even when close reports EINTR: never retry. */
	if (close(fd) != 0 && errno != EINTR)
		return -errno;
	return 0;
}

static int64_t posix_pread(struct sb_vfs *vfs, int fd, void *buf, size_t len, uint64_t off)
{
	ssize_t n;
	(void)vfs;
	if (off > INT64_MAX)
		return -EINVAL;
	do {
		n = pread(fd, buf, len, (off_t)off);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : (int64_t)n;
}

static int64_t posix_pwrite(struct sb_vfs *vfs, int fd, const void *buf, size_t len, uint64_t off)
{
	ssize_t n;
	(void)vfs;
	if (off > INT64_MAX)
		return -EINVAL;
	do {
		n = pwrite(fd, buf, len, (off_t)off);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : (int64_t)n;
}

static int posix_datasync(struct sb_vfs *vfs, int fd)
{
	(void)vfs;
	if (sb_mutant(SB_MUTANT_SKIP_FSYNC))
		return 0;
	int rc = fdatasync(fd) != 0 ? -errno : 0;
	return rc && sb_mutant(SB_MUTANT_IGNORE_FSYNC_ERROR) ? 0 : rc;
}

static int posix_truncate(struct sb_vfs *vfs, int fd, uint64_t len)
{
	int rc;
	(void)vfs;
	if (len > INT64_MAX)
		return -EINVAL;
	do {
		rc = ftruncate(fd, (off_t)len);
	} while (rc != 0 && errno == EINTR);
	return rc != 0 ? -errno : 0;
}

static int posix_fsize(struct sb_vfs *vfs, int fd, uint64_t *size)
{
	struct stat st;
	(void)vfs;
	if (fstat(fd, &st) != 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

static int posix_rename(struct sb_vfs *vfs, const char *from, const char *to)
{
	(void)vfs;
	return rename(from, to) != 0 ? -errno : 0;
}

static int posix_unlink(struct sb_vfs *vfs, const char *path)
{
	(void)vfs;
	return unlink(path) != 0 ? -errno : 0;
}

static int posix_mkdir(struct sb_vfs *vfs, const char *path, unsigned mode)
{
	(void)vfs;
	return mkdir(path, (mode_t)mode) != 0 ? -errno : 0;
}

static int posix_rmdir(struct sb_vfs *vfs, const char *path)
{
	(void)vfs;
	return rmdir(path) != 0 ? -errno : 0;
}

static int posix_sync_dir(struct sb_vfs *vfs, const char *path)
{
	int fd = posix_open(vfs, path, O_RDONLY | O_DIRECTORY, 0);
	int rc = 0;
	if (fd < 0)
		return fd;
	if (!sb_mutant(SB_MUTANT_SKIP_DIR_FSYNC) && fsync(fd) != 0)
		rc = -errno;
	if (close(fd) != 0 && errno != EINTR && rc == 0)
		rc = -errno;
	return rc;
}

/* d_type when the file system provides it, else lstat-like fstatat: a
 * symlink is never reported as a directory (remove_tree must not follow it). */
static int entry_is_dir(DIR *d, const struct dirent *de, int *is_dir)
{
	struct stat st;
	if (de->d_type != DT_UNKNOWN) {
		*is_dir = de->d_type == DT_DIR;
		return 0;
	}
	if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	*is_dir = S_ISDIR(st.st_mode);
	return 0;
}

static int posix_list_dir(struct sb_vfs *vfs, const char *path, sb_dir_cb cb, void *arg)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int rc = 0, is_dir = 0;
	(void)vfs;
	if (!d)
		return -errno;
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (!de) {
			rc = errno ? -errno : 0;
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		rc = entry_is_dir(d, de, &is_dir);
		if (rc == -ENOENT) { /* removed since readdir saw it */
			rc = 0;
			continue;
		}
		if (rc == 0)
			rc = cb(arg, de->d_name, is_dir);
		if (rc != 0)
			break;
	}
	closedir(d);
	return rc;
}

static int posix_stat(struct sb_vfs *vfs, const char *path, struct sb_stat *out)
{
	struct stat st;
	(void)vfs;
	if (stat(path, &st) != 0)
		return -errno;
	out->is_dir = S_ISDIR(st.st_mode);
	out->size = (uint64_t)st.st_size;
	return 0;
}

/* A read-only shared mapping of [0, len). MADV_RANDOM: the callers (SSTable
 * point lookups) touch one block at a time, so a fault on a page that is not
 * in page cache should read that page, not the default read-around window
 * (128 KiB) centred on it. Pages around it that are already in page cache
 * are still mapped with it (fault-around), so a warm table takes few faults
 * (measured: ~1,500 minor faults to map 124 MB by random lookups). The
 * advice is only advice: its failure is ignored. */
static int posix_mmap(struct sb_vfs *vfs, int fd, uint64_t len, const void **addr)
{
	(void)vfs;
	if (len == 0)
		return -EINVAL;
	if (len > SIZE_MAX) /* a 32-bit address space */
		return -EFBIG;
	void *p = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	(void)madvise(p, (size_t)len, MADV_RANDOM);
	*addr = p;
	return 0;
}

static int posix_munmap(struct sb_vfs *vfs, const void *addr, uint64_t len)
{
	(void)vfs;
	return munmap((void *)(uintptr_t)addr, (size_t)len) != 0 ? -errno : 0;
}

static const struct sb_vfs_ops posix_ops = {
	.open = posix_open,
	.close = posix_close,
	.pread = posix_pread,
	.pwrite = posix_pwrite,
	.datasync = posix_datasync,
	.truncate = posix_truncate,
	.fsize = posix_fsize,
	.rename = posix_rename,
	.unlink = posix_unlink,
	.mkdir = posix_mkdir,
	.rmdir = posix_rmdir,
	.sync_dir = posix_sync_dir,
	.list_dir = posix_list_dir,
	.stat = posix_stat,
	.mmap = posix_mmap,
	.munmap = posix_munmap,
};

static struct sb_vfs posix_vfs = {.ops = &posix_ops, .impl = NULL};

struct sb_vfs *sb_vfs_posix(void)
{
	return &posix_vfs;
}
