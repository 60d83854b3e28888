/* sb_aio.h - asynchronous write/fdatasync engines for the append path.
 *
 * Two real engines implement this table:
 *   - io_uring (liburing): requests become SQEs; one ring per engine.
 *   - sync fallback: pwrite/fdatasync through an sb_vfs, either on a small
 *     pool of worker threads or, with zero threads, inline on the thread
 *     that calls poll (deterministic; used by the simulated-file-system tests).
 * sb_aio_open() picks one: "auto" tries io_uring and falls back to the sync
 * engine with one log line when io_uring_queue_init fails (ENOSYS, EPERM:
 * container seccomp profiles block io_uring).
 *
 * Ordering: a DATASYNC never starts before every WRITE submitted earlier to
 * the same fd has completed, so it covers them (io_uring runs requests out of
 * order; the engine links or holds the datasync). Writes are not ordered
 * among themselves.
 *
 * Threading: submit and poll are called by one thread, the owner (the I/O
 * loop). wake may be called from any thread. Callbacks run on the owner
 * thread, inside poll; they may call submit but not poll or destroy.
 */
#ifndef SB_STORAGE_AIO_H
#define SB_STORAGE_AIO_H

#include <stdint.h>

#include "sb_error.h"

struct sb_vfs;
struct sb_aio;

enum sb_aio_op {
	SB_AIO_WRITE = 1,    /* pwrite(fd, buf, len, off) */
	SB_AIO_DATASYNC = 2, /* fdatasync(fd) */
};

struct sb_aio_req {
	/* Set by the submitter. The request and buf stay owned by the submitter
	 * and must stay valid until done runs. */
	int op;
	int fd;
	const void *buf;
	uint32_t len;
	uint64_t off;
	void (*done)(struct sb_aio_req *req);
	void *data;
	/* Set by the engine before done runs: bytes written (may be short; the
	 * submitter resubmits the rest), 0 for a datasync, or -errno. */
	int32_t res;
	/* Engine-private. */
	struct sb_aio_req *next;
};

struct sb_aio_ops {
	const char *name; /* "io_uring" or "sync" */
	/* Queues req. Returns 0, or -errno: -EAGAIN (the engine's depth of
	 * requests is already in flight), -EINVAL (unknown op, no done callback,
	 * len > INT32_MAX). On error, done never fires. */
	int (*submit)(struct sb_aio *aio, struct sb_aio_req *req);
	/* Submits what is queued, then waits up to timeout_ms (0: do not block,
	 * -1: no limit) for at least one completion or a wake; runs done for each
	 * completed request. Returns the number completed (0 on timeout or
	 * wake) or -errno for an engine failure. */
	int (*poll)(struct sb_aio *aio, int timeout_ms);
	/* Any thread: makes a current or the next poll return promptly. */
	void (*wake)(struct sb_aio *aio);
	/* Frees the engine. No request may be in flight. */
	void (*destroy)(struct sb_aio *aio);
};

struct sb_aio {
	const struct sb_aio_ops *ops;
	void *impl;
};

enum sb_aio_kind { SB_AIO_AUTO = 0, SB_AIO_URING = 1, SB_AIO_SYNC = 2 };

/* Parses "auto", "uring" or "sync"; 0 or SB_EINVAL. */
int sb_aio_parse_kind(const char *s, enum sb_aio_kind *out) SB_MUST_CHECK;

/* io_uring engine over real file descriptors (sb_vfs_posix() fds), depth
 * 1..SB_AIO_DEPTH. -EINVAL for a bad depth; -ENOSYS/-EPERM/-ENOMEM when
 * io_uring cannot be set up. */
int sb_aio_uring_new(unsigned depth, struct sb_aio **out) SB_MUST_CHECK;

/* Fallback engine: pwrite/datasync through vfs, on `threads` workers (0 =
 * inline in poll). vfs must outlive the engine. -EINVAL (too many threads),
 * -ENOMEM, or -errno from thread creation. */
int sb_aio_sync_new(struct sb_vfs *vfs, unsigned threads, struct sb_aio **out) SB_MUST_CHECK;

/* Opens the engine of the given kind for the POSIX vfs; AUTO falls back to
 * the sync engine (logging one warning line with the io_uring error). */
int sb_aio_open(enum sb_aio_kind kind, struct sb_aio **out) SB_MUST_CHECK;

#endif
