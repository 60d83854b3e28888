/* sb_log_stage.c - the partition log's append side: validation, staging
 * chunks (and their pool), and the acknowledgement bookkeeping the loop side
 * (sb_log_write.c) uses.
 *
 * Shape, and why: an append is validated outside the log lock, then copied
 * into the tail staging chunk under it, with offsets and the epoch stamped and
 * a record (callback, offsets, where its bytes end) stored at the top of the
 * same chunk, so accepting an append allocates nothing. Chunks come from a
 * per-log pool of 2 MiB huge pages (first-touch page faults cost more than the
 * copy), kept while the log is busy and trimmed when it goes idle. The loop
 * is kicked only when no write is in flight: otherwise the write's completion
 * picks the new bytes up, so a stream of appends costs no wake-ups.
 */
#include "sb_log_internal.h"

#include "sb_endian.h"
#include "sb_limits.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Sanitized builds (the test suites) check the CRC of trusted appends too. */
#if defined(__SANITIZE_ADDRESS__) || defined(SB_VERIFY_TRUSTED_APPENDS)
#define VERIFY_TRUSTED 1
#else
#define VERIFY_TRUSTED 0
#endif

/* ---- validation (outside the lock) ---- */

/* Walks the caller's batches: each must parse, and with verify pass its CRC;
 * together they must cover exactly data[0..len). */
static int check_batches(const uint8_t *data, size_t len, int verify, int *keyed)
{
	size_t at = 0;
	*keyed = 0;
	if (len == 0)
		return SB_EBADBATCH;
	while (at < len) {
		struct sb_batch_header h;
		int rc = verify ? sb_batch_verify(data + at, len - at, &h)
				: sb_batch_parse_header(data + at, len - at, &h);
		if (rc == SB_ETOOBIG)
			return rc;
		if (rc || sb_batch_total_bytes(&h) > len - at)
			return SB_EBADBATCH;
		*keyed |= !(h.attributes & SB_BATCH_ATTR_NO_KEYS);
		at += (size_t)sb_batch_total_bytes(&h);
	}
	return len > SB_BATCH_BYTES_MAX ? SB_ETOOBIG : 0;
}

/* ---- chunks ---- */

static uint32_t pool_max(const struct sb_log *log)
{
	return log->cfg.inflight_bytes_max / SB_CHUNK_BYTES + 2;
}

static int chunk_is_standard(const struct sb_chunk *c)
{
	return c->cap == SB_CHUNK_BYTES - sizeof *c;
}

/* A standard chunk is its own mapping, aligned to SB_CHUNK_BYTES so that it
 * can be one huge page; a larger one comes from malloc. */
static struct sb_chunk *chunk_alloc(size_t need)
{
	struct sb_chunk *c;
	size_t bytes = SB_CHUNK_BYTES;
	if (need + sizeof(struct sb_append_rec) <= SB_CHUNK_BYTES - sizeof *c) {
		uint8_t *m = mmap(NULL, 2 * bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return NULL;
		uint8_t *a = (uint8_t *)(((uintptr_t)m + bytes - 1) & ~(uintptr_t)(bytes - 1));
		if (a > m)
			munmap(m, (size_t)(a - m));
		munmap(a + bytes, (size_t)(m + bytes - a));
		(void)madvise(a, bytes, MADV_HUGEPAGE); /* advice only: may be refused */
		c = (struct sb_chunk *)(void *)a;
	} else {
		bytes = sizeof *c + ((need + 7) & ~(size_t)7) + sizeof(struct sb_append_rec);
		if (!(c = malloc(bytes)))
			return NULL;
	}
	memset(c, 0, sizeof *c);
	c->cap = (uint32_t)(bytes - sizeof *c);
	return c;
}

static void chunk_free(struct sb_chunk *c)
{
	if (chunk_is_standard(c))
		munmap(c, SB_CHUNK_BYTES);
	else
		free(c);
}

/* A chunk with room for an append of need bytes and its record. */
static struct sb_chunk *chunk_get(struct sb_log *log, size_t need)
{
	struct sb_chunk *c = log->pool;
	if (c && need + sizeof(struct sb_append_rec) <= c->cap) {
		log->pool = c->next;
		if (--log->npool < log->pool_low)
			log->pool_low = log->npool;
		c->next = NULL;
		c->len = c->written = c->nrec = c->nplanned = c->nacked = 0;
		return c;
	}
	return chunk_alloc(need);
}

static void chunk_put(struct sb_log *log, struct sb_chunk *c)
{
	if (chunk_is_standard(c) && log->npool < pool_max(log)) {
		c->next = log->pool;
		log->pool = c;
		log->npool++;
		return;
	}
	chunk_free(c);
}

static size_t chunk_room(const struct sb_chunk *c)
{
	size_t used = c->len + (size_t)c->nrec * sizeof(struct sb_append_rec);
	size_t room = c->cap - used;
	return room > sizeof(struct sb_append_rec) ? room - sizeof(struct sb_append_rec) : 0;
}

/* ---- append (any thread) ---- */

/* Lock held: copies data into the tail chunk (or a new one), stamps offsets
 * and the epoch, and records the append. */
static int stage(struct sb_log *log, const uint8_t *data, size_t len, int32_t epoch, int replica,
		 sb_append_cb cb, void *arg)
{
	struct sb_chunk *c = log->chunk_tail;
	if (!c || chunk_room(c) < len) {
		if (!(c = chunk_get(log, len)))
			return -ENOMEM;
		if (log->chunk_tail)
			log->chunk_tail->next = c;
		else
			log->chunk_head = c;
		log->chunk_tail = c;
	}
	uint8_t *p = c->buf + c->len;
	struct sb_append_rec *r = sb_chunk_rec(c, c->nrec);
	r->base_offset = log->next_offset;
	memcpy(p, data, len);
	for (size_t at = 0; at < len;) {
		uint32_t blen = sb_load32(p + at + SB_BATCH_OFF_LENGTH);
		uint32_t last_delta = sb_load32(p + at + SB_BATCH_OFF_LAST_DELTA);
		if (!replica) {
			sb_batch_set_base_offset(p + at, log->next_offset);
			sb_batch_set_leader_epoch(p + at, epoch);
		}
		log->next_offset += (int64_t)last_delta + 1;
		at += SB_BATCH_PREFIX_BYTES + blen;
	}
	c->len += (uint32_t)len;
	r->cb = cb;
	r->arg = arg;
	r->end_offset = log->next_offset;
	r->data_end = c->len;
	r->reserved = 0;
	c->nrec++;
	return 0;
}

/* Lock held. A replica append must continue the log exactly: the first
 * batch's base offset is the log's next offset, every batch follows the one
 * before it, and epochs never go down. *epoch gets the last batch's epoch. */
static int check_replica(const struct sb_log *log, const uint8_t *data, size_t len, int32_t *epoch)
{
	int64_t next = log->next_offset;
	int32_t last = log->last_epoch;
	for (size_t at = 0; at < len;) {
		struct sb_batch_header h;
		if (sb_batch_parse_header(data + at, len - at, &h))
			return SB_EBADBATCH;
		if (h.base_offset != next)
			return SB_EINVAL;
		if (h.leader_epoch < last)
			return SB_EFENCED;
		last = h.leader_epoch;
		next = sb_batch_next_offset(&h);
		at += (size_t)sb_batch_total_bytes(&h);
	}
	*epoch = last;
	return 0;
}

static int append(struct sb_log *log, const void *data, size_t len, int32_t leader_epoch,
		  int verify, int replica, sb_append_cb cb, void *arg)
{
	int kick = 0, keyed;
	int rc = check_batches(data, len, verify, &keyed);
	if (rc)
		return rc;
	pthread_mutex_lock(&log->lock);
	if (log->closing)
		rc = SB_ECLOSED;
	else if (log->failed)
		rc = log->full ? log->failed : SB_EFAILED; /* a full disk is RESOURCE_EXHAUSTED, not a failure */
	else if (!replica && log->follower)
		rc = SB_ENOTLEADER; /* a demoted leader takes no client write, whatever epoch it is given */
	else if (replica && (rc = check_replica(log, data, len, &leader_epoch)) != 0)
		;
	else if (leader_epoch < log->last_epoch)
		rc = SB_EFENCED;
	else if (log->inflight_bytes > 0 && log->inflight_bytes + len > log->cfg.inflight_bytes_max)
		rc = SB_EBUSY;
	else
		rc = stage(log, data, len, leader_epoch, replica, cb, arg);
	if (!rc) {
		log->inflight_bytes += len;
		log->last_epoch = leader_epoch;
		if (keyed)
			log->keyed_end = log->next_offset;
		log->appends_since_trim++;
		/* A write in flight, or a pump already due, will take these bytes. */
		kick = !log->writes_inflight && !log->pump_pending;
		log->pump_pending |= kick;
	}
	pthread_mutex_unlock(&log->lock);
	if (kick)
		sb_ioloop_kick(log->loop, &log->task);
	return rc;
}

int sb_log_append(struct sb_log *log, const void *data, size_t len, int32_t leader_epoch,
		  sb_append_cb cb, void *arg)
{
	return append(log, data, len, leader_epoch, 1, 0, cb, arg);
}

int sb_log_append_replica(struct sb_log *log, const void *data, size_t len, sb_append_cb cb,
			  void *arg)
{
	return append(log, data, len, 0, 1, 1, cb, arg);
}

int sb_log_append_trusted(struct sb_log *log, const void *data, size_t len, int32_t leader_epoch,
			  sb_append_cb cb, void *arg)
{
	return append(log, data, len, leader_epoch, VERIFY_TRUSTED, 0, cb, arg);
}

/* ---- acknowledgement (loop thread) ---- */

static uint64_t rec_bytes(struct sb_chunk *c, uint32_t from, uint32_t to)
{
	return to > from ? sb_chunk_rec(c, to - 1)->data_end - sb_chunk_rec_start(c, from) : 0;
}

void sb_log__take_acked(struct sb_log *log, int64_t upto, struct sb_ack_run *run)
{
	memset(run, 0, sizeof *run);
	for (struct sb_chunk *c = log->chunk_head; c; c = c->next) {
		uint32_t i = c->nacked;
		while (i < c->nrec && sb_chunk_rec(c, i)->end_offset <= upto)
			i++;
		if (i == c->nacked) {
			if (i < c->nrec)
				break; /* the first append not covered */
			continue;  /* nothing unclaimed here */
		}
		if (run->n == 0) {
			run->c = c;
			run->i = c->nacked;
		}
		log->inflight_bytes -= rec_bytes(c, c->nacked, i);
		run->n += i - c->nacked;
		run->last = c;
		run->last_end = i;
		c->nacked = i;
		if (i < c->nrec)
			break;
	}
}

void sb_log__run_acks(const struct sb_ack_run *run, int result)
{
	struct sb_chunk *c = run->c;
	uint32_t i = run->i;
	uint64_t left = run->n;
	while (left > 0) {
		/* Chunks before the last one got no records after they were claimed
		 * (appends only go to the tail), so their nrec is stable. */
		uint32_t end = c == run->last ? run->last_end : c->nrec;
		for (; i < end && left > 0; i++, left--) {
			struct sb_append_rec *r = sb_chunk_rec(c, i);
			r->cb(r->arg, r->base_offset, result);
		}
		c = c->next;
		i = 0;
	}
}

/* Every append in c written (pieces complete in file order, so no piece
 * refers to c any more) and acknowledged. */
void sb_log__join_runs(struct sb_ack_run *run, const struct sb_ack_run *next)
{
	if (!next->n)
		return;
	if (!run->n) {
		*run = *next;
		return;
	}
	run->n += next->n; /* claims are FIFO: next starts where run ends */
	run->last = next->last;
	run->last_end = next->last_end;
}

static int chunk_done(const struct sb_chunk *c)
{
	return c->nacked == c->nrec && c->nplanned == c->nrec && c->written == c->len;
}

void sb_log__recycle(struct sb_log *log)
{
	struct sb_chunk *c;
	while ((c = log->chunk_head) && chunk_done(c)) {
		if (c == log->chunk_tail) {
			/* Drained: start the tail over from its beginning (still cache-hot). */
			c->len = c->written = c->nrec = c->nplanned = c->nacked = 0;
			return;
		}
		log->chunk_head = c->next;
		chunk_put(log, c);
	}
}

void sb_log__trim(struct sb_log *log, int64_t now_ms)
{
	if (now_ms - log->last_trim_ms < SB_CHUNK_TRIM_MS || log->stash.n)
		return;
	log->last_trim_ms = now_ms;
	sb_log__recycle(log);
	struct sb_chunk *c = log->chunk_head;
	if (log->appends_since_trim == 0 && c && c == log->chunk_tail && c->nrec == 0 && !log->npieces) {
		log->chunk_head = log->chunk_tail = NULL; /* idle: the tail chunk goes too */
		chunk_free(c);
	}
	/* Chunks the pool never lent out during the last period are not needed. */
	for (uint32_t n = log->pool_low; n > 0 && log->pool; n--) {
		c = log->pool;
		log->pool = c->next;
		log->npool--;
		chunk_free(c);
	}
	log->pool_low = log->npool;
	log->appends_since_trim = 0;
}

void sb_log__free_staging(struct sb_log *log)
{
	struct sb_chunk *lists[2] = {log->chunk_head, log->pool};
	for (int k = 0; k < 2; k++) {
		struct sb_chunk *c = lists[k];
		while (c) {
			struct sb_chunk *next = c->next;
			chunk_free(c);
			c = next;
		}
	}
	log->chunk_head = log->chunk_tail = log->pool = NULL;
	log->npool = log->pool_low = 0;
}
