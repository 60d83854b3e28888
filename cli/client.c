/* client.c - the thin gRPC client layer (see client.h). */
#include "client.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEM_MAX (1u << 20)

/* The security settings of every new connection (sbc_security_set). */
static struct {
	pthread_mutex_t lock;
	char *ca, *cert, *key; /* PEM contents; ca NULL: plaintext */
	char server_name[256];
	char *bearer;          /* "Bearer <token>", or NULL */
} sec = {.lock = PTHREAD_MUTEX_INITIALIZER};

static char *read_pem(const char *path, struct sbc_status *st)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0;
	if (!f) {
		st->code = GRPC_STATUS_INVALID_ARGUMENT;
		snprintf(st->msg, sizeof st->msg, "%s: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(PEM_MAX + 1);
	if (buf)
		n = fread(buf, 1, PEM_MAX + 1, f);
	if (buf && n > 0 && n <= PEM_MAX) {
		buf[n] = 0;
		if (strstr(buf, "-----BEGIN")) {
			fclose(f);
			return buf;
		}
	}
	st->code = GRPC_STATUS_INVALID_ARGUMENT;
	snprintf(st->msg, sizeof st->msg, "%s: not a PEM file (or larger than 1 MiB)", path);
	free(buf);
	fclose(f);
	return NULL;
}

int sbc_security_set(const struct sbc_security *s, struct sbc_status *st)
{
	char *ca = NULL, *cert = NULL, *key = NULL;
	int tls = s->tls_ca && *s->tls_ca;
	int client_cert = (s->tls_cert && *s->tls_cert) || (s->tls_key && *s->tls_key);
	st->code = GRPC_STATUS_OK;
	st->msg[0] = 0;
	if (client_cert && (!s->tls_cert || !*s->tls_cert || !s->tls_key || !*s->tls_key || !tls)) {
		st->code = GRPC_STATUS_INVALID_ARGUMENT;
		snprintf(st->msg, sizeof st->msg, "a client certificate needs --tls-cert, --tls-key and --tls-ca");
		return -1;
	}
	if (tls && !(ca = read_pem(s->tls_ca, st)))
		return -1;
	if (client_cert && (!(cert = read_pem(s->tls_cert, st)) || !(key = read_pem(s->tls_key, st)))) {
		free(ca);
		free(cert);
		return -1;
	}
	pthread_mutex_lock(&sec.lock);
	free(sec.ca);
	free(sec.cert);
	free(sec.key);
	sec.ca = ca;
	sec.cert = cert;
	sec.key = key;
	snprintf(sec.server_name, sizeof sec.server_name, "%s", s->tls_server_name ? s->tls_server_name : "");
	if (!sec.bearer && s->token && *s->token) {
		size_t n = strlen(s->token) + 8;
		if ((sec.bearer = malloc(n)))
			snprintf(sec.bearer, n, "Bearer %s", s->token);
	}
	pthread_mutex_unlock(&sec.lock);
	return 0;
}

/* The metadata every call sends: the token, if one is set. The value points
 * at sec.bearer, which never changes once set. */
static size_t call_metadata(grpc_metadata *md)
{
	if (!sec.bearer)
		return 0;
	memset(md, 0, sizeof *md);
	md->key = grpc_slice_from_static_string("authorization");
	md->value = grpc_slice_from_static_string(sec.bearer);
	return 1;
}

void sbc_global_init(void)
{
	grpc_init();
}

void sbc_global_fini(void)
{
	grpc_shutdown_blocking();
}

static gpr_timespec deadline_after_ms(int64_t ms)
{
	if (ms < 0)
		return gpr_inf_future(GPR_CLOCK_MONOTONIC);
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

void sbc_conn_init(struct sbc_conn *c, const char *target, double timeout_s)
{
	grpc_arg args[7];
	memset(c, 0, sizeof *c);
	memset(args, 0, sizeof args);
	snprintf(c->target, sizeof c->target, "%s", target);
	c->timeout_s = timeout_s;
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[0].value.integer = SBC_MAX_RECV_MESSAGE_BYTES;
	/* Keepalive: a follow-the-tail subscription notices a dead server or a
	 * dropped NAT mapping; the server allows pings every 5 s. */
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = GRPC_ARG_KEEPALIVE_TIME_MS;
	args[1].value.integer = 30000;
	args[2].type = GRPC_ARG_INTEGER;
	args[2].key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS;
	args[2].value.integer = 10000;
	args[3].type = GRPC_ARG_INTEGER;
	args[3].key = GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA;
	args[3].value.integer = 0;
	/* Each channel gets its own TCP connection (the bench opens one channel
	 * per stream and means it). */
	args[4].type = GRPC_ARG_INTEGER;
	args[4].key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
	args[4].value.integer = 1;
	args[5].type = GRPC_ARG_INTEGER;
	args[5].key = GRPC_ARG_ENABLE_RETRIES;
	args[5].value.integer = 0;
	grpc_channel_args ca = {.num_args = 6, .args = args};
	grpc_channel_credentials *creds;
	pthread_mutex_lock(&sec.lock);
	if (sec.ca) {
		grpc_ssl_pem_key_cert_pair pair = {.private_key = sec.key, .cert_chain = sec.cert};
		creds = grpc_ssl_credentials_create(sec.ca, sec.cert ? &pair : NULL, NULL, NULL);
		if (sec.server_name[0]) {
			args[6].type = GRPC_ARG_STRING;
			args[6].key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
			args[6].value.string = sec.server_name;
			ca.num_args = 7;
		}
	} else {
		creds = grpc_insecure_credentials_create();
	}
	c->channel = grpc_channel_create(target, creds, &ca); /* copies the args */
	pthread_mutex_unlock(&sec.lock);
	grpc_channel_credentials_release(creds);
	c->cq = grpc_completion_queue_create_for_next(NULL);
	c->unary_cq = grpc_completion_queue_create_for_pluck(NULL);
}

void sbc_conn_fini(struct sbc_conn *c)
{
	if (c->channel)
		grpc_channel_destroy(c->channel);
	c->channel = NULL;
	if (c->cq) {
		grpc_completion_queue_shutdown(c->cq);
		while (grpc_completion_queue_next(c->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
		           .type != GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(c->cq);
		c->cq = NULL;
	}
	if (c->unary_cq) {
		grpc_completion_queue_shutdown(c->unary_cq);
		while (grpc_completion_queue_pluck(c->unary_cq, &c->watch_tag,
		                                   gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
		           .type != GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(c->unary_cq);
		c->unary_cq = NULL;
	}
}

int sbc_conn_wait_ready(struct sbc_conn *c, struct sbc_status *st)
{
	gpr_timespec deadline = deadline_after_ms((int64_t)(c->timeout_s * 1000));
	for (;;) {
		grpc_connectivity_state s = grpc_channel_check_connectivity_state(c->channel, 1);
		if (s == GRPC_CHANNEL_READY || s == GRPC_CHANNEL_TRANSIENT_FAILURE ||
		    s == GRPC_CHANNEL_SHUTDOWN)
			return 0; /* a failure is explained by the call that follows */
		grpc_channel_watch_connectivity_state(c->channel, s, deadline, c->cq,
		                                      &c->watch_tag);
		grpc_event ev =
		    grpc_completion_queue_next(c->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		if (ev.type != GRPC_OP_COMPLETE || ev.tag != &c->watch_tag || !ev.success) {
			st->code = GRPC_STATUS_DEADLINE_EXCEEDED;
			snprintf(st->msg, sizeof st->msg, "could not connect to %s within %g s",
			         c->target, c->timeout_s);
			return -1;
		}
	}
}

grpc_byte_buffer *sbc_pack(const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	grpc_slice s = grpc_slice_malloc(n);
	protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

ProtobufCMessage *sbc_unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb)
{
	grpc_byte_buffer_reader r;
	ProtobufCMessage *m = NULL;
	if (!bb)
		return NULL;
	if (grpc_byte_buffer_reader_init(&r, bb)) {
		grpc_slice all =
		    grpc_byte_buffer_reader_readall(&r); /* one slice even if bb had many */
		grpc_byte_buffer_reader_destroy(&r);
		m = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(all),
		                              GRPC_SLICE_START_PTR(all));
		grpc_slice_unref(all);
	}
	grpc_byte_buffer_destroy(bb);
	return m;
}

static void copy_details(grpc_slice details, struct sbc_status *st)
{
	size_t n = GRPC_SLICE_LENGTH(details);
	if (n >= sizeof st->msg)
		n = sizeof st->msg - 1;
	memcpy(st->msg, GRPC_SLICE_START_PTR(details), n);
	st->msg[n] = 0;
}

int sbc_unary(struct sbc_conn *c, const char *method, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
              struct sbc_status *st)
{
	grpc_metadata_array initial_md, trailing_md;
	grpc_byte_buffer *in = NULL, *out = sbc_pack(req);
	grpc_slice details = grpc_empty_slice();
	grpc_op ops[5];
	int tag_main, tag_status;
	gpr_timespec deadline =
	    gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
	                 gpr_time_from_millis((int64_t)(c->timeout_s * 1000), GPR_TIMESPAN));
	grpc_slice m = grpc_slice_from_copied_string(method);
	grpc_call *call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS,
	                                           c->unary_cq, m, NULL, deadline, NULL);
	grpc_slice_unref(m);
	*resp = NULL;
	st->code = GRPC_STATUS_OK;
	st->msg[0] = 0;
	grpc_metadata_array_init(&initial_md);
	grpc_metadata_array_init(&trailing_md);
	memset(ops, 0, sizeof ops);
	grpc_metadata auth;
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = call_metadata(&auth);
	ops[0].data.send_initial_metadata.metadata = &auth;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = out;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &in;
	grpc_call_error e1 = grpc_call_start_batch(call, ops, 5, &tag_main, NULL);
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &trailing_md;
	ops[0].data.recv_status_on_client.status = &st->code;
	ops[0].data.recv_status_on_client.status_details = &details;
	grpc_call_error e2 = e1 == GRPC_CALL_OK
	                         ? grpc_call_start_batch(call, ops, 1, &tag_status, NULL)
	                         : GRPC_CALL_ERROR;
	if (e1 == GRPC_CALL_OK)
		grpc_completion_queue_pluck(c->unary_cq, &tag_main,
		                            gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	if (e2 == GRPC_CALL_OK) {
		grpc_completion_queue_pluck(c->unary_cq, &tag_status,
		                            gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		copy_details(details, st);
	} else {
		grpc_call_cancel(call, NULL);
		st->code = GRPC_STATUS_INTERNAL;
		snprintf(st->msg, sizeof st->msg, "could not start the call (grpc_call_error %d)",
		         (int)(e1 ? e1 : e2));
	}
	if (st->code == GRPC_STATUS_OK) {
		*resp = sbc_unpack(resp_desc, in);
		in = NULL;
		if (!*resp) {
			st->code = GRPC_STATUS_INTERNAL;
			snprintf(st->msg, sizeof st->msg, "malformed or missing %s from the server",
			         resp_desc->name);
		}
	}
	if (in)
		grpc_byte_buffer_destroy(in);
	grpc_byte_buffer_destroy(out);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&initial_md);
	grpc_metadata_array_destroy(&trailing_md);
	grpc_call_unref(call);
	return st->code == GRPC_STATUS_OK ? 0 : -1;
}

static int start(struct sbc_call *k, const grpc_op *ops, size_t n, enum sbc_ev_kind kind)
{
	if (grpc_call_start_batch(k->call, ops, n, &k->tags[kind], NULL) != GRPC_CALL_OK)
		return -1;
	__atomic_add_fetch(&k->pending, 1, __ATOMIC_ACQ_REL);
	return 0;
}

int sbc_call_start(struct sbc_conn *c, struct sbc_call *k, const char *method,
                   const ProtobufCMessage *first, int half_close, struct sbc_status *st)
{
	grpc_op ops[3];
	size_t n = 0;
	void *user = k->user;
	memset(k, 0, sizeof *k);
	k->user = user;
	for (int i = 0; i < SBC_EV_KINDS; i++) {
		k->tags[i].call = k;
		k->tags[i].kind = (enum sbc_ev_kind)i;
	}
	grpc_metadata_array_init(&k->initial_md);
	grpc_metadata_array_init(&k->trailing_md);
	k->details = grpc_empty_slice();
	grpc_slice m = grpc_slice_from_copied_string(method);
	k->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, m,
	                                   NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	grpc_slice_unref(m);
	memset(ops, 0, sizeof ops);
	grpc_metadata auth;
	ops[n].data.send_initial_metadata.count = call_metadata(&auth);
	ops[n].data.send_initial_metadata.metadata = &auth;
	ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (first) {
		k->start_with_message = 1;
		k->send_busy = 1; /* until SBC_EV_START: one SEND_MESSAGE at a time */
		k->send_bb = sbc_pack(first);
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = k->send_bb;
		if (half_close) {
			ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
			k->closed_send = 1;
		}
	}
	if (start(k, ops, n, SBC_EV_START) != 0) {
		st->code = GRPC_STATUS_INTERNAL;
		snprintf(st->msg, sizeof st->msg, "could not start %s", method);
		if (k->send_bb)
			grpc_byte_buffer_destroy(k->send_bb);
		k->send_bb = NULL;
		k->send_busy = 0;
		sbc_call_fini(k);
		return -1;
	}
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &k->trailing_md;
	ops[0].data.recv_status_on_client.status = &k->status;
	ops[0].data.recv_status_on_client.status_details = &k->details;
	if (start(k, ops, 1, SBC_EV_STATUS) != 0) { /* never seen: treat the call as over */
		grpc_call_cancel(k->call, NULL);
		k->status_done = 1;
		k->status = GRPC_STATUS_INTERNAL;
		return 0;
	}
	if (sbc_call_recv(k) != 0)
		grpc_call_cancel(k->call, NULL);
	return 0;
}

int sbc_call_send_buffer(struct sbc_call *k, grpc_byte_buffer *bb, int hint)
{
	grpc_op op;
	if (k->send_busy || k->closed_send || k->status_done)
		return -1;
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_SEND_MESSAGE;
	op.flags = hint ? GRPC_WRITE_BUFFER_HINT : 0;
	op.data.send_message.send_message = bb;
	k->send_bb = bb;
	if (start(k, &op, 1, SBC_EV_SENT) != 0) {
		k->send_bb = NULL;
		return -1;
	}
	k->send_busy = 1;
	return 0;
}

int sbc_call_send(struct sbc_call *k, const ProtobufCMessage *m, int hint)
{
	grpc_byte_buffer *bb = sbc_pack(m);
	int rc = sbc_call_send_buffer(k, bb, hint);
	if (rc)
		grpc_byte_buffer_destroy(bb);
	return rc;
}

int sbc_call_close_send(struct sbc_call *k)
{
	grpc_op op;
	if (k->closed_send || k->send_busy)
		return -1;
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	if (start(k, &op, 1, SBC_EV_CLOSED) != 0)
		return -1;
	k->closed_send = 1;
	return 0;
}

int sbc_call_recv(struct sbc_call *k)
{
	grpc_op ops[2];
	size_t n = 0;
	if (k->recv_busy || k->status_done)
		return -1;
	memset(ops, 0, sizeof ops);
	if (!k->initial_md_armed) {
		ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
		ops[n++].data.recv_initial_metadata.recv_initial_metadata = &k->initial_md;
	}
	ops[n].op = GRPC_OP_RECV_MESSAGE;
	ops[n++].data.recv_message.recv_message = &k->recv_bb;
	if (start(k, ops, n, SBC_EV_RECV) != 0)
		return -1;
	k->initial_md_armed = 1;
	k->recv_busy = 1;
	return 0;
}

int sbc_call_wake(struct sbc_call *k)
{
	if (__atomic_exchange_n(&k->wake_pending, 1, __ATOMIC_ACQ_REL))
		return 0; /* one is queued already */
	__atomic_add_fetch(&k->pending, 1, __ATOMIC_ACQ_REL);
	if (grpc_call_start_batch(k->call, NULL, 0, &k->tags[SBC_EV_WAKE], NULL) == GRPC_CALL_OK)
		return 0;
	__atomic_sub_fetch(&k->pending, 1, __ATOMIC_ACQ_REL);
	__atomic_store_n(&k->wake_pending, 0, __ATOMIC_RELEASE);
	return -1;
}

void sbc_call_cancel(struct sbc_call *k)
{
	if (k->call)
		grpc_call_cancel(k->call, NULL);
}

int sbc_call_idle(const struct sbc_call *k)
{
	return k->status_done && __atomic_load_n(&k->pending, __ATOMIC_ACQUIRE) == 0;
}

void sbc_call_status(const struct sbc_call *k, struct sbc_status *st)
{
	st->code = k->status;
	copy_details(k->details, st);
}

const char *sbc_call_trailer(const struct sbc_call *k, const char *key, char *buf, size_t cap)
{
	size_t klen = strlen(key);
	for (size_t i = 0; i < k->trailing_md.count; i++) {
		const grpc_slice *mk = &k->trailing_md.metadata[i].key;
		if (GRPC_SLICE_LENGTH(*mk) == klen &&
		    memcmp(GRPC_SLICE_START_PTR(*mk), key, klen) == 0) {
			size_t n = GRPC_SLICE_LENGTH(k->trailing_md.metadata[i].value);
			if (n >= cap)
				n = cap - 1;
			memcpy(buf, GRPC_SLICE_START_PTR(k->trailing_md.metadata[i].value), n);
			buf[n] = 0;
			return buf;
		}
	}
	return NULL;
}

void sbc_call_fini(struct sbc_call *k)
{
	if (k->call)
		grpc_call_unref(k->call);
	k->call = NULL;
	if (k->send_bb)
		grpc_byte_buffer_destroy(k->send_bb);
	if (k->recv_bb)
		grpc_byte_buffer_destroy(k->recv_bb);
	k->send_bb = k->recv_bb = NULL;
	grpc_metadata_array_destroy(&k->initial_md);
	grpc_metadata_array_destroy(&k->trailing_md);
	grpc_slice_unref(k->details);
	k->details = grpc_empty_slice();
}

int sbc_next(struct sbc_conn *c, int timeout_ms, struct sbc_event *ev)
{
	return sbc_next_us(c, timeout_ms < 0 ? -1 : (int64_t)timeout_ms * 1000, ev);
}

int sbc_next_us(struct sbc_conn *c, int64_t timeout_us, struct sbc_event *ev)
{
	/* A zero timeout must be gpr_inf_past: "now + 0" is rounded up to a 1 ms
	 * epoll_wait, which once capped each stream at ~700 messages/s. */
	gpr_timespec deadline = timeout_us < 0 ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
	                        : timeout_us == 0
	                            ? gpr_inf_past(GPR_CLOCK_MONOTONIC)
	                            : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
	                                           gpr_time_from_micros(timeout_us, GPR_TIMESPAN));
	grpc_event e = grpc_completion_queue_next(c->cq, deadline, NULL);
	memset(ev, 0, sizeof *ev);
	if (e.type != GRPC_OP_COMPLETE)
		return 0;
	struct sbc_tag *t = e.tag;
	struct sbc_call *k = t->call;
	ev->call = k;
	ev->kind = t->kind;
	ev->ok = e.success;
	__atomic_sub_fetch(&k->pending, 1, __ATOMIC_ACQ_REL);
	switch (t->kind) {
	case SBC_EV_WAKE:
		__atomic_store_n(&k->wake_pending, 0, __ATOMIC_RELEASE);
		break;
	case SBC_EV_START:
		/* Without a first message (bidi) the START batch is only the initial
		 * metadata: a SEND_MESSAGE started meanwhile is still in flight. */
		if (!k->start_with_message)
			break;
		/* fall through */
	case SBC_EV_SENT:
		if (k->send_bb)
			grpc_byte_buffer_destroy(k->send_bb);
		k->send_bb = NULL;
		k->send_busy = 0;
		break;
	case SBC_EV_RECV:
		k->recv_busy = 0;
		ev->msg = k->recv_bb;
		k->recv_bb = NULL;
		if (!e.success && ev->msg) {
			grpc_byte_buffer_destroy(ev->msg);
			ev->msg = NULL;
		}
		break;
	case SBC_EV_STATUS:
		k->status_done = 1;
		break;
	default:
		break;
	}
	return 1;
}

static const char *const status_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *sbc_status_name(grpc_status_code code)
{
	if ((unsigned)code < sizeof status_names / sizeof *status_names)
		return status_names[code];
	return "UNKNOWN_STATUS";
}

int sbc_exit_code(grpc_status_code code)
{
	switch (code) {
	case GRPC_STATUS_OK:
		return SBC_EXIT_OK;
	case GRPC_STATUS_NOT_FOUND:
		return SBC_EXIT_NOT_FOUND;
	case GRPC_STATUS_UNAVAILABLE:
	case GRPC_STATUS_DEADLINE_EXCEEDED:
		return SBC_EXIT_UNAVAILABLE;
	case GRPC_STATUS_ALREADY_EXISTS:
		return SBC_EXIT_EXISTS;
	case GRPC_STATUS_INVALID_ARGUMENT:
	case GRPC_STATUS_OUT_OF_RANGE:
	case GRPC_STATUS_FAILED_PRECONDITION:
		return SBC_EXIT_INVALID;
	case GRPC_STATUS_RESOURCE_EXHAUSTED:
		return SBC_EXIT_EXHAUSTED;
	case GRPC_STATUS_UNAUTHENTICATED:
	case GRPC_STATUS_PERMISSION_DENIED:
		return SBC_EXIT_DENIED;
	default:
		return SBC_EXIT_ERROR;
	}
}

int sbc_report(const char *what, const struct sbc_status *st)
{
	if (st->msg[0])
		fprintf(stderr, "streambus: %s: %s: %s\n", what, sbc_status_name(st->code),
		        st->msg);
	else
		fprintf(stderr, "streambus: %s: %s\n", what, sbc_status_name(st->code));
	return sbc_exit_code(st->code);
}
