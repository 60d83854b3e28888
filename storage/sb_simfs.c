/* sb_simfs.c - the simulated file system's vfs ops, paths, fds and faults
 * (the images and the crash itself are in sb_simfs_crash.c; the model is in
 * sb_simfs.h).
 *
 * Namespace: inodes (files and directories) in a tree under "/". A path is
 * absolute or relative to "/"; repeated and trailing slashes and "."
 * components are ignored; ".." is refused with -EINVAL (the storage layer
 * never uses it). Lookups walk the volatile entry tables.
 *
 * POSIX behaviour, with -errno results: open honours O_CREAT, O_EXCL, O_TRUNC
 * (a pending truncate to 0, also with O_RDONLY, as Linux does) and O_APPEND
 * (pwrite then writes at the end, as Linux does); opening a directory is
 * -EISDIR (directories are only synced by path, with sync_dir). Writes on an
 * O_RDONLY fd and reads on an O_WRONLY fd are -EBADF, truncate on an
 * O_RDONLY fd -EINVAL. An unlinked file stays usable through its open fds.
 * list_dir reports entries in name order and calls the callback without the
 * lock held, so the callback may use the vfs.
 *
 * Faults: every vfs call (close too) takes the next ordinal of op_count.
 * Power-off is checked first, then fail_nth (close belongs to no op class,
 * so only power-off can fail it; it still releases the fd, as Linux's close
 * does). A failed op changes nothing. Checks happen before argument
 * validation, so "the nth matching op" counts calls, valid or not. short
 * writes count every pwrite call. Capacity counts the volatile bytes of files
 * still reachable from "/" or through an open fd.
 */
#include "sb_simfs_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#define NAME_BYTES_MAX SB_SIMFS__NAME_BYTES_MAX

static struct sb_simfs *fs_lock(struct sb_vfs *vfs)
{
	struct sb_simfs *fs = vfs->impl;
	pthread_mutex_lock(&fs->mu);
	return fs;
}

static void fs_unlock(struct sb_simfs *fs)
{
	pthread_mutex_unlock(&fs->mu);
}

/* ---- the fault gate ---- */

/* Counts one vfs call; -EIO once the power is off. */
static int op_power(struct sb_simfs *fs)
{
	uint64_t ordinal = fs->op_count++;
	return fs->power_armed && ordinal >= fs->power_at ? -EIO : 0;
}

/* The injected error if this call is the one fail_nth picked, else 0. */
static int op_fault(struct sb_simfs *fs, unsigned op_class)
{
	if (!fs->fault_armed || !(fs->fault_mask & op_class))
		return 0;
	if (fs->fault_left > 0) {
		fs->fault_left--;
		return 0;
	}
	fs->fault_armed = 0;
	return fs->fault_err;
}

static int op_begin(struct sb_simfs *fs, unsigned op_class)
{
	int rc = op_power(fs);
	return rc ? rc : op_fault(fs, op_class);
}

/* The byte limit of this pwrite: short_max if it is the picked one. */
static uint64_t short_take(struct sb_simfs *fs)
{
	if (!fs->short_armed)
		return UINT64_MAX;
	if (fs->short_left > 0) {
		fs->short_left--;
		return UINT64_MAX;
	}
	fs->short_armed = 0;
	return fs->short_max;
}

/* ---- paths ---- */

/* Copies the next component of *p (skipping slashes and ".") into name and
 * advances *p; returns its length, 0 at the end, or -errno. */
static int next_component(const char **p, char name[NAME_BYTES_MAX + 1])
{
	const char *s = *p;
	size_t n;
	for (;;) {
		while (*s == '/')
			s++;
		n = strcspn(s, "/");
		if (n != 1 || s[0] != '.')
			break;
		s++;
	}
	if (n > NAME_BYTES_MAX)
		return -ENAMETOOLONG;
	if (n == 2 && s[0] == '.' && s[1] == '.')
		return -EINVAL;
	memcpy(name, s, n);
	name[n] = '\0';
	*p = s + n;
	return (int)n;
}

/* Resolves all but the last component of path: *dir is the directory that
 * holds the last one, leaf its name ("" when path names "/" itself). */
static int resolve_parent(struct sb_simfs *fs, const char *path, struct sb_simfs__inode **dir,
                          char leaf[NAME_BYTES_MAX + 1])
{
	char name[NAME_BYTES_MAX + 1];
	struct sb_simfs__inode *cur = fs->root;
	int n, m;

	if (!path)
		return -EFAULT;
	if (!*path)
		return -ENOENT;
	if (strnlen(path, SB_SIMFS__PATH_BYTES_MAX) >= SB_SIMFS__PATH_BYTES_MAX)
		return -ENAMETOOLONG;
	n = next_component(&path, leaf);
	while (n > 0 && (m = next_component(&path, name)) != 0) {
		if (m < 0)
			return m;
		struct sb_simfs__inode *child = sb_simfs__table_get(&cur->vtab, leaf);
		if (!child)
			return -ENOENT;
		if (!child->is_dir)
			return -ENOTDIR;
		cur = child;
		memcpy(leaf, name, (size_t)m + 1);
	}
	if (n < 0)
		return n;
	*dir = cur;
	return 0;
}

static int resolve(struct sb_simfs *fs, const char *path, struct sb_simfs__inode **out)
{
	char leaf[NAME_BYTES_MAX + 1];
	struct sb_simfs__inode *dir;
	int rc = resolve_parent(fs, path, &dir, leaf);
	if (rc)
		return rc;
	*out = leaf[0] ? sb_simfs__table_get(&dir->vtab, leaf) : dir;
	return *out ? 0 : -ENOENT;
}

/* ---- fds ---- */

static struct sb_simfs__fd *fd_get(struct sb_simfs *fs, int fd)
{
	long slot = (long)fd - fs->fd_base;
	if (slot < 0 || slot >= SB_SIMFS__FDS_MAX || !fs->fds[slot].ino)
		return NULL;
	return &fs->fds[slot];
}

static int fd_free_slot(struct sb_simfs *fs)
{
	for (int i = 0; i < SB_SIMFS__FDS_MAX; i++)
		if (!fs->fds[i].ino)
			return i;
	return -EMFILE;
}

static int fd_writable(const struct sb_simfs__fd *e)
{
	return (e->flags & O_ACCMODE) != O_RDONLY;
}

/* Volatile bytes of the files a process can still reach. */
static uint64_t used_bytes(struct sb_simfs *fs)
{
	uint64_t sum = 0;
	sb_simfs__mark_begin(fs);
	sb_simfs__mark(fs, fs->root, 0);
	for (int i = 0; i < SB_SIMFS__FDS_MAX; i++)
		if (fs->fds[i].ino)
			sb_simfs__mark(fs, fs->fds[i].ino, 0);
	for (struct sb_simfs__inode *ino = fs->head; ino; ino = ino->next)
		if (!ino->is_dir && ino->mark == fs->mark_epoch)
			sum += ino->vol.len;
	return sum;
}

/* ---- file ops ---- */

static int open_locked(struct sb_simfs *fs, const char *path, int flags)
{
	char leaf[NAME_BYTES_MAX + 1];
	struct sb_simfs__inode *dir, *f;
	int acc = flags & O_ACCMODE, slot, rc;

	if (acc != O_RDONLY && acc != O_WRONLY && acc != O_RDWR)
		return -EINVAL;
	if ((rc = resolve_parent(fs, path, &dir, leaf)))
		return rc;
	if (!leaf[0])
		return -EISDIR;
	f = sb_simfs__table_get(&dir->vtab, leaf);
	if (f && (flags & O_CREAT) && (flags & O_EXCL))
		return -EEXIST;
	if (f && f->is_dir)
		return -EISDIR;
	if (!f && !(flags & O_CREAT))
		return -ENOENT;
	if ((slot = fd_free_slot(fs)) < 0)
		return slot;
	if (!f) {
		f = sb_simfs__inode_new(fs, 0);
		sb_simfs__dir_change(dir, SB_SIMFS__DIROP_SET, leaf, NULL, f);
	} else if (flags & O_TRUNC) {
		sb_simfs__file_truncate(f, 0);
	}
	fs->fds[slot].ino = f;
	fs->fds[slot].flags = flags;
	return fs->fd_base + slot;
}

static int simfs_open(struct sb_vfs *vfs, const char *path, int flags, unsigned mode)
{
	struct sb_simfs *fs = fs_lock(vfs);
	int rc = op_begin(fs, SB_SIMFS_OP_META);
	(void)mode;
	if (!rc)
		rc = open_locked(fs, path, flags);
	fs_unlock(fs);
	return rc;
}

static int simfs_close(struct sb_vfs *vfs, int fd)
{
	struct sb_simfs *fs = fs_lock(vfs);
	int rc = op_power(fs);
	struct sb_simfs__fd *e = fd_get(fs, fd);
	if (e)
		e->ino = NULL;
	else if (!rc)
		rc = -EBADF;
	fs_unlock(fs);
	return rc;
}

static int64_t read_locked(struct sb_simfs *fs, int fd, void *buf, size_t len, uint64_t off)
{
	struct sb_simfs__fd *e = fd_get(fs, fd);
	const struct sb_simfs__bytes *b;
	uint64_t n;

	if (!e || (e->flags & O_ACCMODE) == O_WRONLY)
		return -EBADF;
	if (off > INT64_MAX)
		return -EINVAL;
	b = &e->ino->vol;
	if (off >= b->len || len == 0)
		return 0;
	n = b->len - off < len ? b->len - off : len;
	memcpy(buf, b->data + off, (size_t)n);
	return (int64_t)n;
}

static int64_t simfs_pread(struct sb_vfs *vfs, int fd, void *buf, size_t len, uint64_t off)
{
	struct sb_simfs *fs = fs_lock(vfs);
	int64_t rc = op_begin(fs, SB_SIMFS_OP_READ);
	if (!rc)
		rc = read_locked(fs, fd, buf, len, off);
	fs_unlock(fs);
	return rc;
}

static int64_t write_locked(struct sb_simfs *fs, int fd, const void *buf, size_t len, uint64_t off,
                            uint64_t limit)
{
	struct sb_simfs__fd *e = fd_get(fs, fd);
	struct sb_simfs__inode *f;
	uint64_t n = len < limit ? len : limit;

	if (!e || !fd_writable(e))
		return -EBADF;
	if (off > INT64_MAX)
		return -EINVAL;
	f = e->ino;
	if (e->flags & O_APPEND)
		off = f->vol.len;
	if (n == 0)
		return 0;
	if (off > SB_SIMFS__FILE_BYTES_MAX || n > SB_SIMFS__FILE_BYTES_MAX - off)
		return -EFBIG;
	if (fs->capacity && off + n > f->vol.len &&
	    used_bytes(fs) + (off + n - f->vol.len) > fs->capacity)
		return -ENOSPC;
	sb_simfs__file_write(f, off, buf, n);
	return (int64_t)n;
}

static int64_t simfs_pwrite(struct sb_vfs *vfs, int fd, const void *buf, size_t len, uint64_t off)
{
	struct sb_simfs *fs = fs_lock(vfs);
	uint64_t limit = short_take(fs);
	int64_t rc = op_begin(fs, SB_SIMFS_OP_WRITE);
	if (!rc)
		rc = write_locked(fs, fd, buf, len, off, limit);
	fs_unlock(fs);
	return rc;
}

static int sync_locked(struct sb_simfs *fs, int fd)
{
	struct sb_simfs__fd *e = fd_get(fs, fd);
	if (!e)
		return -EBADF;
	if (!(fs->mutants & SB_SIMFS_MUTANT_SKIP_SYNC))
		sb_simfs__file_sync(e->ino);
	return 0;
}

static int simfs_datasync(struct sb_vfs *vfs, int fd)
{
	struct sb_simfs *fs = fs_lock(vfs);
	int rc = op_power(fs), injected;
	if (!rc) {
		injected = op_fault(fs, SB_SIMFS_OP_SYNC);
		if (injected) /* the mutant swallows it; nothing became durable */
			rc = (fs->mutants & SB_SIMFS_MUTANT_IGNORE_SYNC_ERROR) ? 0 : injected;
		else
			rc = sync_locked(fs, fd);
	}
	fs_unlock(fs);
	return rc;
}

static int truncate_locked(struct sb_simfs *fs, int fd, uint64_t len)
{
	struct sb_simfs__fd *e = fd_get(fs, fd);
	if (!e)
		return -EBADF;
	if (!fd_writable(e) || len > INT64_MAX)
		return -EINVAL;
	if (len > SB_SIMFS__FILE_BYTES_MAX)
		return -EFBIG;
	sb_simfs__file_truncate(e->ino, len);
	return 0;
}

static int simfs_truncate(struct sb_vfs *vfs, int fd, uint64_t len)
{
	struct sb_simfs *fs = fs_lock(vfs);
	int rc = op_begin(fs, SB_SIMFS_OP_META);
	if (!rc)
		rc = truncate_locked(fs, fd, len);
	fs_unlock(fs);
	return rc;
}

static int simfs_fsize(struct sb_vfs *vfs, int fd, uint64_t *size)
{
	struct sb_simfs *fs = fs_lock(vfs);
	int rc = op_begin(fs, SB_SIMFS_OP_READ);
	struct sb_simfs__fd *e;
	if (!rc) {
		if ((e = fd_get(fs, fd)))
			*size = e->ino->vol.len;
		else
			rc = -EBADF;
	}
	fs_unlock(fs);
	return rc;
}

/* ---- namespace ops ---- */

/* POSIX checks for moving src over dst (may be NULL) into directory tdir. */
static int rename_check(struct sb_simfs *fs, struct sb_simfs__inode *src,
                        struct sb_simfs__inode *dst, struct sb_simfs__inode *tdir)
{
	if (dst && src->is_dir && !dst->is_dir)
		return -ENOTDIR;
	if (dst && !src->is_dir && dst->is_dir)
		return -EISDIR;
	if (dst && dst->is_dir && dst->vtab.n)
		return -ENOTEMPTY;
	if (src->is_dir) { /* not into its own subtree */
		sb_simfs__mark_begin(fs);
		sb_simfs__mark(fs, src, 0);
		if (tdir->mark == fs->mark_epoch)
			return -EINVAL;
	}
	return 0;
}

static int rename_locked(struct sb_simfs *fs, const char *from, const char *to)
{
	char fleaf[NAME_BYTES_MAX + 1], tleaf[NAME_BYTES_MAX + 1];
	struct sb_simfs__inode *fdir, *tdir, *src, *dst;
	int rc;

	if ((rc = resolve_parent(fs, from, &fdir, fleaf)) ||
	    (rc = resolve_parent(fs, to, &tdir, tleaf)))
		return rc;
	if (!fleaf[0] || !tleaf[0])
		return -EBUSY;
	if (!(src = sb_simfs__table_get(&fdir->vtab, fleaf)))
		return -ENOENT;
	dst = sb_simfs__table_get(&tdir->vtab, tleaf);
	if (dst == src)
		return 0; /* POSIX: same file, nothing to do */
	if ((rc = rename_check(fs, src, dst, tdir)))
		return rc;
	if (fdir == tdir) {
		sb_simfs__dir_change(fdir, SB_SIMFS__DIROP_RENAME, fleaf, tleaf, src);
	} else {
		sb_simfs__dir_change(tdir, SB_SIMFS__DIROP_SET, tleaf, NULL, src);
		sb_simfs__dir_change(fdir, SB_SIMFS__DIROP_DEL, fleaf, NULL, src);
	}
	return 0;
}

static int simfs_rename(struct sb_vfs *vfs, const char *from, const char *to)
{
	struct sb_simfs *fs = fs_lock(vfs);
	int rc = op_begin(fs, SB_SIMFS_OP_META);
	if (!rc)
		rc = rename_locked(fs, from, to);
	fs_unlock(fs);
	return rc;
}

/* unlink (want_dir = 0) and rmdir (want_dir = 1). */
static int remove_locked(struct sb_simfs *fs, const char *path, int want_dir)
{
	char leaf[NAME_BYTES_MAX + 1];
	struct sb_simfs__inode *dir, *ino;
	int rc = resolve_parent(fs, path, &dir, leaf);
	if (rc)
		return rc;
	if (!leaf[0])
		return want_dir ? -EBUSY : -EISDIR;
	if (!(ino = sb_simfs__table_get(&dir->vtab, leaf)))
		return -ENOENT;
	if (!want_dir && ino->is_dir)
		return -EISDIR;
	if (want_dir && !ino->is_dir)
		return -ENOTDIR;
	if (want_dir && ino->vtab.n)
		return -ENOTEMPTY;
	sb_simfs__dir_change(dir, SB_SIMFS__DIROP_DEL, leaf, NULL, ino);
	return 0;
}

static int simfs_unlink(struct sb_vfs *vfs, const char *path)
{
	struct sb_simfs *fs = fs_lock(vfs);
	int rc = op_begin(fs, SB_SIMFS_OP_META);
	if (!rc)
		rc = remove_locked(fs, path, 0);
	fs_unlock(fs);
	return rc;
}

static int simfs_rmdir(struct sb_vfs *vfs, const char *path)
{
	struct sb_simfs *fs = fs_lock(vfs);
	int rc = op_begin(fs, SB_SIMFS_OP_META);
	if (!rc)
		rc = remove_locked(fs, path, 1);
	fs_unlock(fs);
	return rc;
}

static int mkdir_locked(struct sb_simfs *fs, const char *path)
{
	char leaf[NAME_BYTES_MAX + 1];
	struct sb_simfs__inode *dir;
	int rc = resolve_parent(fs, path, &dir, leaf);
	if (rc)
		return rc;
	if (!leaf[0] || sb_simfs__table_get(&dir->vtab, leaf))
		return -EEXIST;
	sb_simfs__dir_change(dir, SB_SIMFS__DIROP_SET, leaf, NULL, sb_simfs__inode_new(fs, 1));
	return 0;
}

static int simfs_mkdir(struct sb_vfs *vfs, const char *path, unsigned mode)
{
	struct sb_simfs *fs = fs_lock(vfs);
	int rc = op_begin(fs, SB_SIMFS_OP_META);
	(void)mode;
	if (!rc)
		rc = mkdir_locked(fs, path);
	fs_unlock(fs);
	return rc;
}

static int sync_dir_locked(struct sb_simfs *fs, const char *path)
{
	struct sb_simfs__inode *dir;
	int rc = resolve(fs, path, &dir);
	if (rc)
		return rc;
	if (!dir->is_dir)
		return -ENOTDIR;
	if (fs->mutants & SB_SIMFS_MUTANT_SKIP_DIR_SYNC)
		return 0;
	sb_simfs__dir_sync(dir);
	sb_simfs__gc(fs); /* entries it dropped for good may free inodes */
	return 0;
}

static int simfs_sync_dir(struct sb_vfs *vfs, const char *path)
{
	struct sb_simfs *fs = fs_lock(vfs);
	int rc = op_begin(fs, SB_SIMFS_OP_DIRSYNC);
	if (!rc)
		rc = sync_dir_locked(fs, path);
	fs_unlock(fs);
	return rc;
}

/* A copy of a directory's entries, so callbacks run without the lock. */
struct listing {
	char **names;
	int *is_dir;
	size_t n;
};

static int list_snapshot(struct sb_simfs *fs, const char *path, struct listing *l)
{
	struct sb_simfs__inode *dir;
	int rc = resolve(fs, path, &dir);
	if (rc)
		return rc;
	if (!dir->is_dir)
		return -ENOTDIR;
	l->names = sb_simfs__alloc(NULL, dir->vtab.n * sizeof(*l->names));
	l->is_dir = sb_simfs__alloc(NULL, dir->vtab.n * sizeof(*l->is_dir));
	for (l->n = 0; l->n < dir->vtab.n; l->n++) {
		l->names[l->n] = sb_simfs__strdup(dir->vtab.ents[l->n].name);
		l->is_dir[l->n] = dir->vtab.ents[l->n].ino->is_dir;
	}
	return 0;
}

static int simfs_list_dir(struct sb_vfs *vfs, const char *path, sb_dir_cb cb, void *arg)
{
	struct sb_simfs *fs = fs_lock(vfs);
	struct listing l = {NULL, NULL, 0};
	int rc = op_begin(fs, SB_SIMFS_OP_READ);
	if (!rc)
		rc = list_snapshot(fs, path, &l);
	fs_unlock(fs);
	for (size_t i = 0; i < l.n && rc == 0; i++)
		rc = cb(arg, l.names[i], l.is_dir[i]);
	for (size_t i = 0; i < l.n; i++)
		free(l.names[i]);
	free(l.names);
	free(l.is_dir);
	return rc;
}

static int simfs_stat(struct sb_vfs *vfs, const char *path, struct sb_stat *st)
{
	struct sb_simfs *fs = fs_lock(vfs);
	struct sb_simfs__inode *ino;
	int rc = op_begin(fs, SB_SIMFS_OP_READ);
	if (!rc && !(rc = resolve(fs, path, &ino))) {
		st->is_dir = ino->is_dir;
		st->size = ino->is_dir ? 0 : ino->vol.len;
	}
	fs_unlock(fs);
	return rc;
}

static const struct sb_vfs_ops simfs_ops = {
    .open = simfs_open,
    .close = simfs_close,
    .pread = simfs_pread,
    .pwrite = simfs_pwrite,
    .datasync = simfs_datasync,
    .truncate = simfs_truncate,
    .fsize = simfs_fsize,
    .rename = simfs_rename,
    .unlink = simfs_unlink,
    .mkdir = simfs_mkdir,
    .rmdir = simfs_rmdir,
    .sync_dir = simfs_sync_dir,
    .list_dir = simfs_list_dir,
    .stat = simfs_stat,
};

/* ---- lifecycle, fault controls, test helpers ---- */

int sb_simfs_new(uint64_t seed, struct sb_simfs **out)
{
	struct sb_simfs *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	if (pthread_mutex_init(&fs->mu, NULL) != 0) {
		free(fs);
		return -ENOMEM;
	}
	fs->vfs.ops = &simfs_ops;
	fs->vfs.impl = fs;
	fs->rng = seed;
	fs->next_id = 1;
	fs->fd_base = SB_SIMFS__FD_BASE;
	fs->root = sb_simfs__inode_new(fs, 1);
	*out = fs;
	return 0;
}

void sb_simfs_free(struct sb_simfs *fs)
{
	if (!fs)
		return;
	sb_simfs__free_all(fs);
	pthread_mutex_destroy(&fs->mu);
	free(fs);
}

struct sb_vfs *sb_simfs_vfs(struct sb_simfs *fs)
{
	return &fs->vfs;
}

uint64_t sb_simfs_op_count(struct sb_simfs *fs)
{
	pthread_mutex_lock(&fs->mu);
	uint64_t n = fs->op_count;
	pthread_mutex_unlock(&fs->mu);
	return n;
}

void sb_simfs_fail_nth(struct sb_simfs *fs, unsigned mask, uint64_t nth, int err)
{
	pthread_mutex_lock(&fs->mu);
	fs->fault_armed = 1;
	fs->fault_mask = mask;
	fs->fault_left = nth;
	fs->fault_err = err < 0 ? err : err > 0 ? -err : -EIO; /* never "fail" with 0 */
	pthread_mutex_unlock(&fs->mu);
}

void sb_simfs_short_write_nth(struct sb_simfs *fs, uint64_t nth, uint32_t max_bytes)
{
	pthread_mutex_lock(&fs->mu);
	fs->short_armed = 1;
	fs->short_left = nth;
	fs->short_max = max_bytes;
	pthread_mutex_unlock(&fs->mu);
}

void sb_simfs_power_off_at(struct sb_simfs *fs, uint64_t k)
{
	pthread_mutex_lock(&fs->mu);
	fs->power_armed = 1;
	fs->power_at = k;
	pthread_mutex_unlock(&fs->mu);
}

void sb_simfs_set_capacity(struct sb_simfs *fs, uint64_t limit)
{
	pthread_mutex_lock(&fs->mu);
	fs->capacity = limit;
	pthread_mutex_unlock(&fs->mu);
}

void sb_simfs_set_mutants(struct sb_simfs *fs, unsigned mutants)
{
	pthread_mutex_lock(&fs->mu);
	fs->mutants = mutants;
	pthread_mutex_unlock(&fs->mu);
}

void sb_simfs_clear_faults(struct sb_simfs *fs)
{
	pthread_mutex_lock(&fs->mu);
	fs->fault_armed = fs->short_armed = fs->power_armed = 0;
	pthread_mutex_unlock(&fs->mu);
}

/* Resolves path to a regular file without counting an op. */
static int helper_file(struct sb_simfs *fs, const char *path, struct sb_simfs__inode **f)
{
	int rc = resolve(fs, path, f);
	if (!rc && (*f)->is_dir)
		rc = -EISDIR;
	return rc;
}

int sb_simfs_read_whole(struct sb_simfs *fs, const char *path, uint8_t **out, uint64_t *len)
{
	struct sb_simfs__inode *f;
	pthread_mutex_lock(&fs->mu);
	int rc = helper_file(fs, path, &f);
	if (!rc) {
		uint8_t *copy = malloc(f->vol.len ? (size_t)f->vol.len : 1);
		if (!copy) {
			rc = -ENOMEM;
		} else {
			if (f->vol.len)
				memcpy(copy, f->vol.data, (size_t)f->vol.len);
			*out = copy;
			*len = f->vol.len;
		}
	}
	pthread_mutex_unlock(&fs->mu);
	return rc;
}

int sb_simfs_corrupt(struct sb_simfs *fs, const char *path, uint64_t off, const void *bytes,
                     uint64_t len)
{
	struct sb_simfs__inode *f;
	pthread_mutex_lock(&fs->mu);
	int rc = helper_file(fs, path, &f);
	if (!rc && (off > f->vol.len || len > f->vol.len - off || off > f->dur.len ||
	            len > f->dur.len - off))
		rc = -EINVAL; /* only bytes present in both images can rot */
	if (!rc && len) {
		memcpy(f->vol.data + off, bytes, (size_t)len);
		memcpy(f->dur.data + off, bytes, (size_t)len);
	}
	pthread_mutex_unlock(&fs->mu);
	return rc;
}
