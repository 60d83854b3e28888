/* sb_svc_produce.c - StreamBus.Produce: a bidirectional stream of produce
 * requests. One RECV is kept armed; each request is encoded into a record
 * batch and appended; the storage ack (on the I/O loop thread) marks its
 * response ready, and responses go out strictly in request order, one send
 * in flight at a time. Past max-inflight-per-stream unanswered requests the
 * stream stops reading (HTTP/2 flow control pushes back on the client). */
#include "sb_svc.h"

#include <grpc/byte_buffer_reader.h>

#include "sb_batch.h"
#include "sb_crc32c.h"
#include "sb_logmgr.h"
#include "sb_logging.h"
#include "sb_limits.h"
#include "sb_repl.h"
#include "sb_svc_status.h"
#include "sb_svc_wire.h"
#include "sb_time.h"
#include "sb_utf8.h"
#include "streambus/v1/streambus.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pend {
	struct pend *next;
	struct sb_produce *p;
	struct sb_topic *topic; /* held until the ack: keeps the log alive */
	uint64_t request_id;
	int32_t partition;
	int64_t base_offset;
	/* ACKS_ALL: after the local ack, wait for the high watermark to pass. */
	int acks_all;
	int32_t min_insync;
	uint32_t records;
	struct sb_log *log;
	struct sb_log_waiter hw_wait;
	int64_t bytes;          /* counted against the caller's in-flight bytes */
	int64_t t0_ns;          /* received (for the ack-latency histogram) */
	uint32_t nrec;          /* records, and the batch's bytes, for the topic's counters */
	uint32_t batch_bytes;
	int done, silent;       /* silent: ACKS_NONE and OK: no response */
	grpc_status_code code;
	char *msg;
};

struct sb_produce {
	struct sb_rpc_tag recv_tag, send_tag, close_tag, status_tag;
	struct sb_svc *svc;
	struct sb_caller *who;
	grpc_call *call;
	pthread_mutex_t lock;
	int refs;
	grpc_byte_buffer *in, *out;
	int recv_armed, recv_paused, half_closed, cancelled, status_started, send_inflight;
	int close_cancelled; /* written by RECV_CLOSE_ON_SERVER */
	int initial_md_sent, draining;
	struct pend *head, *tail;
	int inflight;
	struct sb_batch_builder builder;
	struct sb_produce *next, *prev;
};

static void produce_unref(struct sb_produce *p)
{
	if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	struct sb_svc *svc = p->svc;
	pthread_mutex_lock(&svc->lock);
	if (p->prev)
		p->prev->next = p->next;
	else
		svc->producers = p->next;
	if (p->next)
		p->next->prev = p->prev;
	pthread_mutex_unlock(&svc->lock);
	grpc_call_unref(p->call);
	sb_batch_builder_fini(&p->builder);
	pthread_mutex_destroy(&p->lock);
	sb_svc__caller_end(svc, p->who);
	free(p);
	sb_svc__call_end(svc);
}

static void arm_recv(struct sb_produce *p);
static void pump(struct sb_produce *p);

/* Lock held. Ends the stream once everything is answered. */
static void try_finish(struct sb_produce *p)
{
	if (p->status_started || p->send_inflight || p->head)
		return;
	if (!(p->half_closed || p->draining || p->cancelled))
		return;
	p->status_started = 1;
	__atomic_fetch_add(&p->refs, 1, __ATOMIC_RELAXED);
	int rc = p->draining && !p->half_closed
			 ? sb_rpc_send_status(p->call, &p->status_tag, !p->initial_md_sent, GRPC_STATUS_UNAVAILABLE,
					      "server is shutting down: every answered request is durable; reconnect",
					      NULL, 0)
			 : sb_rpc_send_status(p->call, &p->status_tag, !p->initial_md_sent, GRPC_STATUS_OK, "", NULL, 0);
	p->initial_md_sent = 1;
	if (rc)
		__atomic_fetch_sub(&p->refs, 1, __ATOMIC_RELAXED);
}

static grpc_byte_buffer *response_for(struct pend *q)
{
	Streambus__V1__ProduceResponse r = STREAMBUS__V1__PRODUCE_RESPONSE__INIT;
	r.request_id = q->request_id;
	r.partition = q->partition;
	r.base_offset = q->code == GRPC_STATUS_OK ? q->base_offset : -1;
	r.error_code = (int32_t)q->code;
	if (q->msg)
		sb_utf8_sanitize(q->msg); /* it may quote a name cut mid-character */
	r.error_message = q->msg ? q->msg : "";
	return sb_rpc_pack(&r.base);
}

static void pend_free(struct pend *q)
{
	free(q->msg);
	free(q);
}

/* Lock held. Sends the next ready response, in request order. */
static void pump(struct sb_produce *p)
{
	while (p->head && p->head->done && !p->send_inflight) {
		struct pend *q = p->head;
		p->head = q->next;
		if (!p->head)
			p->tail = NULL;
		p->inflight--;
		sb_svc__count_status(p->svc, q->code);
		if (!q->silent && !p->cancelled) {
			p->out = response_for(q);
			__atomic_fetch_add(&p->refs, 1, __ATOMIC_RELAXED);
			if (sb_rpc_send(p->call, &p->send_tag, p->out, !p->initial_md_sent, 0) == 0) {
				p->send_inflight = 1;
				p->initial_md_sent = 1;
			} else {
				grpc_byte_buffer_destroy(p->out);
				p->out = NULL;
				__atomic_fetch_sub(&p->refs, 1, __ATOMIC_RELAXED);
				p->cancelled = 1;
			}
		}
		if (q->bytes)
			sb_svc__produce_done(p->svc, p->who, q->bytes);
		pend_free(q);
	}
	if (p->recv_paused && p->inflight < p->svc->cfg->max_inflight_per_stream && !p->half_closed &&
	    !p->cancelled) {
		p->recv_paused = 0;
		arm_recv(p);
	}
	try_finish(p);
}

/* Completes q with code/msg (NULL: OK) and releases what the ack held. */
static void complete(struct pend *q, grpc_status_code code, const char *msg)
{
	struct sb_produce *p = q->p;
	struct sb_topic *topic = q->topic; /* q may be freed by pump */
	char *copy = msg ? strdup(msg) : NULL;
	if (code == GRPC_STATUS_OK && topic) {
		sb_topic_count(topic, 1, q->nrec, q->batch_bytes);
		sb_histo_add(&p->svc->ack_histo, (sb_mono_ns() - q->t0_ns) / 1000);
	}
	pthread_mutex_lock(&p->lock);
	q->topic = NULL;
	q->done = 1;
	if (code != GRPC_STATUS_OK) {
		q->silent = 0;
		q->code = code;
		q->msg = copy;
	} else {
		free(copy);
	}
	pump(p);
	pthread_mutex_unlock(&p->lock);
	sb_topic_release(topic);
	produce_unref(p);
}

/* ACKS_ALL: the high watermark moved past the request, or the log closed. */
static void on_replicated(struct sb_log_waiter *w)
{
	struct pend *q = w->arg;
	struct sb_svc *svc = q->p->svc;
	struct sb_log_info li;
	char msg[256];
	int64_t end = q->base_offset + q->records;
	sb_log_info(q->log, &li);
	if (li.high_watermark < end) {
		complete(q, GRPC_STATUS_UNAVAILABLE,
			 "fewer in-sync replicas than min_insync_replicas, or the partition closed, before the write "
			 "reached every in-sync replica: it is on the leader and may or may not be kept; a retry may "
			 "duplicate it");
		return;
	}
	int isr = sb_repl_insync(svc->repl, sb_topic_name(q->topic), q->partition, NULL, 0);
	if (isr < q->min_insync) {
		snprintf(msg, sizeof msg, "written, but only %d in-sync replicas hold it (min_insync_replicas %d): "
			 "it may be read; a retry may duplicate it", isr, q->min_insync);
		complete(q, GRPC_STATUS_UNAVAILABLE, msg);
		return;
	}
	complete(q, GRPC_STATUS_OK, NULL);
}

/* Storage ack, on the I/O loop thread. */
static void on_ack(void *arg, int64_t base, int result)
{
	struct pend *q = arg;
	char msg[256];
	q->base_offset = base; /* read by the pump only once done is set */
	if (result) {
		snprintf(msg, sizeof msg, "append failed: %s; nothing was acknowledged for this request",
			 sb_strerror(result));
		complete(q, sb_svc_status(result), msg);
		return;
	}
	if (q->acks_all) {
		q->hw_wait = (struct sb_log_waiter){.fn = on_replicated, .arg = q};
		int rc = sb_log_wait(q->log, base + q->records - 1, &q->hw_wait);
		if (rc == 0)
			return; /* on_replicated completes q */
		if (rc != 1) {
			complete(q, GRPC_STATUS_UNAVAILABLE,
				 "the partition closed before the write was replicated: it may or may not be kept");
			return;
		}
		on_replicated(&q->hw_wait);
		return;
	}
	complete(q, GRPC_STATUS_OK, NULL);
}

/* Lock NOT held. Completes q at once (an error, or ACKS_NONE refusal).
 * done is set last, under the lock: a pump on another thread (an earlier
 * request's ack) may send and free q as soon as it sees it done. */
static void answer_now(struct sb_produce *p, struct pend *q, grpc_status_code code, const char *msg)
{
	char *copy = msg ? strdup(msg) : NULL;
	pthread_mutex_lock(&p->lock);
	q->code = code;
	q->silent = code == GRPC_STATUS_OK && q->silent;
	q->msg = copy;
	q->done = 1;
	pthread_mutex_unlock(&p->lock);
}

static int32_t pick_partition(struct sb_svc *svc, const struct sb_wire_produce *r, int32_t n)
{
	if (r->partition >= 0)
		return r->partition;
	if (r->first_key_len > 0)
		return (int32_t)(sb_crc32c(r->first_key, r->first_key_len) % (uint32_t)n);
	return (int32_t)(__atomic_fetch_add(&svc->rr, 1, __ATOMIC_RELAXED) % (uint32_t)n);
}

/* Validates, resolves and appends one request (lock NOT held). */
static void process(struct sb_produce *p, struct pend *q, const struct sb_wire_produce *r)
{
	struct sb_svc *svc = p->svc;
	struct sb_topic *topic_ref = NULL; /* q may be freed once answered: keep our own */
	struct sb_log *log;
	char msg[512], topic[SB_TOPIC_NAME_MAX + 2];
	const void *batch;
	size_t len;
	int err = 0;

	q->request_id = r->request_id;
	q->partition = r->partition;
	q->silent = r->acks == STREAMBUS__V1__ACKS__ACKS_NONE;
	if (r->n_records == 0 || r->partition < -1 || r->acks < 0 || r->acks > 2 ||
	    (uint64_t)r->n_records > (uint64_t)svc->cfg->max_records_per_request) {
		snprintf(msg, sizeof msg, r->n_records == 0 ? "a produce request needs at least one record"
				      : r->partition < -1 ? "partition must be >= 0, or -1 for any"
				      : r->acks < 0 || r->acks > 2 ? "unknown acks value"
				      : "too many records in one request (at most %" PRId64 ")",
			 svc->cfg->max_records_per_request);
		answer_now(p, q, GRPC_STATUS_INVALID_ARGUMENT, msg);
		return;
	}
	size_t tl = r->topic_len < sizeof topic - 1 ? r->topic_len : sizeof topic - 1;
	memcpy(topic, r->topic, tl);
	topic[tl] = 0;
	if (!sb_repl_is_leader(svc->repl)) {
		/* The stream opened while this node led; it no longer does. */
		char addr[256];
		int32_t id = sb_repl_leader(svc->repl, addr, sizeof addr);
		snprintf(msg, sizeof msg, "this node no longer leads: not appended; send writes to node %d at %s", id,
			 addr[0] ? addr : "(unknown)");
		answer_now(p, q, GRPC_STATUS_UNAVAILABLE, msg);
		return;
	}
	int64_t retry = 0;
	err = sb_svc__produce_admit(svc, p->who, topic, (int64_t)r->len, &retry);
	if (err) { /* before the topic is looked up: a caller without permission learns nothing */
		if (err == SB_EDENIED)
			snprintf(msg, sizeof msg, "not allowed to produce to topic \"%.300s\"", topic);
		else
			snprintf(msg, sizeof msg, "in-flight bytes or request rate at the caller's limit: "
						  "not appended; retry in %lld ms", (long long)retry);
		answer_now(p, q, sb_svc_status(err), msg);
		return;
	}
	q->bytes = (int64_t)r->len;
	err = r->topic_len >= sizeof topic - 1 || memchr(r->topic, 0, r->topic_len) ? SB_EBADNAME
		 : sb_logmgr_acquire(svc->mgr, topic, &topic_ref);
	if (err) {
		snprintf(msg, sizeof msg, err == SB_EBADNAME ? "invalid topic name \"%.300s\": use 1-249 characters of [A-Za-z0-9._-]"
							     : "unknown topic \"%.300s\"", topic);
		answer_now(p, q, sb_svc_status(err), msg);
		return;
	}
	int32_t np = sb_topic_partitions(topic_ref);
	q->partition = pick_partition(svc, r, np);
	if (sb_topic_log(topic_ref, q->partition, &log)) {
		snprintf(msg, sizeof msg, "topic \"%.300s\" has no partition %d (it has %d)", topic, q->partition, np);
		answer_now(p, q, GRPC_STATUS_NOT_FOUND, msg);
		goto release;
	}
	if (r->acks == STREAMBUS__V1__ACKS__ACKS_ALL) {
		int isr = sb_repl_insync(svc->repl, topic, q->partition, NULL, 0);
		q->min_insync = sb_topic_config(topic_ref)->min_insync_replicas;
		if (isr < q->min_insync) {
			snprintf(msg, sizeof msg, "not enough in-sync replicas: %d of min_insync_replicas %d; nothing was written",
				 isr, q->min_insync);
			answer_now(p, q, GRPC_STATUS_UNAVAILABLE, msg);
			goto release;
		}
		q->acks_all = 1;
		q->log = log;
		q->records = (uint32_t)r->n_records;
	}
	sb_batch_builder_reset(&p->builder);
	err = sb_wire_produce_records(r, &p->builder, sb_wall_ms(), SB_RECORD_HEADERS_MAX);
	if (!err && sb_topic_compacted(topic_ref) && p->builder.keyed != p->builder.count) {
		answer_now(p, q, GRPC_STATUS_INVALID_ARGUMENT,
			   "topic is compacted (cleanup_policy compact): every record needs a key; nothing was written");
		goto release;
	}
	if (!err)
		err = sb_batch_builder_finish(&p->builder, &batch, &len);
	if (err) {
		answer_now(p, q, sb_svc_status(err),
			   err == SB_ETOOBIG ? "request too large for one batch, or more than 1024 headers on a record"
			   : err == SB_EINVAL ? "malformed record" : "out of memory");
		goto release;
	}
	__atomic_fetch_add(&p->refs, 1, __ATOMIC_RELAXED); /* the ack's */
	q->topic = topic_ref; /* the ack releases it */
	q->nrec = r->n_records;
	q->batch_bytes = (uint32_t)len;
	err = sb_log_append_trusted(log, batch, len, (int32_t)sb_repl_epoch(svc->repl), on_ack,
				    q); /* built just above */
	if (err == 0)
		return; /* on_ack completes q and releases the topic */
	q->topic = NULL;
	__atomic_fetch_sub(&p->refs, 1, __ATOMIC_RELAXED);
	if (err == SB_EBUSY)
		snprintf(msg, sizeof msg, "partition %d is busy (too many bytes in flight): retry", q->partition);
	else
		snprintf(msg, sizeof msg, "append refused: %s", sb_strerror(err));
	answer_now(p, q, sb_svc_status(err), msg);
release:
	sb_topic_release(topic_ref);
}

/* The received message as one contiguous slice. */
static grpc_slice flatten(grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader r;
	if (!grpc_byte_buffer_reader_init(&r, bb))
		return grpc_empty_slice();
	grpc_slice all = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	return all;
}

static void on_recv(struct sb_rpc_tag *t, int ok)
{
	struct sb_produce *p = (struct sb_produce *)((char *)t - offsetof(struct sb_produce, recv_tag));
	grpc_byte_buffer *in = p->in;
	p->in = NULL;
	if (!ok || !in) {
		pthread_mutex_lock(&p->lock);
		p->recv_armed = 0;
		p->half_closed = 1;
		try_finish(p);
		pthread_mutex_unlock(&p->lock);
		produce_unref(p);
		return;
	}
	struct sb_wire_produce req;
	grpc_slice bytes = flatten(in);
	grpc_byte_buffer_destroy(in);
	int bad = sb_wire_produce_parse(GRPC_SLICE_START_PTR(bytes), GRPC_SLICE_LENGTH(bytes), &req);
	struct pend *q = calloc(1, sizeof *q);
	if (!q)
		abort(); /* a few bytes: treat as fatal like every other OOM on this path */
	q->p = p;
	q->code = GRPC_STATUS_OK;
	q->t0_ns = sb_mono_ns();
	pthread_mutex_lock(&p->lock);
	if (p->tail)
		p->tail->next = q;
	else
		p->head = q;
	p->tail = q;
	p->inflight++;
	int draining = p->draining;
	pthread_mutex_unlock(&p->lock);
	if (bad) {
		q->request_id = req.request_id; /* when it came before the fault */
		answer_now(p, q, GRPC_STATUS_INVALID_ARGUMENT,
			   bad == SB_EBADNAME ? "invalid topic name: it must be UTF-8 without NUL bytes, 1-249 "
						"characters of [A-Za-z0-9._-]"
					      : "malformed ProduceRequest");
	}
	else if (draining) {
		q->request_id = req.request_id;
		q->partition = req.partition;
		answer_now(p, q, GRPC_STATUS_UNAVAILABLE, "server is shutting down: not appended; reconnect");
	}
	else
		process(p, q, &req);
	grpc_slice_unref(bytes);
	pthread_mutex_lock(&p->lock);
	p->recv_armed = 0;
	if (p->inflight >= p->svc->cfg->max_inflight_per_stream)
		p->recv_paused = 1;
	else if (!p->draining && !p->cancelled)
		arm_recv(p);
	pump(p);
	pthread_mutex_unlock(&p->lock);
	produce_unref(p);
}

/* Lock held. */
static void arm_recv(struct sb_produce *p)
{
	if (p->recv_armed)
		return;
	__atomic_fetch_add(&p->refs, 1, __ATOMIC_RELAXED);
	if (sb_rpc_recv(p->call, &p->recv_tag, &p->in) == 0) {
		p->recv_armed = 1;
	} else {
		__atomic_fetch_sub(&p->refs, 1, __ATOMIC_RELAXED);
		p->half_closed = 1;
	}
}

static void on_sent(struct sb_rpc_tag *t, int ok)
{
	struct sb_produce *p = (struct sb_produce *)((char *)t - offsetof(struct sb_produce, send_tag));
	pthread_mutex_lock(&p->lock);
	grpc_byte_buffer_destroy(p->out);
	p->out = NULL;
	p->send_inflight = 0;
	if (!ok)
		p->cancelled = 1;
	pump(p);
	pthread_mutex_unlock(&p->lock);
	produce_unref(p);
}

static void on_status(struct sb_rpc_tag *t, int ok)
{
	(void)ok;
	produce_unref((struct sb_produce *)((char *)t - offsetof(struct sb_produce, status_tag)));
}

static void on_close(struct sb_rpc_tag *t, int ok)
{
	struct sb_produce *p = (struct sb_produce *)((char *)t - offsetof(struct sb_produce, close_tag));
	(void)ok;
	pthread_mutex_lock(&p->lock);
	p->cancelled = 1; /* the call is over either way: nothing more can be sent */
	try_finish(p);
	pthread_mutex_unlock(&p->lock);
	produce_unref(p);
}

void sb_svc__produce(struct sb_svc *svc, grpc_call *call, struct sb_caller *who)
{
	int rc = sb_svc__call_begin(svc);
	struct sb_produce *p = NULL;
	if (!rc && !(p = calloc(1, sizeof *p)))
		rc = -ENOMEM;
	if (!rc && sb_batch_builder_init(&p->builder, (size_t)svc->cfg->max_message_bytes + (1u << 16)) != 0)
		rc = -ENOMEM;
	if (rc) {
		free(p);
		sb_svc__caller_end(svc, who);
		if (rc != SB_ECLOSED && rc != SB_EBUSY)
			sb_svc__call_end(svc);
		sb_svc__reject(svc, call, rc == SB_ECLOSED ? GRPC_STATUS_UNAVAILABLE : GRPC_STATUS_RESOURCE_EXHAUSTED,
			       rc == SB_ECLOSED ? "server is shutting down" : "too many concurrent calls");
		return;
	}
	p->svc = svc;
	p->who = who;
	p->call = call;
	p->recv_tag.fn = on_recv;
	p->send_tag.fn = on_sent;
	p->close_tag.fn = on_close;
	p->status_tag.fn = on_status;
	pthread_mutex_init(&p->lock, NULL);
	p->refs = 2; /* this function, and the close tag */
	pthread_mutex_lock(&svc->lock);
	p->next = svc->producers;
	if (svc->producers)
		svc->producers->prev = p;
	svc->producers = p;
	pthread_mutex_unlock(&svc->lock);
	if (sb_rpc_recv_close(call, &p->close_tag, &p->close_cancelled) != 0)
		p->refs--;
	pthread_mutex_lock(&p->lock);
	arm_recv(p);
	try_finish(p);
	pthread_mutex_unlock(&p->lock);
	produce_unref(p);
}

void sb_svc__produce_drain(struct sb_svc *svc)
{
	pthread_mutex_lock(&svc->lock);
	for (struct sb_produce *p = svc->producers; p; p = p->next) {
		pthread_mutex_lock(&p->lock);
		p->draining = 1;
		try_finish(p);
		pthread_mutex_unlock(&p->lock);
	}
	pthread_mutex_unlock(&svc->lock);
}
