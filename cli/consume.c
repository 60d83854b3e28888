/* consume.c - streambus consume: one Consume stream per partition on one
 * completion queue; records to stdout as lines or JSON. Follows the tail
 * until Ctrl-C (the calls are cancelled, exit 0), or stops at the end (-e) or
 * after COUNT records (-c). */
#include "cli.h"
#include "client.h"
#include "format.h"

#include "streambus/v1/streambus.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SBC_CONSUME_PARTITIONS_MAX 1024 /* SB_PARTITIONS_MAX */

static const char consume_usage[] =
    "usage: streambus consume -t TOPIC [-p PARTITION] [-o earliest|latest|N|-N|@TIMESTAMP_MS]\n"
    "                         [-e] [-c COUNT] [--json] [-K SEP] [-g GROUP]\n"
    "\n"
    "Writes records to stdout, one per line: the value, or with -K the key, SEP and value.\n"
    "  -t, --topic TOPIC      topic to read\n"
    "  -p, --partition N      one partition (default: all partitions of the topic)\n"
    "  -o, --offset POS       where to start: earliest (default), latest (only new records),\n"
    "                         N (that offset), -N (N records before the end),\n"
    "                         @TIMESTAMP_MS (first record at or after that time)\n"
    "  -e, --exit             stop at the end of the log as of the start\n"
    "  -c, --count COUNT      stop after COUNT records\n"
    "  --json                 one JSON object per record: "
    "{\"partition\",\"offset\",\"timestamp_ms\",\n"
    "                         \"key\",\"value\",\"headers\":{name:value}}; keys, values and "
    "header\n"
    "                         values that are not UTF-8 text without control characters are\n"
    "                         base64 under \"key_b64\"/\"value_b64\"/\"NAME_b64\"; no key is null\n"
    "  -K, --key-delimiter SEP  print keys, separated from the value by SEP (escapes: \\t \\xHH)\n"
    "  -g, --group GROUP      consumer group: start where it committed (partitions it never\n"
    "                         committed start at -o), and commit the position every second\n"
    "                         and at the end (to the leader: use its address with --server)\n"
    "\n"
    "Without -e or -c it follows the tail until Ctrl-C (exit 0). If the server shuts down\n"
    "(UNAVAILABLE) the error names the offset to resume from with -o.\n";

enum { OPT_JSON = CLI_OPT_FIRST_LOCAL };

struct part_stream {
	struct sbc_call call;
	int32_t partition;
	int64_t next_offset; /* after the last record printed; -1 before any */
	int64_t committed;   /* what the group last committed for it (-1: nothing) */
	int cancelled;
};

struct consumer {
	const char *topic;
	int32_t partition; /* -1: all */
	Streambus__V1__StartPosition start;
	int64_t start_value; /* offset, timestamp, or records before the end (relative) */
	int relative;
	int stop_at_end;
	int64_t count; /* 0: unlimited */
	int json;
	char sep[16];
	int sep_len;
	const char *group; /* NULL: none */
	int64_t last_commit_ms;
	int commit_errors;

	struct sbc_conn conn;
	struct part_stream *streams;
	int32_t n_streams;
	int64_t printed;
	int failed_rc; /* exit status of the first failed stream */
	int stopping;  /* count reached, Ctrl-C, output closed or a stream failed */
	int out_closed;
};

static void print_record(struct consumer *c, int32_t partition,
                         const Streambus__V1__ConsumedRecord *r)
{
	FILE *f = stdout;
	if (!c->json) {
		if (c->sep_len) {
			if (r->key.len) /* (data is NULL when empty) */
				fwrite(r->key.data, 1, r->key.len, f);
			fwrite(c->sep, 1, (size_t)c->sep_len, f);
		}
		if (r->value.len)
			fwrite(r->value.data, 1, r->value.len, f);
		putc('\n', f);
		return;
	}
	fprintf(f, "{\"partition\":%d,\"offset\":%" PRId64 ",\"timestamp_ms\":%" PRId64 ",",
	        partition, r->offset, r->timestamp_ms);
	if (r->key.len)
		sbc_json_bytes_field(f, "key", r->key.data, r->key.len);
	else
		fputs("\"key\":null", f);
	putc(',', f);
	sbc_json_bytes_field(f, "value", r->value.data, r->value.len);
	putc(',', f);
	sbc_json_headers(f, r->headers, r->n_headers);
	fputs(r->tombstone ? ",\"tombstone\":true}\n" : "}\n", f);
}

static void stop_all(struct consumer *c)
{
	c->stopping = 1;
	for (int32_t i = 0; i < c->n_streams; i++) {
		struct part_stream *s = &c->streams[i];
		if (!s->call.status_done && !s->cancelled) {
			s->cancelled = 1;
			sbc_call_cancel(&s->call);
		}
	}
}

static void on_message(struct consumer *c, struct part_stream *s, grpc_byte_buffer *bb)
{
	Streambus__V1__ConsumeResponse *r = (Streambus__V1__ConsumeResponse *)sbc_unpack(
	    &streambus__v1__consume_response__descriptor, bb);
	if (!r) {
		fprintf(stderr,
		        "streambus: consume \"%s\" partition %d: malformed ConsumeResponse\n",
		        c->topic, s->partition);
		if (!c->failed_rc)
			c->failed_rc = SBC_EXIT_ERROR;
		stop_all(c);
		return;
	}
	for (size_t i = 0; i < r->n_records && !c->stopping; i++) {
		print_record(c, r->partition, r->records[i]);
		s->next_offset = r->records[i]->offset + 1;
		if (c->count && ++c->printed >= c->count)
			stop_all(c);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (errno != EPIPE) {
			fprintf(stderr, "streambus: consume: writing stdout failed: %s\n",
			        strerror(errno));
			if (!c->failed_rc)
				c->failed_rc = SBC_EXIT_ERROR;
		}
		c->out_closed = 1;
		stop_all(c);
	}
}

static void on_status(struct consumer *c, struct part_stream *s)
{
	struct sbc_status st;
	char what[384], next[32];
	sbc_call_status(&s->call, &st);
	if (st.code == GRPC_STATUS_OK || (s->cancelled && st.code == GRPC_STATUS_CANCELLED))
		return;
	if (st.code == GRPC_STATUS_UNAVAILABLE &&
	    sbc_call_trailer(&s->call, "streambus-next-offset", next, sizeof next)) {
		size_t n = strlen(st.msg);
		snprintf(st.msg + n, sizeof st.msg - n, " (resume with: -p %d -o %s)", s->partition,
		         next);
	}
	snprintf(what, sizeof what, "consume \"%.256s\" partition %d", c->topic, s->partition);
	fflush(stdout);
	int rc = sbc_report(what, &st);
	if (!c->failed_rc)
		c->failed_rc = rc;
	stop_all(c);
}

/* Commits the group's position in every partition that moved since the
 * last commit. Errors are reported (the first few) but do not stop the
 * consumer: the next commit carries the newer positions. */
static void commit_positions(struct consumer *c)
{
	Streambus__V1__CommitOffsetsRequest q = STREAMBUS__V1__COMMIT_OFFSETS_REQUEST__INIT;
	Streambus__V1__PartitionOffset *po = calloc((size_t)c->n_streams, sizeof *po);
	Streambus__V1__PartitionOffset **pp = calloc((size_t)c->n_streams, sizeof *pp);
	ProtobufCMessage *m = NULL;
	struct sbc_status st;
	char what[320];
	c->last_commit_ms = cli_now_ms();
	if (!po || !pp)
		goto out;
	for (int32_t i = 0; i < c->n_streams; i++) {
		struct part_stream *s = &c->streams[i];
		if (s->next_offset < 0 || s->next_offset == s->committed)
			continue;
		streambus__v1__partition_offset__init(&po[q.n_offsets]);
		po[q.n_offsets].partition = s->partition;
		po[q.n_offsets].offset = s->next_offset;
		pp[q.n_offsets] = &po[q.n_offsets];
		q.n_offsets++;
	}
	if (!q.n_offsets)
		goto out;
	q.group = (char *)c->group;
	q.topic = (char *)c->topic;
	q.offsets = pp;
	if (sbc_unary(&c->conn, SBC_M_COMMIT_OFFSETS, &q.base, &streambus__v1__commit_offsets_response__descriptor,
	              &m, &st)) {
		if (c->commit_errors++ < 3) {
			snprintf(what, sizeof what, "commit of group \"%.100s\" on \"%.100s\"", c->group, c->topic);
			fflush(stdout);
			(void)sbc_report(what, &st);
		}
		goto out;
	}
	protobuf_c_message_free_unpacked(m, NULL);
	for (size_t k = 0; k < q.n_offsets; k++)
		for (int32_t i = 0; i < c->n_streams; i++)
			if (c->streams[i].partition == po[k].partition)
				c->streams[i].committed = po[k].offset;
out:
	free(po);
	free(pp);
}

static void consume_loop(struct consumer *c)
{
	struct sbc_event ev;
	for (;;) {
		int busy = 0;
		if (c->group && cli_now_ms() - c->last_commit_ms >= 1000)
			commit_positions(c);
		for (int32_t i = 0; i < c->n_streams; i++)
			busy |= !sbc_call_idle(&c->streams[i].call);
		if (!busy)
			break;
		if (cli_interrupted && !c->stopping)
			stop_all(c);
		if (!sbc_next(&c->conn, 100, &ev)) /* 100 ms: notice Ctrl-C */
			continue;
		struct part_stream *s = ev.call->user;
		if (ev.kind == SBC_EV_RECV && ev.msg) {
			if (c->stopping)
				grpc_byte_buffer_destroy(ev.msg);
			else
				on_message(c, s, ev.msg);
			sbc_call_recv(&s->call);
		} else if (ev.kind == SBC_EV_STATUS) {
			on_status(c, s);
		}
	}
}

/* Partition count and offsets, for "all partitions" and -o -N. */
static int describe(struct consumer *c, Streambus__V1__DescribeTopicResponse **out)
{
	Streambus__V1__DescribeTopicRequest q = STREAMBUS__V1__DESCRIBE_TOPIC_REQUEST__INIT;
	struct sbc_status st;
	char what[320];
	ProtobufCMessage *m;
	q.name = (char *)c->topic;
	if (sbc_unary(&c->conn, SBC_M_DESCRIBE_TOPIC, &q.base,
	              &streambus__v1__describe_topic_response__descriptor, &m, &st)) {
		snprintf(what, sizeof what, "consume \"%.256s\"", c->topic);
		return sbc_report(what, &st);
	}
	*out = (Streambus__V1__DescribeTopicResponse *)m;
	return 0;
}

static int start_stream(struct consumer *c, struct part_stream *s,
                        const Streambus__V1__PartitionInfo *pi)
{
	Streambus__V1__ConsumeRequest q = STREAMBUS__V1__CONSUME_REQUEST__INIT;
	struct sbc_status st;
	char what[320];
	q.topic = (char *)c->topic;
	q.partition = s->partition;
	q.start = c->start;
	q.group = (char *)(c->group ? c->group : "");
	if (c->start == STREAMBUS__V1__START_POSITION__START_OFFSET) {
		q.start_offset = c->start_value;
		if (c->relative && pi) {
			q.start_offset = pi->log_end_offset - c->start_value;
			if (q.start_offset < pi->log_start_offset)
				q.start_offset = pi->log_start_offset;
		}
	}
	if (c->start == STREAMBUS__V1__START_POSITION__START_TIMESTAMP)
		q.start_timestamp_ms = c->start_value;
	q.stop = c->stop_at_end ? STREAMBUS__V1__STOP_POSITION__STOP_AT_END
	                        : STREAMBUS__V1__STOP_POSITION__STOP_NEVER;
	if (c->count && c->count < 10000)
		q.max_records =
		    (uint32_t)c->count; /* do not make the server read more than is printed */
	s->next_offset = -1;
	s->committed = -1;
	s->call.user = s;
	if (sbc_call_start(&c->conn, &s->call, SBC_M_CONSUME, &q.base, 1, &st) != 0) {
		snprintf(what, sizeof what, "consume \"%.256s\" partition %d", c->topic,
		         s->partition);
		return sbc_report(what, &st);
	}
	return 0;
}

static int run(struct consumer *c)
{
	Streambus__V1__DescribeTopicResponse *d = NULL;
	struct sbc_status st;
	char what[320];
	int rc = 0;

	snprintf(what, sizeof what, "consume \"%.256s\"", c->topic);
	if (sbc_conn_wait_ready(&c->conn, &st))
		return sbc_report(what, &st);
	if ((c->partition < 0 || c->relative) && (rc = describe(c, &d)) != 0)
		return rc;
	c->n_streams = c->partition >= 0 ? 1 : (int32_t)d->n_partitions;
	if (c->n_streams < 1 || c->n_streams > SBC_CONSUME_PARTITIONS_MAX) {
		fprintf(stderr, "streambus: %s: the topic reports %d partitions\n", what,
		        c->n_streams);
		rc = SBC_EXIT_ERROR;
		goto out;
	}
	c->streams = calloc((size_t)c->n_streams, sizeof *c->streams);
	if (!c->streams) {
		rc = SBC_EXIT_ERROR;
		goto out;
	}
	cli_catch_signals();
	int32_t started = 0;
	while (started < c->n_streams) {
		struct part_stream *s = &c->streams[started];
		const Streambus__V1__PartitionInfo *pi = NULL;
		s->partition = c->partition >= 0 ? c->partition : d->partitions[started]->partition;
		for (size_t j = 0; d && j < d->n_partitions; j++)
			if (d->partitions[j]->partition == s->partition)
				pi = d->partitions[j];
		if (c->relative && !pi) {
			fprintf(stderr, "streambus: %s: no partition %d\n", what, s->partition);
			rc = SBC_EXIT_NOT_FOUND;
			break;
		}
		if ((rc = start_stream(c, s, pi)) != 0)
			break;
		started++;
	}
	if (rc) { /* end the streams already started */
		c->n_streams = started;
		stop_all(c);
	}
	c->last_commit_ms = cli_now_ms();
	consume_loop(c);
	if (c->group)
		commit_positions(c); /* where this run ended */
	for (int32_t i = 0; i < c->n_streams; i++)
		sbc_call_fini(&c->streams[i].call);
	if (!rc)
		rc = c->failed_rc;
out:
	if (d)
		protobuf_c_message_free_unpacked(&d->base, NULL);
	return rc;
}

static int parse_offset(struct consumer *c, const char *arg)
{
	if (!strcmp(arg, "earliest") || !strcmp(arg, "beginning")) {
		c->start = STREAMBUS__V1__START_POSITION__START_EARLIEST;
	} else if (!strcmp(arg, "latest") || !strcmp(arg, "end")) {
		c->start = STREAMBUS__V1__START_POSITION__START_LATEST;
	} else if (arg[0] == '@') {
		c->start = STREAMBUS__V1__START_POSITION__START_TIMESTAMP;
		if (cli_parse_i64(arg + 1, 0, INT64_MAX, &c->start_value))
			return cli_usage_error(
			    "consume", "invalid timestamp in -o \"%s\": use @MILLISECONDS", arg);
	} else if (arg[0] == '-') {
		c->start = STREAMBUS__V1__START_POSITION__START_OFFSET;
		c->relative = 1;
		if (cli_parse_i64(arg + 1, 1, INT64_MAX, &c->start_value))
			return cli_usage_error("consume", "invalid -o \"%s\"", arg);
	} else {
		c->start = STREAMBUS__V1__START_POSITION__START_OFFSET;
		if (cli_parse_i64(arg, 0, INT64_MAX, &c->start_value))
			return cli_usage_error(
			    "consume",
			    "invalid -o \"%s\": use earliest, latest, N, -N or @TIMESTAMP_MS", arg);
	}
	return 0;
}

static int parse_opt(struct consumer *c, int opt, const char *arg)
{
	int64_t v;
	switch (opt) {
	case 't':
		c->topic = arg;
		return 0;
	case 'p':
		if (cli_parse_i64(arg, 0, INT32_MAX, &v))
			return cli_usage_error("consume", "invalid partition \"%s\"", arg);
		c->partition = (int32_t)v;
		return 0;
	case 'o':
		return parse_offset(c, arg);
	case 'e':
		c->stop_at_end = 1;
		return 0;
	case 'c':
		if (cli_parse_i64(arg, 1, INT64_MAX, &c->count))
			return cli_usage_error("consume", "invalid count \"%s\"", arg);
		return 0;
	case OPT_JSON:
		c->json = 1;
		return 0;
	case 'K':
		c->sep_len = cli_parse_separator(arg, c->sep, (int)sizeof c->sep);
		if (c->sep_len < 0)
			return cli_usage_error("consume", "invalid key delimiter \"%s\"", arg);
		return 0;
	case 'g':
		c->group = arg;
		return 0;
	default:
		return -1;
	}
}

int cmd_consume(struct cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
	    CLI_GLOBAL_LONGOPTS,
	    {"topic", required_argument, 0, 't'},
	    {"partition", required_argument, 0, 'p'},
	    {"offset", required_argument, 0, 'o'},
	    {"exit", no_argument, 0, 'e'},
	    {"count", required_argument, 0, 'c'},
	    {"json", no_argument, 0, OPT_JSON},
	    {"key-delimiter", required_argument, 0, 'K'},
	    {"group", required_argument, 0, 'g'},
	    {0, 0, 0, 0},
	};
	struct consumer c;
	int opt, rc = 0;
	memset(&c, 0, sizeof c);
	c.partition = -1;
	c.start = STREAMBUS__V1__START_POSITION__START_EARLIEST;
	while (!rc && (opt = getopt_long(argc, argv, "ht:p:o:ec:K:g:", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(consume_usage, stdout);
			return 0;
		}
		if (opt == '?' || opt == ':')
			rc = cli_bad_option("consume");
		else if ((rc = cli_global_opt(g, opt, optarg)) < 0)
			rc = parse_opt(&c, opt, optarg);
	}
	if (!rc && optind < argc)
		rc = cli_usage_error("consume", "unexpected argument \"%s\"", argv[optind]);
	if (!rc && !c.topic)
		rc = cli_usage_error("consume", "missing -t TOPIC");
	if (rc)
		return rc;
	static char outbuf[1 << 16];
	setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
	cli_init(g);
	sbc_conn_init(&c.conn, g->server, g->timeout_s);
	rc = run(&c);
	sbc_conn_fini(&c.conn);
	sbc_global_fini();
	free(c.streams);
	return rc;
}
