/* produce.c - streambus produce: stdin lines -> pipelined ProduceRequests on
 * one bidi stream. Records are batched per target partition (up to --batch
 * records or SBC_PRODUCE_REQUEST_BYTES, flushed early whenever stdin has no
 * more data ready); up to --window requests are in flight; one SEND_MESSAGE
 * at a time. One thread: stdin and the completion queue are checked in turn
 * (a short wait on one, a poll of the other), see produce_loop.
 *
 * Leader redirect: a follower refuses the whole stream at its start with
 * UNAVAILABLE and the leader's address in the streambus-leader trailer.
 * Until the stream's first request is answered it is the only one in
 * flight and its records stay in their batch (p->held); if the stream then
 * ends with that refusal, nothing on it was written, and run() sends the
 * same records again on a stream to the leader, once. After the first
 * answer the stream is never redirected, so no record is sent twice. */
#include "cli.h"
#include "client.h"
#include "input.h"

#include "sb_crc32c.h"
#include "streambus/v1/streambus.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Bytes of record data per request before it is sent: well under the
 * server's default 8 MiB message limit, big enough to amortise a message. */
#define SBC_PRODUCE_REQUEST_BYTES ((size_t)4 << 20)
#define SBC_PRODUCE_BATCH_MAX 100000 /* the server's default max-records-per-request */
#define SBC_PRODUCE_WINDOW_MAX 4096
#define SBC_PRODUCE_HEADERS_MAX 64 /* per record, the server's bound */
/* Failed responses printed before the rest are only counted. */
#define SBC_PRODUCE_ERRORS_PRINTED 20

static const char produce_usage[] =
    "usage: streambus produce -t TOPIC [-p PARTITION] [-K SEP] [-H NAME=VALUE]...\n"
    "                         [--acks none|leader|all] [--batch N] [--window N]\n"
    "\n"
    "Reads stdin; each line (without its newline) is one record value. Empty lines are\n"
    "empty records; lines may be of any length up to the server's message limit.\n"
    "  -t, --topic TOPIC      topic to produce to\n"
    "  -p, --partition N      partition (default: by key hash with -K, else the server's\n"
    "                         round robin)\n"
    "  -K, --key-delimiter SEP  the part of a line before the first SEP is the record key\n"
    "                         (escapes: \\t \\\\ \\xHH); lines without SEP have no key\n"
    "  -H, --header NAME=VALUE  add a header to every record (repeatable)\n"
    "  --tombstones           with -K, a line with a key and an empty value deletes the key\n"
    "                         (a tombstone: Lookup and compaction forget it)\n"
    "  --acks MODE            leader (default), all, or none (no responses unless errors)\n"
    "  --batch N              records per request (default 100, at most 100000)\n"
    "  --window N             requests in flight on the stream (default 16)\n"
    "\n"
    "Prints 'partition P offsets A-B' per acknowledged request on stdout, errors on\n"
    "stderr, and a summary on stderr. Ctrl-C stops reading and waits for the answers.\n"
    "Sent to a follower, the stream is refused before anything is written; produce\n"
    "then sends everything to the leader that follower names (a note on stderr says\n"
    "so). For that, the first request is sent alone and waits for its answer (with\n"
    "--acks none it is acknowledged by the leader, silently) before the rest follow.\n"
    "Exit status: 0 if every request succeeded, else the status of the first failure\n"
    "(see 'streambus --help').\n";

struct rec_ref {
	size_t koff, klen, voff, vlen;
	int has_key;
};

/* Records waiting to be sent to one partition (-1: the server chooses). */
struct pbatch {
	int32_t partition;
	char *data;
	size_t len, cap;
	struct rec_ref *recs;
	size_t n;
};

struct slot {
	uint64_t id;
	uint32_t records;
	int used;
	int quiet; /* the probe of an --acks none stream: its answer is not printed */
};

struct producer {
	/* settings */
	const char *topic;
	int32_t partition; /* -1: not given */
	char sep[16];
	int sep_len;
	Streambus__V1__Header headers[SBC_PRODUCE_HEADERS_MAX];
	Streambus__V1__Header *header_ptrs[SBC_PRODUCE_HEADERS_MAX];
	size_t n_headers;
	Streambus__V1__Acks acks;
	uint32_t batch_records;
	uint32_t window;
	int tombstones; /* keyed empty lines are tombstones */
	/* state */
	struct sbc_conn conn;
	struct sbc_call call;
	struct sbc_input in;
	struct pbatch *batches; /* [n_batches]: per partition when hashing keys, else one */
	int32_t n_batches;
	int32_t rr; /* where the flush scan starts */
	struct slot *slots;
	uint32_t inflight;
	uint64_t next_id;
	int input_done, stream_over;
	/* leader redirect (see the top of the file) */
	int may_redirect;    /* this stream's refusal may still be followed */
	struct pbatch *held; /* the batch of the unanswered first request */
	/* results */
	uint64_t records_sent, records_acked, requests_sent, requests_acked, requests_failed;
	uint64_t records_failed;
	grpc_status_code first_error;
	int input_error;
};

static int batch_add(struct producer *p, struct pbatch *b, const char *line, size_t len)
{
	const char *k = p->sep_len ? memmem(line, len, p->sep, (size_t)p->sep_len) : NULL;
	if (!b->data || b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 65536;
		while (cap < b->len + len)
			cap *= 2;
		char *d = realloc(b->data, cap);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	struct rec_ref *r = &b->recs[b->n++];
	memcpy(b->data + b->len, line, len);
	r->has_key = k != NULL;
	r->koff = b->len;
	r->klen = k ? (size_t)(k - line) : 0;
	r->voff = k ? b->len + r->klen + (size_t)p->sep_len : b->len;
	r->vlen = k ? len - r->klen - (size_t)p->sep_len : len;
	b->len += len;
	return 0;
}

static int batch_full(const struct producer *p, const struct pbatch *b)
{
	return b->n >= p->batch_records || b->len >= SBC_PRODUCE_REQUEST_BYTES;
}

/* Which batch a line goes to: by the key's hash (the server's own rule,
 * CRC32C mod partitions) when keys are hashed client-side, else the one. */
static struct pbatch *batch_for(struct producer *p, const char *line, size_t len)
{
	if (p->n_batches == 1)
		return &p->batches[0];
	const char *k = memmem(line, len, p->sep, (size_t)p->sep_len);
	if (!k || k == line) /* no key: the server's round robin */
		return &p->batches[p->n_batches - 1];
	return &p->batches[sb_crc32c(line, (size_t)(k - line)) % (uint32_t)(p->n_batches - 1)];
}

/* Reads stdin until a batch is full, no data is ready, or the end. Returns
 * 1 if some batch is full, 0 otherwise; sets input_done at the end. */
static int ingest(struct producer *p)
{
	const char *line;
	size_t len;
	for (;;) {
		if (cli_interrupted) {
			p->input_done = 1;
			return 0;
		}
		int rc = sbc_input_line(&p->in, 0, &line, &len);
		if (rc == SBC_IN_AGAIN)
			return 0;
		if (rc != SBC_IN_LINE) {
			if (rc == SBC_IN_TOO_LONG)
				fprintf(stderr,
				        "streambus: produce: a line is longer than %zu bytes: "
				        "stopping\n",
				        SBC_LINE_BYTES_MAX);
			else if (rc == SBC_IN_ERROR)
				fprintf(stderr, "streambus: produce: reading stdin: %s\n",
				        strerror(errno));
			p->input_error |= rc != SBC_IN_EOF;
			p->input_done = 1;
			return 0;
		}
		struct pbatch *b = batch_for(p, line, len);
		if (batch_add(p, b, line, len)) {
			fprintf(stderr, "streambus: produce: out of memory\n");
			p->input_error = 1;
			p->input_done = 1;
			return 0;
		}
		if (batch_full(p, b))
			return 1;
	}
}

/* The batch to send next: a full one, or with flush any non-empty one. */
static struct pbatch *next_batch(struct producer *p, int flush)
{
	struct pbatch *any = NULL;
	for (int32_t i = 0; i < p->n_batches; i++) {
		struct pbatch *b = &p->batches[(p->rr + i) % p->n_batches];
		if (b == p->held)
			continue;
		if (b->n && batch_full(p, b))
			return b;
		if (b->n && !any)
			any = b;
	}
	return flush ? any : NULL;
}

static struct slot *slot_find(struct producer *p, uint64_t id)
{
	for (uint32_t i = 0; i < p->window; i++)
		if (p->slots[i].used && p->slots[i].id == id)
			return &p->slots[i];
	return NULL;
}

/* Packs b into one ProduceRequest and sends it. 0 or -1 (the call is over).
 * The first request of a stream that may be redirected is the probe: it is
 * always answered, and b keeps its records until then (p->held). */
static int send_batch(struct producer *p, struct pbatch *b)
{
	Streambus__V1__ProduceRequest q = STREAMBUS__V1__PRODUCE_REQUEST__INIT;
	int probe = p->may_redirect && p->requests_sent == 0;
	int quiet = probe && p->acks == STREAMBUS__V1__ACKS__ACKS_NONE;
	Streambus__V1__Record *recs = calloc(b->n, sizeof *recs);
	Streambus__V1__Record **ptrs = calloc(b->n, sizeof *ptrs);
	int rc = -1;
	if (!recs || !ptrs)
		goto out;
	for (size_t i = 0; i < b->n; i++) {
		streambus__v1__record__init(&recs[i]);
		recs[i].key.data = (uint8_t *)b->data + b->recs[i].koff;
		recs[i].key.len = b->recs[i].has_key ? b->recs[i].klen : 0;
		recs[i].value.data = (uint8_t *)b->data + b->recs[i].voff;
		recs[i].value.len = b->recs[i].vlen;
		recs[i].tombstone = p->tombstones && b->recs[i].has_key && b->recs[i].klen > 0 && b->recs[i].vlen == 0;
		recs[i].n_headers = recs[i].tombstone ? 0 : p->n_headers;
		recs[i].headers = p->header_ptrs;
		ptrs[i] = &recs[i];
	}
	q.request_id = p->next_id;
	q.topic = (char *)p->topic;
	q.partition = b->partition;
	q.n_records = b->n;
	q.records = ptrs;
	q.acks = quiet ? STREAMBUS__V1__ACKS__ACKS_LEADER : p->acks;
	if (sbc_call_send(&p->call, &q.base, 0) != 0) {
		p->stream_over = 1; /* never seen: end the call; its status follows */
		sbc_call_cancel(&p->call);
		goto out;
	}
	if (q.acks != STREAMBUS__V1__ACKS__ACKS_NONE) {
		struct slot *s = NULL;
		for (uint32_t i = 0; i < p->window && !s; i++)
			if (!p->slots[i].used)
				s = &p->slots[i];
		s->used = 1; /* one is free: inflight < window (the probe goes first) */
		s->id = p->next_id;
		s->records = (uint32_t)b->n;
		s->quiet = quiet;
		p->inflight++;
	}
	p->next_id++;
	p->requests_sent++;
	p->records_sent += b->n;
	p->rr = (int32_t)(b - p->batches + 1) % p->n_batches;
	if (probe) {
		p->held = b;
	} else {
		b->n = 0;
		b->len = 0;
	}
	rc = 0;
out:
	free(recs);
	free(ptrs);
	return rc;
}

static void note_failure(struct producer *p, grpc_status_code code)
{
	if (p->first_error == GRPC_STATUS_OK)
		p->first_error = code;
}

static void on_response(struct producer *p, const Streambus__V1__ProduceResponse *r)
{
	struct slot *s = slot_find(p, r->request_id);
	uint32_t n = s ? s->records : 0;
	int quiet = s && s->quiet;
	if (s) {
		s->used = 0;
		p->inflight--;
	}
	if (p->held) { /* the probe was answered: the stream is the leader's */
		p->held->n = 0;
		p->held->len = 0;
		p->held = NULL;
	}
	p->may_redirect = 0;
	if (r->error_code == 0) {
		p->requests_acked++;
		p->records_acked += n;
		if (n && !quiet)
			printf("partition %d offsets %" PRId64 "-%" PRId64 "\n", r->partition,
			       r->base_offset, r->base_offset + (int64_t)n - 1);
		return;
	}
	p->requests_failed++;
	p->records_failed += n;
	note_failure(p, (grpc_status_code)r->error_code);
	if (p->requests_failed <= SBC_PRODUCE_ERRORS_PRINTED) {
		fflush(stdout);
		fprintf(stderr,
		        "streambus: produce request %" PRIu64
		        " (%u records) to \"%s\" partition %d: %s: %s\n",
		        r->request_id, n, p->topic, r->partition,
		        sbc_status_name((grpc_status_code)r->error_code), r->error_message);
		if (p->requests_failed == SBC_PRODUCE_ERRORS_PRINTED)
			fprintf(stderr,
			        "streambus: produce: further failed requests are only counted\n");
	}
}

static void handle_event(struct producer *p, const struct sbc_event *ev)
{
	switch (ev->kind) {
	case SBC_EV_START:
	case SBC_EV_SENT:
		if (!ev->ok)
			p->stream_over = 1;
		break;
	case SBC_EV_RECV:
		if (!ev->msg) {
			p->stream_over = 1;
			break;
		}
		Streambus__V1__ProduceResponse *r = (Streambus__V1__ProduceResponse *)sbc_unpack(
		    &streambus__v1__produce_response__descriptor, ev->msg);
		if (r) {
			on_response(p, r);
			protobuf_c_message_free_unpacked(&r->base, NULL);
		}
		sbc_call_recv(&p->call);
		break;
	case SBC_EV_STATUS:
		p->stream_over = 1;
		break;
	default:
		break;
	}
}

/* Sends whatever can be sent now. */
static void pump(struct producer *p)
{
	int acks_none = p->acks == STREAMBUS__V1__ACKS__ACKS_NONE;
	while (!p->stream_over && !p->call.send_busy && !p->held &&
	       (acks_none || p->inflight < p->window)) {
		struct pbatch *b = next_batch(p, 0);
		if (!b && !p->input_done && ingest(p))
			b = next_batch(p, 0);
		if (!b) /* stdin has nothing ready (or ended): send partial batches */
			b = next_batch(p, 1);
		if (!b || send_batch(p, b) != 0)
			break;
	}
	if (p->input_done && !next_batch(p, 1) && !p->call.send_busy && p->inflight == 0 &&
	    !p->call.closed_send && !p->stream_over)
		sbc_call_close_send(&p->call);
}

static void produce_loop(struct producer *p)
{
	struct sbc_event ev;
	while (!sbc_call_idle(&p->call)) {
		if (cli_interrupted)
			p->input_done = 1;
		pump(p);
		int can_take =
		    !p->input_done && !p->stream_over && !p->call.send_busy && !p->held &&
		    (p->acks == STREAMBUS__V1__ACKS__ACKS_NONE || p->inflight < p->window);
		int busy =
		    p->call.send_busy || p->inflight || p->call.closed_send || p->stream_over;
		if (!can_take || busy) {
			/* Answers are due: wait for them, glancing at stdin every 2 ms. */
			if (sbc_next(&p->conn, can_take ? 2 : 200, &ev))
				handle_event(p, &ev);
		} else {
			fflush(stdout);
			sbc_input_ready(&p->in, 200);
		}
		while (sbc_next(&p->conn, 0, &ev))
			handle_event(p, &ev);
	}
}

static int report(struct producer *p, double secs)
{
	struct sbc_status st;
	char what[320];
	int rc = SBC_EXIT_OK;
	uint64_t unanswered = p->records_sent - p->records_acked - p->records_failed;
	sbc_call_status(&p->call, &st);
	fflush(stdout);
	if (st.code != GRPC_STATUS_OK) {
		snprintf(what, sizeof what, "produce to \"%.256s\"", p->topic);
		rc = sbc_report(what, &st);
	}
	if (p->acks == STREAMBUS__V1__ACKS__ACKS_NONE)
		unanswered = 0;
	if (p->acks == STREAMBUS__V1__ACKS__ACKS_NONE && st.code != GRPC_STATUS_OK) {
		/* No responses, and the stream did not end cleanly: nobody knows how
		 * many of the records were written. Say so instead of a count. */
		fprintf(stderr,
		        "sent %" PRIu64 " records in %" PRIu64 " requests with acks none; the stream ended with "
		        "%s, so some of them may not have been written\n",
		        p->records_sent, p->requests_sent, sbc_status_name(st.code));
		return rc ? rc : SBC_EXIT_ERROR;
	}
	fprintf(stderr,
	        "produced %" PRIu64 " records in %" PRIu64 " requests (%" PRIu64 " failed, %" PRIu64
	        " records unanswered) in %.2f s: %.0f records/s\n",
	        p->records_acked + (p->acks == STREAMBUS__V1__ACKS__ACKS_NONE
	                                ? p->records_sent - p->records_failed
	                                : 0),
	        p->requests_sent, p->requests_failed, unanswered, secs,
	        secs > 0 ? (double)(p->acks == STREAMBUS__V1__ACKS__ACKS_NONE
	                                ? p->records_sent - p->records_failed
	                                : p->records_acked) /
	                       secs
	                 : 0.0);
	if (!rc && p->first_error != GRPC_STATUS_OK)
		rc = sbc_exit_code(p->first_error);
	if (!rc && (p->input_error || unanswered))
		rc = SBC_EXIT_ERROR;
	if (!rc && (ferror(stdout) || fflush(stdout))) {
		fprintf(stderr, "streambus: produce: writing stdout failed\n");
		rc = SBC_EXIT_ERROR;
	}
	return rc;
}

/* Partition count of the topic (for client-side key hashing). */
static int partitions_of(struct producer *p, int32_t *n)
{
	Streambus__V1__DescribeTopicRequest q = STREAMBUS__V1__DESCRIBE_TOPIC_REQUEST__INIT;
	ProtobufCMessage *m;
	struct sbc_status st;
	char what[320];
	q.name = (char *)p->topic;
	if (sbc_unary(&p->conn, SBC_M_DESCRIBE_TOPIC, &q.base,
	              &streambus__v1__describe_topic_response__descriptor, &m, &st)) {
		snprintf(what, sizeof what, "produce to \"%.256s\"", p->topic);
		return sbc_report(what, &st);
	}
	Streambus__V1__DescribeTopicResponse *r = (Streambus__V1__DescribeTopicResponse *)m;
	*n = r->topic && r->topic->partitions > 0 ? r->topic->partitions : 1;
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}

/* The leader to resend to if the stream just ended was a follower's
 * refusal: UNAVAILABLE with the streambus-leader trailer, nothing answered,
 * and at most the (held) probe sent. 1 with its address in leader, else 0. */
static int refused_by_follower(struct producer *p, char *leader, size_t cap)
{
	struct sbc_status st;
	if (!p->may_redirect || cli_interrupted || p->requests_acked || p->requests_failed ||
	    (p->requests_sent && !p->held))
		return 0;
	sbc_call_status(&p->call, &st);
	if (st.code != GRPC_STATUS_UNAVAILABLE ||
	    !sbc_call_trailer(&p->call, SBC_MD_LEADER, leader, cap) || !leader[0] ||
	    strcmp(leader, p->conn.target) == 0)
		return 0;
	return 1;
}

/* Ends the refused stream and its connection, connects to leader and starts
 * a new stream there, which is never redirected. The held probe's records
 * are still in their batch and go first. 0, or the exit status (reported). */
static int redirect(struct producer *p, const char *leader, const char *what)
{
	struct sbc_status st;
	double timeout_s = p->conn.timeout_s;
	cli_note_redirect(p->conn.target, leader);
	sbc_call_fini(&p->call);
	sbc_conn_fini(&p->conn);
	sbc_conn_init(&p->conn, leader, timeout_s);
	memset(p->slots, 0, p->window * sizeof *p->slots);
	p->held = NULL;
	p->may_redirect = 0;
	p->inflight = 0;
	p->next_id = 0;
	p->stream_over = 0;
	p->requests_sent = 0;
	p->records_sent = 0;
	p->first_error = GRPC_STATUS_OK;
	if (sbc_conn_wait_ready(&p->conn, &st) ||
	    sbc_call_start(&p->conn, &p->call, SBC_M_PRODUCE, NULL, 0, &st))
		return sbc_report(what, &st);
	return 0;
}

static int run(struct producer *p)
{
	char leader[256];
	struct sbc_status st;
	char what[320];
	int32_t np = 1;
	int rc = 0;
	struct timespec t0, t1;

	snprintf(what, sizeof what, "produce to \"%.256s\"", p->topic);
	if (p->sep_len && p->partition < 0 && (rc = partitions_of(p, &np)) != 0)
		return rc;
	p->n_batches = np > 1 ? np + 1 : 1; /* per partition, plus one for keyless records */
	p->batches = calloc((size_t)p->n_batches, sizeof *p->batches);
	p->slots = calloc(p->window, sizeof *p->slots);
	if (!p->batches || !p->slots || sbc_input_init(&p->in, 0))
		return fprintf(stderr, "streambus: produce: out of memory\n"), SBC_EXIT_ERROR;
	for (int32_t i = 0; i < p->n_batches; i++) {
		p->batches[i].partition = p->n_batches == 1 ? p->partition : i == np ? -1 : i;
		p->batches[i].recs = calloc(p->batch_records, sizeof *p->batches[i].recs);
		if (!p->batches[i].recs)
			return fprintf(stderr, "streambus: produce: out of memory\n"),
			       SBC_EXIT_ERROR;
	}
	if (sbc_conn_wait_ready(&p->conn, &st) ||
	    sbc_call_start(&p->conn, &p->call, SBC_M_PRODUCE, NULL, 0, &st))
		return sbc_report(what, &st);
	cli_catch_signals();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	p->may_redirect = 1;
	produce_loop(p);
	if (refused_by_follower(p, leader, sizeof leader)) {
		if ((rc = redirect(p, leader, what)) != 0)
			return rc; /* no call was started */
		produce_loop(p);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	rc = report(p, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	sbc_call_fini(&p->call);
	return rc;
}

static int parse_header(struct producer *p, char *arg)
{
	char *eq = strchr(arg, '=');
	if (!eq || eq == arg)
		return cli_usage_error("produce", "invalid header \"%s\": use NAME=VALUE", arg);
	if (p->n_headers == SBC_PRODUCE_HEADERS_MAX)
		return cli_usage_error("produce", "at most %d headers", SBC_PRODUCE_HEADERS_MAX);
	*eq = 0; /* argv is ours to edit */
	Streambus__V1__Header *h = &p->headers[p->n_headers];
	streambus__v1__header__init(h);
	h->key = arg;
	h->value.data = (uint8_t *)eq + 1;
	h->value.len = strlen(eq + 1);
	p->header_ptrs[p->n_headers++] = h;
	return 0;
}

static int parse_opt(struct producer *p, int opt, char *arg)
{
	int64_t v;
	switch (opt) {
	case 't':
		p->topic = arg;
		return 0;
	case 'p':
		if (cli_parse_i64(arg, 0, INT32_MAX, &v))
			return cli_usage_error("produce", "invalid partition \"%s\"", arg);
		p->partition = (int32_t)v;
		return 0;
	case 'K':
		p->sep_len = cli_parse_separator(arg, p->sep, (int)sizeof p->sep);
		if (p->sep_len < 0 || memchr(p->sep, '\n', (size_t)p->sep_len))
			return cli_usage_error("produce", "invalid key delimiter \"%s\"", arg);
		return 0;
	case 'H':
		return parse_header(p, arg);
	case 'a':
		if (strcmp(arg, "leader") == 0)
			p->acks = STREAMBUS__V1__ACKS__ACKS_LEADER;
		else if (strcmp(arg, "all") == 0)
			p->acks = STREAMBUS__V1__ACKS__ACKS_ALL;
		else if (strcmp(arg, "none") == 0)
			p->acks = STREAMBUS__V1__ACKS__ACKS_NONE;
		else
			return cli_usage_error(
			    "produce", "invalid --acks \"%s\": use none, leader or all", arg);
		return 0;
	case 'b':
		if (cli_parse_i64(arg, 1, SBC_PRODUCE_BATCH_MAX, &v))
			return cli_usage_error("produce", "invalid --batch \"%s\": use 1..%d", arg,
			                       SBC_PRODUCE_BATCH_MAX);
		p->batch_records = (uint32_t)v;
		return 0;
	case 'w':
		if (cli_parse_i64(arg, 1, SBC_PRODUCE_WINDOW_MAX, &v))
			return cli_usage_error("produce", "invalid --window \"%s\": use 1..%d", arg,
			                       SBC_PRODUCE_WINDOW_MAX);
		p->window = (uint32_t)v;
		return 0;
	case 'T':
		p->tombstones = 1;
		return 0;
	default:
		return -1;
	}
}

int cmd_produce(struct cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
	    CLI_GLOBAL_LONGOPTS,
	    {"topic", required_argument, 0, 't'},
	    {"partition", required_argument, 0, 'p'},
	    {"key-delimiter", required_argument, 0, 'K'},
	    {"header", required_argument, 0, 'H'},
	    {"acks", required_argument, 0, 'a'},
	    {"batch", required_argument, 0, 'b'},
	    {"window", required_argument, 0, 'w'},
	    {"tombstones", no_argument, 0, 'T'},
	    {0, 0, 0, 0},
	};
	struct producer *p = calloc(1, sizeof *p);
	int opt, rc = 0;
	if (!p)
		return SBC_EXIT_ERROR;
	p->partition = -1;
	p->acks = STREAMBUS__V1__ACKS__ACKS_LEADER;
	p->batch_records = 100;
	p->window = 16;
	while (!rc && (opt = getopt_long(argc, argv, "ht:p:K:H:", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(produce_usage, stdout);
			free(p);
			return 0;
		}
		if (opt == '?' || opt == ':')
			rc = cli_bad_option("produce");
		else if ((rc = cli_global_opt(g, opt, optarg)) < 0)
			rc = parse_opt(p, opt, optarg);
	}
	if (!rc && optind < argc)
		rc = cli_usage_error("produce", "unexpected argument \"%s\"", argv[optind]);
	if (!rc && !p->topic)
		rc = cli_usage_error("produce", "missing -t TOPIC");
	if (rc) {
		free(p);
		return rc;
	}
	cli_init(g);
	sbc_conn_init(&p->conn, g->server, g->timeout_s);
	rc = run(p);
	sbc_conn_fini(&p->conn);
	sbc_global_fini();
	for (int32_t i = 0; p->batches && i < p->n_batches; i++) {
		free(p->batches[i].data);
		free(p->batches[i].recs);
	}
	free(p->batches);
	free(p->slots);
	sbc_input_fini(&p->in);
	free(p);
	return rc;
}
