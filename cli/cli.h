/* cli.h - what the streambus commands share: global options, the command
 * entry points, option-parsing helpers and the SIGINT flag. */
#ifndef SB_CLI_CLI_H
#define SB_CLI_CLI_H

#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct sbc_conn; /* client.h */

#define SBC_DEFAULT_SERVER "127.0.0.1:7070"
#define SBC_DEFAULT_TIMEOUT_S 10.0

/* Full method names. */
#define SBC_M_PRODUCE "/streambus.v1.StreamBus/Produce"
#define SBC_M_CONSUME "/streambus.v1.StreamBus/Consume"
#define SBC_M_LOOKUP "/streambus.v1.StreamBus/Lookup"
#define SBC_M_COMMIT_OFFSETS "/streambus.v1.StreamBus/CommitOffsets"
#define SBC_M_FETCH_OFFSETS "/streambus.v1.StreamBus/FetchOffsets"
#define SBC_M_CREATE_TOPIC "/streambus.v1.Admin/CreateTopic"
#define SBC_M_DELETE_TOPIC "/streambus.v1.Admin/DeleteTopic"
#define SBC_M_LIST_TOPICS "/streambus.v1.Admin/ListTopics"
#define SBC_M_DESCRIBE_TOPIC "/streambus.v1.Admin/DescribeTopic"
#define SBC_M_CLUSTER_INFO "/streambus.v1.Admin/GetClusterInfo"
#define SBC_M_HEALTH_CHECK "/grpc.health.v1.Health/Check"

/* Trailing metadata of a write refused by a follower: the leader's HOST:PORT. */
#define SBC_MD_LEADER "streambus-leader"

/* Options every command accepts (before or after the command name). */
struct cli_globals {
	char server[256];
	double timeout_s;
	/* Security (docs/SECURITY.md): PEM paths and a bearer token. */
	char tls_ca[1024], tls_cert[1024], tls_key[1024], tls_server_name[256];
	char token[4096];
};

/* getopt_long entries for the global options; each command's table starts
 * with these and passes unknown-to-it results to cli_global_opt. */
enum {
	CLI_OPT_SERVER = 0x1000,
	CLI_OPT_TIMEOUT,
	CLI_OPT_TLS_CA,
	CLI_OPT_TLS_CERT,
	CLI_OPT_TLS_KEY,
	CLI_OPT_TLS_SERVER_NAME,
	CLI_OPT_TOKEN,
	CLI_OPT_FIRST_LOCAL = 0x1100
};
/* clang-format off */
#define CLI_GLOBAL_LONGOPTS \
	{"server", required_argument, 0, CLI_OPT_SERVER}, \
	{"timeout", required_argument, 0, CLI_OPT_TIMEOUT}, \
	{"tls-ca", required_argument, 0, CLI_OPT_TLS_CA}, \
	{"tls-cert", required_argument, 0, CLI_OPT_TLS_CERT}, \
	{"tls-key", required_argument, 0, CLI_OPT_TLS_KEY}, \
	{"tls-server-name", required_argument, 0, CLI_OPT_TLS_SERVER_NAME}, \
	{"token", required_argument, 0, CLI_OPT_TOKEN}, \
	{"help", no_argument, 0, 'h'}
/* clang-format on */

/* Handles a global option returned by getopt_long. 0 if handled, 2 (usage
 * error, already reported) if its argument is bad, -1 if opt is not global. */
int cli_global_opt(struct cli_globals *g, int opt, const char *arg);
/* Starts gRPC and applies the security options to every connection; a PEM
 * file that cannot be read ends the program (exit status 2). */
void cli_init(struct cli_globals *g);

/* Each command: argv[0] is the command name; returns the exit status. */
int cmd_topic(struct cli_globals *g, int argc, char **argv);
int cmd_produce(struct cli_globals *g, int argc, char **argv);
int cmd_consume(struct cli_globals *g, int argc, char **argv);
int cmd_health(struct cli_globals *g, int argc, char **argv);
int cmd_lookup(struct cli_globals *g, int argc, char **argv);
int cmd_group(struct cli_globals *g, int argc, char **argv);

/* Monotonic milliseconds. */
static inline int64_t cli_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
int cmd_bench(struct cli_globals *g, int argc, char **argv);
int cmd_cluster(struct cli_globals *g, int argc, char **argv);

/* Leader redirect (cluster.c). After a write failed with UNAVAILABLE at the
 * node c connects to, asks that node (Admin.GetClusterInfo) whether it is a
 * follower and who leads: 0 with the leader's HOST:PORT in addr[0..cap) if
 * the node is not the leader and names a leader other than c->target; -1
 * otherwise (the node leads, knows no leader, or the call failed: the
 * original error stands). Unary calls need this look-up because sbc_unary
 * does not return trailing metadata; streams read SBC_MD_LEADER instead.
 * Runs one unary call with c's deadline, on c's thread. */
int cli_follower_leader(struct sbc_conn *c, char *addr, size_t cap);
/* Prints the one-line note "streambus: node FOLLOWER is a follower; sending
 * to the leader at LEADER" on stderr (after flushing stdout). */
void cli_note_redirect(const char *follower, const char *leader);

/* Prints "streambus: <cmd>: <message>" and a hint to use --help; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reports an unrecognised option or missing argument from getopt (which
 * already printed why); returns 2. */
int cli_bad_option(const char *cmd);
/* Parses a decimal integer in [min, max]; 0 or -1. */
int cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
/* Parses a size with an optional k/m/g suffix (powers of 1024). 0 or -1. */
int cli_parse_size(const char *s, int64_t min, int64_t max, int64_t *out);
/* Unescapes \t, \n, \\, \0 and \xHH in a -K separator into buf; returns
 * its length (>= 1) or -1 if empty or invalid. */
int cli_parse_separator(const char *s, char *buf, int cap);

/* Set by the SIGINT/SIGTERM handler that cli_catch_signals installs. */
extern volatile sig_atomic_t cli_interrupted;
/* Installs the handler (without SA_RESTART, so blocking reads return EINTR). */
void cli_catch_signals(void);

#endif
