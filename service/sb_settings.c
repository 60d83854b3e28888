/* sb_settings.c - the settings table and its three sources (see sb_settings.h). */
#include "sb_settings.h"

#include "sb_limits.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum kind { INT, STR, FLAG };

struct setting {
	const char *name; /* flag --name, env STREAMBUS_NAME, file key name */
	enum kind kind;
	size_t off;
	size_t size;      /* STR: buffer size */
	const char *def;
	int64_t min, max;
	const char *choices; /* STR: "a|b|c" or NULL */
	const char *help;
};

#define S(f) offsetof(struct sb_settings, f), sizeof(((struct sb_settings *)0)->f)
static const struct setting table[] = {
	{"listen", STR, S(listen), "127.0.0.1:7070", 0, 0, NULL, "address to serve gRPC on (HOST:PORT)"},
	{"data-dir", STR, S(data_dir), "./data", 0, 0, NULL, "directory holding all topics"},
	{"io", STR, S(io), "auto", 0, 0, "auto|uring|sync", "I/O engine: io_uring, the pwrite/fdatasync fallback, or auto"},
	{"log-level", STR, S(log_level), "info", 0, 0, "error|warn|info|debug", "log threshold"},
	{"log-format", STR, S(log_format), "logfmt", 0, 0, "logfmt|json", "log line format on stderr"},
	{"config", STR, S(config), "", 0, 0, NULL, "optional config file of key = value lines (keys as flag names)"},
	{"node-id", INT, S(node_id), "0", 0, 1023, NULL, "this node's id"},
	{"peers", STR, S(peers), "", 0, 0, NULL, "cluster nodes as ID=HOST:PORT,... including this one (empty: single node)"},
	{"leader-id", INT, S(leader_id), "-1", -1, 1023, NULL, "node that leads first (-1: the lowest id in --peers)"},
	{"replica-lag-max-ms", INT, S(replica_lag_max_ms), "10000", 100, 3600000, NULL, "a follower this far behind the leader's end leaves the in-sync set"},
	{"workers", INT, S(workers), "2", 1, 64, NULL, "gRPC completion-queue worker threads"},
	{"default-partitions", INT, S(default_partitions), "1", 1, SB_PARTITIONS_MAX, NULL, "partitions of a new topic when unspecified"},
	{"fsync-policy", STR, S(fsync_policy), "always", 0, 0, "always|interval|never", "default fsync policy of new topics"},
	{"fsync-interval-ms", INT, S(fsync_interval_ms), "1000", 1, 3600000, NULL, "fdatasync period for the interval policy"},
	{"segment-bytes", INT, S(segment_bytes), "1073741824", SB_SEGMENT_BYTES_MIN, SB_SEGMENT_BYTES_MAX, NULL, "default segment size"},
	{"segment-ms", INT, S(segment_ms), "604800000", 0, INT64_MAX, NULL, "default age at which a segment rolls (0 = never)"},
	{"retention-bytes", INT, S(retention_bytes), "-1", -1, INT64_MAX, NULL, "default bytes kept per partition (-1 = unlimited)"},
	{"retention-ms", INT, S(retention_ms), "604800000", -1, INT64_MAX, NULL, "default age of records kept (-1 = unlimited)"},
	{"max-message-bytes", INT, S(max_message_bytes), "8388608", 1024, 64 << 20, NULL, "largest gRPC message accepted"},
	{"max-records-per-request", INT, S(max_records_per_request), "100000", 1, SB_BATCH_RECORDS_MAX, NULL, "records in one ProduceRequest"},
	{"max-inflight-per-stream", INT, S(max_inflight_per_stream), "256", 1, 65536, NULL, "unanswered produce requests per stream before reading pauses"},
	{"max-streams", INT, S(max_streams), "4096", 1, 1000000, NULL, "concurrent calls of all kinds"},
	{"max-subscribers", INT, S(max_subscribers), "2048", 1, 1000000, NULL, "concurrent Consume streams"},
	{"consume-max-bytes", INT, S(consume_max_bytes), "1048576", 1024, 16 << 20, NULL, "largest ConsumeResponse / FetchResponse payload"},
	{"consume-max-records", INT, S(consume_max_records), "10000", 1, 1000000, NULL, "most records in one ConsumeResponse / FetchResponse"},
	{"consume-buffer-bytes", INT, S(consume_buffer_bytes), "4194304", 65536, 256 << 20, NULL, "bytes a subscriber may hold read but unsent"},
	{"keepalive-ms", INT, S(keepalive_ms), "30000", 1000, 3600000, NULL, "HTTP/2 keepalive ping interval for long-lived streams"},
	{"shutdown-grace-ms", INT, S(shutdown_grace_ms), "10000", 0, 600000, NULL, "on SIGTERM, time for in-flight produce requests to finish"},
	{"tls-cert", STR, S(tls_cert), "", 0, 0, NULL, "PEM certificate chain of this server (enables TLS on the port)"},
	{"tls-key", STR, S(tls_key), "", 0, 0, NULL, "PEM private key of --tls-cert"},
	{"tls-client-ca", STR, S(tls_client_ca), "", 0, 0, NULL, "PEM CA bundle: clients must present a certificate it signed (mTLS)"},
	{"tls-ca", STR, S(tls_ca), "", 0, 0, NULL, "PEM CA bundle that signed the peers' certificates (replication links use TLS when set)"},
	{"tls-server-name", STR, S(tls_server_name), "", 0, 0, NULL, "name the peers' certificates must carry (default: the host in --peers)"},
	{"tokens-file", STR, S(tokens_file), "", 0, 0, NULL, "tokens file: SHA-256 of each token, principal, permissions (reloaded on SIGHUP)"},
	{"cluster-secret-file", STR, S(cluster_secret_file), "", 0, 0, NULL, "secret shared by the cluster's nodes: followers present it to the leader"},
	{"insecure", FLAG, S(insecure), "0", 0, 1, NULL, "allow listening beyond loopback without TLS or tokens"},
	{"limit-streams", INT, S(limit_streams), "1024", 0, 1000000, NULL, "concurrent calls per principal (per connection without tokens); 0 = off"},
	{"limit-inflight-bytes", INT, S(limit_inflight_bytes), "268435456", 0, INT64_MAX, NULL, "produce bytes in flight per principal/connection; 0 = off"},
	{"limit-rate", INT, S(limit_rate), "0", 0, 100000000, NULL, "requests per second per principal/connection (token bucket); 0 = off"},
	{"limit-burst", INT, S(limit_burst), "0", 0, 100000000, NULL, "token bucket size (0 = one second of --limit-rate)"},
	{"max-streams-per-connection", INT, S(max_streams_per_connection), "1000", 1, 100000, NULL, "HTTP/2 concurrent streams one connection may open"},
	{"handshake-timeout-ms", INT, S(handshake_timeout_ms), "10000", 100, 600000, NULL, "a connection that has not completed its handshake by then is closed"},
	{"idle-timeout-ms", INT, S(idle_timeout_ms), "300000", 1000, INT64_MAX, NULL, "a connection without calls for this long is closed (GOAWAY)"},
	{"memtable-bytes", INT, S(memtable_bytes), "16777216", 0, SB_MEMTABLE_BYTES_MAX / 2, NULL, "key store: a partition's memtable is flushed to an SSTable past this (0 = no key store, no Lookup; else >= 1 MiB)"},
	{"kv-replay-bytes", INT, S(kv_replay_bytes), "67108864", 1048576, INT64_MAX, NULL, "key store: flush after this much log was read, bounding the replay after a crash"},
	{"delete-retention-ms", INT, S(delete_retention_ms), "86400000", 0, INT64_MAX, NULL, "key store and compaction: tombstones are kept this long"},
	{"cleaner-interval-ms", INT, S(cleaner_interval_ms), "15000", 0, 86400000, NULL, "log cleaner round on compacted topics: sealed segments lose the records a newer one of their key shadows (0 = off)"},
	{"compaction-rate-bytes", INT, S(compaction_rate_bytes), "67108864", 0, INT64_MAX, NULL, "key store merges read+write at most this many bytes per second (0 = unlimited)"},
	{"disk-stall-ms", INT, S(disk_stall_ms), "5000", 0, 3600000, NULL, "readiness is NOT_SERVING while a write or fdatasync has been in flight this long (0 = never)"},
	{"metrics-listen", STR, S(metrics_listen), "", 0, 0, NULL, "serve Prometheus metrics on http://HOST:PORT/metrics (empty: off)"},
	{"help", FLAG, S(help), "0", 0, 1, NULL, "print this help and exit"},
	{"version", FLAG, S(version), "0", 0, 1, NULL, "print the version and exit"},
};
#undef S
#define NSETTINGS (sizeof table / sizeof *table)

static int set_value(struct sb_settings *s, const struct setting *t, const char *v, const char *src, FILE *err)
{
	char *p = (char *)s + t->off;
	if (t->kind == STR) {
		if (strlen(v) >= t->size)
			goto bad;
		if (t->choices) {
			const char *c = t->choices;
			size_t n = strlen(v);
			int ok = 0;
			while (*c && !ok) {
				const char *bar = strchr(c, '|');
				size_t len = bar ? (size_t)(bar - c) : strlen(c);
				ok = len == n && strncmp(c, v, n) == 0;
				c = bar ? bar + 1 : c + len;
			}
			if (!ok)
				goto bad;
		}
		memcpy(p, v, strlen(v) + 1);
		return 0;
	}
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v || *end || x < t->min || x > t->max)
		goto bad;
	if (t->kind == FLAG)
		*(int *)p = (int)x;
	else
		*(int64_t *)p = x;
	return 0;
bad:
	if (err) {
		if (t->kind == STR && t->choices)
			fprintf(err, "invalid %s from %s: \"%s\" (one of %s)\n", t->name, src, v, t->choices);
		else if (t->kind == STR)
			fprintf(err, "invalid %s from %s: too long\n", t->name, src);
		else
			fprintf(err, "invalid %s from %s: \"%s\" (an integer in [%" PRId64 ", %" PRId64 "])\n",
				t->name, src, v, t->min, t->max);
	}
	return SB_EBADCONFIG;
}

static const struct setting *find(const char *name, size_t len)
{
	for (size_t i = 0; i < NSETTINGS; i++)
		if (strlen(table[i].name) == len && strncmp(table[i].name, name, len) == 0)
			return &table[i];
	return NULL;
}

void sb_settings_default(struct sb_settings *s)
{
	memset(s, 0, sizeof *s);
	for (size_t i = 0; i < NSETTINGS; i++) {
		int rc = set_value(s, &table[i], table[i].def, "default", NULL);
		(void)rc; /* defaults are within bounds (checked by the tests) */
	}
}

static char *trim(char *p)
{
	while (isspace((unsigned char)*p))
		p++;
	size_t n = strlen(p);
	while (n > 0 && isspace((unsigned char)p[n - 1]))
		p[--n] = 0;
	return p;
}

static int load_file(struct sb_settings *s, const char *path, FILE *err)
{
	char line[2048];
	int lineno = 0, rc = 0;
	FILE *f = fopen(path, "r");
	if (!f) {
		if (err)
			fprintf(err, "cannot read config file %s: %s\n", path, strerror(errno));
		return -errno;
	}
	while (!rc && fgets(line, sizeof line, f)) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *l = trim(line), *eq = strchr(l, '=');
		if (!*l)
			continue;
		if (!eq) {
			if (err)
				fprintf(err, "%s:%d: expected key = value\n", path, lineno);
			rc = SB_EBADCONFIG;
			break;
		}
		*eq = 0;
		char *k = trim(l), *v = trim(eq + 1);
		const struct setting *t = find(k, strlen(k));
		if (!t || t->kind == FLAG) {
			if (err)
				fprintf(err, "%s:%d: unknown setting \"%s\"\n", path, lineno, k);
			rc = SB_EBADCONFIG;
			break;
		}
		rc = set_value(s, t, v, path, err);
	}
	fclose(f);
	return rc;
}

static int load_env(struct sb_settings *s, FILE *err)
{
	char name[64];
	for (size_t i = 0; i < NSETTINGS; i++) {
		size_t n = (size_t)snprintf(name, sizeof name, "STREAMBUS_%s", table[i].name);
		for (size_t k = 10; k < n; k++)
			name[k] = name[k] == '-' ? '_' : (char)toupper((unsigned char)name[k]);
		const char *v = getenv(name);
		if (v && table[i].kind != FLAG) {
			int rc = set_value(s, &table[i], v, name, err);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* Finds --config in argv or the environment before anything else. */
static const char *config_path(int argc, char **argv)
{
	const char *path = getenv("STREAMBUS_CONFIG");
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--config=", 9) == 0)
			path = argv[i] + 9;
		else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			path = argv[i + 1];
	}
	return path && *path ? path : NULL;
}

static int load_argv(struct sb_settings *s, int argc, char **argv, FILE *err)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		if (strcmp(a, "-h") == 0)
			a = "--help";
		if (strncmp(a, "--", 2) != 0) {
			if (err)
				fprintf(err, "unexpected argument \"%s\" (see --help)\n", a);
			return SB_EBADCONFIG;
		}
		a += 2;
		const char *eq = strchr(a, '=');
		const struct setting *t = find(a, eq ? (size_t)(eq - a) : strlen(a));
		if (!t) {
			if (err)
				fprintf(err, "unknown flag --%s (see --help)\n", a);
			return SB_EBADCONFIG;
		}
		if (eq)
			v = eq + 1;
		else if (t->kind == FLAG)
			v = "1";
		else if (i + 1 < argc)
			v = argv[++i];
		else {
			if (err)
				fprintf(err, "flag --%s needs a value\n", t->name);
			return SB_EBADCONFIG;
		}
		int rc = set_value(s, t, v, "command line", err);
		if (rc)
			return rc;
	}
	return 0;
}

int sb_settings_load(struct sb_settings *s, int argc, char **argv, FILE *err)
{
	const char *path = config_path(argc, argv);
	int rc = 0;
	if (path)
		rc = load_file(s, path, err);
	if (!rc)
		rc = load_env(s, err);
	if (!rc)
		rc = load_argv(s, argc, argv, err);
	return rc;
}

void sb_settings_usage(FILE *out, const char *prog)
{
	fprintf(out, "usage: %s [--flag value ...]\n\n"
		     "Every flag can also be set as a STREAMBUS_* environment variable (--data-dir ->\n"
		     "STREAMBUS_DATA_DIR) or as \"data-dir = ...\" in the file named by --config.\n"
		     "Precedence: flag > environment > config file > default.\n\n", prog);
	for (size_t i = 0; i < NSETTINGS; i++) {
		const struct setting *t = &table[i];
		char range[96] = "";
		if (t->kind == INT)
			snprintf(range, sizeof range, " [%" PRId64 "..%" PRId64 "]", t->min, t->max);
		else if (t->choices)
			snprintf(range, sizeof range, " [%s]", t->choices);
		fprintf(out, "  --%-26s %s\n  %-28s default: %s%s\n", t->name, t->help, "",
			t->def[0] ? t->def : "(none)", range);
	}
}
