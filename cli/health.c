/* health.c - streambus health: grpc.health.v1.Health/Check. */
#include "cli.h"
#include "client.h"

#include "grpc/health/v1/health.pb-c.h"

#include <stdio.h>
#include <string.h>

static const char health_usage[] =
    "usage: streambus health [--service readiness|liveness|\"\"]\n"
    "\n"
    "Asks grpc.health.v1.Health/Check and prints SERVING or NOT_SERVING.\n"
    "  --service NAME   \"\" (default) and readiness: NOT_SERVING while the server drains;\n"
    "                   liveness: SERVING while the process runs\n"
    "Exit status: 0 only if SERVING; 8 if NOT_SERVING; 3 for an unknown service;\n"
    "4 if the server cannot be reached within --timeout.\n";

static const char *serving_name(Grpc__Health__V1__HealthCheckResponse__ServingStatus s)
{
	switch (s) {
	case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING:
		return "SERVING";
	case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING:
		return "NOT_SERVING";
	case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN:
		return "SERVICE_UNKNOWN";
	default:
		return "UNKNOWN";
	}
}

int cmd_health(struct cli_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {
	    CLI_GLOBAL_LONGOPTS,
	    {"service", required_argument, 0, 's'},
	    {0, 0, 0, 0},
	};
	Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	struct sbc_conn c;
	struct sbc_status st;
	char what[600];
	int opt, rc;

	q.service = "";
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(health_usage, stdout);
			return 0;
		}
		if (opt == '?' || opt == ':')
			return cli_bad_option("health");
		if (opt == 's') {
			q.service = optarg;
			continue;
		}
		if ((rc = cli_global_opt(g, opt, optarg)) != 0)
			return rc;
	}
	if (optind < argc)
		return cli_usage_error("health", "unexpected argument \"%s\"", argv[optind]);
	snprintf(what, sizeof what, "health check of service \"%.200s\" at %s", q.service,
	         g->server);
	cli_init(g);
	sbc_conn_init(&c, g->server, g->timeout_s);
	if (sbc_unary(&c, SBC_M_HEALTH_CHECK, &q.base,
	              &grpc__health__v1__health_check_response__descriptor, &m, &st)) {
		rc = sbc_report(what, &st);
	} else {
		Grpc__Health__V1__HealthCheckResponse *r =
		    (Grpc__Health__V1__HealthCheckResponse *)m;
		printf("%s\n", serving_name(r->status));
		rc = r->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
		         ? SBC_EXIT_OK
		         : SBC_EXIT_NOT_SERVING;
		protobuf_c_message_free_unpacked(m, NULL);
	}
	sbc_conn_fini(&c);
	sbc_global_fini();
	return rc;
}
