/* faultfs_data.c - undo log of file data written since the file's last
 * successful fsync/fdatasync.
 *
 * One record per inode touched since its last sync. The record keeps:
 *   - sync_size: the file size when the record was made, which is the size
 *     at the last sync (a record is made at the first change after a sync,
 *     or after start/revive when the backing contents are the baseline);
 *   - the original bytes of every range inside [0, sync_size) that has been
 *     changed since, saved the first time each byte is touched (so repeated
 *     overwrites cost nothing more, and appends past sync_size cost nothing);
 *   - its own O_RDWR fd to the inode (reopened through /proc/self/fd), so the
 *     data can be put back wherever the file has been renamed or unlinked to.
 * Reverting writes the saved ranges back and truncates to sync_size. Saved
 * ranges are disjoint, so the order does not matter.
 *
 * Invariant: a byte of [0, sync_size) not covered by a saved range still has
 * its original value and lies inside the current file (a shrink saves the cut
 * part first). Every function here runs under the file-system lock.
 */
#include "faultfs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ff_seg {
	off_t off;
	size_t len;
	unsigned char *old;
};

struct ff_file {
	dev_t dev;
	ino_t ino;
	int fd;
	off_t sync_size;
	struct ff_seg *segs; /* sorted by off, disjoint */
	size_t nsegs;
	size_t cap;
};

static struct ff_file *g_files[FF_UNDO_FILES_MAX];
static size_t g_nfiles;
static uint64_t g_bytes;
static bool g_limit_logged;

static void file_free(struct ff_file *f)
{
	for (size_t i = 0; i < f->nsegs; i++)
		free(f->segs[i].old);
	free(f->segs);
	if (f->fd >= 0)
		close(f->fd);
	free(f);
}

static uint64_t file_bytes(const struct ff_file *f)
{
	uint64_t n = 0;

	for (size_t i = 0; i < f->nsegs; i++)
		n += f->segs[i].len;
	return n;
}

static void file_drop(size_t idx)
{
	g_bytes -= file_bytes(g_files[idx]);
	file_free(g_files[idx]);
	g_files[idx] = g_files[--g_nfiles];
	g_files[g_nfiles] = NULL;
}

static int limit_hit(const char *what)
{
	if (!g_limit_logged)
		FF_LOG("error", "event=undo_limit what=%s msg=\"writes now fail with EIO\"", what);
	g_limit_logged = true;
	return -EIO;
}

/* Finds the record of fd's inode, making one when create is set. Returns 0
 * with *out NULL when there is none and create is not set. */
static int file_get(int fd, bool create, struct ff_file **out)
{
	struct ff_file *f = NULL;
	struct stat st;
	char proc[64];
	int rc;

	*out = NULL;
	if (fstat(fd, &st) != 0)
		return -errno;
	for (size_t i = 0; i < g_nfiles; i++) {
		if (g_files[i]->dev == st.st_dev && g_files[i]->ino == st.st_ino) {
			*out = g_files[i];
			return 0;
		}
	}
	if (!create)
		return 0;
	if (g_nfiles >= FF_UNDO_FILES_MAX)
		return limit_hit("files");
	f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -ENOMEM;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	f->fd = open(proc, O_RDWR | O_CLOEXEC);
	if (f->fd < 0) {
		rc = -errno;
		FF_LOG("error", "event=undo_reopen errno=%d", -rc);
		goto fail;
	}
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	f->sync_size = st.st_size;
	g_files[g_nfiles++] = f;
	*out = f;
	return 0;
fail:
	free(f);
	return rc;
}

/* Saves the original bytes of [off, off + len), which no saved range covers. */
static int seg_insert(struct ff_file *f, size_t pos, off_t off, size_t len)
{
	unsigned char *old = NULL;
	ssize_t n;
	int rc;

	if (f->nsegs >= FF_UNDO_SEGS_MAX)
		return limit_hit("segments");
	if (g_bytes + len > FF_UNDO_BYTES_MAX)
		return limit_hit("bytes");
	if (f->nsegs == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 8;
		struct ff_seg *segs = realloc(f->segs, cap * sizeof(*segs));

		if (segs == NULL)
			return -ENOMEM;
		f->segs = segs;
		f->cap = cap;
	}
	old = malloc(len);
	if (old == NULL)
		return -ENOMEM;
	n = pread(f->fd, old, len, off);
	if (n < 0 || (size_t)n != len) {
		rc = n < 0 ? -errno : -EIO;
		FF_LOG("error", "event=undo_save_short off=%jd len=%zu got=%zd", (intmax_t)off, len,
		       n);
		goto fail;
	}
	memmove(&f->segs[pos + 1], &f->segs[pos], (f->nsegs - pos) * sizeof(*f->segs));
	f->segs[pos] = (struct ff_seg){.off = off, .len = len, .old = old};
	f->nsegs++;
	g_bytes += len;
	return 0;
fail:
	free(old);
	return rc;
}

/* Saves every not yet saved byte of [a, b) clipped to [0, sync_size). */
static int save_range(struct ff_file *f, off_t a, off_t b)
{
	size_t i = 0;
	int rc;

	if (b > f->sync_size)
		b = f->sync_size;
	while (a < b) {
		while (i < f->nsegs && f->segs[i].off + (off_t)f->segs[i].len <= a)
			i++;
		if (i < f->nsegs && f->segs[i].off <= a) {
			a = f->segs[i].off + (off_t)f->segs[i].len; /* covered */
			continue;
		}
		off_t end = (i < f->nsegs && f->segs[i].off < b) ? f->segs[i].off : b;
		rc = seg_insert(f, i, a, (size_t)(end - a));
		if (rc != 0)
			return rc;
		a = end;
	}
	return 0;
}

int ff_data_before_write(int fd, off_t off, size_t len)
{
	struct ff_file *f;
	int rc = file_get(fd, true, &f);

	if (rc != 0)
		return rc;
	return save_range(f, off, off + (off_t)len);
}

int ff_data_before_truncate(int fd, off_t new_size)
{
	struct ff_file *f;
	int rc = file_get(fd, true, &f);

	if (rc != 0)
		return rc;
	return save_range(f, new_size, f->sync_size);
}

void ff_data_synced(int fd)
{
	struct ff_file *f;

	if (file_get(fd, false, &f) != 0 || f == NULL)
		return;
	for (size_t i = 0; i < g_nfiles; i++) {
		if (g_files[i] == f) {
			file_drop(i);
			return;
		}
	}
}

int ff_data_revert_all(void)
{
	int n = 0;

	while (g_nfiles > 0) {
		struct ff_file *f = g_files[g_nfiles - 1];

		for (size_t i = 0; i < f->nsegs; i++) {
			ssize_t w = pwrite(f->fd, f->segs[i].old, f->segs[i].len, f->segs[i].off);

			if (w < 0 || (size_t)w != f->segs[i].len)
				FF_LOG("error", "event=revert_write_failed ino=%ju errno=%d",
				       (uintmax_t)f->ino, w < 0 ? errno : EIO);
		}
		if (ftruncate(f->fd, f->sync_size) != 0)
			FF_LOG("error", "event=revert_truncate_failed ino=%ju errno=%d",
			       (uintmax_t)f->ino, errno);
		file_drop(g_nfiles - 1);
		n++;
	}
	g_limit_logged = false;
	return n;
}

void ff_data_clear(void)
{
	while (g_nfiles > 0)
		file_drop(g_nfiles - 1);
	g_limit_logged = false;
}

uint64_t ff_data_bytes(void)
{
	return g_bytes;
}

size_t ff_data_files(void)
{
	return g_nfiles;
}
