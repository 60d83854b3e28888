/* sb_metrics.c - gathers the state and renders the Prometheus exposition;
 * libmicrohttpd serves it. Each metric family is written in one piece, as
 * the text format requires, from rows gathered once per scrape. */
#include "sb_metrics.h"

#include "sb_logging.h"
#include "sb_logmgr.h"
#include "sb_repl.h"
#include "sb_svc.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define ROWS_MAX (1u << 20) /* partitions in one scrape */

struct sb_metrics {
	struct MHD_Daemon *d;
	struct sb_svc *svc;
};

/* ---- an output buffer with a cap ---- */

struct out {
	char *p;
	size_t len, cap;
	int full; /* cap reached or OOM: the rest is left out */
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	for (int tries = 0; tries < 2 && !o->full; tries++) {
		size_t room = o->cap - o->len;
		va_start(ap, fmt);
		int n = vsnprintf(o->p + o->len, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->full = 1;
			return;
		}
		if ((size_t)n < room) {
			o->len += (size_t)n;
			return;
		}
		size_t want = o->cap * 2 > o->len + (size_t)n + 1 ? o->cap * 2 : o->len + (size_t)n + 4096;
		char *q = want <= SB_METRICS_BYTES_MAX ? realloc(o->p, want) : NULL;
		if (!q) {
			o->full = 1;
			o->p[o->len] = 0;
			return;
		}
		o->p = q;
		o->cap = want;
	}
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* ---- gathered state ---- */

struct prow {
	const char *topic; /* points into trow */
	int32_t partition;
	struct sb_log_info li;
	struct sb_kvstore_stats kv; /* zero without a key store */
	int isr, nlag;
	struct sb_repl_lag lag[SB_REPL_NODES_MAX];
};

struct trow {
	char *name;
	struct sb_topic_stats st;
};

struct state {
	struct trow *t;
	size_t nt, tcap;
	struct prow *p;
	size_t np, pcap;
};

static int collect_name(void *arg, const char *name, const struct sb_topic_config *cfg)
{
	struct state *s = arg;
	(void)cfg;
	if (s->nt == s->tcap) {
		size_t cap = s->tcap ? s->tcap * 2 : 64;
		struct trow *t = cap <= SB_TOPICS_MAX * 2 ? realloc(s->t, cap * sizeof *t) : NULL;
		if (!t)
			return 1;
		s->t = t;
		s->tcap = cap;
	}
	s->t[s->nt].name = strdup(name);
	if (!s->t[s->nt].name)
		return 1;
	memset(&s->t[s->nt].st, 0, sizeof s->t[s->nt].st);
	s->nt++;
	return 0;
}

static void gather(struct sb_svc *svc, struct state *s)
{
	int rc = sb_logmgr_list_topics(svc->mgr, collect_name, s);
	(void)rc; /* 1 = cut short: the rest is left out */
	for (size_t i = 0; i < s->nt; i++) {
		struct sb_topic *t = NULL;
		if (sb_logmgr_acquire(svc->mgr, s->t[i].name, &t) != 0)
			continue; /* deleted meanwhile */
		sb_topic_stats(t, &s->t[i].st);
		int32_t n = sb_topic_partitions(t);
		for (int32_t p = 0; p < n; p++) {
			struct sb_log *log;
			if (sb_topic_log(t, p, &log) != 0)
				continue;
			if (s->np == s->pcap) {
				size_t cap = s->pcap ? s->pcap * 2 : 64;
				struct prow *v = cap <= ROWS_MAX ? realloc(s->p, cap * sizeof *v) : NULL;
				if (!v)
					break;
				s->p = v;
				s->pcap = cap;
			}
			struct prow *r = &s->p[s->np++];
			r->topic = s->t[i].name;
			r->partition = p;
			sb_log_info(log, &r->li);
			struct sb_kvstore *kv;
			memset(&r->kv, 0, sizeof r->kv);
			if (sb_topic_kv(t, p, &kv) == 0)
				sb_kvstore_stats(kv, &r->kv);
			r->isr = sb_repl_insync(svc->repl, r->topic, p, NULL, 0);
			r->nlag = sb_repl_lag(svc->repl, r->topic, p, r->li.stable_end, r->lag, SB_REPL_NODES_MAX);
		}
		sb_topic_release(t);
	}
}

static void state_free(struct state *s)
{
	for (size_t i = 0; i < s->nt; i++)
		free(s->t[i].name);
	free(s->t);
	free(s->p);
}

/* ---- rendering ---- */

static const char *const code_names[17] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
	"PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};

static void histogram(struct out *o, const char *name, const char *help, struct sb_histo *h)
{
	uint64_t cum = 0;
	family(o, name, "histogram", help);
	for (int i = 0; i < SB_HISTO_BUCKETS; i++) {
		cum += __atomic_load_n(&h->bucket[i], __ATOMIC_RELAXED);
		if (i < SB_HISTO_BUCKETS - 1)
			put(o, "%s_bucket{le=\"%g\"} %llu\n", name, (double)sb_histo_bounds_us[i] / 1e6,
			    (unsigned long long)cum);
		else
			put(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
	}
	/* The count is the +Inf bucket, so that the two always agree. */
	put(o, "%s_sum %.6f\n%s_count %llu\n", name,
	    (double)__atomic_load_n(&h->sum_us, __ATOMIC_RELAXED) / 1e6, name, (unsigned long long)cum);
}

#define PER_PARTITION(o, s, name, type, help, expr)                                                         \
	do {                                                                                                \
		family(o, name, type, help);                                                                \
		for (size_t i_ = 0; i_ < (s)->np; i_++) {                                                   \
			const struct prow *r = &(s)->p[i_];                                                 \
			put(o, "%s{topic=\"%s\",partition=\"%d\"} %lld\n", name, r->topic, r->partition,    \
			    (long long)(expr));                                                             \
		}                                                                                           \
	} while (0)

#define PER_TOPIC(o, s, metric, help, field)                                                                \
	do {                                                                                                \
		family(o, metric, "counter", help);                                                         \
		for (size_t i_ = 0; i_ < (s)->nt; i_++)                                                     \
			put(o, "%s{topic=\"%s\"} %lld\n", metric, (s)->t[i_].name, (long long)(s)->t[i_].st.field); \
	} while (0)

#define PER_FOLLOWER(o, s, name, help, fmt, expr)                                                           \
	do {                                                                                                \
		family(o, name, "gauge", help);                                                             \
		for (size_t i_ = 0; i_ < (s)->np; i_++)                                                     \
			for (int k_ = 0; k_ < (s)->p[i_].nlag; k_++) {                                      \
				const struct prow *r = &(s)->p[i_];                                         \
				const struct sb_repl_lag *l = &r->lag[k_];                                  \
				put(o, "%s{topic=\"%s\",partition=\"%d\",follower=\"%d\"} " fmt "\n", name, \
				    r->topic, r->partition, l->node_id, expr);                              \
			}                                                                                   \
	} while (0)

char *sb_metrics_render(struct sb_svc *svc, size_t *len)
{
	struct out o = {.p = malloc(64 << 10), .cap = 64 << 10};
	struct state s = {0};
	if (!o.p)
		return NULL;
	o.p[0] = 0;
	gather(svc, &s);

	family(&o, "streambus_build_info", "gauge", "Version of this server.");
	put(&o, "streambus_build_info{version=\"%s\"} 1\n", SB_VERSION);
	family(&o, "streambus_io_backend", "gauge", "The I/O engine in use (io_uring, or sync: pwrite/fdatasync).");
	put(&o, "streambus_io_backend{backend=\"%s\"} 1\n", sb_logmgr_io_name(svc->mgr));
	family(&o, "streambus_node_id", "gauge", "This node's id.");
	put(&o, "streambus_node_id %d\n", sb_repl_node_id(svc->repl));
	family(&o, "streambus_leader_epoch", "gauge", "Current leader epoch (increments on every leadership change).");
	put(&o, "streambus_leader_epoch %lld\n", (long long)sb_repl_epoch(svc->repl));
	family(&o, "streambus_is_leader", "gauge", "1 if this node leads the cluster.");
	put(&o, "streambus_is_leader %d\n", sb_repl_is_leader(svc->repl));

	pthread_mutex_lock(&svc->lock);
	long long calls = (long long)svc->calls, subs = (long long)svc->subscribers, fol = (long long)svc->follows;
	int draining = svc->draining;
	pthread_mutex_unlock(&svc->lock);
	family(&o, "streambus_active_calls", "gauge", "Client calls in progress (streams and unary).");
	put(&o, "streambus_active_calls %lld\n", calls);
	family(&o, "streambus_active_subscriptions", "gauge", "Consume streams in progress.");
	put(&o, "streambus_active_subscriptions %lld\n", subs);
	family(&o, "streambus_active_follow_streams", "gauge", "Followers' replication streams served by this node.");
	put(&o, "streambus_active_follow_streams %lld\n", fol);
	family(&o, "streambus_draining", "gauge", "1 once shutdown has begun.");
	put(&o, "streambus_draining %d\n", draining);
	struct sb_storage_health sh;
	sb_logmgr_health(svc->mgr, &sh);
	family(&o, "streambus_storage_io_wait_seconds", "gauge",
	       "Age of the oldest write or fdatasync in flight on any log (a stalled disk makes it grow; "
	       "readiness fails past --disk-stall-ms).");
	put(&o, "streambus_storage_io_wait_seconds %.3f\n", (double)sh.io_wait_ms / 1e3);
	family(&o, "streambus_storage_failed_logs", "gauge",
	       "Logs in their sticky failed state after an I/O error (liveness fails: restart the node).");
	put(&o, "streambus_storage_failed_logs %u\n", sh.failed_logs);
	family(&o, "streambus_storage_full_logs", "gauge", "Logs refusing appends for a full disk (retried every second).");
	put(&o, "streambus_storage_full_logs %u\n", sh.full_logs);
	family(&o, "streambus_requests_failed_total", "counter",
	       "Requests answered with a non-OK status (per produce request, per call otherwise), by code.");
	for (int c = 1; c < 17; c++)
		put(&o, "streambus_requests_failed_total{code=\"%s\"} %llu\n", code_names[c],
		    (unsigned long long)__atomic_load_n(&svc->failed[c], __ATOMIC_RELAXED));
	histogram(&o, "streambus_produce_ack_latency_seconds",
		  "Time from receiving a produce request to acknowledging it (acked requests only).", &svc->ack_histo);
	histogram(&o, "streambus_fsync_latency_seconds", "Duration of each group-commit fdatasync.",
		  &sb_log_fsync_histo);

	PER_TOPIC(&o, &s, "streambus_produced_records_total", "Records acknowledged to producers.", produced_records);
	PER_TOPIC(&o, &s, "streambus_produced_bytes_total", "Record-batch bytes acknowledged to producers.", produced_bytes);
	PER_TOPIC(&o, &s, "streambus_consumed_records_total", "Records sent to Consume and Fetch callers.", consumed_records);
	PER_TOPIC(&o, &s, "streambus_consumed_bytes_total", "Encoded response bytes sent to Consume and Fetch callers.",
		  consumed_bytes);
	PER_PARTITION(&o, &s, "streambus_log_start_offset", "gauge", "First offset still stored.", r->li.log_start);
	PER_PARTITION(&o, &s, "streambus_log_end_offset", "gauge", "Acknowledged end of the log (next offset).",
		      r->li.stable_end);
	PER_PARTITION(&o, &s, "streambus_high_watermark", "gauge", "End readable by consumers (replicated end).",
		      r->li.high_watermark);
	PER_PARTITION(&o, &s, "streambus_log_segments", "gauge", "Segment files.", r->li.segments);
	PER_PARTITION(&o, &s, "streambus_log_bytes", "gauge", "Bytes in all segments.", r->li.size_bytes);
	PER_PARTITION(&o, &s, "streambus_kv_memtable_bytes", "gauge",
		      "Key store: arena bytes of the partition's memtables (active and frozen).", r->kv.memtable_bytes);
	PER_PARTITION(&o, &s, "streambus_kv_tables", "gauge", "Key store: SSTables of the partition.", r->kv.tables);
	PER_PARTITION(&o, &s, "streambus_kv_table_bytes", "gauge", "Key store: bytes of the partition's SSTables.",
		      r->kv.table_bytes);
	PER_PARTITION(&o, &s, "streambus_kv_lag_records", "gauge",
		      "Key store: readable records not yet applied to it (lookups apply them first).",
		      r->kv.applied_end && r->li.high_watermark > r->kv.applied_end ? r->li.high_watermark - r->kv.applied_end : 0);
	PER_PARTITION(&o, &s, "streambus_kv_flushes_total", "counter", "Key store: memtables flushed to SSTables.",
		      r->kv.flushes);
	PER_PARTITION(&o, &s, "streambus_kv_compactions_total", "counter", "Key store: SSTable merges.",
		      r->kv.compactions);
	PER_PARTITION(&o, &s, "streambus_log_disk_full", "gauge",
		      "1 while the log refuses appends for a full disk (retried every second).", r->li.full != 0);
	PER_PARTITION(&o, &s, "streambus_log_failed", "gauge",
		      "1 if the log is in its sticky failed state after an I/O error (appends refused until a restart).",
		      r->li.failed != 0 && !r->li.full);
	PER_PARTITION(&o, &s, "streambus_insync_replicas", "gauge",
		      "Replicas in the in-sync set, this node included (leader's view).", r->isr);
	PER_FOLLOWER(&o, &s, "streambus_replica_lag_records", "Records a follower is behind the leader's end (-1 unknown).",
		     "%lld", (long long)l->records);
	PER_FOLLOWER(&o, &s, "streambus_replica_lag_seconds",
		     "Time since a follower last reached the leader's end (0 while caught up, -1 never).", "%.3f",
		     l->ms < 0 ? -1.0 : (double)l->ms / 1000.0);
	PER_FOLLOWER(&o, &s, "streambus_replica_in_sync", "1 if the follower is in the in-sync set.", "%d", l->in_sync);
	if (o.full)
		SB_LOG_RATELIMITED(SB_LEVEL_WARN, 60000, "metrics_truncated", "bytes=%zu", o.len);
	state_free(&s);
	*len = o.len;
	return o.p;
}

/* ---- HTTP ---- */

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			      const char *version, const char *upload, size_t *upload_len, void **ctx)
{
	struct sb_metrics *m = cls;
	struct MHD_Response *r;
	enum MHD_Result ret;
	unsigned code = MHD_HTTP_OK;
	(void)version;
	(void)upload;
	(void)ctx;
	if (*upload_len) /* a body nobody asked for: refuse it */
		return MHD_NO;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		static const char msg[] = "only GET\n";
		code = MHD_HTTP_METHOD_NOT_ALLOWED;
		r = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
	} else if (strcmp(url, "/metrics") != 0) {
		static const char msg[] = "see /metrics\n";
		code = MHD_HTTP_NOT_FOUND;
		r = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
	} else {
		size_t len = 0;
		char *text = sb_metrics_render(m->svc, &len);
		if (!text)
			return MHD_NO;
		r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
		if (r)
			MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
		else
			free(text);
	}
	if (!r)
		return MHD_NO;
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

int sb_metrics_start(struct sb_metrics **out, const char *listen, struct sb_svc *svc)
{
	char host[256];
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	const char *colon = strrchr(listen, ':');
	struct sb_metrics *m = NULL;
	int rc = SB_EBADCONFIG;
	if (!colon || (size_t)(colon - listen) >= sizeof host)
		goto fail;
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = 0;
	if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [::1] */
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
	if (getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai) != 0 || !ai)
		goto fail;
	if (!(m = calloc(1, sizeof *m))) {
		rc = -ENOMEM;
		goto fail;
	}
	m->svc = svc;
	m->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
				    (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0),
				0, NULL, NULL, answer, m,
				MHD_OPTION_SOCK_ADDR, ai->ai_addr,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,   /* scrapers, not crowds */
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, /* seconds */
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 << 10),
				MHD_OPTION_END);
	if (!m->d)
		goto fail;
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
	SB_INFO("metrics_listening", "listen=%s port=%u", listen, info ? (unsigned)info->port : 0u);
	freeaddrinfo(ai);
	*out = m;
	return 0;
fail:
	SB_ERROR("metrics_listen_failed", "listen=%s", listen);
	if (ai)
		freeaddrinfo(ai);
	free(m);
	return rc;
}

void sb_metrics_stop(struct sb_metrics *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->d);
	free(m);
}
