/* sb_aio.c - choosing an I/O engine: parses the "io" setting and opens the
 * io_uring engine or the pwrite/fdatasync fallback over the POSIX vfs.
 *
 * "auto" prefers io_uring and falls back to the sync engine with exactly one
 * warning line when io_uring cannot be set up (ENOSYS on old kernels, EPERM
 * under container seccomp profiles).
 */
#include "sb_aio.h"

#include <string.h>

#include "sb_limits.h"
#include "sb_logging.h"
#include "sb_vfs.h"

int sb_aio_parse_kind(const char *s, enum sb_aio_kind *out)
{
	if (!s)
		return SB_EINVAL;
	if (strcmp(s, "auto") == 0)
		*out = SB_AIO_AUTO;
	else if (strcmp(s, "uring") == 0)
		*out = SB_AIO_URING;
	else if (strcmp(s, "sync") == 0)
		*out = SB_AIO_SYNC;
	else
		return SB_EINVAL;
	return 0;
}

int sb_aio_open(enum sb_aio_kind kind, struct sb_aio **out)
{
	int rc;

	switch (kind) {
	case SB_AIO_URING:
		return sb_aio_uring_new(SB_AIO_DEPTH, out);
	case SB_AIO_SYNC:
		return sb_aio_sync_new(sb_vfs_posix(), SB_AIO_SYNC_THREADS, out);
	case SB_AIO_AUTO:
		rc = sb_aio_uring_new(SB_AIO_DEPTH, out);
		if (rc == 0)
			return 0;
		SB_WARN("io_uring_unavailable", "error=\"%s\" fallback=sync", sb_strerror(rc));
		return sb_aio_sync_new(sb_vfs_posix(), SB_AIO_SYNC_THREADS, out);
	}
	return SB_EINVAL;
}
