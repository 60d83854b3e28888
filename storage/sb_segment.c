/* sb_segment.c - segment files: naming, durable creation, scanning and
 * validation (recovery and index rebuild), sealing, batch reads. */
#include "sb_segment.h"

#include "sb_limits.h"
#include "sb_logging.h"
#include "sb_time.h"
#include "sb_vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_segment_name(int64_t base, char *out)
{
	snprintf(out, SB_SEGMENT_NAME_LEN + 1, "%020" PRId64, base);
}

int sb_segment_parse_name(const char *name, int64_t *base)
{
	int64_t v = 0;
	for (int i = 0; i < SB_SEGMENT_NAME_LEN; i++) {
		if (name[i] < '0' || name[i] > '9')
			return 0;
		if (v > (INT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (name[i] - '0');
	}
	if (strcmp(name + SB_SEGMENT_NAME_LEN, ".log") != 0)
		return 0;
	*base = v;
	return 1;
}

void sb_segment_path(const char *dir, int64_t base, const char *suffix, char *out)
{
	snprintf(out, SB_PATH_MAX, "%s/%020" PRId64 "%s", dir, base, suffix);
}

int sb_segment_alloc(struct sb_vfs *vfs, const char *dir, int64_t base, uint32_t index_interval,
		     struct sb_segment **out)
{
	size_t dlen = strlen(dir);
	struct sb_segment *seg = calloc(1, sizeof *seg + dlen + 1);
	if (!seg)
		return -ENOMEM;
	seg->vfs = vfs;
	seg->fd = -1;
	seg->refs = 1;
	seg->base_offset = base;
	seg->next_offset = base;
	seg->corrupt_pos = SB_SEGMENT_NO_CORRUPTION;
	seg->last_epoch = -1;
	seg->created_ms = sb_wall_ms();
	sb_index_init(&seg->idx, index_interval);
	memcpy(seg->dir, dir, dlen + 1);
	*out = seg;
	return 0;
}

void sb_segment_ref(struct sb_segment *seg)
{
	__atomic_fetch_add(&seg->refs, 1, __ATOMIC_RELAXED);
}

void sb_segment_unref(struct sb_segment *seg)
{
	if (!seg || __atomic_sub_fetch(&seg->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (seg->fd >= 0)
		seg->vfs->ops->close(seg->vfs, seg->fd);
	sb_index_fini(&seg->idx);
	free(seg);
}

int sb_segment_create(struct sb_segment *seg)
{
	char path[SB_PATH_MAX];
	int fd, rc;

	sb_segment_path(seg->dir, seg->base_offset, ".log", path);
	fd = seg->vfs->ops->open(seg->vfs, path, O_RDWR | O_CREAT | O_EXCL, 0644);
	if (fd < 0)
		return fd;
	rc = seg->vfs->ops->datasync(seg->vfs, fd);
	if (!rc)
		rc = seg->vfs->ops->sync_dir(seg->vfs, seg->dir);
	if (rc) {
		seg->vfs->ops->close(seg->vfs, fd);
		int urc = seg->vfs->ops->unlink(seg->vfs, path);
		(void)urc; /* best effort: the create itself failed */
		return rc;
	}
	seg->fd = fd;
	seg->created_ms = sb_wall_ms();
	return 0;
}

/* A read window over the file: buf holds file bytes [pos, pos + have). */
struct window {
	uint8_t *buf;
	size_t cap, have;
	uint64_t pos;
};

/* Makes the window hold file bytes [pos + *at, pos + *at + need), dropping
 * bytes before *keep (or before *at if keep is NULL) to make room and reading
 * more, never past limit. *at and *keep are adjusted when bytes move.
 * Returns 0, -ENODATA if the file (or limit) ends first, or -errno. */
static int window_fill(struct sb_segment *seg, struct window *w, size_t *at, size_t *keep,
		       size_t need, uint64_t limit, size_t chunk)
{
	if (w->have >= *at + need)
		return 0;
	size_t shift = keep ? *keep : *at;
	if (shift > 0) {
		memmove(w->buf, w->buf + shift, w->have - shift);
		w->pos += shift;
		w->have -= shift;
		*at -= shift;
		if (keep)
			*keep -= shift;
	}
	size_t want = *at + need > chunk ? *at + need : chunk;
	if (want > w->cap) {
		uint8_t *nb = realloc(w->buf, want);
		if (!nb)
			return -ENOMEM;
		w->buf = nb;
		w->cap = want;
	}
	while (w->have < *at + need) {
		uint64_t end = w->pos + w->have;
		if (end >= limit)
			return -ENODATA;
		size_t room = w->cap - w->have;
		if (room > limit - end)
			room = (size_t)(limit - end);
		int64_t n = seg->vfs->ops->pread(seg->vfs, seg->fd, w->buf + w->have, room, end);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -ENODATA;
		w->have += (size_t)n;
	}
	return 0;
}

/* Scans from the start, rebuilding the index, until the file's end, the
 * first invalid batch, or the batch that starts at stop_at. */
static int scan_file(struct sb_segment *seg, int32_t min_epoch, int64_t stop_at, struct sb_scan_result *res)
{
	struct window w = {0};
	size_t at = 0;
	int64_t expected = seg->base_offset;
	int32_t epoch = min_epoch;
	int rc = 0;

	sb_index_reset(&seg->idx);
	res->stop_reason = 0;
	for (;;) {
		struct sb_batch_header h;
		uint64_t here = w.pos + at;
		if (here == res->file_bytes || expected == stop_at)
			break;
		rc = window_fill(seg, &w, &at, NULL, SB_BATCH_HEADER_BYTES, res->file_bytes, SB_RECOVERY_CHUNK_BYTES);
		if (!rc)
			rc = sb_batch_parse_header(w.buf + at, w.have - at, &h);
		if (!rc)
			rc = window_fill(seg, &w, &at, NULL, (size_t)sb_batch_total_bytes(&h), res->file_bytes,
					 SB_RECOVERY_CHUNK_BYTES);
		if (!rc)
			rc = sb_batch_verify(w.buf + at, w.have - at, &h);
		if (!rc && (h.base_offset < expected || h.leader_epoch < epoch))
			rc = SB_ECORRUPT;
		if (rc == -ENOMEM || (rc < 0 && rc > -4096 && rc != -ENODATA))
			goto out; /* an I/O error, not bad data */
		if (rc) {
			res->stop_reason = rc;
			rc = 0;
			break;
		}
		rc = sb_index_add(&seg->idx, seg->base_offset, &h, here);
		if (rc)
			goto out;
		expected = sb_batch_next_offset(&h);
		epoch = h.leader_epoch;
		at += (size_t)sb_batch_total_bytes(&h);
	}
	res->valid_bytes = w.pos + at;
	res->next_offset = expected;
	res->last_epoch = expected == seg->base_offset ? -1 : epoch;
	seg->size = res->valid_bytes;
	seg->next_offset = expected;
	seg->last_epoch = res->last_epoch;
out:
	free(w.buf);
	return rc;
}

int sb_segment_open_scan(struct sb_segment *seg, int writable, int32_t min_epoch,
			 struct sb_scan_result *res)
{
	char path[SB_PATH_MAX];
	int rc;

	memset(res, 0, sizeof *res);
	sb_segment_path(seg->dir, seg->base_offset, ".log", path);
	if (seg->fd < 0) {
		int fd = seg->vfs->ops->open(seg->vfs, path, writable ? O_RDWR : O_RDONLY, 0);
		if (fd < 0)
			return fd;
		seg->fd = fd;
	}
	rc = seg->vfs->ops->fsize(seg->vfs, seg->fd, &res->file_bytes);
	if (rc)
		return rc;
	if (res->file_bytes > SB_SEGMENT_BYTES_MAX + SB_BATCH_BYTES_MAX)
		res->file_bytes = SB_SEGMENT_BYTES_MAX + SB_BATCH_BYTES_MAX; /* never index past 2^32 */
	return scan_file(seg, min_epoch, INT64_MAX, res);
}

/* Reads and verifies the last indexed batch onward to learn next_offset and
 * the last epoch without scanning the whole segment. */
static int finish_from_index(struct sb_segment *seg, uint64_t file_bytes)
{
	struct window w = {0};
	size_t at = 0;
	uint64_t pos = seg->idx.n_off ? seg->idx.off[seg->idx.n_off - 1].pos : 0;
	int64_t expected = seg->base_offset + (seg->idx.n_off ? seg->idx.off[seg->idx.n_off - 1].rel_offset : 0);
	int32_t epoch = -1;
	int rc = 0;

	w.pos = pos;
	while (w.pos + at < file_bytes) {
		struct sb_batch_header h;
		rc = window_fill(seg, &w, &at, NULL, SB_BATCH_HEADER_BYTES, file_bytes, 1u << 16);
		if (!rc)
			rc = sb_batch_parse_header(w.buf + at, w.have - at, &h);
		if (!rc)
			rc = window_fill(seg, &w, &at, NULL, (size_t)sb_batch_total_bytes(&h), file_bytes, 1u << 16);
		if (!rc)
			rc = sb_batch_verify(w.buf + at, w.have - at, &h);
		if (!rc && h.base_offset < expected)
			rc = SB_ECORRUPT;
		if (rc)
			break;
		expected = sb_batch_next_offset(&h);
		epoch = h.leader_epoch;
		at += (size_t)sb_batch_total_bytes(&h);
	}
	free(w.buf);
	if (rc)
		return rc == -ENODATA ? SB_ECORRUPT : rc;
	seg->size = file_bytes;
	seg->next_offset = expected;
	seg->last_epoch = epoch;
	return 0;
}

int sb_segment_open_sealed(struct sb_segment *seg, int32_t min_epoch)
{
	char path[SB_PATH_MAX], name[SB_SEGMENT_NAME_LEN + 1];
	struct sb_scan_result res;
	uint64_t file_bytes = 0;
	int rc;

	sb_segment_path(seg->dir, seg->base_offset, ".log", path);
	sb_segment_name(seg->base_offset, name);
	seg->sealed = 1;
	seg->fd = seg->vfs->ops->open(seg->vfs, path, O_RDONLY, 0);
	if (seg->fd < 0)
		return seg->fd;
	rc = seg->vfs->ops->fsize(seg->vfs, seg->fd, &file_bytes);
	if (rc)
		return rc;
	if (sb_index_load(seg->vfs, seg->dir, name, seg->base_offset, file_bytes, &seg->idx) == 0) {
		rc = finish_from_index(seg, file_bytes);
		if (rc == 0)
			return 0;
		if (rc != SB_ECORRUPT)
			return rc;
	}
	rc = sb_segment_open_scan(seg, 0, min_epoch, &res);
	if (rc)
		return rc;
	if (res.stop_reason) {
		seg->corrupt_pos = res.valid_bytes;
		SB_ERROR("segment_corrupt", "path=\"%s\" position=%" PRIu64 " file_bytes=%" PRIu64 " reason=\"%s\"",
			 path, res.valid_bytes, res.file_bytes, sb_strerror(res.stop_reason));
		return 0; /* served up to corrupt_pos; never rewrite the index over bad data */
	}
	rc = sb_index_save(seg->vfs, seg->dir, name, seg->base_offset, seg->size, &seg->idx);
	if (rc)
		SB_WARN("index_rebuild_not_saved", "path=\"%s\" error=\"%s\"", path, sb_strerror(rc));
	else
		SB_INFO("index_rebuilt", "path=\"%s\" entries=%u", path, seg->idx.n_off);
	return 0;
}

int sb_segment_seal(struct sb_segment *seg)
{
	char name[SB_SEGMENT_NAME_LEN + 1];
	int rc = seg->vfs->ops->datasync(seg->vfs, seg->fd);
	if (rc)
		return rc;
	sb_segment_name(seg->base_offset, name);
	rc = sb_index_save(seg->vfs, seg->dir, name, seg->base_offset, seg->size, &seg->idx);
	if (rc)
		return rc;
	seg->sealed = 1;
	return 0;
}

int sb_segment_remove_index_files(struct sb_segment *seg)
{
	char path[SB_PATH_MAX];
	int rc = 0;
	for (int j = 0; j < 2 && !rc; j++) {
		sb_segment_path(seg->dir, seg->base_offset, j ? ".timeindex" : ".index", path);
		rc = seg->vfs->ops->unlink(seg->vfs, path);
		rc = rc == -ENOENT ? 0 : rc;
	}
	if (!rc)
		rc = seg->vfs->ops->sync_dir(seg->vfs, seg->dir);
	return rc;
}

int sb_segment_remove_files(struct sb_segment *seg)
{
	static const char *const suffixes[] = {".log", ".index", ".timeindex"};
	char path[SB_PATH_MAX];
	int first = 0;
	for (int i = 0; i < 3; i++) {
		sb_segment_path(seg->dir, seg->base_offset, suffixes[i], path);
		int rc = seg->vfs->ops->unlink(seg->vfs, path);
		if (rc && rc != -ENOENT && !first)
			first = rc;
	}
	return first;
}

int sb_segment_read(struct sb_segment *seg, int64_t offset, uint64_t start_pos, uint64_t limit,
		    uint64_t max_bytes, uint64_t first_read, uint8_t **buf, uint64_t *data_off,
		    uint64_t *len, int64_t *next)
{
	struct window w = {0};
	size_t at = 0, first = 0, chunk;
	struct sb_batch_header h;
	int rc = 0, found = 0;

	*buf = NULL;
	*len = 0;
	*data_off = 0;
	*next = offset;
	chunk = (size_t)(first_read < SB_BATCH_HEADER_BYTES ? SB_BATCH_HEADER_BYTES : first_read);
	if (chunk > SB_BATCH_BYTES_MAX)
		chunk = SB_BATCH_BYTES_MAX;
	w.pos = start_pos;
	while (w.pos + at < limit) {
		/* No batch is shorter than its header: stop before reading more. */
		if (found && (at - first) + SB_BATCH_HEADER_BYTES > max_bytes)
			break;
		rc = window_fill(seg, &w, &at, found ? &first : NULL, SB_BATCH_HEADER_BYTES, limit, chunk);
		if (!rc)
			rc = sb_batch_parse_header(w.buf + at, w.have - at, &h);
		if (rc)
			break;
		uint64_t total = sb_batch_total_bytes(&h);
		if (found && (at - first) + total > max_bytes)
			break;
		if (!found && sb_batch_next_offset(&h) <= offset) {
			/* Skip without reading the body: only its header is needed. */
			if (w.have - at >= total) {
				at += (size_t)total;
			} else {
				w.pos += at + total;
				w.have = 0;
				at = 0;
			}
			continue;
		}
		rc = window_fill(seg, &w, &at, found ? &first : NULL, (size_t)total, limit, chunk);
		if (!rc)
			rc = sb_batch_verify(w.buf + at, w.have - at, &h);
		if (rc)
			break;
		if (!found) {
			found = 1;
			first = at;
		}
		*next = sb_batch_next_offset(&h);
		at += (size_t)total;
	}
	if (rc == -ENODATA || (rc < 0 && rc <= SB_EBASE))
		rc = SB_ECORRUPT; /* bytes inside the readable limit must be whole, valid batches */
	if (rc) {
		free(w.buf);
		return rc;
	}
	if (!found) {
		free(w.buf);
		return 0;
	}
	*buf = w.buf;
	*data_off = first;
	*len = at - first;
	return 0;
}

int sb_segment_cut(struct sb_segment *seg, int64_t offset, uint64_t pos)
{
	uint8_t hdr[SB_BATCH_HEADER_BYTES];
	int64_t next = seg->base_offset;
	int32_t epoch = -1;
	int rc = 0;

	sb_index_truncate(&seg->idx, pos);
	uint64_t at = seg->idx.n_off ? seg->idx.off[seg->idx.n_off - 1].pos : 0;
	while (at < pos) {
		struct sb_batch_header h;
		int64_t n = seg->vfs->ops->pread(seg->vfs, seg->fd, hdr, sizeof hdr, at);
		if (n < 0)
			return (int)n;
		if ((size_t)n < sizeof hdr || sb_batch_parse_header(hdr, sizeof hdr, &h) != 0)
			return SB_ECORRUPT;
		next = sb_batch_next_offset(&h);
		epoch = h.leader_epoch;
		at += sb_batch_total_bytes(&h);
	}
	if (at != pos || (pos > 0 && next != offset) || (pos == 0 && offset != seg->base_offset))
		return SB_ECORRUPT;
	rc = seg->vfs->ops->truncate(seg->vfs, seg->fd, pos);
	if (!rc)
		rc = seg->vfs->ops->datasync(seg->vfs, seg->fd);
	if (rc)
		return rc;
	seg->size = pos;
	seg->next_offset = offset;
	seg->last_epoch = pos ? epoch : -1;
	return 0;
}

int sb_segment_truncate(struct sb_segment *seg, int64_t offset)
{
	struct sb_scan_result res;
	memset(&res, 0, sizeof res);
	res.file_bytes = seg->size;
	int rc = scan_file(seg, -1, offset, &res);
	if (!rc && res.next_offset != offset)
		rc = SB_EINVAL; /* not a batch boundary of this segment */
	if (!rc)
		rc = seg->vfs->ops->truncate(seg->vfs, seg->fd, res.valid_bytes);
	if (!rc)
		rc = seg->vfs->ops->datasync(seg->vfs, seg->fd);
	return rc;
}
