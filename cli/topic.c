/* topic.c - streambus topic create|list|describe|delete (the Admin service). */
#include "cli.h"
#include "client.h"

#include "streambus/v1/streambus.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char topic_usage[] =
    "usage: streambus topic create NAME [-p PARTITIONS] [--fsync always|interval|never]\n"
    "                                   [--fsync-interval-ms N] [--retention-bytes N]\n"
    "                                   [--retention-ms N] [--segment-bytes N] [--segment-ms N]\n"
    "                                   [--min-insync N] [--replication-factor N]\n"
    "       streambus topic list\n"
    "       streambus topic describe NAME\n"
    "       streambus topic delete NAME\n"
    "\n"
    "create options (unset = the server's default; sizes accept k/m/g):\n"
    "  -p, --partitions N        number of partitions\n"
    "  --fsync POLICY            always (fdatasync before acking), interval, never\n"
    "  --fsync-interval-ms N     fdatasync period of the interval policy\n"
    "  --retention-bytes N       bytes kept per partition (-1 = unlimited)\n"
    "  --retention-ms N          age of records kept (-1 = unlimited)\n"
    "  --segment-bytes N         segment file size (4k..2g)\n"
    "  --segment-ms N            age at which a segment rolls\n"
    "  --min-insync N            in-sync replicas (leader included) a produce with\n"
    "                            --acks all needs; with fewer it fails UNAVAILABLE;\n"
    "                            at most the replication factor\n"
    "  --replication-factor N    copies of each partition: 1 on a single server; in a\n"
    "                            cluster every node holds every partition, so N is\n"
    "                            the number of nodes (the default there)\n"
    "\n"
    "list prints one topic per line; describe prints the topic's settings and, per\n"
    "partition, the log start and end offsets, high watermark, bytes, segments, the\n"
    "leader's node id and the node ids of the replicas and of the in-sync replicas\n"
    "(ISR), e.g. 0,1,2.\n"
    "create and delete are writes: sent to a follower, they are retried once at the\n"
    "leader (a note on stderr says so).\n"
    "Global options: --server HOST:PORT, --timeout SECONDS (see 'streambus --help').\n";

enum {
	OPT_FSYNC = CLI_OPT_FIRST_LOCAL,
	OPT_FSYNC_INTERVAL,
	OPT_RET_BYTES,
	OPT_RET_MS,
	OPT_SEG_BYTES,
	OPT_SEG_MS,
	OPT_MIN_INSYNC,
	OPT_REPLICATION,
};

/* Bound of --min-insync and --replication-factor: node ids are 0..1023,
 * so no cluster has more nodes; the server applies its own limit. */
#define SBC_TOPIC_REPLICAS_MAX 1024

enum call_kind { READ, WRITE };

/* Runs the unary call method; on failure reports "<what>" and returns the
 * exit status; 0 with *resp set on success. A WRITE refused with
 * UNAVAILABLE by a follower is sent once more, to the leader it names: the
 * follower refuses before doing anything, so the retry cannot apply it
 * twice. */
static int admin_call(struct cli_globals *g, const char *what, const char *method,
                      enum call_kind kind, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *d, ProtobufCMessage **resp)
{
	struct sbc_conn c;
	struct sbc_status st;
	char leader[256];
	int rc = 0;
	cli_init(g);
	sbc_conn_init(&c, g->server, g->timeout_s);
	int failed = sbc_unary(&c, method, req, d, resp, &st) != 0;
	if (failed && kind == WRITE && st.code == GRPC_STATUS_UNAVAILABLE &&
	    cli_follower_leader(&c, leader, sizeof leader) == 0) {
		cli_note_redirect(c.target, leader);
		sbc_conn_fini(&c);
		sbc_conn_init(&c, leader, g->timeout_s);
		failed = sbc_unary(&c, method, req, d, resp, &st) != 0;
	}
	if (failed)
		rc = sbc_report(what, &st);
	sbc_conn_fini(&c);
	sbc_global_fini();
	return rc;
}

static int parse_create_opt(int opt, const char *arg, Streambus__V1__CreateTopicRequest *q,
                            Streambus__V1__TopicConfig *c)
{
	int64_t v;
	switch (opt) {
	case 'p':
		if (cli_parse_i64(arg, 1, 1 << 20, &v))
			return cli_usage_error("topic create", "invalid partition count \"%s\"",
			                       arg);
		q->partitions = (int32_t)v;
		return 0;
	case OPT_FSYNC:
		if (strcmp(arg, "always") && strcmp(arg, "interval") && strcmp(arg, "never"))
			return cli_usage_error(
			    "topic create", "invalid --fsync \"%s\": use always, interval or never",
			    arg);
		c->fsync_policy = (char *)arg;
		return 0;
	case OPT_FSYNC_INTERVAL:
		if (cli_parse_i64(arg, 1, INT64_MAX, &v))
			return cli_usage_error("topic create", "invalid --fsync-interval-ms \"%s\"",
			                       arg);
		c->fsync_interval_ms = v;
		return 0;
	case OPT_RET_BYTES:
		if (strcmp(arg, "-1") == 0)
			v = -1;
		else if (cli_parse_size(arg, 1, INT64_MAX, &v))
			return cli_usage_error("topic create", "invalid --retention-bytes \"%s\"",
			                       arg);
		c->retention_bytes = v;
		return 0;
	case OPT_RET_MS:
		if (cli_parse_i64(arg, -1, INT64_MAX, &v) || v == 0)
			return cli_usage_error("topic create", "invalid --retention-ms \"%s\"",
			                       arg);
		c->retention_ms = v;
		return 0;
	case OPT_SEG_BYTES:
		if (cli_parse_size(arg, 1, INT64_MAX, &v))
			return cli_usage_error("topic create", "invalid --segment-bytes \"%s\"",
			                       arg);
		c->segment_bytes = v;
		return 0;
	case OPT_SEG_MS:
		if (cli_parse_i64(arg, 1, INT64_MAX, &v))
			return cli_usage_error("topic create", "invalid --segment-ms \"%s\"", arg);
		c->segment_ms = v;
		return 0;
	case OPT_MIN_INSYNC:
		if (cli_parse_i64(arg, 1, SBC_TOPIC_REPLICAS_MAX, &v))
			return cli_usage_error("topic create",
			                       "invalid --min-insync \"%s\": use 1..%d", arg,
			                       SBC_TOPIC_REPLICAS_MAX);
		c->min_insync_replicas = (int32_t)v;
		return 0;
	case OPT_REPLICATION:
		if (cli_parse_i64(arg, 1, SBC_TOPIC_REPLICAS_MAX, &v))
			return cli_usage_error("topic create",
			                       "invalid --replication-factor \"%s\": use 1..%d",
			                       arg, SBC_TOPIC_REPLICAS_MAX);
		q->replication_factor = (int32_t)v;
		return 0;
	default:
		return -1;
	}
}

static int topic_create(struct cli_globals *g, const char *name,
                        Streambus__V1__CreateTopicRequest *q)
{
	ProtobufCMessage *resp = NULL;
	char what[320];
	q->name = (char *)name;
	snprintf(what, sizeof what, "create topic \"%.256s\"", name);
	int rc = admin_call(g, what, SBC_M_CREATE_TOPIC, WRITE, &q->base,
	                    &streambus__v1__create_topic_response__descriptor, &resp);
	if (rc)
		return rc;
	protobuf_c_message_free_unpacked(resp, NULL);
	printf("created topic %s\n", name);
	return 0;
}

static int cmp_topics(const void *a, const void *b)
{
	const Streambus__V1__TopicInfo *x = *(Streambus__V1__TopicInfo *const *)a;
	const Streambus__V1__TopicInfo *y = *(Streambus__V1__TopicInfo *const *)b;
	return strcmp(x->name, y->name);
}

static int topic_list(struct cli_globals *g)
{
	Streambus__V1__ListTopicsRequest q = STREAMBUS__V1__LIST_TOPICS_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	int rc = admin_call(g, "list topics", SBC_M_LIST_TOPICS, READ, &q.base,
	                    &streambus__v1__list_topics_response__descriptor, &m);
	if (rc)
		return rc;
	Streambus__V1__ListTopicsResponse *r = (Streambus__V1__ListTopicsResponse *)m;
	qsort(r->topics, r->n_topics, sizeof *r->topics, cmp_topics);
	printf("%-32s %10s %-8s %16s %14s %12s\n", "TOPIC", "PARTITIONS", "FSYNC",
	       "RETENTION_BYTES", "RETENTION_MS", "SEGMENT_BYTES");
	for (size_t i = 0; i < r->n_topics; i++) {
		const Streambus__V1__TopicInfo *t = r->topics[i];
		const Streambus__V1__TopicConfig *c = t->config;
		printf("%-32s %10d %-8s %16" PRId64 " %14" PRId64 " %12" PRId64 "\n", t->name,
		       t->partitions, c && c->fsync_policy[0] ? c->fsync_policy : "-",
		       c ? c->retention_bytes : 0, c ? c->retention_ms : 0,
		       c ? c->segment_bytes : 0);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}

static void print_config(const Streambus__V1__TopicConfig *c)
{
	if (!c)
		return;
	printf("config:      fsync_policy=%s fsync_interval_ms=%" PRId64 " retention_bytes=%" PRId64
	       " retention_ms=%" PRId64 " segment_bytes=%" PRId64 " segment_ms=%" PRId64
	       " cleanup_policy=%s"
	       " min_insync_replicas=%d\n",
	       c->fsync_policy[0] ? c->fsync_policy : "-", c->fsync_interval_ms, c->retention_bytes,
	       c->retention_ms, c->segment_bytes, c->segment_ms,
	       c->cleanup_policy[0] ? c->cleanup_policy : "-", c->min_insync_replicas);
}

/* Room for "0,1,...": enough for 64 ids of up to 4 digits; longer lists
 * end in "...". */
#define SBC_ID_LIST_BYTES 320

/* Formats node ids as "0,1,2" ("-" for none) into buf; returns buf. */
static const char *id_list(const int32_t *ids, size_t n, char *buf, size_t cap)
{
	size_t len = 0;
	snprintf(buf, cap, "-");
	for (size_t i = 0; i < n; i++) {
		int w = snprintf(buf + len, cap - len, "%s%d", i ? "," : "", ids[i]);
		if (w < 0 || (size_t)w >= cap - len) {
			snprintf(buf + (len < cap - 4 ? len : cap - 4), 4, "...");
			break;
		}
		len += (size_t)w;
	}
	return buf;
}

static int topic_describe(struct cli_globals *g, const char *name)
{
	Streambus__V1__DescribeTopicRequest q = STREAMBUS__V1__DESCRIBE_TOPIC_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	char what[320];
	q.name = (char *)name;
	snprintf(what, sizeof what, "describe topic \"%.256s\"", name);
	int rc = admin_call(g, what, SBC_M_DESCRIBE_TOPIC, READ, &q.base,
	                    &streambus__v1__describe_topic_response__descriptor, &m);
	if (rc)
		return rc;
	Streambus__V1__DescribeTopicResponse *r = (Streambus__V1__DescribeTopicResponse *)m;
	if (r->topic) {
		printf("topic:       %s\n", r->topic->name);
		printf("partitions:  %d\n", r->topic->partitions);
		printf("replication: %d\n", r->topic->replication_factor);
		print_config(r->topic->config);
	}
	printf("%9s %14s %14s %14s %14s %8s %6s %-12s %s\n", "PARTITION", "START", "END",
	       "HIGH_WATERMARK", "SIZE_BYTES", "SEGMENTS", "LEADER", "REPLICAS", "ISR");
	for (size_t i = 0; i < r->n_partitions; i++) {
		const Streambus__V1__PartitionInfo *p = r->partitions[i];
		char replicas[SBC_ID_LIST_BYTES], isr[SBC_ID_LIST_BYTES];
		printf("%9d %14" PRId64 " %14" PRId64 " %14" PRId64 " %14" PRId64
		       " %8d %6d %-12s %s\n",
		       p->partition, p->log_start_offset, p->log_end_offset, p->high_watermark,
		       p->size_bytes, p->segments, p->leader,
		       id_list(p->replicas, p->n_replicas, replicas, sizeof replicas),
		       id_list(p->in_sync_replicas, p->n_in_sync_replicas, isr, sizeof isr));
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}

static int topic_delete(struct cli_globals *g, const char *name)
{
	Streambus__V1__DeleteTopicRequest q = STREAMBUS__V1__DELETE_TOPIC_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	char what[320];
	q.name = (char *)name;
	snprintf(what, sizeof what, "delete topic \"%.256s\"", name);
	int rc = admin_call(g, what, SBC_M_DELETE_TOPIC, WRITE, &q.base,
	                    &streambus__v1__delete_topic_response__descriptor, &m);
	if (rc)
		return rc;
	protobuf_c_message_free_unpacked(m, NULL);
	printf("deleted topic %s\n", name);
	return 0;
}

int cmd_topic(struct cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
	    CLI_GLOBAL_LONGOPTS,
	    {"partitions", required_argument, 0, 'p'},
	    {"fsync", required_argument, 0, OPT_FSYNC},
	    {"fsync-interval-ms", required_argument, 0, OPT_FSYNC_INTERVAL},
	    {"retention-bytes", required_argument, 0, OPT_RET_BYTES},
	    {"retention-ms", required_argument, 0, OPT_RET_MS},
	    {"segment-bytes", required_argument, 0, OPT_SEG_BYTES},
	    {"segment-ms", required_argument, 0, OPT_SEG_MS},
	    {"min-insync", required_argument, 0, OPT_MIN_INSYNC},
	    {"replication-factor", required_argument, 0, OPT_REPLICATION},
	    {0, 0, 0, 0},
	};
	Streambus__V1__CreateTopicRequest q = STREAMBUS__V1__CREATE_TOPIC_REQUEST__INIT;
	Streambus__V1__TopicConfig cfg = STREAMBUS__V1__TOPIC_CONFIG__INIT;
	int opt, rc, create_opts = 0;

	while ((opt = getopt_long(argc, argv, "hp:", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(topic_usage, stdout);
			return 0;
		}
		if (opt == '?' || opt == ':')
			return cli_bad_option("topic");
		rc = cli_global_opt(g, opt, optarg);
		if (rc < 0) {
			rc = parse_create_opt(opt, optarg, &q, &cfg);
			create_opts = 1;
		}
		if (rc)
			return rc;
	}
	if (optind >= argc)
		return cli_usage_error("topic",
		                       "missing subcommand: create, list, describe or delete");
	const char *sub = argv[optind++];
	int nargs = argc - optind;
	int wants_name = strcmp(sub, "list") != 0;
	if (strcmp(sub, "create") && strcmp(sub, "list") && strcmp(sub, "describe") &&
	    strcmp(sub, "delete"))
		return cli_usage_error(
		    "topic", "unknown subcommand \"%s\": use create, list, describe or delete",
		    sub);
	if (create_opts && strcmp(sub, "create"))
		return cli_usage_error("topic",
		                       "the topic settings options apply to 'topic create' only");
	if (wants_name && nargs != 1)
		return cli_usage_error("topic",
		                       nargs ? "'topic %s' takes one topic name"
		                             : "'topic %s' needs a topic name",
		                       sub);
	if (!wants_name && nargs)
		return cli_usage_error("topic", "'topic list' takes no arguments");
	const char *name = wants_name ? argv[optind] : NULL;
	if (strcmp(sub, "create") == 0) {
		q.config = &cfg; /* unset fields are 0/empty: the server's defaults */
		return topic_create(g, name, &q);
	}
	if (strcmp(sub, "list") == 0)
		return topic_list(g);
	if (strcmp(sub, "describe") == 0)
		return topic_describe(g, name);
	return topic_delete(g, name);
}
