/* sb_log_write.c - the partition log's write path on the I/O loop: coalesced
 * writes, group commit, rolls, acknowledgements. Appends and staging are in
 * sb_log_stage.c.
 *
 * Shape, and why: io_uring buffered 4 KiB appends at queue depth 1 are slow
 * (~64 MB/s here) while large writes run at GB/s, so appends are copied into
 * staging chunks and the loop writes everything staged since its previous
 * write as one piece (natural coalescing). A piece always ends at an append
 * boundary, so the acknowledged end never splits an append (readers see
 * whole appends or nothing of them).
 *
 * Two pieces may be in flight: the kernel runs buffered writes to one file in
 * order on one worker, which then goes from one to the next without waiting
 * for the loop to see a completion and submit again (a wake-up round trip
 * costs about as much as writing 100 KiB here). A large backlog is split in
 * two pieces to start that pipeline. Pieces complete in file order; the
 * written end moves over the completed prefix only.
 *
 * Group commit (policy ALWAYS): one datasync in flight at a time, submitted
 * right behind the writes it must cover (the engines run it only after every
 * earlier write to the file completed; io_uring in the same kernel round
 * trip). It covers every piece handed to the engine before it; when it
 * completes the next one starts at once and covers everything written
 * meanwhile. Nothing is acknowledged before the datasync that covers it
 * succeeded; a short write shrinks what the datasync in flight is credited
 * with to the pieces completed before it.
 *
 * The next write and datasync are submitted from the completion of the
 * previous ones, and the acknowledgement callbacks that completion made due
 * run afterwards, from the pump (the engine sends the new requests to the
 * kernel as its poll returns, so the disk and the kernel copy do not wait for
 * the callbacks). Many logs share one loop, so their writes and syncs overlap
 * in the engine.
 */
#include "sb_log_internal.h"

#include "sb_limits.h"
#include "sb_logging.h"
#include "sb_time.h"
#include "sb_vfs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* What a locked step decided; acted on once the lock is released. */
struct outcome {
	struct sb_ack_run acked;  /* callbacks to run with result 0 */
	struct sb_ack_run failed; /* callbacks to run with err */
	int err;
	int64_t stable_end;       /* readers are notified if acked.n > 0 */
	int roll;                 /* the pump must roll the active segment */
};

/* ---- acknowledgement ---- */

/* Lock held. Advances the acknowledged end (always an append boundary) and
 * claims the callbacks that became due. */
static void advance_stable(struct sb_log *log, int64_t end, uint64_t pos, struct outcome *o)
{
	if (end <= log->stable_end)
		return;
	if (log->full_retries) {
		SB_INFO("log_resumed", "log=%s after=\"disk full\" retries=%" PRIu32 " acked_end=%" PRId64, log->name,
			log->full_retries, end);
		log->full_retries = 0;
	}
	struct sb_ack_run run;
	log->stable_end = end;
	log->stable_pos = pos;
	sb_log__raise_visible(log);
	sb_log__take_acked(log, end, &run);
	sb_log__join_runs(&o->acked, &run);
	o->stable_end = end;
}

/* Lock held: enters the sticky failed state (RELIABILITY.md rule 4) and
 * claims every unacknowledged append, to be failed with the error. */
static void fail_locked(struct sb_log *log, int err, const char *what, struct outcome *o)
{
	if (!log->failed) {
		log->failed = err;
		/* Only a write or a roll that found no room: an fdatasync error may
		 * have dropped pages (fsyncgate), and stays fatal. */
		log->full = (err == -ENOSPC || err == -EDQUOT) && (!strcmp(what, "write") || !strcmp(what, "roll"));
		if (log->full) {
			log->full_retry_ms = sb_mono_ms() + SB_LOG_FULL_RETRY_MS;
			if (!log->full_retries) /* once per episode: retries that fail again are quiet */
				SB_ERROR("log_failed", "log=%s op=%s error=\"%s\" acked_end=%" PRId64
					 " assigned_end=%" PRId64 " hint=\"disk full: appends are refused and "
					 "retried every %d ms\"", log->name, what, sb_strerror(err), log->stable_end,
					 log->next_offset, SB_LOG_FULL_RETRY_MS);
		} else {
			SB_ERROR("log_failed", "log=%s op=%s error=\"%s\" acked_end=%" PRId64 " assigned_end=%" PRId64,
				 log->name, what, sb_strerror(err), log->stable_end, log->next_offset);
		}
	}
	if (!o->failed.n) /* claims everything still unclaimed */
		sb_log__take_acked(log, INT64_MAX, &o->failed);
	o->err = log->failed;
}

/* Lock NOT held. */
static void finish(struct sb_log *log, const struct outcome *o)
{
	if (o->acked.n) {
		sb_log__run_acks(&o->acked, 0);
		sb_log__fire_waiters(log, 0);
		if (log->listener.on_stable)
			log->listener.on_stable(log->listener.arg, log, o->stable_end);
	}
	if (o->failed.n)
		sb_log__run_acks(&o->failed, o->err);
}

/* Lock held, in a completion: defers o's acknowledgements to the pump (the
 * engine first sends what this completion submitted), or, when o also fails
 * appends, takes the deferred ones back so that callbacks keep FIFO order.
 * Returns 1 if the task must be kicked. */
static int defer_acks(struct sb_log *log, struct outcome *o)
{
	if (o->failed.n) {
		struct sb_ack_run run = log->stash;
		sb_log__join_runs(&run, &o->acked);
		o->acked = run;
		o->stable_end = log->stable_end;
		log->stash.n = 0;
		return 0;
	}
	if (!o->acked.n)
		return 0;
	sb_log__join_runs(&log->stash, &o->acked);
	log->stash_stable_end = o->stable_end;
	o->acked.n = 0;
	if (log->stash_kicked)
		return 0;
	log->stash_kicked = 1;
	return 1;
}

int sb_log__drained(struct sb_log *log)
{
	return log->inflight_bytes == 0 && !log->stash.n && !log->writes_inflight && !log->sync_inflight;
}

/* ---- planning and submitting ---- */

static void write_done(struct sb_aio_req *req);
static void sync_done(struct sb_aio_req *req);

static struct sb_piece *piece_at(struct sb_log *log, uint32_t i)
{
	return &log->pieces[(log->piece_head + i) % SB_LOG_PIECES_MAX];
}

/* Lock held. Indexes the batches of one staged append at file position pos. */
static void index_append(struct sb_log *log, struct sb_segment *seg, const uint8_t *p, uint32_t len,
			 uint64_t pos, int32_t *epoch)
{
	for (uint32_t at = 0; at < len;) {
		struct sb_batch_header h;
		if (sb_batch_parse_header(p + at, len - at, &h) != 0)
			abort(); /* staged bytes were checked on append: a bug */
		if (sb_index_add(&seg->idx, seg->base_offset, &h, pos + at) != 0)
			SB_LOG_RATELIMITED(SB_LEVEL_WARN, 1000, "index_entry_dropped", "log=%s", log->name);
		*epoch = h.leader_epoch;
		at += (uint32_t)sb_batch_total_bytes(&h);
	}
}

/* Lock held. The first chunk with appends not yet in a piece. */
static struct sb_chunk *unplanned_chunk(struct sb_log *log)
{
	struct sb_chunk *c = log->chunk_head;
	while (c && c->nplanned == c->nrec)
		c = c->next;
	return c;
}

/* Lock held. How many bytes the next piece of c may take: with nothing
 * planned and everything staged in c, half of a large backlog, so that a
 * second write is queued behind the first. */
static uint32_t piece_limit(struct sb_log *log, struct sb_chunk *c)
{
	uint32_t unplanned = c->len - sb_chunk_rec_start(c, c->nplanned);
	if (log->npieces == 0 && c == log->chunk_tail && unplanned >= 2 * SB_PIECE_SPLIT_MIN)
		return unplanned / 2 < SB_WRITE_CHUNK_BYTES_MAX ? unplanned / 2 : SB_WRITE_CHUNK_BYTES_MAX;
	return SB_WRITE_CHUNK_BYTES_MAX;
}

/* Lock held. Plans the next piece: c's unplanned appends that fit in the
 * active segment after the planned bytes (at least one if the segment is
 * empty), at most limit bytes unless one append is larger, indexing them.
 * Returns 0, or 1 if the segment is full (roll first). */
static int plan_piece(struct sb_log *log, struct sb_chunk *c, uint32_t limit)
{
	struct sb_segment *seg = sb_log__active(log);
	struct sb_piece *p = piece_at(log, log->npieces);
	uint32_t i = c->nplanned, start = sb_chunk_rec_start(c, i), at = start;
	uint64_t pos = log->plan_pos;
	while (i < c->nrec) {
		struct sb_append_rec *r = sb_chunk_rec(c, i);
		uint32_t bytes = r->data_end - at;
		if (pos > 0 && pos + bytes > (log->follower ? SB_SEGMENT_BYTES_MAX : log->cfg.segment_bytes))
			break;
		if (at > start && at - start + bytes > limit)
			break;
		index_append(log, seg, c->buf + at, bytes, pos, &p->epoch);
		pos += bytes;
		at = r->data_end;
		p->end_offset = r->end_offset;
		i++;
	}
	if (at == start)
		return 1;
	c->nplanned = i;
	p->log = log;
	p->chunk = c;
	p->start = start;
	p->end = at;
	p->done = 0;
	p->state = SB_PIECE_PLANNED;
	p->file_off = log->plan_pos;
	log->plan_pos = pos;
	log->npieces++;
	return 0;
}

/* Lock held: hands (the rest of) p to the engine. */
static int submit_piece(struct sb_log *log, struct sb_piece *p)
{
	struct sb_aio_req *r = &p->req;
	memset(r, 0, sizeof *r);
	r->op = SB_AIO_WRITE;
	r->fd = sb_log__active(log)->fd;
	r->buf = p->chunk->buf + p->start + p->done;
	r->len = p->end - p->start - p->done;
	r->off = p->file_off + p->done;
	r->done = write_done;
	r->data = p;
	int rc = log->aio->ops->submit(log->aio, r);
	if (rc == -EAGAIN)
		return 0; /* engine full: the next pump (at the latest the tick) retries */
	if (rc)
		return rc;
	p->state = SB_PIECE_INFLIGHT;
	p->submitted_ms = sb_mono_ms();
	log->writes_inflight++;
	return 0;
}

/* Lock held: submits planned pieces in file order (a datasync then covers a
 * prefix of them, see sync_cover). */
static int submit_pieces(struct sb_log *log)
{
	for (uint32_t i = 0; i < log->npieces; i++) {
		struct sb_piece *p = piece_at(log, i);
		int rc;
		if (p->state != SB_PIECE_PLANNED)
			continue;
		if ((rc = submit_piece(log, p)) != 0)
			return rc;
		if (p->state == SB_PIECE_PLANNED)
			break; /* refused for now: keep the order */
	}
	return 0;
}

/* Lock held: what a datasync submitted now covers (offset, and position in
 * *pos): the written prefix and every piece already handed to the engine,
 * which starts the datasync only after those writes completed. */
static int64_t sync_cover(struct sb_log *log, uint64_t *pos)
{
	int64_t end = log->written_end;
	*pos = log->written_pos;
	for (uint32_t i = 0; i < log->npieces; i++) {
		struct sb_piece *p = piece_at(log, i);
		if (p->state == SB_PIECE_PLANNED)
			break;
		end = p->end_offset;
		*pos = p->file_off + (p->end - p->start);
	}
	return end;
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
	log->sync_target = sync_cover(log, &log->sync_target_pos);
	log->sync_inflight = 1;
	log->sync_due = 0;
	log->last_sync_ms = sb_mono_ms();
	log->sync_started_ns = sb_mono_ns();
	return 0;
}

/* Lock held. Plans pieces while there is room, or asks for a roll. Returns
 * 1 if the pump must roll first. */
static int plan_pieces(struct sb_log *log)
{
	if (log->roll_requested) {
		if (log->npieces || log->sync_inflight)
			return 0; /* roll once they are done; plan nothing new meanwhile */
		if (sb_log__active(log)->size > 0)
			return 1; /* roll() clears the request */
		log->roll_requested = 0;
		log->rolls_done++; /* nothing to seal */
	}
	struct sb_chunk *c;
	while (log->npieces < SB_LOG_PIECES_MAX && (c = unplanned_chunk(log)))
		if (plan_piece(log, c, piece_limit(log, c)) != 0)
			return log->npieces == 0 && !log->sync_inflight; /* full: seal it */
	return 0;
}

/* Lock held. Starts the writes and the datasync that are due; sets o->roll
 * when the active segment must be rolled first. */
static void pump_locked(struct sb_log *log, struct outcome *o)
{
	uint64_t pos;
	int rc;
	if (log->failed)
		return;
	if ((o->roll = plan_pieces(log)) != 0)
		return;
	if ((rc = submit_pieces(log)) != 0) {
		fail_locked(log, rc, "submit_write", o);
		return;
	}
	if (!log->sync_inflight && (log->cfg.fsync_policy == SB_FSYNC_ALWAYS || log->sync_due) &&
	    sync_cover(log, &pos) > log->synced_end && (rc = submit_sync(log)) != 0)
		fail_locked(log, rc, "submit_sync", o);
}

/* ---- completions (loop thread, inside the engine's poll) ---- */

/* Lock held: moves the written prefix past the completed head pieces. */
static void pop_done_pieces(struct sb_log *log, struct outcome *o)
{
	struct sb_segment *seg = sb_log__active(log);
	struct sb_piece *p;
	int moved = 0;
	while (log->npieces && (p = piece_at(log, 0))->state == SB_PIECE_DONE) {
		uint32_t len = p->end - p->start;
		if (p->chunk->written != p->start || p->file_off != seg->size)
			abort(); /* pieces complete in file order: a bug */
		p->chunk->written = p->end;
		seg->size += len;
		log->total_bytes += len;
		log->written_end = p->end_offset;
		log->written_pos = seg->size;
		seg->next_offset = p->end_offset;
		seg->last_epoch = p->epoch;
		log->piece_head = (log->piece_head + 1) % SB_LOG_PIECES_MAX;
		log->npieces--;
		moved = 1;
	}
	if (moved && log->cfg.fsync_policy != SB_FSYNC_ALWAYS)
		advance_stable(log, log->written_end, log->written_pos, o);
}

/* Lock held: accounts a successful write of res bytes of p. */
static void write_progress(struct sb_log *log, struct sb_piece *p, int32_t res, struct outcome *o)
{
	p->done += (uint32_t)res;
	if (p->done < p->end - p->start) {
		/* Short: the rest is written again (by the pump below). A datasync in
		 * flight covers only the pieces completed before this one. */
		p->state = SB_PIECE_PLANNED;
		if (log->sync_inflight && log->sync_target > log->written_end) {
			log->sync_target = log->written_end;
			log->sync_target_pos = log->written_pos;
		}
		return;
	}
	p->state = SB_PIECE_DONE;
	pop_done_pieces(log, o);
}

static void write_done(struct sb_aio_req *req)
{
	struct sb_piece *p = req->data;
	struct sb_log *log = p->log;
	struct outcome o = {0};

	pthread_mutex_lock(&log->lock);
	if (!log->stash.n)
		sb_log__recycle(log);
	log->writes_inflight--;
	if (req->res < 0 || (req->res == 0 && req->len > 0))
		fail_locked(log, req->res < 0 ? req->res : -EIO, "write", &o);
	else if (!log->failed)
		write_progress(log, p, req->res, &o);
	pump_locked(log, &o);
	int kick = defer_acks(log, &o) | o.roll;
	pthread_mutex_unlock(&log->lock);
	if (kick)
		sb_ioloop_kick(log->loop, &log->task);
	finish(log, &o);
}

struct sb_histo sb_log_fsync_histo;

static void sync_done(struct sb_aio_req *req)
{
	struct sb_log *log = req->data;
	struct outcome o = {0};

	pthread_mutex_lock(&log->lock);
	if (!log->stash.n)
		sb_log__recycle(log);
	log->sync_inflight = 0;
	sb_histo_add(&sb_log_fsync_histo, (sb_mono_ns() - log->sync_started_ns) / 1000);
	if (req->res < 0) {
		fail_locked(log, req->res, "fdatasync", &o);
	} else if (!log->failed) {
		int64_t end = log->sync_target;
		uint64_t pos = log->sync_target_pos;
		if (end > log->written_end) { /* cannot happen: the engines order them */
			end = log->written_end;
			pos = log->written_pos;
		}
		if (end > log->synced_end)
			log->synced_end = end;
		if (log->cfg.fsync_policy == SB_FSYNC_ALWAYS)
			advance_stable(log, end, pos, &o);
	}
	pump_locked(log, &o);
	int kick = defer_acks(log, &o) | o.roll;
	pthread_mutex_unlock(&log->lock);
	if (kick)
		sb_ioloop_kick(log->loop, &log->task);
	finish(log, &o);
}

/* ---- rolls ---- */

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
	struct outcome o = {0};
	int64_t base;
	int rc;

	pthread_mutex_lock(&log->lock);
	old = sb_log__active(log);
	base = log->written_end;
	log->roll_requested = 0; /* any roll serves a request */
	log->roll_started_ms = sb_mono_ms();
	pthread_mutex_unlock(&log->lock);

	rc = sb_segment_seal(old);
	if (!rc)
		rc = sb_segment_alloc(log->vfs, log->dir, base, log->cfg.index_interval_bytes, &seg);
	if (!rc)
		rc = sb_segment_create(seg);
	pthread_mutex_lock(&log->lock);
	log->roll_started_ms = 0;
	if (!rc)
		rc = sb_log__push_segment(log, seg);
	if (rc) {
		fail_locked(log, rc, "roll", &o);
		pthread_mutex_unlock(&log->lock);
		sb_segment_unref(seg);
		finish(log, &o);
		return rc;
	}
	log->synced_end = log->written_end;
	log->rolls_done++;
	/* Everything in the sealed segment is durable now. */
	advance_stable(log, log->written_end, 0, &o);
	log->stable_pos = 0;
	log->written_pos = 0;
	log->plan_pos = 0;
	pthread_mutex_unlock(&log->lock);
	finish(log, &o);
	SB_INFO("segment_rolled", "log=%s sealed_base=%" PRId64 " next_offset=%" PRId64 " bytes=%" PRIu64,
		log->name, old->base_offset, old->next_offset, old->size);
	if (log->listener.on_sealed)
		log->listener.on_sealed(log->listener.arg, log, old->base_offset, old->next_offset);
	return 0;
}

/* ---- a full disk ---- */

/* Lock held, loop thread. A log failed by a full disk takes appends again
 * once nothing is in flight and the retry time has come: the active segment
 * is cut back to the acknowledged end (the failed appends' bytes go: their
 * callers were told, and a short write may have left part of one), and the
 * write state restarts there. If the disk is still full the next write fails
 * the same way, and the next retry comes SB_LOG_FULL_RETRY_MS later. */
static void retry_full(struct sb_log *log, int64_t now_ms)
{
	struct sb_segment *act = sb_log__active(log);
	int rc = 0;

	if (!log->failed || !log->full || log->closing || !sb_log__drained(log) || now_ms < log->full_retry_ms)
		return;
	log->full_retry_ms = now_ms + SB_LOG_FULL_RETRY_MS;
	if (act->sealed && (rc = sb_segment_remove_index_files(act)) == 0)
		act->sealed = 0; /* a roll sealed it, then could not create the next one */
	uint64_t old_size = act->size;
	if (!rc)
		rc = sb_segment_cut(act, log->stable_end, log->stable_pos);
	if (rc) {
		log->full = 0; /* no longer a full disk only: stay failed */
		SB_ERROR("log_failed", "log=%s op=resume error=\"%s\" acked_end=%" PRId64, log->name,
			 sb_strerror(rc), log->stable_end);
		return;
	}
	log->total_bytes -= old_size - act->size;
	log->next_offset = log->written_end = log->sync_target = log->stable_end;
	if (log->keyed_end > log->next_offset)
		log->keyed_end = log->next_offset;
	if (log->synced_end > log->stable_end)
		log->synced_end = log->stable_end;
	log->written_pos = log->plan_pos = log->sync_target_pos = log->stable_pos;
	log->npieces = 0;
	log->piece_head = 0;
	sb_log__free_staging(log); /* every append in it was failed */
	SB_DEBUG("log_retry", "log=%s after=\"%s\" next_offset=%" PRId64 " bytes_cut=%" PRIu64, log->name,
		 sb_strerror(log->failed), log->next_offset, old_size - act->size);
	log->full_retries++; /* log_resumed once an append is acknowledged again */
	log->failed = 0;
	log->full = 0;
}

/* ---- pump and tick ---- */

void sb_log__pump(struct sb_ioloop_task *task)
{
	struct sb_log *log = (struct sb_log *)task;
	for (int guard = 0; guard < 4; guard++) {
		struct outcome o = {0};
		pthread_mutex_lock(&log->lock);
		log->pump_pending = 0;
		if (!log->stash.n)
			sb_log__recycle(log);
		o.acked = log->stash; /* deferred by completions: run them now */
		o.stable_end = log->stash_stable_end;
		log->stash.n = 0;
		log->stash_kicked = 0;
		pump_locked(log, &o);
		if (log->failed)
			fail_locked(log, log->failed, "pump", &o); /* fail what is left */
		pthread_mutex_unlock(&log->lock);
		finish(log, &o);
		if (!o.roll || roll(log) != 0)
			break;
	}
}

void sb_log__tick(struct sb_ioloop_task *task, int64_t now_ms)
{
	struct sb_log *log = (struct sb_log *)task;
	int pump = 0, retention = 0;
	pthread_mutex_lock(&log->lock);
	struct sb_segment *seg = sb_log__active(log);
	if (log->cfg.fsync_policy == SB_FSYNC_INTERVAL && log->synced_end < log->written_end &&
	    sb_mono_ms() - log->last_sync_ms >= log->cfg.fsync_interval_ms) {
		log->sync_due = 1;
		pump = 1;
	}
	if (log->cfg.segment_ms > 0 && seg->size > 0 && now_ms - seg->created_ms >= log->cfg.segment_ms &&
	    !log->roll_requested && !log->follower) {
		log->roll_requested = 1;
		pump = 1;
	}
	/* A submission the engine refused (-EAGAIN) is retried here at the latest. */
	if (!log->writes_inflight && (log->npieces || unplanned_chunk(log)))
		pump = 1;
	if (now_ms - log->last_retention_ms >= 1000) {
		log->last_retention_ms = now_ms;
		retention = log->cfg.retention_bytes >= 0 || log->cfg.retention_ms >= 0;
	}
	sb_log__trim(log, sb_mono_ms());
	retry_full(log, sb_mono_ms());
	pthread_mutex_unlock(&log->lock);
	if (retention) {
		int rc = sb_log_apply_retention(log, now_ms);
		if (rc < 0)
			SB_LOG_RATELIMITED(SB_LEVEL_WARN, 10000, "retention_failed", "log=%s error=\"%s\"",
					   log->name, sb_strerror(rc));
	}
	if (pump)
		sb_log__pump(task);
}
