/* bench_consume.c - the subscriber of streambus bench: one Consume stream on
 * its own channel and thread. --consume reads the partition from the start
 * to its end; --e2e follows the tail from the offset main found before the
 * producers started and measures, per record, now minus the send time the
 * producer stamped in the first 8 bytes of the value (both clocks are this
 * process's CLOCK_MONOTONIC). */
#include "bench.h"

#include <stdio.h>
#include <string.h>

static void on_records(struct bench_worker *w, const Streambus__V1__ConsumeResponse *r, int e2e)
{
	int64_t now = bench_now_ns();
	for (size_t i = 0; i < r->n_records; i++) {
		const Streambus__V1__ConsumedRecord *rec = r->records[i];
		w->bytes_done += (int64_t)rec->value.len;
		if (e2e && rec->value.len >= sizeof(int64_t)) {
			int64_t sent;
			memcpy(&sent, rec->value.data, sizeof sent);
			sbc_hist_add(w->hist, now - sent);
		}
	}
	w->records_done += (int64_t)r->n_records;
	w->last_ns = now;
	__atomic_fetch_add(&w->sh->consumed, (int64_t)r->n_records, __ATOMIC_RELAXED);
}

static void subscribe(struct bench_worker *w, struct sbc_conn *conn)
{
	const struct bench_cfg *cfg = w->sh->cfg;
	Streambus__V1__ConsumeRequest q = STREAMBUS__V1__CONSUME_REQUEST__INIT;
	struct sbc_call call;
	struct sbc_event ev;
	int cancelled = 0, e2e = cfg->mode == BENCH_E2E;

	memset(&call, 0, sizeof call);
	snprintf(w->err_what, sizeof w->err_what, "bench subscriber");
	q.topic = (char *)cfg->topic;
	q.partition = w->partition;
	q.start = w->start_offset < 0 ? STREAMBUS__V1__START_POSITION__START_EARLIEST
	                              : STREAMBUS__V1__START_POSITION__START_OFFSET;
	q.start_offset = w->start_offset < 0 ? 0 : w->start_offset;
	q.stop = w->records ? STREAMBUS__V1__STOP_POSITION__STOP_NEVER
	                    : STREAMBUS__V1__STOP_POSITION__STOP_AT_END;
	if (sbc_conn_wait_ready(conn, &w->err))
		return;
	w->first_ns = bench_now_ns(); /* the rate counts from the request, not the first answer */
	if (sbc_call_start(conn, &call, "/streambus.v1.StreamBus/Consume", &q.base, 1, &w->err))
		return;
	__atomic_store_n(&w->sh->subscribed, 1, __ATOMIC_RELEASE);
	while (!sbc_call_idle(&call)) {
		int done = w->records && w->records_done >= w->records;
		if (!cancelled && (done || __atomic_load_n(&w->sh->stop, __ATOMIC_RELAXED))) {
			cancelled = 1;
			sbc_call_cancel(&call);
		}
		if (!sbc_next(conn, 100, &ev))
			continue;
		if (ev.kind == SBC_EV_RECV && ev.msg) {
			Streambus__V1__ConsumeResponse *r =
			    (Streambus__V1__ConsumeResponse *)sbc_unpack(
			        &streambus__v1__consume_response__descriptor, ev.msg);
			if (r) {
				on_records(w, r, e2e);
				protobuf_c_message_free_unpacked(&r->base, NULL);
			}
			sbc_call_recv(&call);
		} else if (ev.kind == SBC_EV_STATUS) {
			struct sbc_status st;
			sbc_call_status(&call, &st);
			if (st.code != GRPC_STATUS_OK &&
			    !(cancelled && st.code == GRPC_STATUS_CANCELLED))
				w->err = st;
		}
	}
	sbc_call_fini(&call);
}

void *bench_subscriber(void *arg)
{
	struct bench_worker *w = arg;
	struct sbc_conn conn;
	sbc_conn_init(&conn, w->sh->cfg->server, w->sh->cfg->timeout_s);
	subscribe(w, &conn);
	sbc_conn_fini(&conn);
	__atomic_store_n(&w->sh->subscribed, 1,
	                 __ATOMIC_RELEASE); /* (also when it failed: do not wait) */
	__atomic_fetch_sub(&w->sh->running, 1, __ATOMIC_RELEASE);
	return NULL;
}
