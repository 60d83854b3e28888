/* sb_settings.h - streambusd's settings: one table of {name, default,
 * bounds, help}, filled from defaults, then an optional config file
 * (key = value lines), then STREAMBUS_* environment variables, then command
 * line flags (--name value or --name=value); every value is validated
 * against its bounds at start-up (Redis config.c habit). */
#ifndef SB_SERVICE_SETTINGS_H
#define SB_SERVICE_SETTINGS_H

#include <stdint.h>
#include <stdio.h>

#include "sb_error.h"

struct sb_settings {
	char listen[256];
	char data_dir[1024];
	char io[16];            /* auto | uring | sync */
	char log_level[16];
	char log_format[16];
	char config[1024];
	int64_t node_id;
	char peers[4096];       /* "ID=HOST:PORT,..." every node of the cluster, this one too */
	int64_t leader_id;      /* initial leader; -1 = the lowest id in peers */
	int64_t replica_lag_max_ms;
	int64_t workers;
	/* Topic defaults. */
	int64_t default_partitions;
	char fsync_policy[16];
	int64_t fsync_interval_ms;
	int64_t segment_bytes;
	int64_t segment_ms;
	int64_t retention_bytes;
	int64_t retention_ms;
	/* Limits. */
	int64_t max_message_bytes;
	int64_t max_records_per_request;
	int64_t max_inflight_per_stream;
	int64_t max_streams;
	int64_t max_subscribers;
	int64_t consume_max_bytes;
	int64_t consume_max_records;
	int64_t consume_buffer_bytes;
	int64_t keepalive_ms;
	int64_t shutdown_grace_ms;
	/* Security (docs/SECURITY.md). Paths to PEM files and the tokens file. */
	char tls_cert[1024], tls_key[1024];
	char tls_client_ca[1024];   /* set: clients must present a certificate it signed (mTLS) */
	char tls_ca[1024];          /* CA that signed the peers' certificates (replication links) */
	char tls_server_name[256];  /* name peers' certificates are checked against ("" = host) */
	char tokens_file[1024];
	char cluster_secret_file[1024];
	int insecure;               /* allow a non-loopback listener without TLS or tokens */
	/* Per-caller limits (per principal, or per connection without tokens). */
	int64_t limit_streams;
	int64_t limit_inflight_bytes;
	int64_t limit_rate;
	int64_t limit_burst;
	int64_t max_streams_per_connection;
	int64_t handshake_timeout_ms;
	int64_t idle_timeout_ms;
	int64_t memtable_bytes;     /* key store (sb_kvstore.h); 0 = none */
	int64_t kv_replay_bytes;
	int64_t delete_retention_ms;
	int64_t compaction_rate_bytes;
	int64_t cleaner_interval_ms;
	int64_t disk_stall_ms;      /* readiness: a write/fdatasync older than this is a stalled disk */
	char metrics_listen[256];   /* "" = no metrics endpoint */
	int help, version;
};

/* Fills s with the defaults. */
void sb_settings_default(struct sb_settings *s);

/* Applies config file (if --config/STREAMBUS_CONFIG names one), environment
 * and argv over the defaults. On error writes one line naming the setting to
 * err and returns SB_EBADCONFIG (or -errno reading the file). */
int sb_settings_load(struct sb_settings *s, int argc, char **argv, FILE *err) SB_MUST_CHECK;

/* Prints every setting with its flag, environment variable, default, bounds
 * and help. */
void sb_settings_usage(FILE *out, const char *prog);

#endif
