/* streambusd - the StreamBus server: settings, storage, gRPC, signals.
 *
 * SIGINT/SIGTERM/SIGHUP are blocked in every thread before gRPC starts; main
 * waits for them with sigtimedwait (checking the storage's health every second). SIGHUP reloads the tokens file and the TLS
 * certificate; SIGINT/SIGTERM drain (readiness NOT_SERVING, produce streams
 * finish, subscriptions end with their resume offset), closes the storage
 * (every log fdatasynced) and exits 0. */
#include "sb_logging.h"
#include "sb_logmgr.h"
#include "sb_mutant.h"
#include "sb_repl.h"
#include "sb_settings.h"
#include "sb_svc.h"
#include "sb_vfs.h"

#include "client.h"

#include <ctype.h>
#include <grpc/grpc.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int open_storage(const struct sb_settings *s, struct sb_logmgr **mgr)
{
	struct sb_logmgr_options opt;
	struct sb_kvstore_config kv;
	memset(&opt, 0, sizeof opt);
	sb_kvstore_config_default(&kv);
	kv.memtable_bytes = (uint64_t)s->memtable_bytes;
	kv.replay_bytes_max = (uint64_t)s->kv_replay_bytes;
	kv.delete_retention_ms = s->delete_retention_ms;
	kv.compaction_rate_bytes = (uint64_t)s->compaction_rate_bytes;
	kv.cleaner_interval_ms = s->cleaner_interval_ms;
	opt.kv = s->memtable_bytes > 0 ? &kv : NULL;
	opt.data_dir = s->data_dir;
	opt.threaded = 1;
	opt.replicated = s->peers[0] != 0; /* readers wait for the high watermark */
	int rc = sb_aio_parse_kind(s->io, &opt.io_kind);
	sb_topic_config_default(&opt.defaults);
	opt.defaults.partitions = (int32_t)s->default_partitions;
	opt.defaults.log.segment_bytes = (uint64_t)s->segment_bytes;
	opt.defaults.log.segment_ms = s->segment_ms;
	opt.defaults.log.retention_bytes = s->retention_bytes;
	opt.defaults.log.retention_ms = s->retention_ms;
	opt.defaults.log.fsync_interval_ms = s->fsync_interval_ms;
	if (!rc)
		rc = sb_fsync_policy_parse(s->fsync_policy, &opt.defaults.log.fsync_policy);
	if (!rc)
		rc = sb_logmgr_open(&opt, mgr);
	return rc;
}

/* Replication links (follower, announcements, hand-over) are client
 * connections: TLS with --tls-ca (presenting this node's own certificate
 * when it has one, for peers that require client certificates), and the
 * cluster secret as their bearer token. */
static int peer_security(const struct sb_settings *s)
{
	char *secret = NULL;
	size_t n = 0;
	struct sbc_status st;
	int rc = 0;
	if (s->cluster_secret_file[0]) {
		rc = sb_vfs_read_text(sb_vfs_posix(), s->cluster_secret_file, 4096, &secret, &n);
		while (!rc && n > 0 && isspace((unsigned char)secret[n - 1]))
			secret[--n] = 0;
		if (rc || n == 0) {
			SB_ERROR("startup_failed", "what=cluster_secret file=\"%s\" error=\"%s\"", s->cluster_secret_file,
				 rc ? sb_strerror(rc) : "empty");
			free(secret);
			return -1;
		}
	}
	struct sbc_security sec = {
		.tls_ca = s->tls_ca,
		.tls_cert = s->tls_ca[0] ? s->tls_cert : NULL,
		.tls_key = s->tls_ca[0] ? s->tls_key : NULL,
		.tls_server_name = s->tls_server_name,
		.token = secret ? secret : "",
	};
	if (sbc_security_set(&sec, &st) != 0) {
		SB_ERROR("startup_failed", "what=peer_tls error=\"%s\"", st.msg);
		rc = -1;
	}
	if (secret) {
		memset(secret, 0, n);
		free(secret);
	}
	return rc;
}

int main(int argc, char **argv)
{
	struct sb_settings s;
	struct sb_logmgr *mgr = NULL;
	struct sb_repl *repl = NULL;
	struct sb_svc svc;
	enum sb_level level;
	enum sb_log_format format;
	sigset_t sigs;
	int sig = 0, rc;

	sb_settings_default(&s);
	if (sb_settings_load(&s, argc, argv, stderr) != 0)
		return 2;
	if (s.help) {
		sb_settings_usage(stdout, argv[0]);
		return 0;
	}
	if (s.version) {
		printf("streambusd %s\n", SB_VERSION);
		return 0;
	}
	if (sb_logging_parse_level(s.log_level, &level) || sb_logging_parse_format(s.log_format, &format))
		return 2;
	sb_logging_init(level, format);
	char ctx[64];
	snprintf(ctx, sizeof ctx, "node=%lld", (long long)s.node_id);
	sb_logging_set_context(ctx);

	/* Messages of a few hundred KiB to a few MiB (produce requests, consume
	 * responses, replication chunks) come and go all the time. glibc would
	 * mmap and munmap each one: fresh pages fault in, and every munmap
	 * shoots down TLBs on all cores. Keeping them on the heap measured 4.5x
	 * the produce throughput of 1 KiB records here (bench/service.sh). The
	 * cost: up to 128 MiB of freed heap is kept per arena instead of being
	 * returned to the kernel. */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 128 << 20);

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (sb_mutant_init())
		SB_WARN("mutant", "STREAMBUS_MUTANT=\"%s\" note=\"deliberately broken durability: tests only\"",
			getenv("STREAMBUS_MUTANT"));
	if (peer_security(&s) != 0)
		return 1;
	rc = open_storage(&s, &mgr);
	if (rc) {
		SB_ERROR("startup_failed", "data_dir=\"%s\" error=\"%s\"", s.data_dir, sb_strerror(rc));
		return 1;
	}
	struct sb_repl_options ro = {
		.node_id = (int32_t)s.node_id,
		.peers = s.peers,
		.leader_id = (int32_t)s.leader_id,
		.replica_lag_max_ms = s.replica_lag_max_ms,
		.data_dir = s.data_dir,
		.mgr = mgr,
	};
	rc = sb_repl_open(&ro, &repl);
	if (rc) {
		SB_ERROR("startup_failed", "what=replication error=\"%s\"", sb_strerror(rc));
		sb_logmgr_close(mgr);
		return 1;
	}
	grpc_init();
	rc = sb_svc_start(&svc, &s, mgr, repl);
	if (!rc && (rc = sb_repl_start(repl)) != 0) {
		SB_ERROR("startup_failed", "what=replication error=\"%s\"", sb_strerror(rc));
		sb_repl_stop(repl);
		sb_svc_stop(&svc);
	}
	if (rc) {
		sb_repl_close(repl);
		sb_logmgr_close(mgr);
		grpc_shutdown();
		return 1;
	}
	SB_INFO("serving", "listen=%s port=%d data_dir=\"%s\" io=%s role=%s epoch=%lld version=%s", s.listen,
		svc.port, s.data_dir, sb_logmgr_io_name(mgr), sb_repl_is_leader(repl) ? "leader" : "follower",
		(long long)sb_repl_epoch(repl), SB_VERSION);
	for (;;) {
		/* Every second, and on each signal: the storage's health. */
		struct timespec second = {1, 0};
		sig = sigtimedwait(&sigs, NULL, &second);
		sb_svc_check_storage(&svc);
		if (sig < 0)
			continue; /* EAGAIN (the second passed) or EINTR */
		if (sig != SIGHUP)
			break;
		SB_INFO("signal", "signal=SIGHUP action=reload");
		sb_svc_reload(&svc);
		(void)peer_security(&s); /* new peer connections use the new files */
	}
	SB_INFO("signal", "signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	sb_svc_drain(&svc);
	/* Writes are refused and answered now: a leader hands its role to an
	 * in-sync follower before it goes (within half the grace period). */
	(void)sb_repl_handover(repl, s.shutdown_grace_ms / 2);
	sb_repl_stop(repl);  /* the follower thread, the ticker; ends Follow streams */
	sb_svc_stop(&svc);   /* every call, Follow streams included, is over after this */
	sb_repl_close(repl);
	sb_logmgr_close(mgr);
	grpc_shutdown();
	SB_INFO("exit", "status=0");
	return 0;
}
