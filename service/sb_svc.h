/* sb_svc.h - the gRPC server: one completion queue served by worker
 * threads, registered methods with several requests always outstanding, and
 * one state struct per call that owns its tags (GRPC_CORE.md "Server
 * lifecycle that works").
 *
 * Lifecycle: sb_svc_start() opens nothing itself — it serves the already
 * opened log manager — then sb_svc_drain() (readiness goes NOT_SERVING, new
 * calls are refused, in-flight produce requests finish, subscriptions end
 * with UNAVAILABLE and their resume offset) and sb_svc_stop().
 */
#ifndef SB_SERVICE_SVC_H
#define SB_SERVICE_SVC_H

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <pthread.h>
#include <stdint.h>

#include "sb_error.h"
#include "sb_histo.h"
#include "sb_rpc.h"
#include "sb_settings.h"

struct sb_logmgr;
struct sb_repl;
struct sb_auth;
struct sb_limits;
struct sb_tls;
struct sb_principal;
struct sb_limiter;

/* Who made a call (owned by the call; sb_svc__caller_end releases it). */
struct sb_caller {
	struct sb_principal *who; /* NULL: authentication is off */
	struct sb_limiter *lim;   /* its per-principal / per-connection limits */
};

enum sb_method {
	SB_M_PRODUCE,
	SB_M_CONSUME,
	SB_M_FETCH,
	SB_M_CREATE_TOPIC,
	SB_M_DELETE_TOPIC,
	SB_M_LIST_TOPICS,
	SB_M_DESCRIBE_TOPIC,
	SB_M_CLUSTER_INFO,
	SB_M_HEALTH_CHECK,
	SB_M_HEALTH_WATCH,
	SB_M_REFLECTION_V1,
	SB_M_REFLECTION_V1ALPHA,
	SB_M_REPL_FOLLOW,
	SB_M_REPL_ANNOUNCE,
	SB_M_PROMOTE,
	SB_M_LOOKUP,
	SB_M_COMMIT_OFFSETS,
	SB_M_FETCH_OFFSETS,
	SB_M_COUNT
};

struct sb_svc {
	const struct sb_settings *cfg;
	struct sb_logmgr *mgr;
	struct sb_repl *repl;    /* roles, in-sync set, the Follow streams */
	struct sb_auth *auth;    /* tokens (reloaded on SIGHUP) */
	struct sb_limits *limits; /* per-caller streams, in-flight bytes, rate */
	struct sb_tls *tls;      /* server certificate (reloaded on SIGHUP); NULL: plaintext */
	grpc_server_credentials *creds; /* until the port is added */
	grpc_server *server;
	grpc_completion_queue *cq;
	void *methods[SB_M_COUNT];
	int port;
	pthread_mutex_t lock;    /* guards the fields below and request posting */
	pthread_cond_t cond;
	int draining;            /* new calls refused (UNAVAILABLE); readiness NOT_SERVING */
	int disk_stalled;        /* readiness NOT_SERVING (sb_svc_check_storage) */
	int logs_failed;         /* liveness NOT_SERVING: only a restart recovers a failed log */
	int shutting_down;       /* the gRPC server is being shut down: post no requests */
	int64_t calls;           /* live call states */
	int64_t follows;         /* live Replication/Follow streams (ended by sb_repl_stop) */
	int64_t subscribers;     /* live Consume streams */
	struct sb_watch *watchers; /* Health.Watch streams */
	struct sb_consume *consumers; /* live Consume streams, for drain */
	struct sb_produce *producers; /* live Produce streams, for drain */
	pthread_t workers[64];
	int nworkers;
	uint32_t rr;             /* round robin for partition -1 without keys */
	/* Metrics (sb_metrics.c reads them; relaxed atomics). */
	uint64_t failed[17];     /* requests answered with each non-OK status code */
	struct sb_histo ack_histo; /* produce: request received -> acknowledged */
	struct sb_metrics *metrics; /* the /metrics endpoint, if --metrics-listen */
};

/* Re-reads the storage's health (sb_logmgr_health): readiness turns
 * NOT_SERVING while a write or fdatasync has been in flight longer than
 * --disk-stall-ms (a frozen or dying disk: the node cannot acknowledge
 * anything), and liveness while a log is in its sticky failed state (a
 * failed fsync: only a restart, which recovers from what is on disk, brings
 * the partition back). Logs each transition and tells Health.Watch streams.
 * streambusd calls it every second. */
void sb_svc_check_storage(struct sb_svc *svc);

/* The answer of a unary call (sb_svc_unary.c). A handler that cannot answer
 * at once (it waits for an append's acknowledgement) sets deferred, keeps
 * call and who, and answers later, from any thread, with
 * sb_svc__unary_reply (which owns bb and ends the call). */
struct sb_unary_reply {
	grpc_byte_buffer *bb;
	grpc_status_code code;
	char msg[512];
	int deferred;
	grpc_call *call;
	struct sb_caller *who;
};
void sb_svc__unary_reply(struct sb_svc *svc, grpc_call *call, struct sb_caller *who, struct sb_unary_reply *r);

/* Consumer groups (sb_svc_groups.c): offsets kept in the internal topic
 * SB_OFFSETS_TOPIC, one keyed record per (group, topic, partition). */
struct Streambus__V1__CommitOffsetsRequest;
struct Streambus__V1__FetchOffsetsRequest;
void sb_svc__commit_offsets(struct sb_svc *svc, const struct Streambus__V1__CommitOffsetsRequest *q,
			    struct sb_unary_reply *r);
void sb_svc__fetch_offsets(struct sb_svc *svc, const struct Streambus__V1__FetchOffsetsRequest *q,
			   struct sb_unary_reply *r);
/* The group's committed offset of topic/partition in *offset: 0, or
 * SB_ENOTFOUND (no commit), or an error. */
int sb_svc__committed_offset(struct sb_svc *svc, const char *group, const char *topic, int32_t partition,
			     int64_t *offset) SB_MUST_CHECK;

/* Counts a request answered with code (no-op for OK). */
static inline void sb_svc__count_status(struct sb_svc *svc, grpc_status_code code)
{
	if (code > 0 && code < 17)
		__atomic_fetch_add(&svc->failed[code], 1, __ATOMIC_RELAXED);
}

/* Creates the server on cfg->listen, registers every method, starts the
 * workers. svc->port gets the bound port. repl answers who leads, serves
 * Replication/Follow and gates ACKS_ALL. 0, or SB_EBADCONFIG (cannot bind),
 * -ENOMEM. */
int sb_svc_start(struct sb_svc *svc, const struct sb_settings *cfg, struct sb_logmgr *mgr,
		 struct sb_repl *repl) SB_MUST_CHECK;
/* Graceful drain: stop accepting calls, let produce streams finish for up to
 * the grace period, end subscriptions with UNAVAILABLE + resume offset. */
void sb_svc_drain(struct sb_svc *svc);
/* Cancels what is left, shuts the server and queue down, joins workers. */
void sb_svc_stop(struct sb_svc *svc);
/* SIGHUP: reads the tokens file again and marks the TLS files for reading
 * at the next handshake. A file that fails to load leaves the old one in
 * force (logged). */
void sb_svc_reload(struct sb_svc *svc);

/* ---- for the call modules (service/) ---- */

/* Counts a call state in/out (refuses new ones while draining or at
 * max-streams: returns SB_ECLOSED / SB_EBUSY). */
int sb_svc__call_begin(struct sb_svc *svc) SB_MUST_CHECK;
void sb_svc__call_end(struct sb_svc *svc);

/* Status code and a caller-facing message for err (with context). */
void sb_svc__error_text(int err, const char *what, char *buf, size_t cap);

/* Ends a caller: its limiter stream, its principal reference, the struct
 * itself (NULL is fine). Handlers call it beside sb_svc__call_end. */
void sb_svc__caller_end(struct sb_svc *svc, struct sb_caller *c);
/* Produce: may c produce to topic, and is it within its limits for bytes
 * more? 0, SB_EDENIED, or SB_EBUSY with *retry_ms. sb_svc__produce_done
 * returns the bytes once answered. */
int sb_svc__produce_admit(struct sb_svc *svc, struct sb_caller *c, const char *topic, int64_t bytes,
			  int64_t *retry_ms) SB_MUST_CHECK;
void sb_svc__produce_done(struct sb_svc *svc, struct sb_caller *c, int64_t bytes);

/* Handlers: each takes ownership of call, payload (may be NULL) and the
 * caller, already authenticated and counted (sb_svc__call_begin done). */
void sb_svc__unary(struct sb_svc *svc, enum sb_method m, grpc_call *call, grpc_byte_buffer *payload,
		   struct sb_caller *who);
void sb_svc__produce(struct sb_svc *svc, grpc_call *call, struct sb_caller *who);
void sb_svc__consume(struct sb_svc *svc, grpc_call *call, grpc_byte_buffer *payload, struct sb_caller *who);
void sb_svc__health_watch(struct sb_svc *svc, grpc_call *call, grpc_byte_buffer *payload);
void sb_svc__reflection(struct sb_svc *svc, enum sb_method m, grpc_call *call);
/* Ends every subscription / watch (drain). */
void sb_svc__consume_drain(struct sb_svc *svc);
void sb_svc__produce_drain(struct sb_svc *svc);
void sb_svc__reflection_drain(struct sb_svc *svc);
/* Ends the subscriptions of a topic that was just deleted (NOT_FOUND). */
struct sb_topic;
void sb_svc__consume_topic_deleted(struct sb_svc *svc, const struct sb_topic *t);
void sb_svc__health_changed(struct sb_svc *svc);

/* Rejects a call at once with code/msg and frees it (no other state). */
void sb_svc__reject(struct sb_svc *svc, grpc_call *call, grpc_status_code code, const char *msg);
/* RESOURCE_EXHAUSTED with retry advice: streambus-retry-after-ms trailer. */
void sb_svc__reject_retry(struct sb_svc *svc, grpc_call *call, const char *msg, int64_t retry_ms);
/* Rejects a write sent to a node that does not lead: UNAVAILABLE, with the
 * leader's address in the trailing metadata key streambus-leader. */
void sb_svc__reject_not_leader(struct sb_svc *svc, grpc_call *call);

#endif
