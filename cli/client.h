/* client.h - the thin gRPC client layer of the streambus CLI. Every direct
 * call into grpc_* lives in client.c, so an API change between gRPC releases
 * touches one file (../shared/GRPC_CORE.md lists the rules followed here:
 * exactly one RECV_INITIAL_METADATA per call, RECV_STATUS_ON_CLIENT in its
 * own batch, one SEND_MESSAGE and one RECV_MESSAGE in flight per call, a
 * fresh byte buffer per send).
 *
 * Threads: a connection (channel + completion queues) belongs to one thread;
 * calls on it are driven by that thread only. Different threads use
 * different connections (the bench does this). sbc_global_init/fini are
 * called once from main.
 *
 * Errors: functions that can fail return 0 or a negative value and, where a
 * struct sbc_status is passed, fill it with a gRPC status code and a message
 * that explains the failure.
 */
#ifndef SB_CLI_CLIENT_H
#define SB_CLI_CLIENT_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Largest message the CLI (and a follower) accepts from the server
 * (GRPC_CORE.md: the default of 4 MiB is below the server's own 8 MiB
 * message limit): one whole batch of the largest size plus framing. */
#define SBC_MAX_RECV_MESSAGE_BYTES ((64 << 20) + (1 << 20))

/* Exit statuses of the streambus program (documented in its --help). */
enum sbc_exit {
	SBC_EXIT_OK = 0,
	SBC_EXIT_ERROR = 1,     /* anything not listed below */
	SBC_EXIT_USAGE = 2,     /* bad command line */
	SBC_EXIT_NOT_FOUND = 3, /* NOT_FOUND: unknown topic, partition or health service */
	SBC_EXIT_UNAVAILABLE =
	    4,                  /* UNAVAILABLE or DEADLINE_EXCEEDED: server unreachable/draining */
	SBC_EXIT_EXISTS = 5,    /* ALREADY_EXISTS */
	SBC_EXIT_INVALID = 6,   /* INVALID_ARGUMENT, OUT_OF_RANGE, FAILED_PRECONDITION */
	SBC_EXIT_EXHAUSTED = 7, /* RESOURCE_EXHAUSTED: too big, busy, disk full */
	SBC_EXIT_NOT_SERVING = 8, /* health: the server answered NOT_SERVING */
	SBC_EXIT_DENIED = 9,    /* UNAUTHENTICATED or PERMISSION_DENIED */
};

/* The outcome of a call: a gRPC status code and the server's message. */
struct sbc_status {
	grpc_status_code code;
	char msg[1024];
};

/* One server connection: a channel, a completion queue for streaming calls
 * (driven with sbc_next) and one for unary calls (plucked by sbc_unary). */
struct sbc_conn {
	grpc_channel *channel;
	grpc_completion_queue *cq;       /* streaming calls, connectivity watches */
	grpc_completion_queue *unary_cq; /* unary calls only */
	char target[256];
	double timeout_s; /* deadline of unary calls and of connecting */
	int watch_tag;    /* address used as the connectivity-watch tag */
};

/* Event kinds delivered by sbc_next. */
enum sbc_ev_kind {
	SBC_EV_START,  /* the call's first batch (initial metadata [+ request + half-close]) */
	SBC_EV_SENT,   /* a sbc_call_send finished: ok = 0 means the call is over */
	SBC_EV_CLOSED, /* a sbc_call_close_send finished */
	SBC_EV_RECV,   /* a message arrived (ev.msg), or the stream ended (ev.msg NULL) */
	SBC_EV_STATUS, /* the call ended: sbc_call_status() is valid */
	SBC_EV_WAKE,   /* sbc_call_wake: another thread has something for the call's owner */
	SBC_EV_KINDS
};

struct sbc_call;

struct sbc_tag {
	struct sbc_call *call;
	enum sbc_ev_kind kind;
};

/* One streaming call. Caller-owned storage: sbc_call_start fills it; it must
 * stay at the same address until sbc_call_idle() is true and sbc_call_fini
 * has run. */
struct sbc_call {
	grpc_call *call;
	struct sbc_tag tags[SBC_EV_KINDS];
	grpc_metadata_array initial_md, trailing_md;
	grpc_status_code status;
	grpc_slice details;
	grpc_byte_buffer *send_bb, *recv_bb;
	int pending;            /* batches started whose tag has not arrived */
	int initial_md_armed;   /* RECV_INITIAL_METADATA was started */
	int start_with_message; /* the START batch carried the first request */
	int send_busy, recv_busy, status_done, closed_send;
	int wake_pending;       /* an SBC_EV_WAKE is queued (any thread) */
	void *user; /* for the caller */
};

/* One completion: which call, what finished, whether it succeeded. */
struct sbc_event {
	struct sbc_call *call;
	enum sbc_ev_kind kind;
	int ok;
	grpc_byte_buffer *msg; /* SBC_EV_RECV: the message (caller frees via sbc_unpack or
	                          grpc_byte_buffer_destroy), NULL at the end of the stream */
};

/* grpc_init / grpc_shutdown, once each, from main. */
void sbc_global_init(void);
void sbc_global_fini(void);

/* How connections authenticate (docs/SECURITY.md). Empty or NULL fields are
 * off. With tls_ca the channel uses TLS and verifies the server against
 * that CA bundle; tls_cert/tls_key add a client certificate (mTLS);
 * tls_server_name overrides the name checked in the server's certificate.
 * token goes with every call as `authorization: Bearer <token>`. */
struct sbc_security {
	const char *tls_ca, *tls_cert, *tls_key, *tls_server_name;
	const char *token;
};
/* Reads the PEM files and applies s to every connection opened afterwards
 * (may be called again, e.g. on SIGHUP; the token is kept from the first
 * call that set one). 0, or -1 with the file and reason in *st. */
int sbc_security_set(const struct sbc_security *s, struct sbc_status *st);

/* Opens a channel to target ("HOST:PORT"; TLS per sbc_security_set) with the CLI's channel
 * arguments (64 MiB receive limit, keepalive pings for long subscriptions).
 * Never fails: connecting happens lazily. Release with sbc_conn_fini. */
void sbc_conn_init(struct sbc_conn *c, const char *target, double timeout_s);
/* Destroys the channel and shuts down and drains both queues. Every call must
 * be finished (sbc_call_fini) before. */
void sbc_conn_fini(struct sbc_conn *c);
/* Waits up to the connection timeout for the channel to connect. Returns 0
 * when it is READY, or when it failed to connect (the next call then fails at
 * once with gRPC's own explanation); -1 with DEADLINE_EXCEEDED in *st if it
 * is still connecting at the deadline. */
int sbc_conn_wait_ready(struct sbc_conn *c, struct sbc_status *st);

/* A unary call with the connection's deadline. On OK, *resp is the unpacked
 * response (free with protobuf_c_message_free_unpacked) and 0 is returned;
 * otherwise -1, *resp NULL, and *st says why (a malformed response is
 * reported as INTERNAL). */
int sbc_unary(struct sbc_conn *c, const char *method, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
              struct sbc_status *st);

/* Starts a streaming call of method on c->cq without a deadline. With first,
 * the request is sent with the initial metadata and, if half_close, the
 * client's half-close too (server streaming); without it (bidi), only the
 * initial metadata goes. Also arms RECV_STATUS_ON_CLIENT and the first
 * RECV_MESSAGE (with RECV_INITIAL_METADATA). 0, or -1 (nothing started; the
 * call need not be finished with sbc_call_fini) with *st filled. */
int sbc_call_start(struct sbc_conn *c, struct sbc_call *k, const char *method,
                   const ProtobufCMessage *first, int half_close, struct sbc_status *st);
/* Sends m (packed into a fresh buffer) with optional GRPC_WRITE_BUFFER_HINT;
 * SBC_EV_SENT follows. -1 if a send is already in flight or the call refused. */
int sbc_call_send(struct sbc_call *k, const ProtobufCMessage *m, int hint);
/* Sends an already packed buffer; ownership moves to the call on success. */
int sbc_call_send_buffer(struct sbc_call *k, grpc_byte_buffer *bb, int hint);
/* Half-closes the sending side (SBC_EV_CLOSED follows). Call only when no
 * send is in flight. */
int sbc_call_close_send(struct sbc_call *k);
/* Arms the next RECV_MESSAGE (SBC_EV_RECV follows). -1 if one is in flight
 * or the stream has ended. */
int sbc_call_recv(struct sbc_call *k);
/* Queues an SBC_EV_WAKE for the call's owner thread; at most one is queued
 * at a time. The only sbc_call function that may run on another thread
 * (e.g. a storage completion telling the owner that data is durable).
 * 0, or -1 if the call no longer takes batches. */
int sbc_call_wake(struct sbc_call *k);
/* Cancels the call (the pending tags still arrive; the status is CANCELLED). */
void sbc_call_cancel(struct sbc_call *k);
/* 1 once the status arrived and no batch is pending: sbc_call_fini may run. */
int sbc_call_idle(const struct sbc_call *k);
/* The status (valid after SBC_EV_STATUS). */
void sbc_call_status(const struct sbc_call *k, struct sbc_status *st);
/* The trailing-metadata value for key, copied into buf; NULL if absent. */
const char *sbc_call_trailer(const struct sbc_call *k, const char *key, char *buf, size_t cap);
/* Releases the call. Only when sbc_call_idle(k). */
void sbc_call_fini(struct sbc_call *k);

/* Waits up to timeout_ms (-1: forever) for the next completion on c->cq.
 * 1 with *ev filled, 0 on timeout. Book-keeping of the call (busy flags,
 * status) is updated before it returns. */
int sbc_next(struct sbc_conn *c, int timeout_ms, struct sbc_event *ev);
/* The same with a timeout in microseconds (-1: forever), for schedules. */
int sbc_next_us(struct sbc_conn *c, int64_t timeout_us, struct sbc_event *ev);

/* Packs m into a new byte buffer. */
grpc_byte_buffer *sbc_pack(const ProtobufCMessage *m);
/* Unpacks and destroys bb. NULL if malformed. */
ProtobufCMessage *sbc_unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb);

/* "NOT_FOUND" etc. */
const char *sbc_status_name(grpc_status_code code);
/* The program's exit status for a failed call with this code. */
int sbc_exit_code(grpc_status_code code);
/* Prints "streambus: <what>: <STATUS>: <message>" on stderr; returns the
 * exit status for it. */
int sbc_report(const char *what, const struct sbc_status *st);

#endif
