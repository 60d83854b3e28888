/* bench_produce.c - one producer stream of streambus bench: its own channel,
 * completion queue and thread. Requests are hand-encoded ProduceRequests:
 * a small per-request prefix (request_id, topic, partition, acks) plus the
 * records, pre-encoded once and shared by reference (zero copy), or copied
 * and stamped with the scheduled send time for --e2e. With --rate, request
 * i is due at t0 + i * interval (t0: when the stream is connected) and its latency counts from that
 * time even when the window made it wait (no coordinated omission). */
#include "bench.h"

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* After a stop (Ctrl-C, a failed stream), how long to wait for answers. */
#define BENCH_STOP_GRACE_NS (5ll * 1000000000)
/* Below this wait, the timetable is kept by napping, not by queue timeouts. */
#define BENCH_FINE_WAIT_US 2000

int64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static size_t varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Encoded repeated field 4 (Record{value}) for n records of size bytes. */
struct records_tmpl {
	grpc_slice slice;
	uint32_t n;
	size_t record_len, value_at; /* each record's encoded length; value offset inside it */
};

static void tmpl_init(struct records_tmpl *t, uint32_t n, uint32_t size)
{
	size_t inner = 1 + varint_len(size) + size;
	t->n = n;
	t->record_len = 1 + varint_len(inner) + inner;
	t->value_at = 1 + varint_len(inner) + 1 + varint_len(size);
	t->slice = grpc_slice_malloc(t->record_len * n);
	uint8_t *p = GRPC_SLICE_START_PTR(t->slice);
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *r = p + (size_t)i * t->record_len;
		size_t k = 0;
		r[k++] = 0x22; /* field 4, length-delimited */
		k += put_varint(r + k, inner);
		r[k++] = 0x12; /* Record.value: field 2, length-delimited */
		k += put_varint(r + k, size);
		for (uint32_t j = 0; j < size; j++)
			r[k + j] = (uint8_t)('a' + (i + j) % 26);
	}
}

struct producer_state {
	struct bench_worker *w;
	const struct bench_cfg *cfg;
	struct sbc_conn conn;
	struct sbc_call call;
	struct records_tmpl full, last;
	int64_t *due_ns; /* [window]: when request id was due (or sent), by id % window */
	int64_t t0_ns;   /* the timetable's start: once this stream is connected */
	int64_t stop_ns; /* when the stop flag was seen */
	int64_t requests, next, answered;
	int over;
};

static uint32_t records_in(const struct producer_state *s, int64_t id)
{
	return id == s->requests - 1 ? s->last.n : s->full.n;
}

static int send_request(struct producer_state *s, int64_t id, int64_t due)
{
	const struct bench_cfg *cfg = s->cfg;
	const struct records_tmpl *t = id == s->requests - 1 ? &s->last : &s->full;
	uint8_t prefix[32 + 512];
	size_t n = 0, tlen = strlen(cfg->topic);
	prefix[n++] = 0x08;
	n += put_varint(prefix + n, (uint64_t)id);
	prefix[n++] = 0x12;
	n += put_varint(prefix + n, tlen);
	memcpy(prefix + n, cfg->topic, tlen);
	n += tlen;
	prefix[n++] = 0x18;
	n += put_varint(prefix + n, (uint64_t)s->w->partition);
	prefix[n++] = 0x28;
	n += put_varint(prefix + n, (uint64_t)cfg->acks);
	grpc_slice parts[2];
	parts[0] = grpc_slice_from_copied_buffer((const char *)prefix, n);
	if (cfg->mode == BENCH_E2E) { /* stamp each value with the due time */
		parts[1] = grpc_slice_malloc(GRPC_SLICE_LENGTH(t->slice));
		uint8_t *p = GRPC_SLICE_START_PTR(parts[1]);
		memcpy(p, GRPC_SLICE_START_PTR(t->slice), GRPC_SLICE_LENGTH(t->slice));
		for (uint32_t i = 0; i < t->n; i++)
			memcpy(p + (size_t)i * t->record_len + t->value_at, &due, sizeof due);
	} else {
		parts[1] = grpc_slice_ref(t->slice);
	}
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(parts, 2);
	grpc_slice_unref(parts[0]);
	grpc_slice_unref(parts[1]);
	if (sbc_call_send_buffer(&s->call, bb, 0) != 0) {
		grpc_byte_buffer_destroy(bb);
		return -1;
	}
	return 0;
}

static void on_response(struct producer_state *s, grpc_byte_buffer *bb, int64_t now)
{
	struct bench_worker *w = s->w;
	Streambus__V1__ProduceResponse *r = (Streambus__V1__ProduceResponse *)sbc_unpack(
	    &streambus__v1__produce_response__descriptor, bb);
	if (!r)
		return;
	int64_t id = (int64_t)r->request_id;
	if (id >= s->answered && id < s->next) {
		sbc_hist_add(w->hist, now - s->due_ns[id % s->cfg->window]);
		s->answered++;
		if (r->error_code == 0) {
			w->records_done += records_in(s, id);
			__atomic_fetch_add(&w->sh->acked, records_in(s, id), __ATOMIC_RELAXED);
			w->last_ns = now;
		} else {
			w->failed_requests++;
			__atomic_fetch_add(&w->sh->failed, 1, __ATOMIC_RELAXED);
			if (w->err.code == GRPC_STATUS_OK) {
				w->err.code = (grpc_status_code)r->error_code;
				snprintf(w->err.msg, sizeof w->err.msg, "%s", r->error_message);
			}
		}
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void on_event(struct producer_state *s, struct sbc_event *ev)
{
	struct sbc_status st;
	switch (ev->kind) {
	case SBC_EV_START:
	case SBC_EV_SENT:
		if (!ev->ok)
			s->over = 1;
		break;
	case SBC_EV_RECV:
		if (!ev->msg) {
			s->over = 1;
			break;
		}
		on_response(s, ev->msg, bench_now_ns());
		sbc_call_recv(&s->call);
		break;
	case SBC_EV_STATUS:
		s->over = 1;
		sbc_call_status(&s->call, &st);
		if (st.code == GRPC_STATUS_OK && s->cfg->acks == STREAMBUS__V1__ACKS__ACKS_NONE) {
			/* no acks: every request sent was appended once the stream ends OK */
			for (int64_t id = 0; id < s->next; id++)
				s->w->records_done += records_in(s, id);
			s->w->last_ns = bench_now_ns();
		}
		if (st.code != GRPC_STATUS_OK)
			s->w->err = st;
		break;
	default:
		break;
	}
}

/* One step: send if due and allowed; returns how long to wait (µs). */
static int64_t step(struct producer_state *s)
{
	const struct bench_cfg *cfg = s->cfg;
	int acks_none = cfg->acks == STREAMBUS__V1__ACKS__ACKS_NONE;
	int stop = __atomic_load_n(&s->w->sh->stop, __ATOMIC_RELAXED);
	int64_t now = bench_now_ns();
	int64_t wait_us = 100000; /* look at the stop flag now and then */
	if (stop && !s->stop_ns)
		s->stop_ns = now;
	if (stop && !s->over && now - s->stop_ns > BENCH_STOP_GRACE_NS) {
		s->over = 1; /* answers are overdue: give up on them */
		sbc_call_cancel(&s->call);
	}
	if (!s->over && !stop && s->next < s->requests && !s->call.send_busy &&
	    (acks_none || s->next - s->answered < cfg->window)) {
		double interval_ns =
		    cfg->rate > 0 ? (double)cfg->batch * cfg->streams / cfg->rate * 1e9 : 0;
		int64_t due =
		    cfg->rate > 0 ? s->t0_ns + (int64_t)((double)s->next * interval_ns) : now;
		if (due <= now) {
			if (send_request(s, s->next, due) != 0) {
				s->over = 1; /* cancelled: the status follows */
				sbc_call_cancel(&s->call);
				return 0;
			}
			if (s->next == 0)
				s->w->first_ns = now;
			s->due_ns[s->next % cfg->window] = due;
			__atomic_fetch_add(&s->w->sh->sent, records_in(s, s->next),
			                   __ATOMIC_RELAXED);
			s->next++;
		} else {
			wait_us = (due - now) / 1000;
		}
	}
	int all_sent = s->next == s->requests || stop || s->over;
	if (all_sent && !s->over && !s->call.send_busy && (acks_none || s->answered == s->next) &&
	    !s->call.closed_send)
		sbc_call_close_send(
		    &s->call); /* (over: the call has ended and its status is coming) */
	return wait_us;
}

static void produce(struct producer_state *s)
{
	struct sbc_event ev;
	struct bench_worker *w = s->w;
	snprintf(w->err_what, sizeof w->err_what, "bench producer %u", w->index);
	if (sbc_conn_wait_ready(&s->conn, &w->err) ||
	    sbc_call_start(&s->conn, &s->call, "/streambus.v1.StreamBus/Produce", NULL, 0, &w->err))
		return;
	s->t0_ns = bench_now_ns();
	while (!sbc_call_idle(&s->call)) {
		int64_t wait_us = step(s);
		if (wait_us > 0 && wait_us < BENCH_FINE_WAIT_US) {
			/* The queue's timeouts are whole milliseconds: near a due
			 * time, glance at it and nap 50 µs so sends leave on time. */
			struct timespec nap = {0, 50 * 1000};
			if (!sbc_next_us(&s->conn, 0, &ev))
				nanosleep(&nap, NULL);
			else
				on_event(s, &ev);
		} else if (sbc_next_us(&s->conn, wait_us, &ev)) {
			on_event(s, &ev);
		}
		while (sbc_next_us(&s->conn, 0, &ev))
			on_event(s, &ev);
	}
	sbc_call_fini(&s->call);
	if (w->err.code == GRPC_STATUS_OK && s->answered < s->next &&
	    s->cfg->acks != STREAMBUS__V1__ACKS__ACKS_NONE) {
		w->err.code = GRPC_STATUS_UNKNOWN;
		snprintf(w->err.msg, sizeof w->err.msg,
		         "the stream ended with %lld requests unanswered",
		         (long long)(s->next - s->answered));
	}
}

void *bench_producer(void *arg)
{
	struct bench_worker *w = arg;
	struct producer_state *s = calloc(1, sizeof *s);
	const struct bench_cfg *cfg = w->sh->cfg;
	if (s) {
		s->w = w;
		s->cfg = cfg;
		s->requests = (w->records + cfg->batch - 1) / cfg->batch;
		s->due_ns = calloc(cfg->window, sizeof *s->due_ns);
		uint32_t last = (uint32_t)(w->records - (s->requests - 1) * (int64_t)cfg->batch);
		tmpl_init(&s->full, cfg->batch, cfg->record_size);
		tmpl_init(&s->last, s->requests ? last : 0, cfg->record_size);
		sbc_conn_init(&s->conn, cfg->server, cfg->timeout_s);
		if (s->due_ns && s->requests > 0)
			produce(s);
		sbc_conn_fini(&s->conn);
		grpc_slice_unref(s->full.slice);
		grpc_slice_unref(s->last.slice);
		free(s->due_ns);
		free(s);
	} else {
		w->err.code = GRPC_STATUS_RESOURCE_EXHAUSTED;
		snprintf(w->err.msg, sizeof w->err.msg, "out of memory");
	}
	__atomic_fetch_sub(&w->sh->running, 1, __ATOMIC_RELEASE);
	return NULL;
}
