/* lookup.c - streambus lookup: StreamBus/Lookup, the newest record of each
 * key from the partitions' key stores. */
#include "cli.h"
#include "client.h"
#include "format.h"

#include "streambus/v1/streambus.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char lookup_usage[] =
    "usage: streambus lookup -t TOPIC [-p PARTITION] [--json] KEY...\n"
    "\n"
    "Prints the newest record of each KEY: its value (one line per key), or with\n"
    "--json one object per key: {\"key\",\"found\",\"partition\",\"offset\",\"timestamp_ms\",\n"
    "\"value\",\"headers\"}. A key no record has (or whose newest record is a\n"
    "tombstone) prints an empty line (\"found\":false with --json).\n"
    "  -t, --topic NAME       topic (required)\n"
    "  -p, --partition N      look in partition N (default: the partition produce picks\n"
    "                         for the key)\n"
    "      --json             JSON lines\n"
    "Exit status: 0 if every key was found; 3 if some was not (or no such topic);\n"
    "see 'streambus --help' for the others.\n";

static void print_result(const Streambus__V1__LookupResult *r, int json)
{
	FILE *f = stdout;
	const Streambus__V1__ConsumedRecord *rec = r->record;
	if (!json) {
		if (r->found && rec && rec->value.len)
			fwrite(rec->value.data, 1, rec->value.len, f);
		putc('\n', f);
		return;
	}
	putc('{', f);
	sbc_json_bytes_field(f, "key", r->key.data, r->key.len);
	fprintf(f, ",\"found\":%s,\"partition\":%d", r->found ? "true" : "false", r->partition);
	if (r->found && rec) {
		fprintf(f, ",\"offset\":%" PRId64 ",\"timestamp_ms\":%" PRId64 ",", rec->offset, rec->timestamp_ms);
		sbc_json_bytes_field(f, "value", rec->value.data, rec->value.len);
		putc(',', f);
		sbc_json_headers(f, rec->headers, rec->n_headers);
	}
	fputs("}\n", f);
}

int cmd_lookup(struct cli_globals *g, int argc, char **argv)
{
	enum { OPT_JSON = CLI_OPT_FIRST_LOCAL };
	static const struct option opts[] = {
	    CLI_GLOBAL_LONGOPTS,
	    {"topic", required_argument, 0, 't'},
	    {"partition", required_argument, 0, 'p'},
	    {"json", no_argument, 0, OPT_JSON},
	    {0, 0, 0, 0},
	};
	Streambus__V1__LookupRequest q = STREAMBUS__V1__LOOKUP_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	ProtobufCBinaryData *keys = NULL;
	struct sbc_conn c;
	struct sbc_status st;
	const char *topic = NULL;
	char what[600];
	int opt, rc, json = 0;
	long part = -1;

	while ((opt = getopt_long(argc, argv, "ht:p:", opts, NULL)) != -1) {
		char *end;
		switch (opt) {
		case 'h': fputs(lookup_usage, stdout); return 0;
		case 't': topic = optarg; break;
		case 'p':
			part = strtol(optarg, &end, 10);
			if (*optarg == 0 || *end || part < 0 || part > INT32_MAX)
				return cli_usage_error("lookup", "bad --partition \"%s\"", optarg);
			break;
		case OPT_JSON: json = 1; break;
		case '?':
		case ':': return cli_bad_option("lookup");
		default:
			if ((rc = cli_global_opt(g, opt, optarg)) != 0)
				return rc;
		}
	}
	if (!topic)
		return cli_usage_error("lookup", "--topic is required");
	if (optind >= argc)
		return cli_usage_error("lookup", "no KEY given");
	if (!(keys = calloc((size_t)(argc - optind), sizeof *keys)))
		return SBC_EXIT_ERROR;
	for (int i = optind; i < argc; i++) {
		keys[i - optind].data = (uint8_t *)argv[i];
		keys[i - optind].len = strlen(argv[i]);
	}
	q.topic = (char *)topic;
	q.partition = (int32_t)part;
	q.n_keys = (size_t)(argc - optind);
	q.keys = keys;
	snprintf(what, sizeof what, "lookup in topic \"%.200s\" at %s", topic, g->server);
	cli_init(g);
	sbc_conn_init(&c, g->server, g->timeout_s);
	if (sbc_unary(&c, SBC_M_LOOKUP, &q.base, &streambus__v1__lookup_response__descriptor, &m, &st)) {
		rc = sbc_report(what, &st);
	} else {
		Streambus__V1__LookupResponse *r = (Streambus__V1__LookupResponse *)m;
		rc = SBC_EXIT_OK;
		for (size_t i = 0; i < r->n_results; i++) {
			print_result(r->results[i], json);
			if (!r->results[i]->found)
				rc = SBC_EXIT_NOT_FOUND;
		}
		protobuf_c_message_free_unpacked(m, NULL);
	}
	sbc_conn_fini(&c);
	free(keys);
	return rc;
}
