/* sb_log_clean.c - the log cleaner's rewrite of one sealed segment (see
 * sb_log_rewrite_sealed in sb_log.h): the records a predicate keeps, at
 * their offsets, in a new file that replaces the old one atomically.
 *
 * Kept records are re-batched: a batch is a run of consecutive kept offsets
 * of one leader epoch (the batch format needs consecutive offsets inside a
 * batch; between batches the segment may now have gaps). The segment's last
 * record is always kept, so the segment still ends where the next begins.
 *
 * Steps: read the old file sequentially (no lock: a sealed segment never
 * changes, and the segment is referenced), write <base>.log.cleaning,
 * fdatasync it, build its index; then, under the log lock, if the segment is
 * still there: delete the old index files (durably), rename the new file over
 * the old one, fsync the directory, write the new index files, open the new
 * segment and swap it into the list. A crash at any point leaves either
 * segment file whole (the rename is atomic) and index files that match it or
 * none (rebuilt at open). Readers holding the old segment keep its fd and
 * read the old bytes. */
#include "sb_log_internal.h"

#include "sb_batch.h"
#include "sb_limits.h"
#include "sb_logging.h"
#include "sb_path.h"
#include "sb_vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define READ_BYTES (1u << 20)
#define RUN_BYTES_MAX (1u << 20) /* a rewritten batch closes past this */

struct writer {
	struct sb_vfs *vfs;
	int fd;
	uint64_t pos;
	int64_t base;            /* segment base (index) */
	struct sb_index idx;
	struct sb_batch_builder b;
	int64_t run_first;       /* offset of the run's first record; -1: no run */
	int64_t run_next;        /* the offset that would extend the run */
	int32_t run_epoch;
	struct sb_header_in *hdrs; /* SB_RECORD_HEADERS_MAX */
};

/* Writes the run as one batch at its first offset and epoch. */
static int flush_run(struct writer *w)
{
	const void *out;
	size_t len;
	struct sb_batch_header h;
	if (w->run_first < 0)
		return 0;
	int rc = sb_batch_builder_finish(&w->b, &out, &len);
	if (rc)
		return rc;
	sb_batch_set_base_offset((void *)out, w->run_first);
	sb_batch_set_leader_epoch((void *)out, w->run_epoch);
	if ((rc = sb_vfs_write_all(w->vfs, w->fd, out, len, w->pos)) != 0)
		return rc;
	if (sb_batch_parse_header(out, len, &h) == 0 && sb_index_add(&w->idx, w->base, &h, w->pos) != 0)
		SB_LOG_RATELIMITED(SB_LEVEL_WARN, 1000, "index_entry_dropped", "what=clean");
	w->pos += len;
	sb_batch_builder_reset(&w->b);
	w->run_first = -1;
	return 0;
}

static int keep_record(struct writer *w, const struct sb_record_view *r, int32_t epoch)
{
	struct sb_record_in in = {0};
	const uint8_t *hp = r->headers;
	struct sb_header_view hv;
	int rc;
	if (w->run_first >= 0 && (r->offset != w->run_next || epoch != w->run_epoch ||
				  sb_batch_builder_size(&w->b) >= RUN_BYTES_MAX))
		if ((rc = flush_run(w)) != 0)
			return rc;
	while ((rc = sb_record_header_next(&hp, r->headers_end, &hv)) == 1) {
		struct sb_header_in *h = &w->hdrs[in.header_count++];
		h->key = hv.key;
		h->key_len = hv.key_len;
		h->value = hv.value;
		h->value_len = hv.value_len < 0 ? 0 : (uint32_t)hv.value_len;
	}
	if (rc < 0)
		return SB_ECORRUPT;
	in.key = r->key_len < 0 ? NULL : r->key; /* null stays null */
	in.key_len = r->key_len < 0 ? 0 : (uint32_t)r->key_len;
	in.value = r->value_len < 0 ? NULL : r->value;
	in.value_len = r->value_len < 0 ? 0 : (uint32_t)r->value_len;
	in.headers = w->hdrs;
	in.timestamp_ms = r->timestamp_ms;
	in.attributes = r->attributes;
	if ((rc = sb_batch_builder_add(&w->b, &in)) != 0)
		return rc;
	if (w->run_first < 0) {
		w->run_first = r->offset;
		w->run_epoch = epoch;
	}
	w->run_next = r->offset + 1;
	return 0;
}

/* Reads seg and writes what keep() keeps into w. *dropped counts the rest. */
static int copy_kept(struct sb_segment *seg, struct writer *w, sb_keep_fn keep, void *arg, uint64_t *dropped)
{
	int64_t offset = seg->base_offset, last = seg->next_offset - 1;
	uint64_t pos = 0;
	int rc = 0;
	while (!rc && pos < seg->size) {
		uint8_t *buf;
		uint64_t data_off, len;
		int64_t next;
		rc = sb_segment_read(seg, offset, pos, seg->size, READ_BYTES, READ_BYTES, &buf, &data_off, &len, &next);
		if (rc)
			break;
		if (len == 0) {
			free(buf);
			break;
		}
		for (uint64_t at = 0; !rc && at < len;) {
			struct sb_batch_header h;
			struct sb_record_iter it;
			struct sb_record_view r;
			const uint8_t *p = buf + data_off + at;
			rc = sb_batch_parse_header(p, len - at, &h);
			if (rc)
				break;
			sb_record_iter_init(&it, p, &h);
			while (!rc && (rc = sb_record_iter_next(&it, &r)) == 1) {
				rc = 0;
				if (r.offset == last || keep(arg, &r))
					rc = keep_record(w, &r, h.leader_epoch);
				else
					(*dropped)++;
			}
			at += sb_batch_total_bytes(&h);
		}
		pos += len; /* the chunk started at pos: the batch containing offset is the next one */
		offset = next;
		free(buf);
	}
	return rc ? rc : flush_run(w);
}

int sb_log_rewrite_sealed(struct sb_log *log, int64_t base, sb_keep_fn keep, void *arg,
			  struct sb_clean_stats *st)
{
	struct sb_segment *seg = NULL, *nseg = NULL;
	struct writer w = {.fd = -1, .run_first = -1};
	char tmp[SB_PATH_MAX], path[SB_PATH_MAX], name[SB_SEGMENT_NAME_LEN + 1];
	uint64_t dropped = 0;
	uint32_t k = 0;
	int rc = 0;

	memset(st, 0, sizeof *st);
	pthread_mutex_lock(&log->lock);
	for (k = 0; k + 1 < log->nsegs && log->segs[k]->base_offset != base; k++)
		;
	if (k + 1 >= log->nsegs || !log->segs[k]->sealed || log->segs[k]->corrupt_pos != SB_SEGMENT_NO_CORRUPTION ||
	    log->segs[k]->next_offset > log->visible_end)
		rc = SB_ENOTFOUND; /* not a sealed segment below the readable end */
	else if (log->failed || log->closing)
		rc = SB_EFAILED;
	else
		sb_segment_ref(seg = log->segs[k]);
	pthread_mutex_unlock(&log->lock);
	if (rc)
		return rc;

	sb_segment_path(log->dir, base, ".log.cleaning", tmp);
	sb_segment_path(log->dir, base, ".log", path);
	sb_segment_name(base, name);
	w.vfs = log->vfs;
	w.base = base;
	sb_index_init(&w.idx, log->cfg.index_interval_bytes);
	if (!(w.hdrs = malloc(SB_RECORD_HEADERS_MAX * sizeof *w.hdrs)))
		rc = -ENOMEM;
	if (!rc)
		rc = sb_batch_builder_init(&w.b, SB_BATCH_BYTES_MAX);
	if (!rc && (w.fd = log->vfs->ops->open(log->vfs, tmp, O_RDWR | O_CREAT | O_TRUNC, 0644)) < 0)
		rc = w.fd;
	if (!rc)
		rc = copy_kept(seg, &w, keep, arg, &dropped);
	st->bytes_before = seg->size;
	st->bytes_after = w.pos;
	st->records_dropped = dropped;
	if (rc || dropped == 0)
		goto out; /* nothing to gain: the old file stays */
	if ((rc = log->vfs->ops->datasync(log->vfs, w.fd)) != 0)
		goto out;
	rc = sb_segment_alloc(log->vfs, log->dir, base, log->cfg.index_interval_bytes, &nseg);
	pthread_mutex_lock(&log->lock); /* the swap: I/O under the lock, brief and rare */
	if (!rc && (k >= log->nsegs || log->segs[k] != seg))
		rc = SB_ENOTFOUND; /* retention deleted it meanwhile */
	if (!rc)
		rc = sb_segment_remove_index_files(seg);
	if (!rc)
		rc = log->vfs->ops->rename(log->vfs, tmp, path);
	if (!rc)
		rc = log->vfs->ops->sync_dir(log->vfs, log->dir);
	if (!rc)
		rc = sb_index_save(log->vfs, log->dir, name, base, w.pos, &w.idx);
	if (!rc)
		rc = sb_segment_open_sealed(nseg, k > 0 ? log->segs[k - 1]->last_epoch : -1);
	if (!rc) {
		log->total_bytes -= seg->size - nseg->size;
		log->segs[k] = nseg;
		nseg = NULL;
		sb_segment_unref(seg); /* the list's reference; readers may hold theirs */
	} else if (rc != SB_ENOTFOUND) {
		/* The file may be swapped already: the segment list no longer
		 * matches the directory. Fail-stop; a restart recovers. */
		log->failed = rc;
		SB_ERROR("log_failed", "log=%s op=clean base=%" PRId64 " error=\"%s\"", log->name, base, sb_strerror(rc));
	}
	pthread_mutex_unlock(&log->lock);
	if (!rc)
		SB_INFO("segment_cleaned", "log=%s base=%" PRId64 " records_dropped=%" PRIu64 " bytes_before=%" PRIu64
			" bytes_after=%" PRIu64, log->name, base, dropped, st->bytes_before, st->bytes_after);
out:
	if (w.fd >= 0)
		log->vfs->ops->close(log->vfs, w.fd);
	if (rc || dropped == 0) {
		int urc = log->vfs->ops->unlink(log->vfs, tmp);
		(void)urc; /* best effort: a leftover .cleaning file is removed at open */
	}
	sb_segment_unref(nseg);
	sb_segment_unref(seg);
	sb_batch_builder_fini(&w.b);
	sb_index_fini(&w.idx);
	free(w.hdrs);
	return rc;
}

int sb_log_sealed_bases(struct sb_log *log, int64_t *bases, uint64_t *sizes, uint32_t cap, uint32_t *n)
{
	*n = 0;
	pthread_mutex_lock(&log->lock);
	for (uint32_t k = 0; k + 1 < log->nsegs && *n < cap; k++)
		if (log->segs[k]->sealed && log->segs[k]->next_offset <= log->visible_end) {
			if (sizes)
				sizes[*n] = log->segs[k]->size;
			bases[(*n)++] = log->segs[k]->base_offset;
		}
	pthread_mutex_unlock(&log->lock);
	return 0;
}
