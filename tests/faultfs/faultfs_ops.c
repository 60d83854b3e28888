/* faultfs_ops.c - the FUSE operations of faultfs: a passthrough of the
 * backing directory with fault hooks, and powerloss/revive.
 *
 * Every operation first passes ff_fault_gate() (freeze, delay), then takes
 * the file-system lock g_mu, fails with EIO in the dead state, and does the
 * backing call and the undo bookkeeping together under the lock, so that a
 * powerloss never sees half an operation. One big lock: correctness before
 * speed (the kernel still queues requests while one waits).
 *
 * Durability model (what `powerloss` keeps):
 *   - File data and size are durable as of the file's last successful
 *     fsync/fdatasync (both are treated alike; metadata such as mode and
 *     times is never undone). Writes, truncates, O_TRUNC opens and
 *     fallocate since then are reverted (faultfs_data.c).
 *   - A directory entry change (create, mkdir, unlink, rmdir, rename) is
 *     durable once every directory it changed has been fsynced after it
 *     (faultfs_ns.c). A file fsync does NOT make the file's name durable:
 *     a file created and fdatasync'd whose directory was never fsynced
 *     disappears. A rename over an existing file followed by an fsync of the
 *     directory is durable (the old target is gone for good).
 *   - While fsync_eio is on, syncs fail with EIO and make nothing durable.
 *   - After powerloss every operation fails with EIO until `revive`, which
 *     takes the current backing contents as the new durable baseline.
 */
#define FUSE_USE_VERSION 31
#include "faultfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_rootfd = -1;

/* "/a/b" -> "a/b"; "/" -> ".". path may be NULL (nullpath_ok). */
static const char *rel(const char *path)
{
	if (path == NULL || path[0] == '\0' || (path[0] == '/' && path[1] == '\0'))
		return ".";
	return path[0] == '/' ? path + 1 : path;
}

/* The trash folder is invisible through the mount. */
static bool hidden(const char *path)
{
	size_t n = strlen("/" FF_TRASH);

	return path != NULL && strncmp(path, "/" FF_TRASH, n) == 0 &&
	       (path[n] == '\0' || path[n] == '/');
}

static int enter(void)
{
	ff_fault_gate();
	pthread_mutex_lock(&g_mu);
	if (ff_fault_dead()) {
		pthread_mutex_unlock(&g_mu);
		ff_fault_note_failed();
		return -EIO;
	}
	return 0;
}

static int leave(int rc)
{
	pthread_mutex_unlock(&g_mu);
	return rc;
}

static int neg_errno(int rc)
{
	return rc == 0 ? 0 : -errno;
}

static void *ff_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	cfg->use_ino = 1;
	cfg->hard_remove = 1;   /* no .fuse_hidden renames: unlink goes to our journal */
	cfg->nullpath_ok = 1;   /* open files work after unlink, through fi->fh */
	cfg->entry_timeout = 0; /* powerloss changes the backing dir behind the */
	cfg->attr_timeout = 0;  /* kernel's back: cache nothing about names */
	cfg->negative_timeout = 0;
	cfg->direct_io = 0;
	cfg->kernel_cache = 0;
	if (ff_ctl_start() != 0)
		FF_LOG("error", "event=ctl_start_failed");
	return NULL;
}

static void ff_destroy(void *priv)
{
	(void)priv;
	ff_ctl_stop();
}

static int ff_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	int rc = enter();

	if (rc != 0)
		return rc;
	if (fi != NULL)
		rc = neg_errno(fstat((int)fi->fh, st));
	else if (hidden(path))
		rc = -ENOENT;
	else
		rc = neg_errno(fstatat(g_rootfd, rel(path), st, AT_SYMLINK_NOFOLLOW));
	return leave(rc);
}

/* An open directory; readdir gets no path (nullpath_ok), so remember the root. */
struct dir_handle {
	DIR *dp;
	bool root;
};

static struct dir_handle *dir_of(const struct fuse_file_info *fi)
{
	return (struct dir_handle *)(uintptr_t)fi->fh;
}

static int ff_opendir(const char *path, struct fuse_file_info *fi)
{
	struct dir_handle *h = NULL;
	int rc = enter(), fd;
	DIR *dp;

	if (rc != 0)
		return rc;
	if (hidden(path)) {
		rc = -ENOENT;
		goto out;
	}
	fd = openat(g_rootfd, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	h = malloc(sizeof(*h));
	dp = h == NULL ? NULL : fdopendir(fd);
	if (dp == NULL) {
		rc = h == NULL ? -ENOMEM : -errno;
		free(h);
		close(fd);
		goto out;
	}
	*h = (struct dir_handle){.dp = dp, .root = strcmp(rel(path), ".") == 0};
	fi->fh = (uint64_t)(uintptr_t)h;
out:
	return leave(rc);
}

static int ff_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	DIR *dp = dir_of(fi)->dp;
	bool root = dir_of(fi)->root;
	struct dirent *de;
	int rc = enter();

	(void)path;
	(void)off;
	(void)flags;
	if (rc != 0)
		return rc;
	rewinddir(dp); /* offsets are not used: the whole listing in one go */
	while ((de = readdir(dp)) != NULL) {
		struct stat st = {.st_ino = de->d_ino, .st_mode = (mode_t)DTTOIF(de->d_type)};

		if (root && strcmp(de->d_name, FF_TRASH) == 0)
			continue;
		if (fill(buf, de->d_name, &st, 0, 0) != 0)
			break;
	}
	return leave(0);
}

static int ff_releasedir(const char *path, struct fuse_file_info *fi)
{
	int rc = enter();

	(void)path;
	closedir(dir_of(fi)->dp); /* always: the handle is gone either way */
	free(dir_of(fi));
	return rc == 0 ? leave(0) : rc;
}

/* A sync of a file (is_dir false) or directory. */
static int do_sync(int fd, bool datasync, bool is_dir)
{
	struct stat st;
	int rc = enter();

	if (rc != 0)
		return rc;
	rc = ff_fault_sync_check();
	if (rc != 0) {
		ff_fault_note_failed();
		goto out;
	}
	rc = neg_errno(datasync && !is_dir ? fdatasync(fd) : fsync(fd));
	if (rc == 0 && is_dir)
		rc = neg_errno(fstat(fd, &st));
	if (rc != 0)
		goto out;
	if (is_dir)
		ff_ns_dir_synced(st.st_dev, st.st_ino);
	else
		ff_data_synced(fd);
out:
	ff_fault_note_sync(rc == 0);
	return leave(rc);
}

static int ff_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	return do_sync(dirfd(dir_of(fi)->dp), datasync != 0, true);
}

static int ff_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	return do_sync((int)fi->fh, datasync != 0, false);
}

static int ff_mkdir(const char *path, mode_t mode)
{
	int rc = enter();

	if (rc != 0)
		return rc;
	if (hidden(path)) {
		rc = -EPERM;
		goto out;
	}
	rc = ff_ns_room();
	if (rc == 0)
		rc = neg_errno(mkdirat(g_rootfd, rel(path), mode));
	if (rc == 0)
		ff_ns_created(rel(path), true);
out:
	return leave(rc);
}

static int ff_rmdir(const char *path)
{
	int rc = enter();

	if (rc != 0)
		return rc;
	rc = hidden(path) ? -ENOENT : ff_ns_rmdir(rel(path));
	return leave(rc);
}

static int ff_unlink(const char *path)
{
	int rc = enter();

	if (rc != 0)
		return rc;
	rc = hidden(path) ? -ENOENT : ff_ns_unlink(rel(path));
	return leave(rc);
}

static int ff_rename(const char *from, const char *to, unsigned int flags)
{
	int rc = enter();

	if (rc != 0)
		return rc;
	rc = hidden(from) || hidden(to) ? -EPERM : ff_ns_rename(rel(from), rel(to), flags);
	return leave(rc);
}

/* Truncates fd to size with undo and ENOSPC accounting for the growth. */
static int trunc_fd(int fd, off_t size)
{
	struct stat st;
	int rc;

	if (fstat(fd, &st) != 0)
		return -errno;
	if (size > st.st_size) {
		rc = ff_fault_charge((uint64_t)(size - st.st_size));
		if (rc != 0) {
			ff_fault_note_failed();
			return rc;
		}
	}
	rc = ff_data_before_truncate(fd, size);
	if (rc != 0)
		return rc;
	return neg_errno(ftruncate(fd, size));
}

/* Opens rel with flags; O_TRUNC goes through the undo log. new_file is set
 * when O_CREAT made the file. */
static int open_file(const char *r, int flags, mode_t mode, bool *new_file)
{
	struct stat st;
	int fd, rc;

	*new_file = false;
	if (flags & O_CREAT) {
		rc = ff_ns_room();
		if (rc != 0)
			return rc;
		*new_file = fstatat(g_rootfd, r, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT;
	}
	/* O_APPEND would make pwrite ignore the offset the kernel chose. */
	fd = openat(g_rootfd, r, (flags & ~(O_TRUNC | O_APPEND)) | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY && !*new_file) {
		rc = trunc_fd(fd, 0);
		if (rc != 0) {
			close(fd);
			return rc;
		}
	}
	if (*new_file)
		ff_ns_created(r, false);
	return fd;
}

static int ff_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	bool new_file;
	int rc = enter();

	if (rc != 0)
		return rc;
	if (hidden(path)) {
		rc = -EPERM;
		goto out;
	}
	rc = open_file(rel(path), fi->flags | O_CREAT, mode, &new_file);
	if (rc >= 0) {
		fi->fh = (uint64_t)rc;
		rc = 0;
	}
out:
	return leave(rc);
}

static int ff_open(const char *path, struct fuse_file_info *fi)
{
	bool new_file;
	int rc = enter();

	if (rc != 0)
		return rc;
	if (hidden(path)) {
		rc = -ENOENT;
		goto out;
	}
	rc = open_file(rel(path), fi->flags & ~(O_CREAT | O_EXCL), 0, &new_file);
	if (rc >= 0) {
		fi->fh = (uint64_t)rc;
		rc = 0;
	}
out:
	return leave(rc);
}

static int ff_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	ssize_t n;
	int rc = enter();

	(void)path;
	if (rc != 0)
		return rc;
	n = pread((int)fi->fh, buf, size, off);
	return leave(n < 0 ? -errno : (int)n);
}

static int ff_write(const char *path, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	ssize_t n;
	int rc = enter();

	(void)path;
	if (rc != 0)
		return rc;
	rc = ff_fault_charge(size);
	if (rc != 0) {
		ff_fault_note_failed();
		goto out;
	}
	rc = ff_data_before_write((int)fi->fh, off, size);
	if (rc != 0)
		goto out;
	n = pwrite((int)fi->fh, buf, size, off);
	if (n < 0) {
		rc = -errno;
		goto out;
	}
	ff_fault_note_write((size_t)n);
	rc = (int)n;
out:
	return leave(rc);
}

static int ff_flush(const char *path, struct fuse_file_info *fi)
{
	int rc = enter(), fd;

	(void)path;
	if (rc != 0)
		return rc;
	/* Like close(2) of one descriptor of the file: reports close errors. */
	fd = dup((int)fi->fh);
	rc = fd < 0 ? -errno : neg_errno(close(fd));
	return leave(rc);
}

static int ff_release(const char *path, struct fuse_file_info *fi)
{
	int rc = enter();

	(void)path;
	close((int)fi->fh); /* always: the kernel forgets the handle either way */
	return rc == 0 ? leave(0) : rc;
}

static int ff_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	int rc = enter(), fd = -1;

	if (rc != 0)
		return rc;
	if (fi != NULL) {
		rc = trunc_fd((int)fi->fh, size);
		goto out;
	}
	if (hidden(path)) {
		rc = -ENOENT;
		goto out;
	}
	fd = openat(g_rootfd, rel(path), O_WRONLY | O_CLOEXEC);
	rc = fd < 0 ? -errno : trunc_fd(fd, size);
out:
	if (fd >= 0)
		close(fd);
	return leave(rc);
}

static int ff_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
	const int zeroing = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
	struct stat st;
	int rc = enter(), fd;

	(void)path;
	if (rc != 0)
		return rc;
	if (fi == NULL || (mode & ~(FALLOC_FL_KEEP_SIZE | zeroing)) != 0) {
		rc = -EOPNOTSUPP;
		goto out;
	}
	fd = (int)fi->fh;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto out;
	}
	if (!(mode & FALLOC_FL_KEEP_SIZE) && off + len > st.st_size) {
		rc = ff_fault_charge((uint64_t)(off + len - st.st_size));
		if (rc != 0) {
			ff_fault_note_failed();
			goto out;
		}
	}
	/* Size growth is covered by the record's sync size; zeroing changes data. */
	rc = (mode & zeroing) ? ff_data_before_write(fd, off, (size_t)len)
	                      : ff_data_before_truncate(fd, st.st_size);
	if (rc == 0)
		rc = neg_errno(fallocate(fd, mode, off, len));
out:
	return leave(rc);
}

static int ff_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int rc = enter();

	if (rc != 0)
		return rc;
	if (fi != NULL)
		rc = neg_errno(fchmod((int)fi->fh, mode));
	else
		rc = hidden(path) ? -ENOENT : neg_errno(fchmodat(g_rootfd, rel(path), mode, 0));
	return leave(rc);
}

static int ff_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	int rc = enter();

	if (rc != 0)
		return rc;
	if (fi != NULL)
		rc = neg_errno(fchown((int)fi->fh, uid, gid));
	else if (hidden(path))
		rc = -ENOENT;
	else
		rc = neg_errno(fchownat(g_rootfd, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW));
	return leave(rc);
}

static int ff_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	int rc = enter();

	if (rc != 0)
		return rc;
	if (fi != NULL)
		rc = neg_errno(futimens((int)fi->fh, tv));
	else if (hidden(path))
		rc = -ENOENT;
	else
		rc = neg_errno(utimensat(g_rootfd, rel(path), tv, AT_SYMLINK_NOFOLLOW));
	return leave(rc);
}

static int ff_statfs(const char *path, struct statvfs *sv)
{
	int64_t budget;
	int rc = enter();

	(void)path;
	if (rc != 0)
		return rc;
	rc = neg_errno(fstatvfs(g_rootfd, sv));
	budget = ff_fault_budget();
	if (rc == 0 && budget >= 0 && sv->f_frsize > 0) {
		fsblkcnt_t blocks = (fsblkcnt_t)budget / sv->f_frsize;

		if (blocks < sv->f_bfree)
			sv->f_bfree = blocks;
		if (blocks < sv->f_bavail)
			sv->f_bavail = blocks;
	}
	return leave(rc);
}

const struct fuse_operations ff_ops = {
    .init = ff_init,
    .destroy = ff_destroy,
    .getattr = ff_getattr,
    .opendir = ff_opendir,
    .readdir = ff_readdir,
    .releasedir = ff_releasedir,
    .fsyncdir = ff_fsyncdir,
    .mkdir = ff_mkdir,
    .rmdir = ff_rmdir,
    .unlink = ff_unlink,
    .rename = ff_rename,
    .create = ff_create,
    .open = ff_open,
    .read = ff_read,
    .write = ff_write,
    .flush = ff_flush,
    .release = ff_release,
    .fsync = ff_fsync,
    .truncate = ff_truncate,
    .fallocate = ff_fallocate,
    .chmod = ff_chmod,
    .chown = ff_chown,
    .utimens = ff_utimens,
    .statfs = ff_statfs,
};

int ff_ops_init(int rootfd)
{
	g_rootfd = rootfd;
	return ff_ns_init(rootfd);
}

void ff_ops_fini(void)
{
	/* A clean unmount: what is in the backing directory now stays. */
	pthread_mutex_lock(&g_mu);
	ff_data_clear();
	ff_ns_clear();
	pthread_mutex_unlock(&g_mu);
}

void ff_powerloss(char *msg, size_t len)
{
	int files, ops;

	pthread_mutex_lock(&g_mu);
	ff_fault_set_dead(true);
	files = ff_data_revert_all();
	ops = ff_ns_revert_all();
	pthread_mutex_unlock(&g_mu);
	FF_LOG("info", "event=powerloss reverted_files=%d reverted_ops=%d", files, ops);
	snprintf(msg, len, "reverted_files=%d reverted_ops=%d", files, ops);
}

void ff_revive(void)
{
	pthread_mutex_lock(&g_mu);
	ff_data_clear();
	ff_ns_clear();
	ff_fault_set_dead(false);
	pthread_mutex_unlock(&g_mu);
	FF_LOG("info", "event=revive");
}

void ff_undo_counts(uint64_t *bytes, size_t *files, size_t *ops)
{
	pthread_mutex_lock(&g_mu);
	*bytes = ff_data_bytes();
	*files = ff_data_files();
	*ops = ff_ns_ops();
	pthread_mutex_unlock(&g_mu);
}
