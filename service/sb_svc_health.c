/* sb_svc_health.c - grpc.health.v1.Health/Watch: sends the serving status
 * of the named service ("", "readiness", "liveness") at once and again
 * whenever it changes; while the server drains, readiness turns NOT_SERVING
 * and the stream then ends with UNAVAILABLE. (Check is in sb_svc_unary.c.) */
#include "sb_svc.h"

#include "grpc/health/v1/health.pb-c.h"
#include "sb_svc_status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sb_svc__health_status(struct sb_svc *svc, const char *service);

struct sb_watch {
	struct sb_rpc_tag send_tag, close_tag, wake_tag, status_tag;
	struct sb_svc *svc;
	grpc_call *call;
	pthread_mutex_t lock;
	int refs;
	char service[256];
	int last_sent;
	grpc_byte_buffer *out;
	int send_inflight, initial_md_sent, cancelled, status_started, waking, cancelled_flag;
	struct sb_watch *next, *prev;
};

static void watch_unref(struct sb_watch *w)
{
	if (__atomic_sub_fetch(&w->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	struct sb_svc *svc = w->svc;
	pthread_mutex_lock(&svc->lock);
	if (w->prev)
		w->prev->next = w->next;
	else
		svc->watchers = w->next;
	if (w->next)
		w->next->prev = w->prev;
	pthread_mutex_unlock(&svc->lock);
	grpc_call_unref(w->call);
	pthread_mutex_destroy(&w->lock);
	free(w);
	sb_svc__call_end(svc);
}

/* Lock held: sends the status if it changed; ends the stream when draining. */
static void step(struct sb_watch *w)
{
	if (w->send_inflight || w->status_started || w->waking || w->cancelled)
		return;
	int st = sb_svc__health_status(w->svc, w->service);
	int draining;
	pthread_mutex_lock(&w->svc->lock);
	draining = w->svc->draining;
	pthread_mutex_unlock(&w->svc->lock);
	if (st != w->last_sent) {
		Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
		r.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
		w->out = sb_rpc_pack(&r.base);
		__atomic_fetch_add(&w->refs, 1, __ATOMIC_RELAXED);
		if (sb_rpc_send(w->call, &w->send_tag, w->out, !w->initial_md_sent, 0) != 0) {
			__atomic_fetch_sub(&w->refs, 1, __ATOMIC_RELAXED);
			grpc_byte_buffer_destroy(w->out);
			w->out = NULL;
			w->cancelled = 1;
			return;
		}
		w->initial_md_sent = 1;
		w->send_inflight = 1;
		w->last_sent = st;
		return;
	}
	if (draining) {
		w->status_started = 1;
		__atomic_fetch_add(&w->refs, 1, __ATOMIC_RELAXED);
		if (sb_rpc_send_status(w->call, &w->status_tag, !w->initial_md_sent, GRPC_STATUS_UNAVAILABLE,
				       "server is shutting down", NULL, 0) != 0)
			__atomic_fetch_sub(&w->refs, 1, __ATOMIC_RELAXED);
	}
}

static void on_sent(struct sb_rpc_tag *t, int ok)
{
	struct sb_watch *w = (struct sb_watch *)((char *)t - offsetof(struct sb_watch, send_tag));
	pthread_mutex_lock(&w->lock);
	grpc_byte_buffer_destroy(w->out);
	w->out = NULL;
	w->send_inflight = 0;
	if (!ok)
		w->cancelled = 1;
	step(w);
	pthread_mutex_unlock(&w->lock);
	watch_unref(w);
}

static void on_wake(struct sb_rpc_tag *t, int ok)
{
	struct sb_watch *w = (struct sb_watch *)((char *)t - offsetof(struct sb_watch, wake_tag));
	(void)ok;
	pthread_mutex_lock(&w->lock);
	w->waking = 0;
	step(w);
	pthread_mutex_unlock(&w->lock);
	watch_unref(w);
}

static void on_done(struct sb_rpc_tag *t, int ok)
{
	(void)ok;
	watch_unref((struct sb_watch *)((char *)t - offsetof(struct sb_watch, status_tag)));
}

static void on_close(struct sb_rpc_tag *t, int ok)
{
	struct sb_watch *w = (struct sb_watch *)((char *)t - offsetof(struct sb_watch, close_tag));
	(void)ok;
	pthread_mutex_lock(&w->lock);
	w->cancelled = 1;
	pthread_mutex_unlock(&w->lock);
	watch_unref(w);
}

void sb_svc__health_watch(struct sb_svc *svc, grpc_call *call, grpc_byte_buffer *payload)
{
	Grpc__Health__V1__HealthCheckRequest *q = (Grpc__Health__V1__HealthCheckRequest *)sb_rpc_unpack(
		&grpc__health__v1__health_check_request__descriptor, payload, 4096);
	if (payload)
		grpc_byte_buffer_destroy(payload);
	int rc = q ? sb_svc__call_begin(svc) : SB_EINVAL;
	struct sb_watch *w = rc ? NULL : calloc(1, sizeof *w);
	if (!w) {
		if (!rc)
			sb_svc__call_end(svc);
		sb_svc__reject(svc, call,
			       !q ? GRPC_STATUS_INVALID_ARGUMENT
			       : rc == SB_ECLOSED ? GRPC_STATUS_UNAVAILABLE : GRPC_STATUS_RESOURCE_EXHAUSTED,
			       !q ? "malformed HealthCheckRequest"
			       : rc == SB_ECLOSED ? "server is shutting down" : "too many concurrent calls (max-streams)");
		if (q)
			protobuf_c_message_free_unpacked(&q->base, NULL);
		return;
	}
	snprintf(w->service, sizeof w->service, "%s", q->service ? q->service : "");
	protobuf_c_message_free_unpacked(&q->base, NULL);
	w->svc = svc;
	w->call = call;
	w->last_sent = -1;
	w->send_tag.fn = on_sent;
	w->close_tag.fn = on_close;
	w->wake_tag.fn = on_wake;
	w->status_tag.fn = on_done;
	pthread_mutex_init(&w->lock, NULL);
	w->refs = 2;
	pthread_mutex_lock(&svc->lock);
	w->next = svc->watchers;
	if (svc->watchers)
		svc->watchers->prev = w;
	svc->watchers = w;
	pthread_mutex_unlock(&svc->lock);
	if (sb_rpc_recv_close(call, &w->close_tag, &w->cancelled_flag) != 0)
		w->refs--;
	pthread_mutex_lock(&w->lock);
	step(w);
	pthread_mutex_unlock(&w->lock);
	watch_unref(w);
}

void sb_svc__health_changed(struct sb_svc *svc)
{
	pthread_mutex_lock(&svc->lock);
	for (struct sb_watch *w = svc->watchers; w; w = w->next) {
		pthread_mutex_lock(&w->lock);
		if (!w->waking && !w->cancelled) {
			__atomic_fetch_add(&w->refs, 1, __ATOMIC_RELAXED);
			w->waking = 1;
			if (sb_rpc_wake(w->call, &w->wake_tag) != 0) {
				w->waking = 0;
				__atomic_fetch_sub(&w->refs, 1, __ATOMIC_RELAXED);
			}
		}
		pthread_mutex_unlock(&w->lock);
	}
	pthread_mutex_unlock(&svc->lock);
}
