/* sb_vfs.h - the storage layer's I/O ops tables (SQLite's aSyscall[] habit).
 *
 * Every file operation of storage/ goes through one of two tables:
 *   - struct sb_vfs: synchronous file and directory operations;
 *   - struct sb_aio: asynchronous writes and fdatasyncs for the append path.
 * Real implementations: sb_vfs_posix() (plain syscalls), the io_uring engine
 * and the pwrite/fdatasync fallback engine. Tests substitute the in-memory
 * simulated file system (sb_simfs.h) to inject EIO, ENOSPC, short writes,
 * torn tails and power loss.
 *
 * Error convention: every op returns 0 (or a non-negative count / fd) on
 * success and -errno on failure, exactly like io_uring's cqe->res.
 */
#ifndef SB_STORAGE_VFS_H
#define SB_STORAGE_VFS_H

#include <stddef.h>
#include <stdint.h>

#include "sb_error.h"

struct sb_vfs;

struct sb_stat {
	int is_dir;
	uint64_t size;
};

/* Called once per directory entry ("." and ".." are skipped); a non-zero
 * return stops the listing and is returned by list_dir. */
typedef int (*sb_dir_cb)(void *arg, const char *name, int is_dir);

struct sb_vfs_ops {
	/* flags are POSIX O_RDONLY/O_RDWR/O_WRONLY/O_CREAT/O_EXCL/O_TRUNC/O_APPEND;
	 * returns an fd >= 0 or -errno. */
	int (*open)(struct sb_vfs *vfs, const char *path, int flags, unsigned mode);
	int (*close)(struct sb_vfs *vfs, int fd);
	/* Return bytes transferred (possibly short; 0 at EOF for pread) or -errno.
	 * pwrite retries EINTR itself but may return a short count. */
	int64_t (*pread)(struct sb_vfs *vfs, int fd, void *buf, size_t len, uint64_t off);
	int64_t (*pwrite)(struct sb_vfs *vfs, int fd, const void *buf, size_t len, uint64_t off);
	int (*datasync)(struct sb_vfs *vfs, int fd); /* fdatasync(2) */
	int (*truncate)(struct sb_vfs *vfs, int fd, uint64_t len);
	int (*fsize)(struct sb_vfs *vfs, int fd, uint64_t *size);
	int (*rename)(struct sb_vfs *vfs, const char *from, const char *to); /* atomic, replaces */
	int (*unlink)(struct sb_vfs *vfs, const char *path);
	int (*mkdir)(struct sb_vfs *vfs, const char *path, unsigned mode); /* -EEXIST if present */
	int (*rmdir)(struct sb_vfs *vfs, const char *path);
	int (*sync_dir)(struct sb_vfs *vfs, const char *path); /* fsync(2) on the directory */
	int (*list_dir)(struct sb_vfs *vfs, const char *path, sb_dir_cb cb, void *arg);
	int (*stat)(struct sb_vfs *vfs, const char *path, struct sb_stat *st); /* -ENOENT */

	/* Optional read-only mapping, for files that are never written again
	 * (SSTables). Both NULL (the simulated file system) means "cannot map":
	 * callers then read with pread. An implementation sets both or neither.
	 * mmap maps bytes [0, len) of fd (opened O_RDONLY is enough) read-only
	 * and shared, for random reads: the implementation may tell the kernel
	 * not to read ahead. 0 < len <= the file's size; the mapping outlives
	 * close(fd). Returns 0 and *addr, or -errno (-EFBIG if len does not fit
	 * the address space); callers treat any failure as "cannot map".
	 * A mapping turns I/O errors into signals: touching a mapped page that
	 * cannot be read (a media error) or that lies past the file's end (the
	 * file was truncated) raises SIGBUS instead of returning -EIO. Map only
	 * files that are never truncated.
	 * munmap releases a mapping made by mmap (same addr and len). */
	int (*mmap)(struct sb_vfs *vfs, int fd, uint64_t len, const void **addr);
	int (*munmap)(struct sb_vfs *vfs, const void *addr, uint64_t len);
};

struct sb_vfs {
	const struct sb_vfs_ops *ops;
	void *impl;
};

/* The process-wide POSIX implementation (static storage; never freed). */
struct sb_vfs *sb_vfs_posix(void);

/* ---- Durable-write helpers (the one place the recipe is written) ---- */

/* Writes all of buf at off, looping on short writes; -errno on failure
 * (-EIO if the file system keeps returning 0). */
int sb_vfs_write_all(struct sb_vfs *vfs, int fd, const void *buf, size_t len, uint64_t off) SB_MUST_CHECK;
/* Reads exactly len bytes at off; -ENODATA if the file ends first. */
int sb_vfs_read_all(struct sb_vfs *vfs, int fd, void *buf, size_t len, uint64_t off) SB_MUST_CHECK;

/* Replaces the file at dir/name with data, durably: writes dir/name.tmp,
 * fdatasyncs it, renames it over dir/name, fsyncs dir. If a step before the
 * rename fails, the old file (if any) is intact and the temp file removed; if
 * the directory fsync after the rename fails, the new file is visible but not
 * durable, and the caller must treat that as an I/O failure (fail-stop). */
int sb_vfs_write_file_durable(struct sb_vfs *vfs, const char *dir, const char *name,
			      const void *data, size_t len) SB_MUST_CHECK;

/* Reads a whole small file into a malloc'd buffer (caller frees *out);
 * -EFBIG if it is larger than max_len. */
int sb_vfs_read_file(struct sb_vfs *vfs, const char *path, size_t max_len, void **out,
		     size_t *out_len) SB_MUST_CHECK;
/* The same, NUL-terminated after its *out_len bytes (settings files, keys). */
int sb_vfs_read_text(struct sb_vfs *vfs, const char *path, size_t max_len, char **out,
		     size_t *out_len) SB_MUST_CHECK;

/* Removes a directory tree (files and sub-directories); never follows
 * symlinks. -ENOENT if path does not exist. */
int sb_vfs_remove_tree(struct sb_vfs *vfs, const char *path) SB_MUST_CHECK;

/* Creates dir and every missing parent, fsyncing each parent whose entry
 * list changed. */
int sb_vfs_mkdir_durable(struct sb_vfs *vfs, const char *path) SB_MUST_CHECK;

#endif
