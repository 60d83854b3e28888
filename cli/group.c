/* group.c - streambus group describe|commit: a consumer group's committed
 * offsets (StreamBus.FetchOffsets, with each partition's end and the lag),
 * and setting them by hand (StreamBus.CommitOffsets). */
#include "cli.h"
#include "client.h"

#include "streambus/v1/streambus.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char group_usage[] =
    "usage: streambus group describe -g GROUP -t TOPIC\n"
    "       streambus group commit -g GROUP -t TOPIC [--metadata TEXT] PARTITION=OFFSET...\n"
    "\n"
    "describe prints one line per partition: PARTITION COMMITTED END LAG METADATA\n"
    "(COMMITTED and LAG are - where the group never committed).\n"
    "commit records OFFSET as the group's next offset in PARTITION (send it to the leader).\n"
    "  -g, --group GROUP      consumer group\n"
    "  -t, --topic TOPIC      topic\n"
    "      --metadata TEXT    stored with each committed offset\n";

static int describe(struct sbc_conn *c, const char *group, const char *topic)
{
	Streambus__V1__FetchOffsetsRequest q = STREAMBUS__V1__FETCH_OFFSETS_REQUEST__INIT;
	Streambus__V1__DescribeTopicRequest dq = STREAMBUS__V1__DESCRIBE_TOPIC_REQUEST__INIT;
	ProtobufCMessage *m = NULL, *dm = NULL;
	struct sbc_status st;
	char what[600];
	int rc = 0;
	snprintf(what, sizeof what, "offsets of group \"%.200s\" on topic \"%.200s\"", group, topic);
	q.group = (char *)group;
	q.topic = (char *)topic;
	dq.name = (char *)topic;
	if (sbc_unary(c, SBC_M_FETCH_OFFSETS, &q.base, &streambus__v1__fetch_offsets_response__descriptor, &m, &st) ||
	    sbc_unary(c, SBC_M_DESCRIBE_TOPIC, &dq.base, &streambus__v1__describe_topic_response__descriptor, &dm,
	              &st)) {
		rc = sbc_report(what, &st);
		goto out;
	}
	Streambus__V1__FetchOffsetsResponse *r = (Streambus__V1__FetchOffsetsResponse *)m;
	Streambus__V1__DescribeTopicResponse *d = (Streambus__V1__DescribeTopicResponse *)dm;
	printf("%-9s %12s %12s %12s  %s\n", "PARTITION", "COMMITTED", "END", "LAG", "METADATA");
	for (size_t i = 0; i < d->n_partitions; i++) {
		const Streambus__V1__PartitionInfo *pi = d->partitions[i];
		const Streambus__V1__PartitionOffset *o = NULL;
		for (size_t k = 0; k < r->n_offsets; k++)
			if (r->offsets[k]->partition == pi->partition)
				o = r->offsets[k];
		if (o)
			printf("%-9d %12" PRId64 " %12" PRId64 " %12" PRId64 "  %s\n", pi->partition, o->offset,
			       pi->log_end_offset, pi->log_end_offset > o->offset ? pi->log_end_offset - o->offset : 0,
			       o->metadata);
		else
			printf("%-9d %12s %12" PRId64 " %12s\n", pi->partition, "-", pi->log_end_offset, "-");
	}
out:
	if (m)
		protobuf_c_message_free_unpacked(m, NULL);
	if (dm)
		protobuf_c_message_free_unpacked(dm, NULL);
	return rc;
}

static int commit(struct sbc_conn *c, const char *group, const char *topic, const char *metadata, int n,
                  char **args)
{
	Streambus__V1__CommitOffsetsRequest q = STREAMBUS__V1__COMMIT_OFFSETS_REQUEST__INIT;
	Streambus__V1__PartitionOffset *po = calloc((size_t)n, sizeof *po);
	Streambus__V1__PartitionOffset **pp = calloc((size_t)n, sizeof *pp);
	ProtobufCMessage *m = NULL;
	struct sbc_status st;
	char what[600];
	int rc = 0;
	if (!po || !pp) {
		rc = SBC_EXIT_ERROR;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		int64_t p, off;
		char *eq = strchr(args[i], '=');
		streambus__v1__partition_offset__init(&po[i]);
		if (!eq) {
			rc = cli_usage_error("group", "\"%s\" is not PARTITION=OFFSET", args[i]);
			goto out;
		}
		*eq = 0;
		if (cli_parse_i64(args[i], 0, INT32_MAX, &p) || cli_parse_i64(eq + 1, 0, INT64_MAX, &off)) {
			*eq = '=';
			rc = cli_usage_error("group", "\"%s\" is not PARTITION=OFFSET", args[i]);
			goto out;
		}
		*eq = '=';
		po[i].partition = (int32_t)p;
		po[i].offset = off;
		po[i].metadata = (char *)metadata;
		pp[i] = &po[i];
	}
	q.group = (char *)group;
	q.topic = (char *)topic;
	q.n_offsets = (size_t)n;
	q.offsets = pp;
	snprintf(what, sizeof what, "commit of group \"%.200s\" on topic \"%.200s\"", group, topic);
	if (sbc_unary(c, SBC_M_COMMIT_OFFSETS, &q.base, &streambus__v1__commit_offsets_response__descriptor, &m,
	              &st))
		rc = sbc_report(what, &st);
	else
		printf("committed %d offset%s\n", n, n == 1 ? "" : "s");
out:
	if (m)
		protobuf_c_message_free_unpacked(m, NULL);
	free(po);
	free(pp);
	return rc;
}

int cmd_group(struct cli_globals *g, int argc, char **argv)
{
	enum { OPT_METADATA = CLI_OPT_FIRST_LOCAL };
	static const struct option opts[] = {
	    CLI_GLOBAL_LONGOPTS,
	    {"group", required_argument, 0, 'g'},
	    {"topic", required_argument, 0, 't'},
	    {"metadata", required_argument, 0, OPT_METADATA},
	    {0, 0, 0, 0},
	};
	const char *group = NULL, *topic = NULL, *metadata = "", *sub;
	struct sbc_conn c;
	int opt, rc;
	while ((opt = getopt_long(argc, argv, "hg:t:", opts, NULL)) != -1) {
		switch (opt) {
		case 'h': fputs(group_usage, stdout); return 0;
		case 'g': group = optarg; break;
		case 't': topic = optarg; break;
		case OPT_METADATA: metadata = optarg; break;
		case '?':
		case ':': return cli_bad_option("group");
		default:
			if ((rc = cli_global_opt(g, opt, optarg)) != 0)
				return rc;
		}
	}
	if (optind >= argc)
		return cli_usage_error("group", "missing subcommand: describe or commit");
	sub = argv[optind++];
	if (!group || !topic)
		return cli_usage_error("group", "-g GROUP and -t TOPIC are required");
	if (strcmp(sub, "describe") && strcmp(sub, "commit"))
		return cli_usage_error("group", "unknown subcommand \"%s\": describe or commit", sub);
	if (!strcmp(sub, "describe") && optind < argc)
		return cli_usage_error("group", "unexpected argument \"%s\"", argv[optind]);
	if (!strcmp(sub, "commit") && optind >= argc)
		return cli_usage_error("group", "commit needs PARTITION=OFFSET arguments");
	cli_init(g);
	sbc_conn_init(&c, g->server, g->timeout_s);
	rc = !strcmp(sub, "describe") ? describe(&c, group, topic)
	                              : commit(&c, group, topic, metadata, argc - optind, argv + optind);
	sbc_conn_fini(&c);
	return rc;
}
