/* sb_svc_consume.c - StreamBus.Consume: a server-streaming subscription.
 * One send is in flight at a time; the next read happens when it completes,
 * so a consumer that stops reading holds at most one read buffer (<= the
 * consume-max-bytes setting, or one batch) and one message. When caught up,
 * the stream parks a tail waiter on the log; the append that moves the end
 * fires it on the I/O loop thread, which posts an empty batch on the call
 * (GRPC_CORE.md wake-up) so a worker resumes the stream at once. */
#include "sb_svc.h"

#include "sb_auth.h"

#include "sb_logmgr.h"
#include "sb_logging.h"
#include "sb_svc_encode.h"
#include "sb_svc_status.h"
#include "streambus/v1/streambus.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sb_consume {
	struct sb_rpc_tag send_tag, close_tag, wake_tag, status_tag;
	struct sb_log_waiter waiter;
	struct sb_svc *svc;
	struct sb_caller *who;
	grpc_call *call;
	pthread_mutex_t lock;
	int refs;
	struct sb_topic *topic;
	struct sb_log *log;
	int32_t partition;
	int64_t next, stop;
	uint32_t max_records;
	size_t max_bytes;
	struct sb_log_read rd;   /* batches read but not yet fully sent */
	grpc_byte_buffer *out;
	int send_inflight, initial_md_sent, cancelled, status_started, parked, waking;
	grpc_status_code end_code;
	char end_msg[256];
	int end_pending;
	int cancelled_flag;
	struct sb_consume *next_c, *prev_c;
};

static void consume_unref(struct sb_consume *c)
{
	if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	struct sb_svc *svc = c->svc;
	pthread_mutex_lock(&svc->lock);
	if (c->prev_c)
		c->prev_c->next_c = c->next_c;
	else
		svc->consumers = c->next_c;
	if (c->next_c)
		c->next_c->prev_c = c->prev_c;
	svc->subscribers--;
	pthread_mutex_unlock(&svc->lock);
	free(c->rd.buf);
	if (c->topic)
		sb_topic_release(c->topic);
	grpc_call_unref(c->call);
	pthread_mutex_destroy(&c->lock);
	sb_svc__caller_end(svc, c->who);
	free(c);
	sb_svc__call_end(svc);
}

static void ref(struct sb_consume *c) { __atomic_fetch_add(&c->refs, 1, __ATOMIC_RELAXED); }
static void unref_quiet(struct sb_consume *c) { __atomic_fetch_sub(&c->refs, 1, __ATOMIC_RELAXED); }

/* Lock held. Ends the stream with code/msg and the resume offset. */
static void finish(struct sb_consume *c, grpc_status_code code, const char *msg)
{
	char next[32];
	if (c->status_started)
		return;
	if (c->send_inflight) { /* after the message in flight */
		c->end_pending = 1;
		c->end_code = code;
		snprintf(c->end_msg, sizeof c->end_msg, "%s", msg);
		return;
	}
	c->status_started = 1;
	sb_svc__count_status(c->svc, code);
	snprintf(next, sizeof next, "%" PRId64, c->next);
	const char *md[2] = {"streambus-next-offset", next};
	ref(c);
	if (sb_rpc_send_status(c->call, &c->status_tag, !c->initial_md_sent, code, msg, md, 1) != 0)
		unref_quiet(c);
	c->initial_md_sent = 1;
}

/* Lock held. Sends the next response, or parks, or finishes. */
static void step(struct sb_consume *c)
{
	char msg[256];
	while (!c->send_inflight && !c->status_started && !c->parked && !c->waking) {
		if (c->cancelled)
			return;
		if (c->next >= c->stop) {
			finish(c, GRPC_STATUS_OK, "");
			return;
		}
		if (!c->rd.buf || c->next >= c->rd.next_offset) {
			free(c->rd.buf);
			memset(&c->rd, 0, sizeof c->rd);
			int rc = sb_log_read(c->log, c->next, c->max_bytes, &c->rd);
			if (rc == SB_ERANGE_LOW) {
				snprintf(msg, sizeof msg, "offset %" PRId64 " was removed by retention: the log now starts at %"
					 PRId64, c->next, c->rd.log_start);
				finish(c, GRPC_STATUS_OUT_OF_RANGE, msg);
				return;
			}
			if (rc) {
				snprintf(msg, sizeof msg, "read failed at offset %" PRId64 ": %s", c->next, sb_strerror(rc));
				finish(c, sb_svc_status(rc), msg);
				return;
			}
			if (c->rd.len == 0 && c->rd.next_offset > c->next) {
				/* The read stepped over a gap between segments (offsets
				 * lost before a recovery, logged there): go on after it
				 * instead of waiting for offsets that will never come. */
				c->next = c->rd.next_offset;
				free(c->rd.buf);
				memset(&c->rd, 0, sizeof c->rd);
				continue;
			}
			if (c->rd.len == 0) { /* caught up: park until an append */
				free(c->rd.buf);
				memset(&c->rd, 0, sizeof c->rd);
				ref(c);
				c->parked = 1;
				rc = sb_log_wait(c->log, c->next, &c->waiter);
				if (rc != 0) {
					c->parked = 0;
					unref_quiet(c);
				}
				if (rc < 0) {
					finish(c, GRPC_STATUS_UNAVAILABLE, "partition is closing");
					return;
				}
				continue; /* rc 1: more arrived meanwhile */
			}
		}
		struct sb_enc e;
		uint32_t n = 0;
		int64_t next = c->next;
		sb_enc_init(&e);
		int rc = sb_enc_varint_field(&e, 1, (uint64_t)(uint32_t)c->partition);
		if (!rc)
			rc = sb_enc_records(&e, 2, c->rd.data, c->rd.len, c->next, c->stop, c->max_records, c->max_bytes, &n, &next);
		if (!rc)
			rc = sb_enc_varint_field(&e, 3, (uint64_t)c->rd.stable_end);
		if (!rc)
			rc = sb_enc_varint_field(&e, 4, (uint64_t)next);
		if (rc || n == 0) {
			sb_enc_fini(&e);
			if (rc) {
				snprintf(msg, sizeof msg, "read failed at offset %" PRId64 ": %s", c->next, sb_strerror(rc));
				finish(c, sb_svc_status(rc), msg);
				return;
			}
			c->next = c->rd.next_offset; /* nothing in range in this read: move on */
			continue;
		}
		c->next = next;
		sb_topic_count(c->topic, 0, n, (int64_t)e.len);
		grpc_slice s = grpc_slice_new(e.buf, e.len, free); /* hands e.buf to the slice */
		c->out = grpc_raw_byte_buffer_create(&s, 1);
		grpc_slice_unref(s);
		ref(c);
		if (sb_rpc_send(c->call, &c->send_tag, c->out, !c->initial_md_sent, 0) != 0) {
			unref_quiet(c);
			grpc_byte_buffer_destroy(c->out);
			c->out = NULL;
			c->cancelled = 1;
			return;
		}
		c->initial_md_sent = 1;
		c->send_inflight = 1;
	}
}

static void on_sent(struct sb_rpc_tag *t, int ok)
{
	struct sb_consume *c = (struct sb_consume *)((char *)t - offsetof(struct sb_consume, send_tag));
	pthread_mutex_lock(&c->lock);
	grpc_byte_buffer_destroy(c->out);
	c->out = NULL;
	c->send_inflight = 0;
	if (!ok)
		c->cancelled = 1;
	if (c->end_pending) {
		c->end_pending = 0;
		finish(c, c->end_code, c->end_msg);
	}
	step(c);
	pthread_mutex_unlock(&c->lock);
	consume_unref(c);
}

/* The tail waiter fired (I/O loop thread): hop to a worker. */
static void on_tail(struct sb_log_waiter *w)
{
	struct sb_consume *c = w->arg;
	pthread_mutex_lock(&c->lock);
	c->parked = 0;
	c->waking = 1;
	/* The waiter's reference moves to the wake tag. */
	if (sb_rpc_wake(c->call, &c->wake_tag) != 0) {
		c->waking = 0;
		c->cancelled = 1;
		pthread_mutex_unlock(&c->lock);
		consume_unref(c);
		return;
	}
	pthread_mutex_unlock(&c->lock);
}

static void on_wake(struct sb_rpc_tag *t, int ok)
{
	struct sb_consume *c = (struct sb_consume *)((char *)t - offsetof(struct sb_consume, wake_tag));
	(void)ok;
	pthread_mutex_lock(&c->lock);
	c->waking = 0;
	step(c);
	pthread_mutex_unlock(&c->lock);
	consume_unref(c);
}

static void on_status(struct sb_rpc_tag *t, int ok)
{
	(void)ok;
	consume_unref((struct sb_consume *)((char *)t - offsetof(struct sb_consume, status_tag)));
}

/* Lock NOT held (cancelling waits for a firing waiter, whose callback takes
 * the lock): takes a parked stream off the log's waiter list. */
static void unpark(struct sb_consume *c)
{
	pthread_mutex_lock(&c->lock);
	int parked = c->parked;
	pthread_mutex_unlock(&c->lock);
	if (parked && sb_log_wait_cancel(c->log, &c->waiter) == 1) {
		pthread_mutex_lock(&c->lock);
		c->parked = 0;
		pthread_mutex_unlock(&c->lock);
		unref_quiet(c);
	}
}

static void on_close(struct sb_rpc_tag *t, int ok)
{
	struct sb_consume *c = (struct sb_consume *)((char *)t - offsetof(struct sb_consume, close_tag));
	(void)ok;
	pthread_mutex_lock(&c->lock);
	c->cancelled = 1;
	pthread_mutex_unlock(&c->lock);
	unpark(c);
	consume_unref(c);
}

/* Resolves the start and stop offsets. 0, or fills code/msg. */
static int resolve(struct sb_consume *c, const Streambus__V1__ConsumeRequest *q, grpc_status_code *code, char *msg,
		   size_t cap)
{
	struct sb_log_info li;
	int64_t committed;
	sb_log_info(c->log, &li);
	/* A group without an explicit start offset resumes where it committed
	 * (clamped to what the log still holds); without a commit, the start
	 * position applies. */
	if (q->group && q->group[0] &&
	    (q->start == STREAMBUS__V1__START_POSITION__START_EARLIEST ||
	     q->start == STREAMBUS__V1__START_POSITION__START_LATEST) &&
	    sb_svc__committed_offset(c->svc, q->group, q->topic, q->partition, &committed) == 0) {
		c->next = committed < li.log_start ? li.log_start
			  : committed > li.high_watermark ? li.high_watermark : committed;
		goto stop;
	}
	switch (q->start) {
	case STREAMBUS__V1__START_POSITION__START_EARLIEST: c->next = li.log_start; break;
	case STREAMBUS__V1__START_POSITION__START_LATEST: c->next = li.high_watermark; break;
	case STREAMBUS__V1__START_POSITION__START_OFFSET:
		if (q->start_offset < 0) {
			*code = GRPC_STATUS_INVALID_ARGUMENT;
			snprintf(msg, cap, "start_offset must be >= 0");
			return -1;
		}
		if (q->start_offset < li.log_start || q->start_offset > li.high_watermark) {
			*code = GRPC_STATUS_OUT_OF_RANGE;
			snprintf(msg, cap, "start_offset %" PRId64 " is out of range: valid offsets are [%" PRId64 ", %" PRId64 "]",
				 q->start_offset, li.log_start, li.high_watermark);
			return -1;
		}
		c->next = q->start_offset;
		break;
	case STREAMBUS__V1__START_POSITION__START_TIMESTAMP: {
		int rc = sb_log_offset_for_time(c->log, q->start_timestamp_ms, &c->next);
		if (rc && rc != SB_ENOTFOUND) {
			*code = sb_svc_status(rc);
			snprintf(msg, cap, "timestamp lookup failed: %s", sb_strerror(rc));
			return -1;
		}
		break;
	}
	default:
		*code = GRPC_STATUS_INVALID_ARGUMENT;
		snprintf(msg, cap, "unknown start position %d", (int)q->start);
		return -1;
	}
stop:
	switch (q->stop) {
	case STREAMBUS__V1__STOP_POSITION__STOP_NEVER: c->stop = INT64_MAX; break;
	case STREAMBUS__V1__STOP_POSITION__STOP_AT_END: c->stop = li.high_watermark; break;
	case STREAMBUS__V1__STOP_POSITION__STOP_AT_OFFSET:
		if (q->stop_offset < 0) {
			*code = GRPC_STATUS_INVALID_ARGUMENT;
			snprintf(msg, cap, "stop_offset must be >= 0");
			return -1;
		}
		c->stop = q->stop_offset;
		break;
	default:
		*code = GRPC_STATUS_INVALID_ARGUMENT;
		snprintf(msg, cap, "unknown stop position %d", (int)q->stop);
		return -1;
	}
	return 0;
}

/* Validates the request and binds the stream to its log. */
static int open_stream(struct sb_consume *c, grpc_byte_buffer *payload, grpc_status_code *code, char *msg, size_t cap)
{
	const struct sb_settings *cfg = c->svc->cfg;
	Streambus__V1__ConsumeRequest *q = (Streambus__V1__ConsumeRequest *)sb_rpc_unpack(
		&streambus__v1__consume_request__descriptor, payload, (size_t)cfg->max_message_bytes);
	int rc = -1;
	if (!q) {
		*code = GRPC_STATUS_INVALID_ARGUMENT;
		snprintf(msg, cap, "malformed ConsumeRequest");
		return -1;
	}
	if (!sb_principal_can(c->who ? c->who->who : NULL, SB_PERM_CONSUME, q->topic)) {
		/* before the lookup: a caller without permission learns nothing */
		*code = GRPC_STATUS_PERMISSION_DENIED;
		snprintf(msg, cap, "principal %s may not consume from topic \"%.200s\"",
			 sb_principal_name(c->who ? c->who->who : NULL), q->topic);
		goto out;
	}
	int err = sb_logmgr_acquire(c->svc->mgr, q->topic, &c->topic);
	if (err) {
		*code = sb_svc_status(err);
		snprintf(msg, cap, err == SB_EBADNAME ? "invalid topic name \"%.200s\"" : "unknown topic \"%.200s\"", q->topic);
		goto out;
	}
	if (sb_topic_log(c->topic, q->partition, &c->log)) {
		*code = GRPC_STATUS_NOT_FOUND;
		snprintf(msg, cap, "topic \"%.200s\" has no partition %d (it has %d)", q->topic, q->partition,
			 sb_topic_partitions(c->topic));
		goto out;
	}
	c->partition = q->partition;
	c->max_bytes = q->max_bytes && q->max_bytes < cfg->consume_max_bytes ? q->max_bytes : (size_t)cfg->consume_max_bytes;
	c->max_records = q->max_records && q->max_records < cfg->consume_max_records ? q->max_records
										      : (uint32_t)cfg->consume_max_records;
	rc = resolve(c, q, code, msg, cap);
out:
	protobuf_c_message_free_unpacked(&q->base, NULL);
	return rc;
}

static int admit(struct sb_svc *svc)
{
	int rc = sb_svc__call_begin(svc);
	if (rc)
		return rc;
	pthread_mutex_lock(&svc->lock);
	if (svc->subscribers >= svc->cfg->max_subscribers)
		rc = SB_EBUSY;
	else
		svc->subscribers++;
	pthread_mutex_unlock(&svc->lock);
	if (rc)
		sb_svc__call_end(svc);
	return rc;
}

void sb_svc__consume(struct sb_svc *svc, grpc_call *call, grpc_byte_buffer *payload, struct sb_caller *who)
{
	grpc_status_code code = GRPC_STATUS_OK;
	char msg[320];
	int rc = admit(svc);
	struct sb_consume *c = rc ? NULL : calloc(1, sizeof *c);
	if (!c) {
		if (!rc) { /* admitted, but out of memory: give the admission back */
			pthread_mutex_lock(&svc->lock);
			svc->subscribers--;
			pthread_mutex_unlock(&svc->lock);
			sb_svc__call_end(svc);
			rc = -ENOMEM;
		}
		if (payload)
			grpc_byte_buffer_destroy(payload);
		sb_svc__caller_end(svc, who);
		sb_svc__reject(svc, call, rc == SB_ECLOSED ? GRPC_STATUS_UNAVAILABLE : GRPC_STATUS_RESOURCE_EXHAUSTED,
			       rc == SB_ECLOSED ? "server is shutting down"
			       : rc == -ENOMEM ? "out of memory" : "too many subscribers");
		return;
	}
	c->svc = svc;
	c->who = who;
	c->call = call;
	c->send_tag.fn = on_sent;
	c->close_tag.fn = on_close;
	c->wake_tag.fn = on_wake;
	c->status_tag.fn = on_status;
	c->waiter.fn = on_tail;
	c->waiter.arg = c;
	pthread_mutex_init(&c->lock, NULL);
	c->refs = 2; /* this function, and the close tag */
	pthread_mutex_lock(&svc->lock);
	c->next_c = svc->consumers;
	if (svc->consumers)
		svc->consumers->prev_c = c;
	svc->consumers = c;
	pthread_mutex_unlock(&svc->lock);
	if (sb_rpc_recv_close(call, &c->close_tag, &c->cancelled_flag) != 0)
		c->refs--;
	int ok = open_stream(c, payload, &code, msg, sizeof msg) == 0;
	if (payload)
		grpc_byte_buffer_destroy(payload);
	pthread_mutex_lock(&c->lock);
	if (ok)
		step(c);
	else
		finish(c, code, msg);
	pthread_mutex_unlock(&c->lock);
	consume_unref(c);
}

/* Ends every subscription (of topic t, or all if t is NULL) with code/msg. */
static void end_streams(struct sb_svc *svc, const struct sb_topic *t, grpc_status_code code, const char *msg)
{
	struct sb_consume **all = NULL;
	size_t n = 0;
	pthread_mutex_lock(&svc->lock);
	for (struct sb_consume *c = svc->consumers; c; c = c->next_c)
		n++;
	all = calloc(n ? n : 1, sizeof *all);
	n = 0;
	for (struct sb_consume *c = svc->consumers; c && all; c = c->next_c) {
		if (t && c->topic != t)
			continue;
		ref(c);
		all[n++] = c;
	}
	pthread_mutex_unlock(&svc->lock);
	for (size_t i = 0; i < n; i++) {
		struct sb_consume *c = all[i];
		pthread_mutex_lock(&c->lock);
		c->cancelled = 1; /* no more reads */
		pthread_mutex_unlock(&c->lock);
		unpark(c);
		pthread_mutex_lock(&c->lock);
		finish(c, code, msg);
		pthread_mutex_unlock(&c->lock);
		consume_unref(c);
	}
	free(all);
}

void sb_svc__consume_drain(struct sb_svc *svc)
{
	end_streams(svc, NULL, GRPC_STATUS_UNAVAILABLE,
		    "server is shutting down: resume from the streambus-next-offset trailing metadata");
}

void sb_svc__consume_topic_deleted(struct sb_svc *svc, const struct sb_topic *t)
{
	end_streams(svc, t, GRPC_STATUS_NOT_FOUND, "the topic was deleted");
}
