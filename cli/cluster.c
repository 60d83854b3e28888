/* cluster.c - streambus cluster info (Admin.GetClusterInfo), and the leader
 * look-up that the write commands use to follow a follower's refusal to the
 * leader. */
#include "cli.h"
#include "client.h"
#include "format.h"

#include "streambus/v1/streambus.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char cluster_usage[] =
    "usage: streambus cluster info [--json]\n"
    "       streambus cluster promote NODE_ID [--unclean]\n"
    "\n"
    "promote: makes node NODE_ID the leader with the next epoch. The command finds the\n"
    "node's address through --server (any node of the cluster) and asks that node. A\n"
    "follower the leader last saw out of sync is refused unless --unclean is given;\n"
    "the answer says how many records the old leader had that it lacks.\n"
    "info: asks the server (--server) who is in its cluster: every node's id, address and\n"
    "role (leader or follower), the id of the node that answered, the leader and the\n"
    "leader epoch. A server started without --peers is a cluster of one, its own leader.\n"
    "  --json    one JSON object instead of the table:\n"
    "            {\"node_id\":N,\"leader_id\":N,\"leader_epoch\":N,\n"
    "             \"nodes\":[{\"id\":N,\"address\":\"HOST:PORT\",\"role\":\"leader\"},...]}\n"
    "            (leader_id is -1 if the node knows no leader)\n"
    "\n"
    "Writes sent to a follower (topic create/delete, produce) are retried once at the\n"
    "leader it names, with a note on stderr.\n"
    "Exit status: 0; 4 if the server cannot be reached within --timeout; see\n"
    "'streambus --help'.\n";

enum { OPT_JSON = CLI_OPT_FIRST_LOCAL, OPT_UNCLEAN };

void cli_note_redirect(const char *follower, const char *leader)
{
	fflush(stdout);
	fprintf(stderr, "streambus: node %s is a follower; sending to the leader at %s\n", follower,
	        leader);
}

/* The node in r whose role is "leader", or NULL. */
static const Streambus__V1__NodeInfo *leader_of(const Streambus__V1__GetClusterInfoResponse *r)
{
	for (size_t i = 0; i < r->n_nodes; i++)
		if (strcmp(r->nodes[i]->role, "leader") == 0)
			return r->nodes[i];
	return NULL;
}

int cli_follower_leader(struct sbc_conn *c, char *addr, size_t cap)
{
	Streambus__V1__GetClusterInfoRequest q = STREAMBUS__V1__GET_CLUSTER_INFO_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	struct sbc_status st;
	int rc = -1;
	if (sbc_unary(c, SBC_M_CLUSTER_INFO, &q.base,
	              &streambus__v1__get_cluster_info_response__descriptor, &m, &st) != 0)
		return -1;
	const Streambus__V1__GetClusterInfoResponse *r = (Streambus__V1__GetClusterInfoResponse *)m;
	const Streambus__V1__NodeInfo *lead = leader_of(r);
	/* A node that calls itself the leader refused for another reason
	 * (draining, not enough in-sync replicas): nothing to follow. */
	if (lead && lead->id != r->node_id && lead->address[0] && strlen(lead->address) < cap &&
	    strcmp(lead->address, c->target) != 0) {
		snprintf(addr, cap, "%s", lead->address);
		rc = 0;
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

static int cmp_nodes(const void *a, const void *b)
{
	int32_t x = (*(Streambus__V1__NodeInfo *const *)a)->id;
	int32_t y = (*(Streambus__V1__NodeInfo *const *)b)->id;
	return (x > y) - (x < y);
}

static void print_json_str(const char *s)
{
	sbc_json_string(stdout, (const uint8_t *)s, strlen(s));
}

static void print_json(const Streambus__V1__GetClusterInfoResponse *r)
{
	const Streambus__V1__NodeInfo *lead = leader_of(r);
	printf("{\"node_id\":%d,\"leader_id\":%d,\"leader_epoch\":%" PRId64 ",\"nodes\":[",
	       r->node_id, lead ? lead->id : -1, r->leader_epoch);
	for (size_t i = 0; i < r->n_nodes; i++) {
		printf("%s{\"id\":%d,\"address\":", i ? "," : "", r->nodes[i]->id);
		print_json_str(r->nodes[i]->address);
		fputs(",\"role\":", stdout);
		print_json_str(r->nodes[i]->role);
		fputs("}", stdout);
	}
	fputs("]}\n", stdout);
}

static void print_table(const Streambus__V1__GetClusterInfoResponse *r)
{
	const Streambus__V1__NodeInfo *lead = leader_of(r);
	printf("node:         %d\n", r->node_id);
	if (lead)
		printf("leader:       %d at %s\n", lead->id, lead->address);
	else
		printf("leader:       unknown\n");
	printf("leader_epoch: %" PRId64 "\n", r->leader_epoch);
	printf("%6s  %-32s %s\n", "NODE", "ADDRESS", "ROLE");
	for (size_t i = 0; i < r->n_nodes; i++) {
		const Streambus__V1__NodeInfo *n = r->nodes[i];
		printf("%6d  %-32s %s%s\n", n->id, n->address[0] ? n->address : "-", n->role,
		       n->id == r->node_id ? " (this node)" : "");
	}
}

static int cluster_info(struct cli_globals *g, int json)
{
	Streambus__V1__GetClusterInfoRequest q = STREAMBUS__V1__GET_CLUSTER_INFO_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	struct sbc_conn c;
	struct sbc_status st;
	char what[320];
	int rc = SBC_EXIT_OK;

	snprintf(what, sizeof what, "cluster info from %s", g->server);
	cli_init(g);
	sbc_conn_init(&c, g->server, g->timeout_s);
	if (sbc_unary(&c, SBC_M_CLUSTER_INFO, &q.base,
	              &streambus__v1__get_cluster_info_response__descriptor, &m, &st) != 0) {
		rc = sbc_report(what, &st);
	} else {
		Streambus__V1__GetClusterInfoResponse *r =
		    (Streambus__V1__GetClusterInfoResponse *)m;
		qsort(r->nodes, r->n_nodes, sizeof *r->nodes, cmp_nodes);
		if (json)
			print_json(r);
		else
			print_table(r);
		protobuf_c_message_free_unpacked(m, NULL);
		if (ferror(stdout) || fflush(stdout)) {
			fprintf(stderr, "streambus: cluster info: writing stdout failed\n");
			rc = SBC_EXIT_ERROR;
		}
	}
	sbc_conn_fini(&c);
	sbc_global_fini();
	return rc;
}

/* The address of node id, asked of c; 0 or -1 with *st filled. */
static int node_address(struct sbc_conn *c, int32_t id, char *addr, size_t cap, struct sbc_status *st)
{
	Streambus__V1__GetClusterInfoRequest q = STREAMBUS__V1__GET_CLUSTER_INFO_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	int rc = -1;
	if (sbc_unary(c, SBC_M_CLUSTER_INFO, &q.base, &streambus__v1__get_cluster_info_response__descriptor,
	              &m, st) != 0)
		return -1;
	const Streambus__V1__GetClusterInfoResponse *r = (Streambus__V1__GetClusterInfoResponse *)m;
	for (size_t i = 0; i < r->n_nodes; i++)
		if (r->nodes[i]->id == id && strlen(r->nodes[i]->address) < cap) {
			/* A single node reports the address it listens on; ask it where we reached it. */
			snprintf(addr, cap, "%s", r->n_nodes == 1 ? c->target : r->nodes[i]->address);
			rc = 0;
		}
	if (rc) {
		st->code = GRPC_STATUS_NOT_FOUND;
		snprintf(st->msg, sizeof st->msg, "node %d is not in the cluster of %s", id, c->target);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

static int cluster_promote(struct cli_globals *g, int32_t id, int unclean)
{
	Streambus__V1__PromoteRequest q = STREAMBUS__V1__PROMOTE_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	struct sbc_conn c, t;
	struct sbc_status st;
	char addr[256], what[320];
	int rc = SBC_EXIT_OK;

	snprintf(what, sizeof what, "cluster promote %d", id);
	cli_init(g);
	sbc_conn_init(&c, g->server, g->timeout_s);
	if (node_address(&c, id, addr, sizeof addr, &st)) {
		rc = sbc_report(what, &st);
		goto out;
	}
	sbc_conn_init(&t, addr, g->timeout_s);
	q.node_id = id;
	q.unclean = unclean;
	if (sbc_unary(&t, "/streambus.v1.Admin/Promote", &q.base, &streambus__v1__promote_response__descriptor,
	              &m, &st) != 0) {
		rc = sbc_report(what, &st);
	} else {
		const Streambus__V1__PromoteResponse *r = (Streambus__V1__PromoteResponse *)m;
		printf("node %d leads at epoch %" PRId64 " (%s", r->leader_id, r->leader_epoch,
		       r->was_in_sync ? "it was in sync" : "it was NOT in sync");
		if (r->records_at_risk > 0)
			printf("; %" PRId64 " records of the old leader may be lost", r->records_at_risk);
		printf(")\n");
		protobuf_c_message_free_unpacked(m, NULL);
	}
	sbc_conn_fini(&t);
out:
	sbc_conn_fini(&c);
	sbc_global_fini();
	return rc;
}

int cmd_cluster(struct cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
	    CLI_GLOBAL_LONGOPTS,
	    {"json", no_argument, 0, OPT_JSON},
	    {"unclean", no_argument, 0, OPT_UNCLEAN},
	    {0, 0, 0, 0},
	};
	int opt, rc, json = 0, unclean = 0;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(cluster_usage, stdout);
			return 0;
		}
		if (opt == '?' || opt == ':')
			return cli_bad_option("cluster");
		if (opt == OPT_JSON || opt == OPT_UNCLEAN) {
			*(opt == OPT_JSON ? &json : &unclean) = 1;
			continue;
		}
		if ((rc = cli_global_opt(g, opt, optarg)) != 0)
			return rc;
	}
	if (optind >= argc)
		return cli_usage_error("cluster", "missing subcommand: info or promote");
	const char *sub = argv[optind++];
	if (strcmp(sub, "promote") == 0) {
		char *end;
		long id = optind < argc ? strtol(argv[optind], &end, 10) : -1;
		if (optind >= argc || *end || id < 0 || id > 1023)
			return cli_usage_error("cluster", "promote needs a node id (0-1023)");
		if (optind + 1 < argc)
			return cli_usage_error("cluster", "unexpected argument \"%s\"", argv[optind + 1]);
		return cluster_promote(g, (int32_t)id, unclean);
	}
	if (strcmp(sub, "info") != 0)
		return cli_usage_error("cluster", "unknown subcommand \"%s\": use info or promote", sub);
	if (optind < argc)
		return cli_usage_error("cluster", "unexpected argument \"%s\"", argv[optind]);
	return cluster_info(g, json);
}
