/* sb_svc_server.c - server lifecycle, worker threads and call dispatch. */
#include "sb_svc.h"

#include "sb_repl.h"

#include "sb_auth.h"
#include "sb_limit.h"
#include "sb_limits.h"
#include "sb_metrics.h"
#include "sb_tls.h"
#include "sb_logging.h"
#include "sb_svc_status.h"

#include <errno.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <limits.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLOTS_PER_METHOD 16 /* new calls find a waiting request, even in bursts */

static const struct {
	const char *path;
	int payload; /* read the first message with the request (unary, server-streaming) */
} method_table[SB_M_COUNT] = {
	[SB_M_PRODUCE] = {"/streambus.v1.StreamBus/Produce", 0},
	[SB_M_CONSUME] = {"/streambus.v1.StreamBus/Consume", 1},
	[SB_M_FETCH] = {"/streambus.v1.StreamBus/Fetch", 1},
	[SB_M_CREATE_TOPIC] = {"/streambus.v1.Admin/CreateTopic", 1},
	[SB_M_DELETE_TOPIC] = {"/streambus.v1.Admin/DeleteTopic", 1},
	[SB_M_LIST_TOPICS] = {"/streambus.v1.Admin/ListTopics", 1},
	[SB_M_DESCRIBE_TOPIC] = {"/streambus.v1.Admin/DescribeTopic", 1},
	[SB_M_CLUSTER_INFO] = {"/streambus.v1.Admin/GetClusterInfo", 1},
	[SB_M_HEALTH_CHECK] = {"/grpc.health.v1.Health/Check", 1},
	[SB_M_HEALTH_WATCH] = {"/grpc.health.v1.Health/Watch", 1},
	[SB_M_REFLECTION_V1] = {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", 0},
	[SB_M_REFLECTION_V1ALPHA] = {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", 0},
	[SB_M_REPL_FOLLOW] = {"/streambus.v1.Replication/Follow", 0},
	[SB_M_REPL_ANNOUNCE] = {"/streambus.v1.Replication/Announce", 1},
	[SB_M_PROMOTE] = {"/streambus.v1.Admin/Promote", 1},
	[SB_M_LOOKUP] = {"/streambus.v1.StreamBus/Lookup", 1},
	[SB_M_COMMIT_OFFSETS] = {"/streambus.v1.StreamBus/CommitOffsets", 1},
	[SB_M_FETCH_OFFSETS] = {"/streambus.v1.StreamBus/FetchOffsets", 1},
};

/* An outstanding request for a new call of one method (or any, if m < 0). */
struct slot {
	struct sb_rpc_tag tag;
	struct sb_svc *svc;
	int m;
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_byte_buffer *payload;
	grpc_call_details details;
};

static struct sb_rpc_tag shutdown_tag;
static int shutdown_done;

static void slot_done(struct sb_rpc_tag *tag, int ok);

/* Lock held. Posts the slot unless the server is shutting down. On failure
 * the slot's metadata is left destroyed (the caller frees the slot). */
static int slot_post(struct slot *s)
{
	grpc_call_error e;
	struct sb_svc *svc = s->svc;
	if (svc->shutting_down)
		return -1;
	s->call = NULL;
	s->payload = NULL;
	grpc_metadata_array_init(&s->md);
	if (s->m < 0) {
		grpc_call_details_init(&s->details);
		e = grpc_server_request_call(svc->server, &s->call, &s->details, &s->md, svc->cq, svc->cq, &s->tag);
	} else {
		e = grpc_server_request_registered_call(svc->server, svc->methods[s->m], &s->call, &s->deadline,
							&s->md, method_table[s->m].payload ? &s->payload : NULL,
							svc->cq, svc->cq, &s->tag);
	}
	if (e == GRPC_CALL_OK)
		return 0;
	grpc_metadata_array_destroy(&s->md);
	if (s->m < 0)
		grpc_call_details_destroy(&s->details);
	return -1;
}

/* Frees a slot whose request completed without a call (shutdown). */
static void slot_free(struct slot *s)
{
	grpc_metadata_array_destroy(&s->md);
	if (s->m < 0)
		grpc_call_details_destroy(&s->details);
	free(s);
}

/* Follow streams are counted apart from client calls: a drain waits for
 * client calls only (ACKS_ALL requests need the followers meanwhile), and
 * the stop waits for both before the queue goes. */
static void follow_done(void *arg)
{
	struct sb_svc *svc = arg;
	pthread_mutex_lock(&svc->lock);
	svc->follows--;
	pthread_cond_broadcast(&svc->cond);
	pthread_mutex_unlock(&svc->lock);
}

static void serve_follow(struct sb_svc *svc, grpc_call *call)
{
	pthread_mutex_lock(&svc->lock);
	int ok = !svc->draining;
	svc->follows += ok;
	pthread_mutex_unlock(&svc->lock);
	if (!ok) {
		sb_svc__reject(svc, call, GRPC_STATUS_UNAVAILABLE, "server is shutting down");
		return;
	}
	sb_repl_serve_follow(svc->repl, call, follow_done, svc);
}

/* Writes go to the leader only. */
static int leader_only(int m)
{
	return m == SB_M_PRODUCE || m == SB_M_CREATE_TOPIC || m == SB_M_DELETE_TOPIC || m == SB_M_COMMIT_OFFSETS;
}

/* Health (probes) and reflection (the schema) answer everyone. */
static int open_method(int m)
{
	return m < 0 || m == SB_M_HEALTH_CHECK || m == SB_M_HEALTH_WATCH || m == SB_M_REFLECTION_V1 ||
	       m == SB_M_REFLECTION_V1ALPHA;
}

/* Method-level permission; topic-level checks are the handlers'. NULL for
 * allowed, else what is missing. */
static const char *method_denied(const struct sb_principal *p, int m)
{
	switch (m) {
	case SB_M_CREATE_TOPIC:
	case SB_M_DELETE_TOPIC: return sb_principal_can(p, SB_PERM_ADMIN, NULL) ? NULL : "admin";
	case SB_M_PROMOTE: /* an operator, or the leader handing over on drain */
		return sb_principal_can(p, SB_PERM_ADMIN, NULL) || sb_principal_can(p, SB_PERM_REPLICATE, NULL)
			   ? NULL : "admin";
	case SB_M_REPL_FOLLOW:
	case SB_M_REPL_ANNOUNCE: return sb_principal_can(p, SB_PERM_REPLICATE, NULL) ? NULL : "replicate";
	default: return NULL;
	}
}

void sb_svc__caller_end(struct sb_svc *svc, struct sb_caller *c)
{
	if (!c)
		return;
	if (c->lim) {
		sb_limiter_call_end(svc->limits, c->lim);
		sb_limiter_put(svc->limits, c->lim);
	}
	sb_principal_release(c->who);
	free(c);
}

int sb_svc__produce_admit(struct sb_svc *svc, struct sb_caller *c, const char *topic, int64_t bytes,
			  int64_t *retry_ms)
{
	*retry_ms = 0;
	if (!sb_principal_can(c ? c->who : NULL, SB_PERM_PRODUCE, topic))
		return SB_EDENIED;
	return c && c->lim ? sb_limiter_request(svc->limits, c->lim, bytes, retry_ms) : 0;
}

void sb_svc__produce_done(struct sb_svc *svc, struct sb_caller *c, int64_t bytes)
{
	if (c && c->lim)
		sb_limiter_done(svc->limits, c->lim, bytes);
}

/* Authenticates the call, checks its method-level permission and opens its
 * limiter stream. NULL if the call was rejected (it is then answered). */
static struct sb_caller *admit(struct sb_svc *svc, int m, grpc_call *call, const char *authz)
{
	char msg[256], key[SB_LIMIT_KEY_MAX];
	int64_t retry = 0;
	struct sb_caller *c = calloc(1, sizeof *c);
	if (!c) {
		sb_svc__reject(svc, call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	if (sb_auth_identify(svc->auth, authz, &c->who) != 0) {
		sb_svc__reject(svc, call, GRPC_STATUS_UNAUTHENTICATED,
			       "missing or unknown token: send the metadata \"authorization: Bearer <token>\"");
		goto fail;
	}
	const char *need = method_denied(c->who, m);
	if (need) {
		snprintf(msg, sizeof msg, "principal %s may not call this method (it needs the %s permission)",
			 sb_principal_name(c->who), need);
		sb_svc__reject(svc, call, GRPC_STATUS_PERMISSION_DENIED, msg);
		goto fail;
	}
	if (m == SB_M_REPL_FOLLOW || m == SB_M_REPL_ANNOUNCE)
		return c; /* cluster traffic: not limited like clients */
	if (c->who) {
		snprintf(key, sizeof key, "p:%s", sb_principal_name(c->who));
	} else {
		char *peer = grpc_call_get_peer(call);
		snprintf(key, sizeof key, "c:%s", peer ? peer : "?");
		gpr_free(peer);
	}
	c->lim = sb_limiter_get(svc->limits, key);
	if (!c->lim) {
		sb_svc__reject(svc, call, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many callers: retry later");
		goto fail;
	}
	if (sb_limiter_call_begin(svc->limits, c->lim, &retry) != 0) {
		snprintf(msg, sizeof msg, "limit of %s reached (concurrent calls or request rate): retry in %lld ms",
			 key, (long long)retry);
		sb_limiter_put(svc->limits, c->lim);
		c->lim = NULL;
		sb_svc__reject_retry(svc, call, msg, retry);
		goto fail;
	}
	return c;
fail:
	sb_principal_release(c->who);
	free(c);
	return NULL;
}

static void dispatch(struct sb_svc *svc, int m, grpc_call *call, grpc_byte_buffer *payload, const char *authz)
{
	struct sb_caller *c = NULL;
	if (!open_method(m) && !(c = admit(svc, m, call, authz))) {
		if (payload)
			grpc_byte_buffer_destroy(payload);
		return;
	}
	if (leader_only(m) && !sb_repl_is_leader(svc->repl)) {
		if (payload)
			grpc_byte_buffer_destroy(payload);
		sb_svc__caller_end(svc, c);
		sb_svc__reject_not_leader(svc, call);
		return;
	}
	switch (m) {
	case SB_M_REPL_FOLLOW:
		sb_svc__caller_end(svc, c);
		serve_follow(svc, call);
		break;
	case SB_M_PRODUCE: sb_svc__produce(svc, call, c); break;
	case SB_M_CONSUME: sb_svc__consume(svc, call, payload, c); break;
	case SB_M_HEALTH_WATCH: sb_svc__health_watch(svc, call, payload); break;
	case SB_M_REFLECTION_V1:
	case SB_M_REFLECTION_V1ALPHA: sb_svc__reflection(svc, (enum sb_method)m, call); break;
	case -1:
		if (payload)
			grpc_byte_buffer_destroy(payload);
		sb_svc__reject(svc, call, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
		break;
	default: sb_svc__unary(svc, (enum sb_method)m, call, payload, c); break;
	}
}

static void slot_done(struct sb_rpc_tag *tag, int ok)
{
	struct slot *s = (struct slot *)tag;
	struct sb_svc *svc = s->svc;
	char authz[SB_AUTH_TOKEN_MAX + 16];
	if (!ok) { /* shutdown: no call was created */
		slot_free(s);
		return;
	}
	grpc_call *call = s->call;
	grpc_byte_buffer *payload = s->payload;
	int m = s->m;
	const char *a = sb_rpc_md_get(&s->md, "authorization", authz, sizeof authz);
	grpc_metadata_array_destroy(&s->md);
	if (m < 0)
		grpc_call_details_destroy(&s->details);
	pthread_mutex_lock(&svc->lock);
	int posted = slot_post(s) == 0;
	pthread_mutex_unlock(&svc->lock);
	if (!posted)
		free(s); /* its arrays are already destroyed */
	dispatch(svc, m, call, payload, a);
	if (a)
		memset(authz, 0, sizeof authz);
}

static void *worker_main(void *arg)
{
	struct sb_svc *svc = arg;
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(svc->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		struct sb_rpc_tag *t = ev.tag;
		t->fn(t, ev.success);
	}
	return NULL;
}

static void on_shutdown(struct sb_rpc_tag *tag, int ok)
{
	(void)tag;
	(void)ok;
	__atomic_store_n(&shutdown_done, 1, __ATOMIC_RELEASE);
}

static grpc_channel_args *server_args(const struct sb_settings *cfg, grpc_arg *a)
{
	static grpc_channel_args args;
	int n = 0;
	a[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = (int)cfg->max_message_bytes}};
	/* What the server sends is bounded by its own limits (consume-max-bytes,
	 * replication's message size), each allowing one whole batch: the send
	 * limit only has to let the largest batch through. */
	a[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = (int)(SB_BATCH_BYTES_MAX + (1u << 20))}};
	a[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIME_MS, {.integer = (int)cfg->keepalive_ms}};
	a[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, {.integer = 10000}};
	a[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, {.integer = 1}};
	a[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, {.integer = 5000}};
	a[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_MAX_PING_STRIKES, {.integer = 0}};
	/* gRPC sets SO_REUSEPORT by default: a second server on the same port
	 * would bind too and the kernel would split connections between two data
	 * directories. Binding a taken port must fail instead. */
	a[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}};
	/* Hostile or broken clients: a connection that never finishes its
	 * handshake, or sits without calls, is closed; one connection cannot
	 * open more than its share of streams. */
	a[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONCURRENT_STREAMS, {.integer = (int)cfg->max_streams_per_connection}};
	a[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, {.integer = (int)cfg->handshake_timeout_ms}};
	a[n++] = (grpc_arg){GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONNECTION_IDLE_MS,
			    {.integer = cfg->idle_timeout_ms > INT_MAX ? INT_MAX : (int)cfg->idle_timeout_ms}};
	args.num_args = (size_t)n;
	args.args = a;
	return &args;
}

/* 1 if a listen address reaches only this machine. */
static int loopback(const char *listen)
{
	return strncmp(listen, "127.", 4) == 0 || strncmp(listen, "localhost:", 10) == 0 ||
	       strncmp(listen, "[::1]:", 6) == 0 || strncmp(listen, "ipv4:127.", 9) == 0 ||
	       strncmp(listen, "unix:", 5) == 0;
}

static void close_security(struct sb_svc *svc)
{
	if (svc->creds)
		grpc_server_credentials_release(svc->creds);
	svc->creds = NULL;
	sb_tls_free(svc->tls);
	sb_auth_close(svc->auth);
	sb_limits_close(svc->limits);
	svc->tls = NULL;
	svc->auth = NULL;
	svc->limits = NULL;
}

/* Tokens, TLS and limits; refuses an unprotected listener beyond loopback
 * unless --insecure says so. */
static int open_security(struct sb_svc *svc, const struct sb_settings *cfg)
{
	char err[512] = "";
	int rc;
	struct sb_limits_cfg lc = {
		.streams = cfg->limit_streams,
		.inflight_bytes = cfg->limit_inflight_bytes,
		.rate = (double)cfg->limit_rate,
		.burst = (double)cfg->limit_burst,
	};
	if ((rc = sb_limits_open(&svc->limits, &lc)) != 0)
		goto fail;
	rc = sb_auth_open(&svc->auth, cfg->tokens_file, cfg->cluster_secret_file, err, sizeof err);
	if (rc)
		goto fail;
	if (cfg->tls_cert[0] || cfg->tls_key[0] || cfg->tls_client_ca[0]) {
		if (!cfg->tls_cert[0] || !cfg->tls_key[0]) {
			snprintf(err, sizeof err, "TLS needs both --tls-cert and --tls-key");
			rc = SB_EBADCONFIG;
			goto fail;
		}
		rc = sb_tls_open(&svc->tls, cfg->tls_cert, cfg->tls_key, cfg->tls_client_ca, &svc->creds, err,
				 sizeof err);
		if (rc)
			goto fail;
	} else {
		svc->creds = grpc_insecure_server_credentials_create();
	}
	int open = !svc->tls && !sb_auth_enabled(svc->auth);
	if (open && !loopback(cfg->listen) && !cfg->insecure) {
		snprintf(err, sizeof err, "listen=%s is not a loopback address and neither TLS (--tls-cert) nor "
					  "tokens (--tokens-file) are configured: configure them, or pass --insecure",
			 cfg->listen);
		rc = SB_EBADCONFIG;
		goto fail;
	}
	SB_INFO("security", "tls=%s client_certificates=%s tokens=%zu cluster_secret=%s listen=%s%s",
		svc->tls ? "on" : "off", cfg->tls_client_ca[0] ? "required" : "no", sb_auth_count(svc->auth),
		cfg->cluster_secret_file[0] ? "yes" : "no", cfg->listen,
		open ? (loopback(cfg->listen) ? " note=\"no security: loopback only\""
					       : " note=\"no security (--insecure)\"") : "");
	return 0;
fail:
	SB_ERROR("security_config", "error=\"%s\"", err[0] ? err : sb_strerror(rc));
	close_security(svc);
	return rc ? rc : SB_EBADCONFIG;
}

void sb_svc_reload(struct sb_svc *svc)
{
	char err[512] = "";
	if (sb_auth_enabled(svc->auth)) {
		if (sb_auth_reload(svc->auth, err, sizeof err) == 0)
			SB_INFO("tokens_reloaded", "tokens=%zu", sb_auth_count(svc->auth));
		else
			SB_ERROR("tokens_reload_failed", "error=\"%s\" note=\"the previous tokens stay in force\"", err);
	}
	sb_tls_reload(svc->tls);
}

int sb_svc_start(struct sb_svc *svc, const struct sb_settings *cfg, struct sb_logmgr *mgr,
		 struct sb_repl *repl)
{
	grpc_arg a[12];
	int rc;
	memset(svc, 0, sizeof *svc);
	svc->cfg = cfg;
	svc->mgr = mgr;
	svc->repl = repl;
	pthread_mutex_init(&svc->lock, NULL);
	pthread_cond_init(&svc->cond, NULL);
	rc = open_security(svc, cfg);
	if (rc)
		return rc;
	svc->server = grpc_server_create(server_args(cfg, a), NULL);
	svc->cq = grpc_completion_queue_create_for_next(NULL);
	for (int m = 0; m < SB_M_COUNT; m++)
		svc->methods[m] = grpc_server_register_method(svc->server, method_table[m].path, NULL,
							      method_table[m].payload ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER
										      : GRPC_SRM_PAYLOAD_NONE, 0);
	grpc_server_register_completion_queue(svc->server, svc->cq, NULL);
	svc->port = grpc_server_add_http2_port(svc->server, cfg->listen, svc->creds);
	grpc_server_credentials_release(svc->creds);
	svc->creds = NULL;
	if (svc->port == 0) {
		SB_ERROR("listen_failed", "listen=%s", cfg->listen);
		grpc_server_destroy(svc->server);
		grpc_completion_queue_shutdown(svc->cq);
		grpc_completion_queue_destroy(svc->cq);
		close_security(svc);
		return SB_EBADCONFIG;
	}
	grpc_server_start(svc->server);
	pthread_mutex_lock(&svc->lock);
	for (int m = -1; m < SB_M_COUNT; m++) {
		for (int k = 0; k < (m < 0 ? 1 : SLOTS_PER_METHOD); k++) {
			struct slot *s = calloc(1, sizeof *s);
			s->tag.fn = slot_done;
			s->svc = svc;
			s->m = m;
			if (slot_post(s) != 0)
				free(s);
		}
	}
	pthread_mutex_unlock(&svc->lock);
	svc->nworkers = (int)cfg->workers;
	for (int i = 0; i < svc->nworkers; i++)
		pthread_create(&svc->workers[i], NULL, worker_main, svc);
	if (cfg->metrics_listen[0] && sb_metrics_start(&svc->metrics, cfg->metrics_listen, svc) != 0) {
		sb_svc_stop(svc);
		return SB_EBADCONFIG;
	}
	return 0;
}

int sb_svc__call_begin(struct sb_svc *svc)
{
	int rc = 0;
	pthread_mutex_lock(&svc->lock);
	if (svc->draining)
		rc = SB_ECLOSED;
	else if (svc->calls >= svc->cfg->max_streams)
		rc = SB_EBUSY;
	else
		svc->calls++;
	pthread_mutex_unlock(&svc->lock);
	return rc;
}

void sb_svc__call_end(struct sb_svc *svc)
{
	pthread_mutex_lock(&svc->lock);
	svc->calls--;
	pthread_cond_broadcast(&svc->cond);
	pthread_mutex_unlock(&svc->lock);
}

/* ---- rejecting a call: reply and wait for the close ---- */

struct reject {
	struct sb_rpc_tag sent, closed;
	grpc_call *call;
	int refs, cancelled;
};

static void reject_unref(struct reject *r)
{
	if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		grpc_call_unref(r->call);
		free(r);
	}
}

static void reject_sent(struct sb_rpc_tag *t, int ok)
{
	(void)ok;
	reject_unref((struct reject *)((char *)t - offsetof(struct reject, sent)));
}

static void reject_closed(struct sb_rpc_tag *t, int ok)
{
	(void)ok;
	reject_unref((struct reject *)((char *)t - offsetof(struct reject, closed)));
}

static void reject_md(grpc_call *call, grpc_status_code code, const char *msg, const char *const *md, size_t n);

void sb_svc__reject(struct sb_svc *svc, grpc_call *call, grpc_status_code code, const char *msg)
{
	sb_svc__count_status(svc, code);
	reject_md(call, code, msg, NULL, 0);
}

void sb_svc__reject_retry(struct sb_svc *svc, grpc_call *call, const char *msg, int64_t retry_ms)
{
	char v[32];
	const char *md[2] = {"streambus-retry-after-ms", v};
	sb_svc__count_status(svc, GRPC_STATUS_RESOURCE_EXHAUSTED);
	snprintf(v, sizeof v, "%lld", (long long)retry_ms);
	reject_md(call, GRPC_STATUS_RESOURCE_EXHAUSTED, msg, md, retry_ms > 0 ? 1 : 0);
}

void sb_svc__reject_not_leader(struct sb_svc *svc, grpc_call *call)
{
	char addr[256], msg[400];
	int32_t id = sb_repl_leader(svc->repl, addr, sizeof addr);
	const char *md[2] = {"streambus-leader", addr};
	sb_svc__count_status(svc, GRPC_STATUS_UNAVAILABLE);
	snprintf(msg, sizeof msg, "node %d is a follower: send writes to the leader, node %d at %s",
		 sb_repl_node_id(svc->repl), id, addr[0] ? addr : "(unknown)");
	reject_md(call, GRPC_STATUS_UNAVAILABLE, msg, md, id >= 0 && addr[0] ? 1 : 0);
}

static void reject_md(grpc_call *call, grpc_status_code code, const char *msg, const char *const *md, size_t n)
{
	struct reject *r = calloc(1, sizeof *r);
	if (!r) {
		grpc_call_cancel_with_status(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
		grpc_call_unref(call);
		return;
	}
	r->sent.fn = reject_sent;
	r->closed.fn = reject_closed;
	r->call = call;
	r->refs = 3; /* sent, closed, and this function: a tag may fire on
		      * another worker before this function returns */
	if (sb_rpc_send_status(call, &r->sent, 1, code, msg, md, n) != 0)
		reject_unref(r);
	if (sb_rpc_recv_close(call, &r->closed, &r->cancelled) != 0)
		reject_unref(r);
	reject_unref(r);
}

void sb_svc__error_text(int err, const char *what, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s%s%s", what ? what : "", what ? ": " : "", sb_strerror(err));
}

/* ---- drain and stop ---- */

static int wait_calls(struct sb_svc *svc, int64_t upto, int64_t deadline_ms)
{
	struct timespec ts;
	pthread_mutex_lock(&svc->lock);
	while (svc->calls > upto) {
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		if (now >= deadline_ms)
			break;
		ts.tv_nsec += 20 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&svc->cond, &svc->lock, &ts);
	}
	int64_t left = svc->calls;
	pthread_mutex_unlock(&svc->lock);
	return (int)left;
}

void sb_svc_drain(struct sb_svc *svc)
{
	struct timespec ts;
	pthread_mutex_lock(&svc->lock);
	svc->draining = 1;
	pthread_mutex_unlock(&svc->lock);
	SB_INFO("drain_started", "calls=%lld", (long long)svc->calls);
	/* The server keeps accepting calls while it drains, so that new ones are
	 * answered (UNAVAILABLE; health: NOT_SERVING) instead of being cut off. */
	sb_svc__health_changed(svc);
	sb_svc__consume_drain(svc);
	sb_svc__produce_drain(svc);
	sb_svc__reflection_drain(svc);
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t deadline = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + svc->cfg->shutdown_grace_ms;
	int left = wait_calls(svc, 0, deadline);
	if (left > 0)
		SB_WARN("drain_grace_expired", "calls_left=%d", left);
	/* Requests stay posted: a call that reaches the server until the very
	 * end is matched and answered UNAVAILABLE (an unmatched one would be
	 * cancelled by the core); posts after this fail their tags at once. */
	shutdown_tag.fn = on_shutdown;
	grpc_server_shutdown_and_notify(svc->server, svc->cq, &shutdown_tag);
}

void sb_svc_stop(struct sb_svc *svc)
{
	sb_metrics_stop(svc->metrics); /* scrapes read the state torn down below */
	svc->metrics = NULL;
	if (!svc->draining)
		sb_svc_drain(svc);
	/* Calls matched before the shutdown are still answered (UNAVAILABLE);
	 * cancel only what is left after a short wait. */
	for (int i = 0; i < 400 && !__atomic_load_n(&shutdown_done, __ATOMIC_ACQUIRE); i++) {
		struct timespec d = {0, 5 * 1000000};
		nanosleep(&d, NULL);
	}
	if (!__atomic_load_n(&shutdown_done, __ATOMIC_ACQUIRE))
		SB_WARN("cancelling_calls", "calls=%lld", (long long)svc->calls);
	grpc_server_cancel_all_calls(svc->server);
	while (!__atomic_load_n(&shutdown_done, __ATOMIC_ACQUIRE)) {
		struct timespec d = {0, 5 * 1000000};
		nanosleep(&d, NULL);
	}
	wait_calls(svc, 0, INT64_MAX);
	pthread_mutex_lock(&svc->lock);
	while (svc->follows > 0) /* cancelled above: their tags are on their way */
		pthread_cond_wait(&svc->cond, &svc->lock);
	svc->shutting_down = 1; /* never post to a queue being shut down */
	pthread_mutex_unlock(&svc->lock);
	grpc_completion_queue_shutdown(svc->cq);
	for (int i = 0; i < svc->nworkers; i++)
		pthread_join(svc->workers[i], NULL);
	grpc_server_destroy(svc->server);
	grpc_completion_queue_destroy(svc->cq);
	close_security(svc);
	pthread_mutex_destroy(&svc->lock);
	pthread_cond_destroy(&svc->cond);
	SB_INFO("server_stopped", "port=%d", svc->port);
}
