/* bench.c - streambus bench: options, topic set-up, worker threads, the
 * progress line and the report (workers: bench_produce.c, bench_consume.c). */
#include "bench.h"
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_STREAMS_MAX 256
#define BENCH_RECORD_BYTES_MAX (4u << 20)
/* --e2e: the subscriber's time to catch up after the producers are done */
#define BENCH_E2E_DRAIN_NS (10ll * 1000000000)

static const char bench_usage[] =
    "usage: streambus bench [--topic T] [--records N] [--record-size B] [--batch R] [--window W]\n"
    "                       [--streams S] [--acks none|leader|all] [--fsync "
    "never|interval|always]\n"
    "                       [--partitions P] [--rate RECORDS_PER_S] [--consume | --e2e] "
    "[--partition N]\n"
    "\n"
    "Benchmarks a running server (a progress line on stderr, the report on stdout).\n"
    "default: produce N records as fast as the window allows on S streams (one thread and\n"
    "  one channel each) and report records/s, MB/s and ack latency per request.\n"
    "--rate R: offer a fixed R records/s in total; requests go out on a timetable and latency\n"
    "  counts from each request's scheduled time (no coordinated omission).\n"
    "--consume: read partition --partition of the topic from the start to its end with one\n"
    "  Consume stream and report records/s and MB/s.\n"
    "--e2e: produce at --rate (default 10000) to --partition while one subscriber follows the\n"
    "  tail; report produce-to-consume latency (the send time travels in each value).\n"
    "options (defaults in brackets):\n"
    "  --topic T [bench]        created if missing (with --partitions [S, or 1 for --e2e] and "
    "--fsync)\n"
    "  --records N [1000000]  --record-size B [100]  --batch R [100]  --window W [16]\n"
    "  --streams S [1]  --acks MODE [leader]  --fsync POLICY [the server's default]\n";

enum {
	OPT_RECORDS = CLI_OPT_FIRST_LOCAL,
	OPT_SIZE,
	OPT_BATCH,
	OPT_WINDOW,
	OPT_STREAMS,
	OPT_ACKS,
	OPT_FSYNC,
	OPT_RATE,
	OPT_CONSUME,
	OPT_E2E,
	OPT_PARTITIONS,
	OPT_PARTITION,
	OPT_TOPIC,
};

static int num(const char *arg, const char *name, int64_t min, int64_t max, int64_t *v)
{
	if (cli_parse_size(arg, min, max, v))
		return cli_usage_error("bench", "invalid %s \"%s\": use %" PRId64 "..%" PRId64,
		                       name, arg, min, max);
	return 0;
}

static int parse_opt(struct bench_cfg *c, int opt, const char *arg)
{
	int64_t v = 0;
	int rc = 0;
	char *end;
	switch (opt) {
	case OPT_TOPIC:
		c->topic = arg;
		break;
	case OPT_RECORDS:
		rc = num(arg, "--records", 1, INT64_MAX / 2, &c->records);
		break;
	case OPT_SIZE:
		rc = num(arg, "--record-size", 0, BENCH_RECORD_BYTES_MAX, &v),
		c->record_size = (uint32_t)v;
		break;
	case OPT_BATCH:
		rc = num(arg, "--batch", 1, 100000, &v), c->batch = (uint32_t)v;
		break;
	case OPT_WINDOW:
		rc = num(arg, "--window", 1, 4096, &v), c->window = (uint32_t)v;
		break;
	case OPT_STREAMS:
		rc = num(arg, "--streams", 1, BENCH_STREAMS_MAX, &v), c->streams = (uint32_t)v;
		break;
	case OPT_PARTITIONS:
		rc = num(arg, "--partitions", 1, 1024, &v), c->partitions = (int32_t)v;
		break;
	case OPT_PARTITION:
		rc = num(arg, "--partition", 0, 1023, &v), c->partition = (int32_t)v;
		break;
	case OPT_ACKS:
		c->acks_name = arg;
		if (!strcmp(arg, "leader"))
			c->acks = STREAMBUS__V1__ACKS__ACKS_LEADER;
		else if (!strcmp(arg, "all"))
			c->acks = STREAMBUS__V1__ACKS__ACKS_ALL;
		else if (!strcmp(arg, "none"))
			c->acks = STREAMBUS__V1__ACKS__ACKS_NONE;
		else
			rc = cli_usage_error("bench",
			                     "invalid --acks \"%s\": use none, leader or all", arg);
		break;
	case OPT_FSYNC:
		c->fsync = arg;
		if (strcmp(arg, "never") && strcmp(arg, "interval") && strcmp(arg, "always"))
			rc = cli_usage_error(
			    "bench", "invalid --fsync \"%s\": use never, interval or always", arg);
		break;
	case OPT_RATE:
		c->rate = strtod(arg, &end);
		if (end == arg || *end || !(c->rate > 0) || c->rate > 1e9)
			rc = cli_usage_error("bench", "invalid --rate \"%s\": records per second",
			                     arg);
		break;
	case OPT_CONSUME:
		c->mode = BENCH_CONSUME;
		break;
	case OPT_E2E:
		c->mode = BENCH_E2E;
		break;
	default:
		return -1;
	}
	return rc;
}

/* Creates the topic if missing; fills the partition count and the end
 * offset of cfg->partition. 0 or an exit status (reported). */
static int setup_topic(struct bench_cfg *c, int32_t *partitions, int64_t *end_offset)
{
	struct sbc_conn conn;
	struct sbc_status st;
	ProtobufCMessage *m = NULL;
	char what[320];
	int rc = 0;
	sbc_conn_init(&conn, c->server, c->timeout_s);
	if (c->mode != BENCH_CONSUME) {
		Streambus__V1__CreateTopicRequest q = STREAMBUS__V1__CREATE_TOPIC_REQUEST__INIT;
		Streambus__V1__TopicConfig tc = STREAMBUS__V1__TOPIC_CONFIG__INIT;
		q.name = (char *)c->topic;
		q.partitions = c->partitions          ? c->partitions
		               : c->mode == BENCH_E2E ? 1
		                                      : (int32_t)c->streams;
		tc.fsync_policy = (char *)(c->fsync ? c->fsync : "");
		q.config = &tc;
		snprintf(what, sizeof what, "bench: create topic \"%.256s\"", c->topic);
		if (sbc_unary(&conn, SBC_M_CREATE_TOPIC, &q.base,
		              &streambus__v1__create_topic_response__descriptor, &m, &st) == 0)
			protobuf_c_message_free_unpacked(m, NULL);
		else if (st.code == GRPC_STATUS_ALREADY_EXISTS)
			fprintf(stderr, "bench: topic \"%s\" exists: using it as it is\n",
			        c->topic);
		else
			rc = sbc_report(what, &st);
	}
	Streambus__V1__DescribeTopicRequest dq = STREAMBUS__V1__DESCRIBE_TOPIC_REQUEST__INIT;
	dq.name = (char *)c->topic;
	snprintf(what, sizeof what, "bench: describe topic \"%.256s\"", c->topic);
	if (!rc && sbc_unary(&conn, SBC_M_DESCRIBE_TOPIC, &dq.base,
	                     &streambus__v1__describe_topic_response__descriptor, &m, &st))
		rc = sbc_report(what, &st);
	if (!rc) {
		Streambus__V1__DescribeTopicResponse *d = (Streambus__V1__DescribeTopicResponse *)m;
		*partitions = (int32_t)d->n_partitions;
		if (c->partition >= *partitions && c->mode >= BENCH_CONSUME) {
			fprintf(stderr, "streambus: bench: topic \"%s\" has no partition %d\n",
			        c->topic, c->partition);
			rc = SBC_EXIT_NOT_FOUND;
		} else if (c->mode >= BENCH_CONSUME) {
			*end_offset = d->partitions[c->partition]->log_end_offset;
		}
		protobuf_c_message_free_unpacked(m, NULL);
	}
	sbc_conn_fini(&conn);
	return rc;
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static void print_latency(const char *name, const struct sbc_hist *h, const char *unit)
{
	if (!h->total) {
		printf("  %-13s n/a\n", name);
		return;
	}
	printf(
	    "  %-13s p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms  mean %.3f ms  (%" PRIu64
	    " %s)\n",
	    name, ms(sbc_hist_quantile(h, 0.5)), ms(sbc_hist_quantile(h, 0.99)),
	    ms(sbc_hist_quantile(h, 0.999)), ms(h->max), sbc_hist_mean(h) / 1e6, h->total, unit);
}

static int report(const struct bench_cfg *c, struct bench_worker *w, uint32_t n,
                  struct sbc_hist *ack, struct sbc_hist *e2e)
{
	int64_t first = 0, last = 0, records = 0, failed = 0, sub_records = 0, sub_bytes = 0;
	int rc = 0;
	for (uint32_t i = 0; i < n; i++) {
		int sub = c->mode >= BENCH_CONSUME && i == n - 1;
		if (w[i].err.code != GRPC_STATUS_OK && !rc)
			rc = sbc_report(w[i].err_what, &w[i].err);
		if (sub) {
			sub_records = w[i].records_done;
			sub_bytes = w[i].bytes_done;
			if (c->mode == BENCH_CONSUME)
				first = w[i].first_ns, last = w[i].last_ns;
			continue;
		}
		if (w[i].first_ns && (!first || w[i].first_ns < first))
			first = w[i].first_ns;
		if (w[i].last_ns > last)
			last = w[i].last_ns;
		records += w[i].records_done;
		failed += w[i].failed_requests;
	}
	double secs = last > first ? (double)(last - first) / 1e9 : 0;
	if (c->mode == BENCH_CONSUME) {
		printf("bench consume: topic=%s partition=%d\n", c->topic, c->partition);
		printf("  records:      %" PRId64 " (%.1f MB of values) in %.3f s\n", sub_records,
		       (double)sub_bytes / 1e6, secs);
		printf("  throughput:   %.0f records/s, %.1f MB/s\n",
		       secs > 0 ? (double)sub_records / secs : 0,
		       secs > 0 ? (double)sub_bytes / 1e6 / secs : 0);
		return rc;
	}
	printf("bench %s: topic=%s streams=%u window=%u batch=%u record_size=%u acks=%s",
	       c->mode == BENCH_THROUGHPUT ? "produce"
	       : c->mode == BENCH_RATE     ? "produce --rate"
	                                   : "e2e",
	       c->topic, c->streams, c->window, c->batch, c->record_size, c->acks_name);
	if (c->rate > 0)
		printf(" rate=%.0f/s", c->rate);
	printf("\n  records:      %" PRId64 " acknowledged, %" PRId64
	       " failed requests, in %.3f s\n",
	       records, failed, secs);
	printf("  throughput:   %.0f records/s, %.1f MB/s%s\n",
	       secs > 0 ? (double)records / secs : 0,
	       secs > 0 ? (double)records * c->record_size / 1e6 / secs : 0,
	       c->rate > 0 ? " (offered: the --rate above)" : "");
	print_latency("ack latency:", ack, "requests");
	if (c->rate > 0)
		printf("                (measured from each request's scheduled send time)\n");
	if (c->mode == BENCH_E2E) {
		printf("  consumed:     %" PRId64 " records\n", sub_records);
		print_latency("end-to-end:", e2e, "records");
	}
	return rc;
}

static void progress(const struct bench_shared *sh, int64_t start_ns, int final)
{
	double secs = (double)(bench_now_ns() - start_ns) / 1e9;
	int64_t sent = __atomic_load_n(&sh->sent, __ATOMIC_RELAXED);
	int64_t acked = __atomic_load_n(&sh->acked, __ATOMIC_RELAXED);
	int64_t consumed = __atomic_load_n(&sh->consumed, __ATOMIC_RELAXED);
	if (sh->cfg->mode == BENCH_CONSUME)
		fprintf(stderr, "\r[bench %6.1fs] consumed %" PRId64 " (%.0f records/s)   ", secs,
		        consumed, secs > 0 ? (double)consumed / secs : 0);
	else if (sh->cfg->mode == BENCH_E2E)
		fprintf(stderr,
		        "\r[bench %6.1fs] sent %" PRId64 "/%" PRId64 " acked %" PRId64
		        " consumed %" PRId64 "   ",
		        secs, sent, sh->cfg->records, acked, consumed);
	else
		fprintf(stderr,
		        "\r[bench %6.1fs] sent %" PRId64 "/%" PRId64 " acked %" PRId64
		        " (%.0f records/s)   ",
		        secs, sent, sh->cfg->records, acked, secs > 0 ? (double)acked / secs : 0);
	if (final)
		fputc('\n', stderr);
	fflush(stderr);
}

/* Starts the workers, shows progress until they finish, joins them. */
static int run(struct bench_cfg *c, int32_t partitions, int64_t end_offset)
{
	struct bench_shared sh;
	uint32_t nprod = c->mode == BENCH_CONSUME ? 0 : c->streams;
	uint32_t n = nprod + (c->mode >= BENCH_CONSUME);
	struct bench_worker *w = calloc(n, sizeof *w);
	struct sbc_hist *hists = calloc(n, sizeof *hists);
	struct sbc_hist *ack = calloc(1, sizeof *ack), *e2e = calloc(1, sizeof *e2e);
	int rc = SBC_EXIT_ERROR;
	uint32_t started = 0;
	if (!w || !hists || !ack || !e2e)
		goto out;
	memset(&sh, 0, sizeof sh);
	sh.cfg = c;
	for (uint32_t i = 0; i < n; i++) {
		w[i].sh = &sh;
		w[i].index = i;
		w[i].hist = &hists[i];
		sbc_hist_init(&hists[i]);
		if (i < nprod) {
			w[i].partition = c->mode == BENCH_E2E ? c->partition
			                                      : (int32_t)(i % (uint32_t)partitions);
			w[i].records = c->records / nprod + (i < c->records % nprod);
		} else {
			w[i].partition = c->partition;
			w[i].records = c->mode == BENCH_E2E ? c->records : 0;
			w[i].start_offset = c->mode == BENCH_E2E ? end_offset : -1;
		}
	}
	sh.running = (int)n;
	sh.t0_ns = bench_now_ns();
	int64_t start_ns = sh.t0_ns, producers_done_ns = 0;
	for (uint32_t k = 0; k < n; k++, started++) { /* the subscriber (last) first */
		uint32_t i = n - 1 - k;
		if (pthread_create(&w[i].thread, NULL,
		                   i < nprod ? bench_producer : bench_subscriber, &w[i])) {
			fprintf(stderr, "streambus: bench: cannot start a thread\n");
			__atomic_store_n(&sh.stop, 1, __ATOMIC_RELAXED);
			__atomic_fetch_sub(&sh.running, (int)(n - k), __ATOMIC_RELAXED);
			break;
		}
		/* --e2e: producers start once the subscriber is listening */
		while (i == nprod && c->mode == BENCH_E2E &&
		       !__atomic_load_n(&sh.subscribed, __ATOMIC_ACQUIRE)) {
			struct timespec ts = {0, 1000 * 1000};
			nanosleep(&ts, NULL);
		}
	}
	while (__atomic_load_n(&sh.running, __ATOMIC_ACQUIRE) > 0) {
		struct timespec ts = {0, 250 * 1000 * 1000};
		nanosleep(&ts, NULL);
		progress(&sh, start_ns, 0);
		if (cli_interrupted)
			__atomic_store_n(&sh.stop, 1, __ATOMIC_RELAXED);
		/* --e2e: once only the subscriber runs, give it a while to catch up */
		if (c->mode == BENCH_E2E && __atomic_load_n(&sh.running, __ATOMIC_ACQUIRE) == 1 &&
		    !producers_done_ns)
			producers_done_ns = bench_now_ns();
		if (producers_done_ns && bench_now_ns() - producers_done_ns > BENCH_E2E_DRAIN_NS)
			__atomic_store_n(&sh.stop, 1, __ATOMIC_RELAXED);
	}
	progress(&sh, start_ns, 1);
	for (uint32_t k = 0; k < started; k++)
		pthread_join(w[n - 1 - k].thread, NULL);
	for (uint32_t i = 0; i < n; i++)
		sbc_hist_merge(i < nprod ? ack : e2e, &hists[i]);
	rc = report(c, w, n, ack, e2e);
out:
	free(w);
	free(hists);
	free(ack);
	free(e2e);
	return rc;
}

int cmd_bench(struct cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
	    CLI_GLOBAL_LONGOPTS,
	    {"topic", required_argument, 0, OPT_TOPIC},
	    {"records", required_argument, 0, OPT_RECORDS},
	    {"record-size", required_argument, 0, OPT_SIZE},
	    {"batch", required_argument, 0, OPT_BATCH},
	    {"window", required_argument, 0, OPT_WINDOW},
	    {"streams", required_argument, 0, OPT_STREAMS},
	    {"acks", required_argument, 0, OPT_ACKS},
	    {"fsync", required_argument, 0, OPT_FSYNC},
	    {"rate", required_argument, 0, OPT_RATE},
	    {"consume", no_argument, 0, OPT_CONSUME},
	    {"e2e", no_argument, 0, OPT_E2E},
	    {"partitions", required_argument, 0, OPT_PARTITIONS},
	    {"partition", required_argument, 0, OPT_PARTITION},
	    {0, 0, 0, 0},
	};
	struct bench_cfg c;
	int opt, rc = 0, consume = 0, e2e = 0;
	int32_t partitions = 1;
	int64_t end_offset = 0;
	memset(&c, 0, sizeof c);
	c.topic = "bench";
	c.records = 1000000;
	c.record_size = 100;
	c.batch = 100;
	c.window = 16;
	c.streams = 1;
	c.acks = STREAMBUS__V1__ACKS__ACKS_LEADER;
	c.acks_name = "leader";
	while (!rc && (opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(bench_usage, stdout);
			return 0;
		}
		if (opt == '?' || opt == ':')
			return cli_bad_option("bench");
		consume |= opt == OPT_CONSUME;
		e2e |= opt == OPT_E2E;
		if ((rc = cli_global_opt(g, opt, optarg)) < 0)
			rc = parse_opt(&c, opt, optarg);
	}
	if (rc)
		return rc;
	if (optind < argc)
		return cli_usage_error("bench", "unexpected argument \"%s\"", argv[optind]);
	if (consume && e2e)
		return cli_usage_error("bench", "--consume and --e2e exclude each other");
	if (c.mode == BENCH_THROUGHPUT && c.rate > 0)
		c.mode = BENCH_RATE;
	if (c.mode == BENCH_E2E && !(c.rate > 0))
		c.rate = 10000;
	if (c.mode == BENCH_E2E && c.record_size < sizeof(int64_t))
		return cli_usage_error(
		    "bench", "--e2e needs --record-size >= 8 (the send time travels in the value)");
	if (c.mode == BENCH_E2E && c.acks == STREAMBUS__V1__ACKS__ACKS_NONE)
		c.acks_name = "none";
	snprintf(c.server, sizeof c.server, "%s", g->server);
	c.timeout_s = g->timeout_s;
	cli_init(g);
	cli_catch_signals();
	rc = setup_topic(&c, &partitions, &end_offset);
	if (!rc)
		rc = run(&c, partitions, end_offset);
	sbc_global_fini();
	return rc;
}
