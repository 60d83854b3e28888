/* sb_log.c - the partition log: configuration, open and recovery, reads,
 * retention, close. The write path is in sb_log_write.c. */
#include "sb_log_internal.h"

#include "sb_limits.h"
#include "sb_logging.h"
#include "sb_path.h"
#include "sb_time.h"
#include "sb_vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- configuration ---- */

static const char *const policy_names[] = {"always", "interval", "never"};

int sb_fsync_policy_parse(const char *s, enum sb_fsync_policy *out)
{
	for (int i = 0; i < 3; i++) {
		if (strcmp(s, policy_names[i]) == 0) {
			*out = (enum sb_fsync_policy)i;
			return 0;
		}
	}
	return SB_EINVAL;
}

const char *sb_fsync_policy_name(enum sb_fsync_policy p)
{
	return (unsigned)p < 3 ? policy_names[p] : "unknown";
}

void sb_log_config_default(struct sb_log_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->segment_bytes = SB_SEGMENT_BYTES_DEFAULT;
	cfg->segment_ms = 7ll * 24 * 3600 * 1000;
	cfg->index_interval_bytes = SB_INDEX_INTERVAL_BYTES_DEFAULT;
	cfg->fsync_policy = SB_FSYNC_ALWAYS;
	cfg->fsync_interval_ms = 1000;
	cfg->retention_bytes = -1;
	cfg->retention_ms = 7ll * 24 * 3600 * 1000;
	cfg->inflight_bytes_max = SB_LOG_INFLIGHT_BYTES_DEFAULT;
}

int sb_log_config_check(const struct sb_log_config *cfg)
{
	if (cfg->segment_bytes < SB_SEGMENT_BYTES_MIN || cfg->segment_bytes > SB_SEGMENT_BYTES_MAX ||
	    cfg->segment_ms < 0 || cfg->index_interval_bytes < 64 ||
	    cfg->index_interval_bytes > (16u << 20) || (unsigned)cfg->fsync_policy > SB_FSYNC_NEVER ||
	    cfg->fsync_interval_ms < 1 || cfg->fsync_interval_ms > 3600000 ||
	    cfg->retention_bytes < -1 || cfg->retention_ms < -1 ||
	    cfg->inflight_bytes_max < SB_LOG_INFLIGHT_BYTES_MIN ||
	    cfg->inflight_bytes_max > SB_LOG_INFLIGHT_BYTES_MAX)
		return SB_EBADCONFIG;
	return 0;
}

/* ---- recovery ---- */

struct base_list {
	int64_t *v;
	size_t n, cap;
	struct sb_log *log;
};

static int collect_entry(void *arg, const char *name, int is_dir)
{
	struct base_list *bl = arg;
	int64_t base;
	size_t nlen = strlen(name);
	if (is_dir)
		return 0;
	if ((nlen > 4 && strcmp(name + nlen - 4, ".tmp") == 0) ||
	    (nlen > 9 && strcmp(name + nlen - 9, ".cleaning") == 0)) {
		/* An interrupted durable write (index or side file) or log
		 * cleaning: never trusted. */
		char path[SB_PATH_MAX];
		snprintf(path, sizeof path, "%s/%s", bl->log->dir, name);
		int rc = bl->log->vfs->ops->unlink(bl->log->vfs, path);
		(void)rc;
		return 0;
	}
	if (!sb_segment_parse_name(name, &base))
		return 0;
	if (bl->n == bl->cap) {
		size_t ncap = bl->cap ? bl->cap * 2 : 16;
		int64_t *nv = realloc(bl->v, ncap * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		bl->v = nv;
		bl->cap = ncap;
	}
	bl->v[bl->n++] = base;
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Looks for a valid batch anywhere in buf: tells a torn tail (garbage to the
 * end) from corruption followed by good data. */
static int has_valid_batch(const uint8_t *buf, size_t len)
{
	struct sb_batch_header h;
	for (size_t i = 1; i + SB_BATCH_HEADER_BYTES <= len; i++)
		if (buf[i + SB_BATCH_OFF_MAGIC] == SB_BATCH_MAGIC && sb_batch_verify(buf + i, len - i, &h) == 0)
			return 1;
	return 0;
}

/* Cuts the invalid tail of the active segment, keeping the cut bytes in
 * <base>.log.cut-<position> (RELIABILITY.md rule 5). */
static int truncate_tail(struct sb_log *log, struct sb_segment *seg, const struct sb_scan_result *res)
{
	char name[64], segname[SB_SEGMENT_NAME_LEN + 1];
	uint64_t cut = res->file_bytes - res->valid_bytes;
	size_t keep = cut > SB_BATCH_BYTES_MAX ? SB_BATCH_BYTES_MAX : (size_t)cut;
	uint8_t *bytes = malloc(keep ? keep : 1);
	int rc;

	if (!bytes)
		return -ENOMEM;
	rc = sb_vfs_read_all(log->vfs, seg->fd, bytes, keep, res->valid_bytes);
	if (!rc) {
		sb_segment_name(seg->base_offset, segname);
		snprintf(name, sizeof name, "%s.log.cut-%" PRIu64, segname, res->valid_bytes);
		rc = sb_vfs_write_file_durable(log->vfs, log->dir, name, bytes, keep);
	}
	if (!rc && has_valid_batch(bytes, keep))
		SB_ERROR("active_segment_corrupt", "log=%s segment=%s position=%" PRIu64 " cut_bytes=%" PRIu64
			 " reason=\"%s\" note=\"valid batches follow the bad one; cut bytes kept in %s\"",
			 log->name, segname, res->valid_bytes, cut, sb_strerror(res->stop_reason), name);
	free(bytes);
	if (!rc)
		rc = log->vfs->ops->truncate(log->vfs, seg->fd, res->valid_bytes);
	if (!rc)
		rc = log->vfs->ops->datasync(log->vfs, seg->fd);
	if (!rc)
		SB_WARN("torn_tail_truncated", "log=%s position=%" PRIu64 " cut_bytes=%" PRIu64 " reason=\"%s\"",
			log->name, res->valid_bytes, cut, sb_strerror(res->stop_reason));
	return rc;
}

/* Opens every segment: sealed ones trusted with their (checked) indexes, the
 * last one scanned in full. */
static int recover(struct sb_log *log, int64_t *bases, size_t n)
{
	struct sb_segment *seg = NULL;
	int32_t epoch = -1;
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		rc = sb_segment_alloc(log->vfs, log->dir, bases[i], log->cfg.index_interval_bytes, &seg);
		if (rc)
			return rc;
		if (i + 1 < n) {
			rc = sb_segment_open_sealed(seg, epoch);
		} else {
			struct sb_scan_result res;
			rc = sb_segment_open_scan(seg, 1, epoch, &res);
			if (!rc && res.stop_reason)
				rc = truncate_tail(log, seg, &res);
			else if (!rc)
				/* Serve only what is durable: a process crash leaves unsynced
				 * bytes in the page cache that a power loss would still take. */
				rc = log->vfs->ops->datasync(log->vfs, seg->fd);
		}
		if (!rc && log->nsegs > 0) {
			struct sb_segment *prev = sb_log__active(log);
			if (seg->base_offset < prev->next_offset) {
				SB_ERROR("segments_overlap", "log=%s base=%" PRId64 " previous_end=%" PRId64,
					 log->name, seg->base_offset, prev->next_offset);
				rc = SB_ECORRUPT;
			} else if (seg->base_offset > prev->next_offset) {
				SB_WARN("segment_gap", "log=%s from=%" PRId64 " to=%" PRId64, log->name,
					prev->next_offset, seg->base_offset);
			}
		}
		if (!rc)
			rc = sb_log__push_segment(log, seg);
		if (rc) {
			sb_segment_unref(seg);
			return rc;
		}
		log->total_bytes += seg->size;
		if (seg->last_epoch >= 0)
			epoch = seg->last_epoch;
	}
	return 0;
}

static int create_first_segment(struct sb_log *log)
{
	struct sb_segment *seg = NULL;
	int rc = sb_segment_alloc(log->vfs, log->dir, 0, log->cfg.index_interval_bytes, &seg);
	if (!rc)
		rc = sb_segment_create(seg);
	if (!rc)
		rc = sb_log__push_segment(log, seg);
	if (rc)
		sb_segment_unref(seg);
	return rc;
}

static void log_free(struct sb_log *log)
{
	for (uint32_t i = 0; i < log->nsegs; i++)
		sb_segment_unref(log->segs[i]);
	free(log->segs);
	sb_log__free_staging(log);
	pthread_mutex_destroy(&log->lock);
	pthread_cond_destroy(&log->waiters_idle);
	free(log->dir);
	free(log->name);
	free(log);
}

int sb_log_open(struct sb_vfs *vfs, struct sb_ioloop *loop, const char *dir, const char *name,
		const struct sb_log_config *cfg, struct sb_log **out)
{
	struct base_list bl = {0};
	struct sb_log *log = NULL;
	int rc = sb_log_config_check(cfg);
	int64_t t0 = sb_mono_ns();

	if (rc)
		return rc;
	log = calloc(1, sizeof *log);
	if (!log)
		return -ENOMEM;
	pthread_mutex_init(&log->lock, NULL);
	pthread_cond_init(&log->waiters_idle, NULL);
	log->vfs = vfs;
	log->loop = loop;
	log->aio = sb_ioloop_aio(loop);
	log->cfg = *cfg;
	log->dir = strdup(dir);
	log->name = strdup(name);
	log->task.pump = sb_log__pump;
	log->task.tick = sb_log__tick;
	log->last_epoch = -1;
	if (!log->dir || !log->name) {
		rc = -ENOMEM;
		goto fail;
	}
	bl.log = log;
	rc = vfs->ops->list_dir(vfs, dir, collect_entry, &bl);
	if (rc)
		goto fail;
	if (bl.n)
		qsort(bl.v, bl.n, sizeof *bl.v, cmp_i64);
	rc = bl.n ? recover(log, bl.v, bl.n) : create_first_segment(log);
	if (rc)
		goto fail;
	struct sb_segment *act = sb_log__active(log);
	log->log_start = log->segs[0]->base_offset;
	log->next_offset = log->stable_end = log->written_end = log->synced_end = act->next_offset;
	log->keyed_end = log->next_offset; /* unknown: whatever was recovered may hold keys */
	log->hw_cap = cfg->hw_capped ? INT64_MIN : INT64_MAX;
	log->visible_end = cfg->hw_capped ? log->log_start : log->stable_end;
	log->stable_pos = log->written_pos = log->plan_pos = act->size;
	log->last_epoch = act->last_epoch;
	for (uint32_t i = log->nsegs; i-- > 0 && log->last_epoch < 0;)
		log->last_epoch = log->segs[i]->last_epoch;
	log->last_sync_ms = sb_mono_ms();
	sb_ioloop_add(loop, &log->task);
	SB_INFO("log_opened", "log=%s segments=%u log_start=%" PRId64 " end=%" PRId64 " bytes=%" PRIu64
		" recovery_ms=%.1f", log->name, log->nsegs, log->log_start, log->next_offset,
		log->total_bytes, (double)(sb_mono_ns() - t0) / 1e6);
	free(bl.v);
	*out = log;
	return 0;
fail:
	SB_ERROR("log_open_failed", "log=%s dir=\"%s\" error=\"%s\"", name, dir, sb_strerror(rc));
	free(bl.v);
	log_free(log);
	return rc;
}

/* ---- close ---- */

static int drained(void *arg)
{
	struct sb_log *log = arg;
	pthread_mutex_lock(&log->lock);
	int done = sb_log__drained(log);
	pthread_mutex_unlock(&log->lock);
	return done;
}

void sb_log_close(struct sb_log *log)
{
	if (!log)
		return;
	pthread_mutex_lock(&log->lock);
	log->closing = 1;
	pthread_mutex_unlock(&log->lock);
	sb_ioloop_kick(log->loop, &log->task);
	sb_ioloop_wait(log->loop, drained, log);
	sb_ioloop_remove(log->loop, &log->task);
	/* A completion that drained the log may still be running its callbacks
	 * (they read the staging chunks): let that loop iteration end. */
	sb_ioloop_barrier(log->loop);
	sb_log__fire_waiters(log, 1); /* parked readers learn the log is going */
	if (!log->failed) {
		int rc = log->vfs->ops->datasync(log->vfs, sb_log__active(log)->fd);
		if (rc)
			SB_ERROR("log_close_sync_failed", "log=%s error=\"%s\"", log->name, sb_strerror(rc));
	}
	SB_INFO("log_closed", "log=%s end=%" PRId64, log->name, log->stable_end);
	log_free(log);
}

int sb_log_reconfigure(struct sb_log *log, const struct sb_log_config *cfg)
{
	int rc = sb_log_config_check(cfg);
	if (rc)
		return rc;
	pthread_mutex_lock(&log->lock);
	uint32_t interval = log->cfg.index_interval_bytes; /* fixed per segment */
	log->cfg = *cfg;
	log->cfg.index_interval_bytes = interval;
	pthread_mutex_unlock(&log->lock);
	return 0;
}

void sb_log_set_listener(struct sb_log *log, const struct sb_log_listener *l)
{
	pthread_mutex_lock(&log->lock);
	log->listener = *l;
	pthread_mutex_unlock(&log->lock);
}

/* ---- tail waiters ---- */

enum { WAIT_VISIBLE = 0, WAIT_STABLE = 1 };

static int64_t wait_end(const struct sb_log *log, int kind)
{
	return kind == WAIT_STABLE ? log->stable_end : log->visible_end;
}

static int arm(struct sb_log *log, int64_t offset, struct sb_log_waiter *w, int kind)
{
	int rc = 0;
	pthread_mutex_lock(&log->lock);
	if (log->closing)
		rc = SB_ECLOSED;
	else if (wait_end(log, kind) > offset)
		rc = 1;
	if (!rc) {
		w->armed = 1;
		w->kind = kind;
		w->offset = offset;
		w->prev = NULL;
		w->next = log->waiters[kind];
		if (w->next)
			w->next->prev = w;
		__atomic_store_n(&log->waiters[kind], w, __ATOMIC_RELAXED); /* see fire_waiters */
	}
	pthread_mutex_unlock(&log->lock);
	return rc;
}

int sb_log_wait(struct sb_log *log, int64_t offset, struct sb_log_waiter *w)
{
	return arm(log, offset, w, WAIT_VISIBLE);
}

int sb_log_wait_stable(struct sb_log *log, int64_t offset, struct sb_log_waiter *w)
{
	return arm(log, offset, w, WAIT_STABLE);
}

/* Lock held. */
static void unlink_waiter(struct sb_log *log, struct sb_log_waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		__atomic_store_n(&log->waiters[w->kind], w->next, __ATOMIC_RELAXED);
	if (w->next)
		w->next->prev = w->prev;
	w->armed = 0;
}

int sb_log_wait_cancel(struct sb_log *log, struct sb_log_waiter *w)
{
	int was_armed;
	pthread_mutex_lock(&log->lock);
	was_armed = w->armed;
	if (was_armed)
		unlink_waiter(log, w);
	while (!was_armed && log->waiters_firing)
		pthread_cond_wait(&log->waiters_idle, &log->lock);
	pthread_mutex_unlock(&log->lock);
	return was_armed;
}

int sb_log__raise_visible(struct sb_log *log)
{
	int64_t v = log->stable_end < log->hw_cap ? log->stable_end : log->hw_cap;
	if (v <= log->visible_end)
		return 0;
	log->visible_end = v;
	return 1;
}

void sb_log__fire_waiters(struct sb_log *log, int all)
{
	/* Called after every acknowledgement: skip the lock when nobody waits. A
	 * waiter armed before an end moved is visible here (the caller took the
	 * lock after it); one armed later saw the new end itself. */
	if (!__atomic_load_n(&log->waiters[WAIT_VISIBLE], __ATOMIC_RELAXED) &&
	    !__atomic_load_n(&log->waiters[WAIT_STABLE], __ATOMIC_RELAXED))
		return;
	struct sb_log_waiter *due = NULL;
	pthread_mutex_lock(&log->lock);
	for (int kind = 0; kind < 2; kind++) {
		int64_t end = wait_end(log, kind);
		struct sb_log_waiter *w = log->waiters[kind], *next;
		for (; w; w = next) {
			next = w->next;
			if (!all && w->offset >= end)
				continue;
			unlink_waiter(log, w);
			w->next = due;
			due = w;
		}
	}
	log->waiters_firing += due != NULL;
	pthread_mutex_unlock(&log->lock);
	if (!due)
		return;
	while (due) {
		struct sb_log_waiter *next = due->next; /* fn may reuse w */
		due->fn(due);
		due = next;
	}
	pthread_mutex_lock(&log->lock);
	log->waiters_firing--;
	pthread_cond_broadcast(&log->waiters_idle);
	pthread_mutex_unlock(&log->lock);
}

void sb_log_set_follower(struct sb_log *log, int on)
{
	pthread_mutex_lock(&log->lock);
	log->follower = on;
	pthread_mutex_unlock(&log->lock);
}

void sb_log_wake_waiters(struct sb_log *log)
{
	sb_log__fire_waiters(log, 1);
}

void sb_log_set_hw_cap(struct sb_log *log, int64_t hw)
{
	pthread_mutex_lock(&log->lock);
	log->hw_cap = hw;
	int moved = sb_log__raise_visible(log);
	pthread_mutex_unlock(&log->lock);
	if (moved)
		sb_log__fire_waiters(log, 0);
}

/* ---- reads ---- */

/* Lock held: index of the segment that holds offset (the last whose base is
 * <= offset). */
static uint32_t find_segment(struct sb_log *log, int64_t offset)
{
	uint32_t lo = 0, hi = log->nsegs;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (log->segs[mid]->base_offset <= offset)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* Lock held: how far readers may read in seg. */
static uint64_t read_limit(struct sb_log *log, struct sb_segment *seg)
{
	if (seg == sb_log__active(log))
		return log->stable_pos;
	return seg->corrupt_pos != SB_SEGMENT_NO_CORRUPTION ? seg->corrupt_pos : seg->size;
}

/* Index of the last entry of e[0..n) with rel_offset <= rel (e[0] qualifies).
 * Offsets grow about evenly with position, so the first probe is
 * interpolated and a gallop outward from it bounds the binary search: one or
 * two cache misses on a large index instead of one per halving (a random read
 * is otherwise bound by their latency). Skewed indexes cost at most about two
 * binary searches. */
static uint32_t index_find(const struct sb_index_entry *e, uint32_t n, uint32_t rel)
{
	uint32_t last = e[n - 1].rel_offset, lo, hi, step = 1;
	if (rel >= last)
		return n - 1;
	/* e[lo].rel <= rel < e[hi].rel throughout. */
	uint32_t g = (uint32_t)((uint64_t)(rel - e[0].rel_offset) * (n - 1) / (last - e[0].rel_offset));
	if (e[g].rel_offset <= rel) {
		lo = g;
		while (lo + step < n - 1 && e[lo + step].rel_offset <= rel) {
			lo += step;
			step *= 2;
		}
		hi = lo + step < n - 1 ? lo + step : n - 1;
	} else {
		hi = g;
		while (hi > step && e[hi - step].rel_offset > rel) {
			hi -= step;
			step *= 2;
		}
		lo = hi > step ? hi - step : 0;
	}
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (e[mid].rel_offset <= rel)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* Lock held: the position of the last indexed batch at or before rel (where
 * a read starts), and in *next the position of the indexed batch after it
 * (before which the batch holding rel ends), or limit. */
static uint64_t index_span(const struct sb_index *idx, uint32_t rel, uint64_t limit, uint64_t *next)
{
	const struct sb_index_entry *e = idx->off;
	uint32_t n = idx->n_off;
	if (n == 0 || e[0].rel_offset > rel) {
		*next = n ? e[0].pos : limit;
		return 0;
	}
	uint32_t k = index_find(e, n, rel);
	*next = k + 1 < n ? e[k + 1].pos : limit;
	if (*next > limit)
		*next = limit;
	return e[k].pos;
}

/* How many bytes the first pread of a read should fetch: from start through
 * the batch holding the offset (it ends before next), then max_bytes more
 * if more than one batch could be returned. */
static uint64_t first_read_bytes(uint64_t start, uint64_t next, size_t max_bytes)
{
	uint64_t want = next > start ? next - start : SB_BATCH_HEADER_BYTES;
	if (max_bytes >= SB_BATCH_HEADER_BYTES)
		want += max_bytes;
	return want < SB_BATCH_BYTES_MAX ? want : SB_BATCH_BYTES_MAX;
}

/* Drops the batches of out that start at or past end (a read of the active
 * segment returns everything acknowledged; readers may see less). */
static void trim_read(struct sb_log_read *out, int64_t end)
{
	size_t at = 0;
	while (at < out->len) {
		struct sb_batch_header h;
		if (sb_batch_parse_header(out->data + at, out->len - at, &h) || h.base_offset >= end)
			break;
		at += (size_t)sb_batch_total_bytes(&h);
		out->next_offset = sb_batch_next_offset(&h);
	}
	out->len = at;
}

static int read_upto(struct sb_log *log, int64_t offset, size_t max_bytes, struct sb_log_read *out,
		     int stable)
{
	memset(out, 0, sizeof *out);
	for (;;) {
		pthread_mutex_lock(&log->lock);
		int64_t end = stable ? log->stable_end : log->visible_end;
		out->log_start = log->log_start;
		out->stable_end = end;
		out->high_watermark = log->visible_end;
		out->next_offset = offset;
		if (offset < log->log_start || offset > end) {
			pthread_mutex_unlock(&log->lock);
			return offset < log->log_start ? SB_ERANGE_LOW : SB_ERANGE_HIGH;
		}
		if (offset == end) {
			pthread_mutex_unlock(&log->lock);
			return 0;
		}
		uint32_t i = find_segment(log, offset);
		struct sb_segment *seg = log->segs[i];
		uint64_t limit = read_limit(log, seg), next;
		uint64_t start = index_span(&seg->idx, (uint32_t)(offset - seg->base_offset), limit, &next);
		int corrupt = seg->corrupt_pos != SB_SEGMENT_NO_CORRUPTION;
		int64_t next_base = i + 1 < log->nsegs ? log->segs[i + 1]->base_offset : -1;
		int64_t seg_base = seg->base_offset;
		sb_segment_ref(seg);
		pthread_mutex_unlock(&log->lock);

		uint64_t off = 0, len = 0;
		int rc = sb_segment_read(seg, offset, start, limit, max_bytes,
					 first_read_bytes(start, next, max_bytes), &out->buf, &off, &len,
					 &out->next_offset);
		sb_segment_unref(seg);
		if (rc == SB_ECORRUPT)
			SB_LOG_RATELIMITED(SB_LEVEL_ERROR, 1000, "read_corrupt", "log=%s offset=%" PRId64,
					   log->name, offset);
		if (rc)
			return rc;
		if (len > 0) {
			out->segment_base = seg_base;
			out->data = out->buf + off;
			out->len = (size_t)len;
			if (out->next_offset > end)
				trim_read(out, end);
			return 0;
		}
		if (corrupt)
			return SB_ECORRUPT; /* the offset lies past a corrupt batch */
		if (next_base < 0 || next_base <= offset)
			return 0;
		offset = next_base; /* offset sat in a gap between segments */
	}
}

int sb_log_read(struct sb_log *log, int64_t offset, size_t max_bytes, struct sb_log_read *out)
{
	return read_upto(log, offset, max_bytes, out, 0);
}

int sb_log_read_stable(struct sb_log *log, int64_t offset, size_t max_bytes, struct sb_log_read *out)
{
	return read_upto(log, offset, max_bytes, out, 1);
}

/* First record with timestamp >= ts in the batches of data[0..len). */
static int find_in_batches(const uint8_t *data, size_t len, int64_t ts, int64_t *offset)
{
	size_t at = 0;
	while (at < len) {
		struct sb_batch_header h;
		struct sb_record_iter it;
		struct sb_record_view r;
		int rc = sb_batch_verify(data + at, len - at, &h);
		if (rc)
			return SB_ECORRUPT;
		if (h.max_timestamp_ms >= ts) {
			sb_record_iter_init(&it, data + at, &h);
			while ((rc = sb_record_iter_next(&it, &r)) == 1) {
				if (r.timestamp_ms >= ts) {
					*offset = r.offset;
					return 0;
				}
			}
			if (rc < 0)
				return rc;
		}
		at += (size_t)sb_batch_total_bytes(&h);
	}
	return SB_ENOTFOUND;
}

int sb_log_offset_for_time(struct sb_log *log, int64_t ts_ms, int64_t *offset)
{
	int64_t pos_offset = -1;
	pthread_mutex_lock(&log->lock);
	*offset = log->visible_end;
	for (uint32_t i = 0; i < log->nsegs; i++) {
		struct sb_segment *seg = log->segs[i];
		if (seg->idx.max_timestamp_ms >= ts_ms) {
			uint64_t pos = sb_index_lookup_time(&seg->idx, ts_ms);
			/* Translate the position back to an offset via the offset index. */
			pos_offset = seg->base_offset;
			for (uint32_t k = 0; k < seg->idx.n_off && seg->idx.off[k].pos <= pos; k++)
				pos_offset = seg->base_offset + seg->idx.off[k].rel_offset;
			break;
		}
	}
	pthread_mutex_unlock(&log->lock);
	if (pos_offset < 0)
		return SB_ENOTFOUND;
	for (int64_t at = pos_offset;;) {
		struct sb_log_read rd;
		int rc = sb_log_read(log, at, 1u << 20, &rd);
		if (rc == 0 && rd.len == 0)
			rc = SB_ENOTFOUND;
		if (rc == 0)
			rc = find_in_batches(rd.data, rd.len, ts_ms, offset);
		free(rd.buf);
		if (rc != SB_ENOTFOUND || rd.len == 0)
			return rc;
		at = rd.next_offset;
	}
}

void sb_log_info(struct sb_log *log, struct sb_log_info *info)
{
	pthread_mutex_lock(&log->lock);
	info->log_start = log->log_start;
	info->stable_end = log->stable_end;
	info->high_watermark = log->visible_end;
	info->active_base = (uint64_t)sb_log__active(log)->base_offset;
	info->next_offset = log->next_offset;
	info->size_bytes = log->total_bytes;
	info->segments = log->nsegs;
	info->last_epoch = log->last_epoch;
	info->failed = log->failed;
	info->full = log->full;
	info->rewinds = log->rewinds;
	info->keyed_end = log->keyed_end;
	info->inflight_bytes = log->inflight_bytes;
	int64_t now = sb_mono_ms(), oldest = now;
	if (log->sync_inflight && log->sync_started_ns / 1000000 < oldest)
		oldest = log->sync_started_ns / 1000000;
	if (log->roll_started_ms && log->roll_started_ms < oldest)
		oldest = log->roll_started_ms;
	for (uint32_t i = 0; i < log->npieces; i++) {
		const struct sb_piece *p = &log->pieces[(log->piece_head + i) % SB_LOG_PIECES_MAX];
		if (p->state == SB_PIECE_INFLIGHT && p->submitted_ms < oldest)
			oldest = p->submitted_ms;
	}
	info->io_wait_ms = now - oldest;
	pthread_mutex_unlock(&log->lock);
}

/* ---- retention and explicit rolls ---- */

/* Lock held: should the oldest segment go? */
static int head_expired(struct sb_log *log, int64_t now_ms)
{
	struct sb_segment *head = log->segs[0];
	if (log->nsegs < 2)
		return 0; /* never the active segment */
	if (log->cfg.retention_bytes >= 0 &&
	    log->total_bytes - head->size >= (uint64_t)log->cfg.retention_bytes)
		return 1;
	return log->cfg.retention_ms >= 0 && head->idx.max_timestamp_ms != INT64_MIN &&
	       head->idx.max_timestamp_ms < now_ms - log->cfg.retention_ms;
}

int sb_log_apply_retention(struct sb_log *log, int64_t now_ms)
{
	struct sb_segment *gone[64];
	int n = 0, rc = 0;

	pthread_mutex_lock(&log->lock);
	while (n < 64 && head_expired(log, now_ms)) {
		gone[n++] = log->segs[0];
		log->total_bytes -= log->segs[0]->size;
		memmove(log->segs, log->segs + 1, (log->nsegs - 1) * sizeof *log->segs);
		log->nsegs--;
		log->log_start = log->segs[0]->base_offset;
	}
	int64_t start = log->log_start;
	pthread_mutex_unlock(&log->lock);
	for (int i = 0; i < n; i++) {
		int r = sb_segment_remove_files(gone[i]);
		if (r && !rc)
			rc = r;
		SB_INFO("segment_deleted", "log=%s base=%" PRId64 " end=%" PRId64 " bytes=%" PRIu64
			" log_start=%" PRId64, log->name, gone[i]->base_offset, gone[i]->next_offset,
			gone[i]->size, start);
		sb_segment_unref(gone[i]); /* readers holding a reference keep the fd */
	}
	if (n > 0) {
		int r = log->vfs->ops->sync_dir(log->vfs, log->dir);
		if (r && !rc)
			rc = r;
	}
	return rc ? rc : n;
}

struct roll_wait {
	struct sb_log *log;
	int target;
};

static int roll_finished(void *arg)
{
	struct roll_wait *w = arg;
	pthread_mutex_lock(&w->log->lock);
	int done = w->log->rolls_done >= w->target || w->log->failed;
	pthread_mutex_unlock(&w->log->lock);
	return done;
}

int sb_log_roll(struct sb_log *log)
{
	struct roll_wait w = {.log = log};
	pthread_mutex_lock(&log->lock);
	int rc = log->failed ? SB_EFAILED : 0;
	w.target = log->rolls_done + 1;
	log->roll_requested = 1;
	pthread_mutex_unlock(&log->lock);
	if (rc)
		return rc;
	sb_ioloop_kick(log->loop, &log->task);
	sb_ioloop_wait(log->loop, roll_finished, &w);
	return log->failed ? SB_EFAILED : 0;
}

/* ---- replication support: truncation and epoch ends ---- */

/* Lock held (the I/O happens under it: rare, and retention must not move
 * segments meanwhile), log drained. Cuts the
 * log back into sealed segment k (offset lies in it): the segments after it
 * go (last first, so a crash leaves a contiguous prefix whose last segment
 * recovery scans as the active one), its stale index files go, and it is
 * reopened writable as the active segment and cut at offset. */
static int truncate_into_sealed(struct sb_log *log, uint32_t k, int64_t offset)
{
	struct sb_segment *seg = NULL, *old = log->segs[k];
	struct sb_scan_result res;
	int rc = 0;
	for (uint32_t i = log->nsegs; i-- > k + 1 && !rc;)
		rc = sb_segment_remove_files(log->segs[i]);
	if (!rc)
		rc = sb_segment_remove_index_files(old);
	if (!rc)
		rc = sb_segment_alloc(log->vfs, log->dir, old->base_offset, log->cfg.index_interval_bytes, &seg);
	int32_t min_epoch = k > 0 ? log->segs[k - 1]->last_epoch : -1;
	if (!rc)
		rc = sb_segment_open_scan(seg, 1, min_epoch, &res);
	if (!rc && res.next_offset < offset)
		rc = SB_ECORRUPT; /* the segment does not even reach the cut */
	if (!rc)
		rc = sb_segment_truncate(seg, offset);
	if (rc) {
		log->failed = rc; /* files and memory disagree now: fail-stop */
		SB_ERROR("log_failed", "log=%s op=truncate_sealed error=\"%s\"", log->name, sb_strerror(rc));
		sb_segment_unref(seg);
		return rc;
	}
	uint32_t dropped = log->nsegs - k;
	struct sb_segment **gone = malloc(dropped * sizeof *gone);
	if (gone)
		memcpy(gone, log->segs + k, dropped * sizeof *gone);
	log->segs[k] = seg;
	log->nsegs = k + 1;
	log->total_bytes = 0;
	for (uint32_t i = 0; i < log->nsegs; i++)
		log->total_bytes += log->segs[i]->size;
	for (uint32_t i = 0; gone && i < dropped; i++)
		sb_segment_unref(gone[i]); /* readers holding one keep its fd until they let go */
	free(gone);
	return 0;
}

int sb_log_truncate(struct sb_log *log, int64_t offset)
{
	int rc = 0;
	pthread_mutex_lock(&log->lock);
	struct sb_segment *act = sb_log__active(log);
	uint32_t k = log->nsegs - 1;
	if (log->closing)
		rc = SB_ECLOSED;
	else if (log->failed)
		rc = SB_EFAILED;
	else if (offset >= log->next_offset)
		rc = 0;
	else if (!sb_log__drained(log) || log->stable_end != log->next_offset)
		rc = SB_EBUSY;
	else if (offset < log->log_start)
		rc = SB_EINVAL;
	else {
		uint64_t old_bytes = log->total_bytes;
		int64_t old_end = log->next_offset;
		if (offset < act->base_offset) {
			k = find_segment(log, offset);
			rc = truncate_into_sealed(log, k, offset);
			act = sb_log__active(log);
		} else {
			uint64_t old_size = act->size;
			rc = sb_segment_truncate(act, offset);
			if (rc && rc != SB_EINVAL) {
				log->failed = rc; /* the file no longer matches what we know */
				SB_ERROR("log_failed", "log=%s op=truncate error=\"%s\"", log->name, sb_strerror(rc));
			}
			if (!rc)
				log->total_bytes -= old_size - act->size;
		}
		if (!rc) {
			SB_INFO("log_truncated", "log=%s from=%" PRId64 " to=%" PRId64 " bytes_cut=%" PRIu64, log->name,
				old_end, offset, old_bytes - log->total_bytes);
			log->next_offset = log->stable_end = log->written_end = log->synced_end = offset;
			log->keyed_end = offset;
			log->sync_target = offset;
			log->stable_pos = log->written_pos = log->plan_pos = log->sync_target_pos = act->size;
			log->last_epoch = act->last_epoch;
			for (uint32_t i = log->nsegs - 1; i-- > 0 && log->last_epoch < 0;)
				log->last_epoch = log->segs[i]->last_epoch;
			if (log->visible_end > offset) { /* only after an unclean promotion */
				SB_WARN("log_truncated_below_hw", "log=%s readable_end=%" PRId64 " to=%" PRId64
					" hint=\"readers may have seen records that are now gone\"",
					log->name, log->visible_end, offset);
				log->visible_end = offset;
				log->rewinds++;
			}
		}
	}
	pthread_mutex_unlock(&log->lock);
	return rc;
}

int sb_log_epoch_end(struct sb_log *log, int32_t epoch, int64_t *end)
{
	int64_t at = -1;
	pthread_mutex_lock(&log->lock);
	*end = log->stable_end;
	if (log->last_epoch > epoch) {
		for (uint32_t i = 0; i < log->nsegs; i++)
			if (log->segs[i]->last_epoch > epoch) {
				at = log->segs[i]->base_offset; /* the first later batch is in this segment */
				break;
			}
	}
	pthread_mutex_unlock(&log->lock);
	while (at >= 0) {
		struct sb_log_read rd;
		int rc = sb_log_read_stable(log, at, 1u << 20, &rd);
		if (rc)
			return rc;
		if (rd.len == 0)
			return 0; /* none: the end stands */
		for (size_t off = 0; off < rd.len;) {
			struct sb_batch_header h;
			if (sb_batch_parse_header(rd.data + off, rd.len - off, &h)) {
				free(rd.buf);
				return SB_ECORRUPT;
			}
			if (h.leader_epoch > epoch) {
				*end = h.base_offset;
				free(rd.buf);
				return 0;
			}
			off += (size_t)sb_batch_total_bytes(&h);
		}
		at = rd.next_offset;
		free(rd.buf);
	}
	return 0;
}

/* ---- whole sealed segments ---- */

/* 0 if seg's batches are all whole and valid, SB_ECORRUPT, or -errno. */
static int verify_segment(struct sb_segment *seg)
{
	uint64_t pos = 0;
	int64_t offset = seg->base_offset;
	if (seg->corrupt_pos != SB_SEGMENT_NO_CORRUPTION)
		return SB_ECORRUPT;
	while (offset < seg->next_offset) {
		uint8_t *buf = NULL;
		uint64_t off = 0, len = 0;
		int64_t next = offset;
		int rc = sb_segment_read(seg, offset, pos, seg->size, 4u << 20, 4u << 20, &buf, &off, &len, &next);
		free(buf);
		if (rc)
			return rc;
		if (len == 0 || off != 0 || next <= offset)
			return SB_ECORRUPT; /* the file ends before the index said */
		pos += len;
		offset = next;
	}
	return pos == seg->size ? 0 : SB_ECORRUPT;
}

int sb_log_verify_sealed(struct sb_log *log, int64_t *bad_base)
{
	*bad_base = -1;
	for (uint32_t i = 0;; i++) {
		struct sb_segment *seg = NULL;
		pthread_mutex_lock(&log->lock);
		if (i + 1 < log->nsegs) {
			seg = log->segs[i];
			sb_segment_ref(seg);
		}
		pthread_mutex_unlock(&log->lock);
		if (!seg)
			return 0;
		int rc = verify_segment(seg);
		int64_t base = seg->base_offset;
		sb_segment_unref(seg);
		if (rc == SB_ECORRUPT) {
			SB_ERROR("segment_corrupt", "log=%s base=%" PRId64 " found_by=verify", log->name, base);
			*bad_base = base;
			return 0;
		}
		if (rc)
			return rc;
	}
}

int sb_log_sealed_at(struct sb_log *log, int64_t offset, struct sb_log_segment_info *info)
{
	int found = 0;
	pthread_mutex_lock(&log->lock);
	for (uint32_t i = 0; i + 1 < log->nsegs && !found; i++) {
		struct sb_segment *seg = log->segs[i];
		if (seg->base_offset == offset && seg->sealed && seg->corrupt_pos == SB_SEGMENT_NO_CORRUPTION) {
			*info = (struct sb_log_segment_info){seg->base_offset, seg->next_offset, seg->size,
							     seg->last_epoch};
			found = 1;
		}
	}
	pthread_mutex_unlock(&log->lock);
	return found;
}

int64_t sb_log_read_sealed(struct sb_log *log, int64_t base, uint64_t pos, void *buf, size_t len)
{
	struct sb_segment *seg = NULL;
	pthread_mutex_lock(&log->lock);
	for (uint32_t i = 0; i + 1 < log->nsegs; i++)
		if (log->segs[i]->base_offset == base && log->segs[i]->sealed) {
			seg = log->segs[i];
			sb_segment_ref(seg);
			break;
		}
	pthread_mutex_unlock(&log->lock);
	if (!seg)
		return SB_ENOTFOUND;
	int64_t n = 0;
	if (pos < seg->size) {
		if (len > seg->size - pos)
			len = (size_t)(seg->size - pos);
		n = sb_vfs_read_all(seg->vfs, seg->fd, buf, len, pos);
		n = n ? n : (int64_t)len;
	}
	sb_segment_unref(seg);
	return n;
}

void sb_log_replica_path(struct sb_log *log, int64_t base, char *dir, char *file)
{
	if (dir)
		sb_path_fmt(dir, SB_PATH_MAX, "%s/%s", log->dir, SB_LOG_REPLICA_DIR);
	if (file) {
		char sub[SB_PATH_MAX];
		sb_path_fmt(sub, sizeof sub, "%s/%s", log->dir, SB_LOG_REPLICA_DIR);
		sb_segment_path(sub, base, ".log", file);
	}
}

/* Moves the staged segment's files (index files first, the .log last: its
 * rename is the commit point) into the log's directory, durably. */
static int move_staged(struct sb_log *log, const char *sub, int64_t base)
{
	static const char *const suffixes[] = {".index", ".timeindex", ".log"};
	char from[SB_PATH_MAX], to[SB_PATH_MAX];
	for (int i = 0; i < 3; i++) {
		sb_segment_path(sub, base, suffixes[i], from);
		sb_segment_path(log->dir, base, suffixes[i], to);
		int rc = log->vfs->ops->rename(log->vfs, from, to);
		if (rc == -ENOENT && i < 2)
			continue; /* index files are derived data: rebuilt on open */
		if (rc)
			return rc;
	}
	return log->vfs->ops->sync_dir(log->vfs, log->dir);
}

int sb_log_install_segment(struct sb_log *log, int64_t base)
{
	char sub[SB_PATH_MAX];
	struct sb_segment *check = NULL, *seg = NULL, *next = NULL, *empty;
	int rc;

	sb_log_replica_path(log, base, sub, NULL);
	pthread_mutex_lock(&log->lock);
	rc = log->closing ? SB_ECLOSED : log->failed ? SB_EFAILED : 0;
	if (!rc && (!sb_log__drained(log) || log->stable_end != log->next_offset))
		rc = SB_EBUSY;
	if (!rc && log->next_offset != base)
		rc = SB_EINVAL;
	int32_t min_epoch = log->last_epoch;
	int need_roll = !rc && sb_log__active(log)->size > 0;
	pthread_mutex_unlock(&log->lock);
	if (rc)
		return rc;

	/* 1. Check the staged file where it lies: every batch's CRC, offsets
	 *    contiguous from base, epochs in order (and index files written). */
	rc = sb_segment_alloc(log->vfs, sub, base, log->cfg.index_interval_bytes, &check);
	if (!rc)
		rc = sb_segment_open_sealed(check, min_epoch);
	if (!rc && (check->corrupt_pos != SB_SEGMENT_NO_CORRUPTION || check->size == 0 ||
		    check->last_epoch < min_epoch))
		rc = SB_ECORRUPT;
	if (rc) {
		if (check && (rc == SB_ECORRUPT || rc == -ENODATA)) {
			int rm = sb_segment_remove_files(check);
			SB_ERROR("replica_segment_corrupt", "log=%s base=%" PRId64 " removed=%s hint=\"fetched again\"",
				 log->name, base, rm ? sb_strerror(rm) : "yes");
			rc = SB_ECORRUPT;
		}
		sb_segment_unref(check);
		return rc;
	}
	sb_segment_unref(check);
	if (need_roll && (rc = sb_log_roll(log)) != 0)
		return rc;

	/* 2. Swap it in for the empty active segment of the same base. Past this
	 *    point an error leaves files and memory apart: fail-stop. A crash
	 *    leaves the previous segment last (recovery continues at base) or the
	 *    installed one, which recovery scans as the active segment. */
	pthread_mutex_lock(&log->lock);
	empty = sb_log__active(log);
	rc = empty->base_offset == base && empty->size == 0 && log->next_offset == base ? 0 : SB_EINVAL;
	pthread_mutex_unlock(&log->lock);
	if (rc)
		return rc;
	rc = sb_segment_remove_files(empty);
	if (!rc)
		rc = move_staged(log, sub, base);
	if (!rc)
		rc = sb_segment_alloc(log->vfs, log->dir, base, log->cfg.index_interval_bytes, &seg);
	if (!rc)
		rc = sb_segment_open_sealed(seg, min_epoch);
	if (!rc)
		rc = sb_segment_alloc(log->vfs, log->dir, seg->next_offset, log->cfg.index_interval_bytes, &next);
	if (!rc)
		rc = sb_segment_create(next);
	pthread_mutex_lock(&log->lock);
	if (!rc)
		rc = sb_log__push_segment(log, next); /* [..., empty, next] */
	if (rc) {
		if (!log->failed) {
			log->failed = rc;
			SB_ERROR("log_failed", "log=%s op=install_segment error=\"%s\"", log->name, sb_strerror(rc));
		}
		pthread_mutex_unlock(&log->lock);
		sb_segment_unref(seg);
		sb_segment_unref(next);
		return rc;
	}
	log->segs[log->nsegs - 2] = seg; /* in place of the empty active segment */
	log->total_bytes += seg->size;
	log->last_epoch = seg->last_epoch;
	log->next_offset = log->stable_end = log->written_end = log->synced_end = log->sync_target = next->base_offset;
	log->keyed_end = log->next_offset; /* an installed segment may hold keys */
	log->stable_pos = log->written_pos = log->plan_pos = log->sync_target_pos = 0;
	int moved = sb_log__raise_visible(log);
	pthread_mutex_unlock(&log->lock);
	sb_segment_unref(empty);
	SB_INFO("segment_installed", "log=%s base=%" PRId64 " next_offset=%" PRId64 " bytes=%" PRIu64, log->name, base,
		seg->next_offset, seg->size);
	if (moved)
		sb_log__fire_waiters(log, 0);
	if (log->listener.on_sealed)
		log->listener.on_sealed(log->listener.arg, log, base, seg->next_offset);
	return 0;
}
