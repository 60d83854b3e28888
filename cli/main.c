/* main.c - streambus, a kcat-like command-line client for StreamBus:
 * global options, dispatch to the commands, usage, shared option helpers. */
#include "cli.h"
#include "client.h"

#include <errno.h>
#include <stdarg.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

volatile sig_atomic_t cli_interrupted;

static const char usage_text[] =
    "usage: streambus [--server HOST:PORT] [--timeout SECONDS] COMMAND [ARGS]\n"
    "\n"
    "A command-line client for StreamBus.\n"
    "\n"
    "commands:\n"
    "  topic create|list|describe|delete   manage topics\n"
    "  produce -t TOPIC                    one record per line of stdin\n"
    "  consume -t TOPIC                    records to stdout (follows the tail unless -e or -c)\n"
    "  lookup -t TOPIC KEY...              the newest record of each key\n"
    "  group describe|commit -g GROUP      a consumer group's committed offsets and lag\n"
    "  cluster info                        the cluster's nodes, their roles, the leader epoch\n"
    "  cluster promote NODE_ID             make a node the leader (--unclean if out of sync)\n"
    "  health                              the server's serving status\n"
    "  bench                               produce/consume benchmark against a running server\n"
    "\n"
    "global options (before or after the command):\n"
    "  --server HOST:PORT   server address (default $STREAMBUS_SERVER, else " SBC_DEFAULT_SERVER
    ")\n"
    "  --timeout SECONDS    deadline of unary calls and of connecting (default 10)\n"
    "  --tls-ca FILE        use TLS; verify the server against this PEM CA bundle\n"
    "  --tls-cert FILE      client certificate (PEM) for servers that require one (mTLS)\n"
    "  --tls-key FILE       its private key (PEM)\n"
    "  --tls-server-name N  name to check in the server's certificate (default: the host)\n"
    "  --token TOKEN        bearer token (default $STREAMBUS_TOKEN)\n"
    "  -h, --help           help; 'streambus COMMAND --help' for a command's options\n"
    "  --version            print the version\n"
    "\n"
    "In a cluster, writes (topic create, topic delete, produce) go to the leader: one\n"
    "sent to a follower is retried once at the leader that follower names, with a note\n"
    "on stderr. Reads (consume, topic list/describe) work on every node.\n"
    "\n"
    "exit status:\n"
    "  0  success\n"
    "  1  other error (an internal or unknown server error, a failed produce request, I/O)\n"
    "  2  usage error\n"
    "  3  not found (unknown topic, partition or health service)\n"
    "  4  unavailable (cannot connect, deadline exceeded, server shutting down)\n"
    "  5  already exists\n"
    "  6  invalid argument or out of range (rejected by the server)\n"
    "  7  resource exhausted (message too large, partition busy, disk full)\n"
    "  8  health: the server is not serving\n"
    "  9  not authenticated, or not allowed (token missing, unknown or lacking permission)\n"
    "\n"
    "errors go to stderr as: streambus: <what failed>: <gRPC status>: <server message>\n";

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "streambus: %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'streambus %s --help'.\n", cmd);
	return SBC_EXIT_USAGE;
}

int cli_bad_option(const char *cmd)
{
	fprintf(stderr, "Try 'streambus %s --help'.\n", cmd);
	return SBC_EXIT_USAGE;
}

int cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int cli_parse_size(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	int shift = 0;
	if (errno || end == s || v < 0)
		return -1;
	if (*end == 'k' || *end == 'K')
		shift = 10;
	else if (*end == 'm' || *end == 'M')
		shift = 20;
	else if (*end == 'g' || *end == 'G')
		shift = 30;
	if (shift)
		end++;
	if (*end || (shift && v > (INT64_MAX >> shift)))
		return -1;
	v <<= shift;
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int cli_parse_separator(const char *s, char *buf, int cap)
{
	int n = 0;
	for (; *s; s++) {
		char c = *s;
		if (c == '\\' && s[1]) {
			s++;
			switch (*s) {
			case 't':
				c = '\t';
				break;
			case 'n':
				c = '\n';
				break;
			case '0':
				c = 0;
				break;
			case '\\':
				c = '\\';
				break;
			case 'x':
				if (hexval(s[1]) < 0 || hexval(s[2]) < 0)
					return -1;
				c = (char)(hexval(s[1]) * 16 + hexval(s[2]));
				s += 2;
				break;
			default:
				return -1;
			}
		}
		if (n == cap)
			return -1;
		buf[n++] = c;
	}
	return n ? n : -1;
}

static int set_str(char *dst, size_t cap, const char *flag, const char *arg)
{
	if (strlen(arg) >= cap)
		return cli_usage_error(flag, "value too long (at most %zu bytes)", cap - 1);
	snprintf(dst, cap, "%s", arg);
	return 0;
}

void cli_init(struct cli_globals *g)
{
	struct sbc_status st;
	struct sbc_security s = {
	    .tls_ca = g->tls_ca,
	    .tls_cert = g->tls_cert,
	    .tls_key = g->tls_key,
	    .tls_server_name = g->tls_server_name,
	    .token = g->token,
	};
	sbc_global_init();
	if (sbc_security_set(&s, &st) != 0) {
		fprintf(stderr, "streambus: %s\n", st.msg);
		exit(SBC_EXIT_USAGE);
	}
}

static int set_server(struct cli_globals *g, const char *arg)
{
	if (!arg[0] || strlen(arg) >= sizeof g->server)
		return cli_usage_error("--server", "invalid address \"%s\": use HOST:PORT", arg);
	snprintf(g->server, sizeof g->server, "%s", arg);
	return 0;
}

int cli_global_opt(struct cli_globals *g, int opt, const char *arg)
{
	char *end;
	switch (opt) {
	case CLI_OPT_SERVER:
		return set_server(g, arg);
	case CLI_OPT_TIMEOUT:
		errno = 0;
		g->timeout_s = strtod(arg, &end);
		if (errno || end == arg || *end || !(g->timeout_s > 0) || g->timeout_s > 86400)
			return cli_usage_error(
			    "--timeout", "invalid value \"%s\": use seconds in (0, 86400]", arg);
		return 0;
	case CLI_OPT_TLS_CA: return set_str(g->tls_ca, sizeof g->tls_ca, "--tls-ca", arg);
	case CLI_OPT_TLS_CERT: return set_str(g->tls_cert, sizeof g->tls_cert, "--tls-cert", arg);
	case CLI_OPT_TLS_KEY: return set_str(g->tls_key, sizeof g->tls_key, "--tls-key", arg);
	case CLI_OPT_TLS_SERVER_NAME:
		return set_str(g->tls_server_name, sizeof g->tls_server_name, "--tls-server-name", arg);
	case CLI_OPT_TOKEN: return set_str(g->token, sizeof g->token, "--token", arg);
	default:
		return -1;
	}
}

static void on_signal(int sig)
{
	(void)sig;
	if (cli_interrupted) /* a second Ctrl-C: give up at once */
		_exit(130);
	cli_interrupted = 1;
}

void cli_catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static const struct {
	const char *name;
	int (*fn)(struct cli_globals *g, int argc, char **argv);
} commands[] = {
    {"topic", cmd_topic},   {"produce", cmd_produce}, {"consume", cmd_consume},
    {"health", cmd_health}, {"lookup", cmd_lookup}, {"group", cmd_group}, {"bench", cmd_bench},     {"cluster", cmd_cluster},
};

int main(int argc, char **argv)
{
	struct cli_globals g;
	static const struct option opts[] = {
	    CLI_GLOBAL_LONGOPTS, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
	const char *env = getenv("STREAMBUS_SERVER");
	int opt, rc;

	memset(&g, 0, sizeof g);
	snprintf(g.server, sizeof g.server, "%s", env && env[0] ? env : SBC_DEFAULT_SERVER);
	g.timeout_s = SBC_DEFAULT_TIMEOUT_S;
	const char *tok = getenv("STREAMBUS_TOKEN");
	if (tok && strlen(tok) < sizeof g.token)
		snprintf(g.token, sizeof g.token, "%s", tok);
	signal(SIGPIPE, SIG_IGN); /* a closed stdout is reported as a write error */
	/* Large messages stay on the heap: see the same setting in streambusd.c. */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 128 << 20);
	while ((opt = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(usage_text, stdout);
			return 0;
		}
		if (opt == 'V') {
			printf("streambus %s\n", SB_VERSION);
			return 0;
		}
		rc = cli_global_opt(&g, opt, optarg);
		if (rc > 0)
			return rc;
		if (rc < 0) {
			fputs("Try 'streambus --help'.\n", stderr);
			return SBC_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fputs(usage_text, stderr);
		return SBC_EXIT_USAGE;
	}
	const char *name = argv[optind];
	for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
		if (strcmp(name, commands[i].name) == 0) {
			int cargc = argc - optind;
			char **cargv = argv + optind;
			optind = 0; /* glibc: restart getopt for the command's own options */
			return commands[i].fn(&g, cargc, cargv);
		}
	}
	fprintf(stderr, "streambus: unknown command \"%s\"\nTry 'streambus --help'.\n", name);
	return SBC_EXIT_USAGE;
}
