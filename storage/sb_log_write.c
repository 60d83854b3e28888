/* sb_log_write.c - the partition log's write path: append (any thread) and
 * the I/O loop side (coalesced writes, group commit, rolls, acks).
 *
 * Shape, and why: io_uring buffered 4 KiB appends at queue depth 1 are slow
 * (~64 MB/s here) while large writes run at GB/s, so appends are copied into
 * a staging chunk and the loop writes whole chunks: everything that arrived
 * while the previous write was in flight goes down in one write. One write
 * and one fdatasync are in flight per log at a time; writes continue while a
 * datasync runs, and the next datasync covers all of them (group commit).
 * Many logs share one loop, so their writes and syncs overlap in the engine.
 */
#include "sb_log_internal.h"

#include "sb_endian.h"
#include "sb_limits.h"
#include "sb_logging.h"
#include "sb_time.h"
#include "sb_vfs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- acknowledgement ---- */

/* Detaches the pendings that became stable (or all, on failure). Lock held. */
static struct sb_pending *take_acked(struct sb_log *log, int64_t upto)
{
	struct sb_pending *head = log->pend_head, **pp = &log->pend_head, *p;
	while ((p = *pp) && p->end_offset <= upto) {
		log->inflight_bytes -= p->bytes;
		pp = &p->next;
	}
	if (pp == &log->pend_head)
		return NULL;
	log->pend_head = *pp;
	if (!log->pend_head)
		log->pend_tail = NULL;
	*pp = NULL;
	return head;
}

static void run_callbacks(struct sb_pending *p, int result)
{
	while (p) {
		struct sb_pending *next = p->next;
		p->cb(p->arg, p->base_offset, result);
		free(p);
		p = next;
	}
}

/* Lock held. Advances the acknowledged end; returns the pendings to call. */
static struct sb_pending *advance_stable(struct sb_log *log, int64_t end, uint64_t pos)
{
	if (end <= log->stable_end)
		return NULL;
	log->stable_end = end;
	log->stable_pos = pos;
	return take_acked(log, end);
}

static void notify_stable(struct sb_log *log, struct sb_pending *acked, int64_t stable_end)
{
	run_callbacks(acked, 0);
	sb_log__fire_waiters(log);
	if (log->listener.on_stable)
		log->listener.on_stable(log->listener.arg, log, stable_end);
}

/* Lock held: enters the sticky failed state (RELIABILITY.md rule 4). The
 * pump then fails every pending append with the error. */
static void mark_failed(struct sb_log *log, int err, const char *what)
{
	if (log->failed)
		return;
	log->failed = err;
	SB_ERROR("log_failed", "log=%s op=%s error=\"%s\" acked_end=%" PRId64 " assigned_end=%" PRId64,
		 log->name, what, sb_strerror(err), log->stable_end, log->next_offset);
}

/* Lock held: detaches every pending append (after a failure). */
static struct sb_pending *take_all(struct sb_log *log)
{
	struct sb_pending *all = log->pend_head;
	log->pend_head = log->pend_tail = NULL;
	log->inflight_bytes = 0;
	return all;
}

/* ---- append (any thread) ---- */

/* Walks the caller's batches: each must parse and pass its CRC. */
static int check_batches(const uint8_t *data, size_t len, int64_t *records)
{
	size_t at = 0;
	*records = 0;
	if (len == 0)
		return SB_EBADBATCH;
	while (at < len) {
		struct sb_batch_header h;
		int rc = sb_batch_verify(data + at, len - at, &h);
		if (rc == SB_ETOOBIG)
			return rc;
		if (rc)
			return SB_EBADBATCH;
		*records += h.record_count;
		at += (size_t)sb_batch_total_bytes(&h);
	}
	return 0;
}

static struct sb_chunk *chunk_get(struct sb_log *log, size_t need)
{
	for (int i = 0; i < SB_CHUNK_SPARES; i++) {
		struct sb_chunk *c = log->spares[i];
		if (c && c->cap >= need) {
			log->spares[i] = NULL;
			c->len = c->written = 0;
			c->next = NULL;
			return c;
		}
	}
	size_t cap = need > SB_CHUNK_BYTES_DEFAULT ? need : SB_CHUNK_BYTES_DEFAULT;
	struct sb_chunk *c = malloc(sizeof *c + cap);
	if (!c)
		return NULL;
	c->cap = cap;
	c->len = c->written = 0;
	c->next = NULL;
	return c;
}

static void chunk_put(struct sb_log *log, struct sb_chunk *c)
{
	for (int i = 0; i < SB_CHUNK_SPARES; i++) {
		if (!log->spares[i] && c->cap == SB_CHUNK_BYTES_DEFAULT) {
			log->spares[i] = c;
			return;
		}
	}
	free(c);
}

/* Lock held: copies data into the open tail chunk (or a new one) and stamps
 * offsets and the epoch. */
static int stage(struct sb_log *log, const uint8_t *data, size_t len, int32_t epoch)
{
	struct sb_chunk *c = log->chunk_tail;
	if (!log->tail_open || !c || c->cap - c->len < len) {
		c = chunk_get(log, len);
		if (!c)
			return -ENOMEM;
		if (log->chunk_tail)
			log->chunk_tail->next = c;
		else
			log->chunk_head = c;
		log->chunk_tail = c;
		log->tail_open = 1;
	}
	uint8_t *p = c->buf + c->len;
	memcpy(p, data, len);
	for (size_t at = 0; at < len;) {
		uint32_t blen = sb_load32(p + at + SB_BATCH_OFF_LENGTH);
		uint32_t last_delta = sb_load32(p + at + SB_BATCH_OFF_LAST_DELTA);
		sb_batch_set_base_offset(p + at, log->next_offset);
		sb_batch_set_leader_epoch(p + at, epoch);
		log->next_offset += (int64_t)last_delta + 1;
		at += SB_BATCH_PREFIX_BYTES + blen;
	}
	c->len += len;
	c->end_offset = log->next_offset;
	return 0;
}

int sb_log_append(struct sb_log *log, const void *data, size_t len, int32_t leader_epoch,
		  sb_append_cb cb, void *arg)
{
	struct sb_pending *p = NULL;
	int64_t records;
	int rc = check_batches(data, len, &records);
	if (rc)
		return rc;
	if (len > SB_BATCH_BYTES_MAX)
		return SB_ETOOBIG;
	p = malloc(sizeof *p);
	if (!p)
		return -ENOMEM;
	pthread_mutex_lock(&log->lock);
	if (log->closing)
		rc = SB_ECLOSED;
	else if (log->failed)
		rc = SB_EFAILED;
	else if (leader_epoch < log->last_epoch)
		rc = SB_EFENCED;
	else if (log->inflight_bytes > 0 && log->inflight_bytes + len > log->cfg.inflight_bytes_max)
		rc = SB_EBUSY;
	if (!rc) {
		p->base_offset = log->next_offset;
		rc = stage(log, data, len, leader_epoch);
	}
	if (!rc) {
		p->next = NULL;
		p->cb = cb;
		p->arg = arg;
		p->end_offset = log->next_offset;
		p->bytes = len;
		if (log->pend_tail)
			log->pend_tail->next = p;
		else
			log->pend_head = p;
		log->pend_tail = p;
		log->inflight_bytes += len;
		log->last_epoch = leader_epoch;
		p = NULL;
	}
	pthread_mutex_unlock(&log->lock);
	free(p);
	if (!rc)
		sb_ioloop_kick(log->loop, &log->task);
	return rc;
}

/* ---- the loop side ---- */

static void write_done(struct sb_aio_req *req);
static void sync_done(struct sb_aio_req *req);

/* Lock held. Chooses the next piece of chunk_head: whole batches that fit
 * in the active segment (at least one if the segment is empty), indexing
 * them. Returns its length (0: the segment is full, roll first). */
static size_t plan_piece(struct sb_log *log, struct sb_chunk *c)
{
	struct sb_segment *seg = sb_log__active(log);
	size_t at = c->written;
	uint64_t pos = seg->size;
	while (at < c->len) {
		struct sb_batch_header h;
		if (sb_batch_parse_header(c->buf + at, c->len - at, &h) != 0)
			abort(); /* staged bytes were verified on append: a bug */
		uint64_t total = sb_batch_total_bytes(&h);
		if (pos > 0 && pos + total > log->cfg.segment_bytes)
			break;
		if (sb_index_add(&seg->idx, seg->base_offset, &h, pos) != 0)
			SB_LOG_RATELIMITED(SB_LEVEL_WARN, 1000, "index_entry_dropped", "log=%s", log->name);
		pos += total;
		at += (size_t)total;
		log->piece_end_offset = sb_batch_next_offset(&h);
		log->piece_epoch = h.leader_epoch;
	}
	return at - c->written;
}

static int submit_write(struct sb_log *log, struct sb_chunk *c)
{
	struct sb_segment *seg = sb_log__active(log);
	struct sb_aio_req *r = &log->wreq;
	memset(r, 0, sizeof *r);
	r->op = SB_AIO_WRITE;
	r->fd = seg->fd;
	r->buf = c->buf + c->written;
	r->len = (uint32_t)(log->piece_end - c->written);
	r->off = seg->size;
	r->done = write_done;
	r->data = log;
	int rc = log->aio->ops->submit(log->aio, r);
	if (rc == -EAGAIN)
		return 0; /* engine full: the next pump retries */
	if (rc)
		return rc;
	log->write_inflight = 1;
	return 0;
}

static int submit_sync(struct sb_log *log)
{
	struct sb_segment *seg = sb_log__active(log);
	struct sb_aio_req *r = &log->sreq;
	memset(r, 0, sizeof *r);
	r->op = SB_AIO_DATASYNC;
	r->fd = seg->fd;
	r->done = sync_done;
	r->data = log;
	int rc = log->aio->ops->submit(log->aio, r);
	if (rc)
		return rc == -EAGAIN ? 0 : rc; /* -EAGAIN: retried on the next pump */
	log->sync_target = log->written_end;
	log->sync_target_pos = seg->size;
	log->sync_inflight = 1;
	log->sync_due = 0;
	log->last_sync_ms = sb_mono_ms();
	return 0;
}

static void write_done(struct sb_aio_req *req)
{
	struct sb_log *log = req->data;
	struct sb_pending *cbs = NULL;
	int64_t stable = 0;
	int err = 0;

	pthread_mutex_lock(&log->lock);
	log->write_inflight = 0;
	struct sb_chunk *c = log->chunk_head;
	struct sb_segment *seg = sb_log__active(log);
	if (req->res < 0 || (req->res == 0 && req->len > 0)) {
		err = req->res < 0 ? req->res : -EIO;
		mark_failed(log, err, "write");
		cbs = take_all(log);
	} else if (!log->failed) {
		c->written += (size_t)req->res;
		seg->size += (uint64_t)req->res;
		log->total_bytes += (uint64_t)req->res;
		if (c->written == log->piece_end) {
			log->piece_open = 0;
			log->written_end = log->piece_end_offset;
			seg->next_offset = log->piece_end_offset;
			seg->last_epoch = log->piece_epoch;
			if (c->written == c->len && !(c == log->chunk_tail && log->tail_open)) {
				log->chunk_head = c->next;
				if (!log->chunk_head)
					log->chunk_tail = NULL;
				chunk_put(log, c);
			}
			if (log->cfg.fsync_policy != SB_FSYNC_ALWAYS)
				cbs = advance_stable(log, log->written_end, seg->size);
		}
	}
	stable = log->stable_end;
	pthread_mutex_unlock(&log->lock);
	if (err)
		run_callbacks(cbs, err);
	else if (cbs)
		notify_stable(log, cbs, stable);
	sb_ioloop_kick(log->loop, &log->task);
}

static void sync_done(struct sb_aio_req *req)
{
	struct sb_log *log = req->data;
	struct sb_pending *cbs = NULL;
	int64_t stable;
	int err = 0;

	pthread_mutex_lock(&log->lock);
	log->sync_inflight = 0;
	if (req->res < 0) {
		err = req->res;
		mark_failed(log, err, "fdatasync");
		cbs = take_all(log);
	} else if (!log->failed) {
		log->synced_end = log->sync_target;
		if (log->cfg.fsync_policy == SB_FSYNC_ALWAYS)
			cbs = advance_stable(log, log->sync_target, log->sync_target_pos);
	}
	stable = log->stable_end;
	pthread_mutex_unlock(&log->lock);
	if (err)
		run_callbacks(cbs, err);
	else if (cbs)
		notify_stable(log, cbs, stable);
	sb_ioloop_kick(log->loop, &log->task);
}

int sb_log__push_segment(struct sb_log *log, struct sb_segment *seg)
{
	if (log->nsegs == log->cap_segs) {
		uint32_t ncap = log->cap_segs ? log->cap_segs * 2 : 8;
		struct sb_segment **n = realloc(log->segs, ncap * sizeof *n);
		if (!n)
			return -ENOMEM;
		log->segs = n;
		log->cap_segs = ncap;
	}
	log->segs[log->nsegs++] = seg;
	return 0;
}

/* Loop thread, lock NOT held, nothing in flight: seals the active segment
 * and opens the next one durably before any write depends on it. */
static int roll(struct sb_log *log)
{
	struct sb_segment *old, *seg = NULL;
	struct sb_pending *cbs = NULL;
	int64_t base, stable;
	int rc;

	pthread_mutex_lock(&log->lock);
	old = sb_log__active(log);
	base = log->written_end;
	pthread_mutex_unlock(&log->lock);

	rc = sb_segment_seal(old);
	if (!rc)
		rc = sb_segment_alloc(log->vfs, log->dir, base, log->cfg.index_interval_bytes, &seg);
	if (!rc)
		rc = sb_segment_create(seg);
	pthread_mutex_lock(&log->lock);
	if (!rc)
		rc = sb_log__push_segment(log, seg);
	if (rc) {
		mark_failed(log, rc, "roll");
		cbs = take_all(log);
		pthread_mutex_unlock(&log->lock);
		sb_segment_unref(seg);
		run_callbacks(cbs, rc);
		return rc;
	}
	log->synced_end = log->written_end;
	log->rolls_done++;
	/* Everything in the sealed segment is durable now. */
	cbs = advance_stable(log, log->written_end, 0);
	log->stable_pos = 0;
	stable = log->stable_end;
	pthread_mutex_unlock(&log->lock);
	if (cbs)
		notify_stable(log, cbs, stable);
	SB_INFO("segment_rolled", "log=%s sealed_base=%" PRId64 " next_offset=%" PRId64 " bytes=%" PRIu64,
		log->name, old->base_offset, old->next_offset, old->size);
	if (log->listener.on_sealed)
		log->listener.on_sealed(log->listener.arg, log, old->base_offset, old->next_offset);
	return 0;
}

/* Lock held. What the pump should do next. */
enum pump_step { STEP_NONE, STEP_WRITE, STEP_ROLL };

static enum pump_step next_step(struct sb_log *log)
{
	struct sb_chunk *c = log->chunk_head;
	if (log->failed || log->write_inflight)
		return STEP_NONE;
	if (log->piece_open)
		return STEP_WRITE; /* the rest of a short write */
	if (log->roll_requested && !log->sync_inflight) {
		log->roll_requested = 0;
		if (sb_log__active(log)->size > 0)
			return STEP_ROLL;
		log->rolls_done++; /* nothing to seal */
	}
	if (!c || c->written == c->len)
		return STEP_NONE;
	if (c == log->chunk_tail)
		log->tail_open = 0;
	size_t n = plan_piece(log, c);
	if (n == 0)
		return log->sync_inflight ? STEP_NONE : STEP_ROLL;
	log->piece_end = c->written + n;
	log->piece_open = 1;
	return STEP_WRITE;
}

void sb_log__pump(struct sb_ioloop_task *task)
{
	struct sb_log *log = (struct sb_log *)task;
	for (int guard = 0; guard < 4; guard++) {
		struct sb_pending *failed = NULL;
		int rc = 0;
		pthread_mutex_lock(&log->lock);
		enum pump_step step = next_step(log);
		if (step == STEP_WRITE && (rc = submit_write(log, log->chunk_head)) != 0)
			mark_failed(log, rc, "submit_write");
		if (!log->failed && !log->sync_inflight && log->synced_end < log->written_end &&
		    (log->cfg.fsync_policy == SB_FSYNC_ALWAYS || log->sync_due) &&
		    (rc = submit_sync(log)) != 0)
			mark_failed(log, rc, "submit_sync");
		int err = log->failed;
		if (err)
			failed = take_all(log);
		pthread_mutex_unlock(&log->lock);
		run_callbacks(failed, err);
		if (step != STEP_ROLL || roll(log) != 0)
			break;
	}
}

void sb_log__tick(struct sb_ioloop_task *task, int64_t now_ms)
{
	struct sb_log *log = (struct sb_log *)task;
	int kick = 0, retention = 0;
	pthread_mutex_lock(&log->lock);
	struct sb_segment *seg = sb_log__active(log);
	if (log->cfg.fsync_policy == SB_FSYNC_INTERVAL && log->synced_end < log->written_end &&
	    sb_mono_ms() - log->last_sync_ms >= log->cfg.fsync_interval_ms) {
		log->sync_due = 1;
		kick = 1;
	}
	if (log->cfg.segment_ms > 0 && seg->size > 0 && now_ms - seg->created_ms >= log->cfg.segment_ms &&
	    !log->roll_requested) {
		log->roll_requested = 1;
		kick = 1;
	}
	if (now_ms - log->last_retention_ms >= 1000) {
		log->last_retention_ms = now_ms;
		retention = log->cfg.retention_bytes >= 0 || log->cfg.retention_ms >= 0;
	}
	pthread_mutex_unlock(&log->lock);
	if (retention) {
		int rc = sb_log_apply_retention(log, now_ms);
		if (rc < 0)
			SB_LOG_RATELIMITED(SB_LEVEL_WARN, 10000, "retention_failed", "log=%s error=\"%s\"",
					   log->name, sb_strerror(rc));
	}
	if (kick)
		sb_log__pump(task);
}

void sb_log__free_staging(struct sb_log *log)
{
	struct sb_chunk *c = log->chunk_head;
	while (c) {
		struct sb_chunk *next = c->next;
		free(c);
		c = next;
	}
	log->chunk_head = log->chunk_tail = NULL;
	for (int i = 0; i < SB_CHUNK_SPARES; i++) {
		free(log->spares[i]);
		log->spares[i] = NULL;
	}
}
