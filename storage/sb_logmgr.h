/* sb_logmgr.h - the log manager: owns the data directory, the I/O loop, and
 * every topic with its partition logs.
 *
 * Layout of the data directory:
 *   <data>/topics/<topic>/topic.conf        the topic's settings (key=value)
 *   <data>/topics/<topic>/<partition>/      one partition log (sb_log.h)
 *   <data>/topics/<topic>/<partition>/kv/   its key store (sb_kvstore.h)
 *   <data>/deleting/                         topics being removed
 * A topic is created under a temporary name and renamed into place, and
 * topic.conf is written with the durable-write recipe, so a crash never
 * leaves a half-made topic. Deleting renames the topic away at once (new
 * requests no longer see it) and removes its files when the last user
 * releases it, so concurrent readers finish safely.
 *
 * Thread-safety: every function may be called from any thread.
 */
#ifndef SB_STORAGE_LOGMGR_H
#define SB_STORAGE_LOGMGR_H

#include <stdint.h>

#include "sb_aio.h"
#include "sb_error.h"
#include "sb_kvstore.h"
#include "sb_log.h"

struct sb_vfs;
struct sb_logmgr;
struct sb_topic;

#define SB_CLEANUP_POLICY_MAX 32

struct sb_topic_config {
	/* Incarnation: random, chosen when the topic is created (0 for topics
	 * made before ids existed). A topic deleted and created again under the
	 * same name is another topic; replicas compare ids, not names. */
	uint64_t id;
	int32_t partitions;
	int32_t replication_factor;
	int32_t min_insync_replicas;
	char cleanup_policy[SB_CLEANUP_POLICY_MAX]; /* "delete", "compact", "compact,delete" */
	struct sb_log_config log;
};

/* 1 if name is 1-249 chars of [A-Za-z0-9._-] and not "." or "..". */
int sb_topic_name_valid(const char *name);

/* Defaults: 1 partition, replication 1, min in-sync 1, "delete", log defaults. */
void sb_topic_config_default(struct sb_topic_config *cfg);
/* 0 or SB_EBADCONFIG. */
int sb_topic_config_check(const struct sb_topic_config *cfg) SB_MUST_CHECK;
/* Serialises to key=value lines into buf (cap bytes); returns the length or
 * SB_ETOOBIG. */
int sb_topic_config_format(const struct sb_topic_config *cfg, char *buf, size_t cap) SB_MUST_CHECK;
/* Parses key=value lines over the defaults; unknown keys are rejected.
 * 0, SB_EBADCONFIG. */
int sb_topic_config_parse(const char *text, size_t len, struct sb_topic_config *cfg) SB_MUST_CHECK;

struct sb_logmgr_options {
	const char *data_dir;
	struct sb_vfs *vfs;          /* NULL = POSIX */
	struct sb_aio *aio;          /* NULL = open io_kind on the POSIX vfs; else owned by the manager */
	enum sb_aio_kind io_kind;
	int threaded;                /* run the I/O loop on its own thread (0: tests drive it) */
	int replicated;              /* logs open with their readable end capped (sb_log_config.hw_capped) */
	/* Key stores beside every partition log (NULL: none). With threaded, a
	 * worker thread applies, flushes and merges them in the background. */
	const struct sb_kvstore_config *kv;
	struct sb_topic_config defaults;
};

/* Opens the data directory (creating it), removes leftovers of interrupted
 * creates and deletes, and opens every topic (recovering each partition).
 * Returns 0, SB_EBADCONFIG, SB_ECORRUPT, -errno. */
int sb_logmgr_open(const struct sb_logmgr_options *opt, struct sb_logmgr **out) SB_MUST_CHECK;
/* Closes every log (waiting for in-flight appends) and frees everything.
 * Every acquired topic must have been released. */
void sb_logmgr_close(struct sb_logmgr *mgr);

/* Name of the I/O engine in use ("io_uring" or "sync"). */
const char *sb_logmgr_io_name(struct sb_logmgr *mgr);
struct sb_ioloop *sb_logmgr_loop(struct sb_logmgr *mgr);

/* Creates a topic. cfg fields left 0/empty (and fsync_policy
 * SB_FSYNC_DEFAULT) take the manager's defaults; id 0 gets a fresh random
 * id (a follower passes its leader's).
 * Returns 0, SB_EBADNAME, SB_EEXISTS, SB_EBADCONFIG, SB_ETOOBIG (too many
 * topics), -errno. */
int sb_logmgr_create_topic(struct sb_logmgr *mgr, const char *name, const struct sb_topic_config *cfg) SB_MUST_CHECK;
/* Deletes a topic. 0, SB_EBADNAME, SB_ENOTOPIC, -errno. */
int sb_logmgr_delete_topic(struct sb_logmgr *mgr, const char *name) SB_MUST_CHECK;

/* Calls cb for each topic in name order with its configuration (under the
 * manager's read lock: cb must not call back into the manager). */
int sb_logmgr_list_topics(struct sb_logmgr *mgr,
			  int (*cb)(void *arg, const char *name, const struct sb_topic_config *cfg),
			  void *arg) SB_MUST_CHECK;

/* Looks up a topic and takes a reference on it. 0, SB_EBADNAME, SB_ENOTOPIC. */
int sb_logmgr_acquire(struct sb_logmgr *mgr, const char *name, struct sb_topic **out) SB_MUST_CHECK;
void sb_topic_release(struct sb_topic *t);
const char *sb_topic_name(const struct sb_topic *t);

/* Traffic since the topic was opened (metrics): records and batch bytes
 * acknowledged to producers and sent to consumers. Any thread. */
struct sb_topic_stats {
	int64_t produced_records, produced_bytes;
	int64_t consumed_records, consumed_bytes;
};
/* The storage's health over every partition log, for readiness, liveness
 * and metrics. */
struct sb_storage_health {
	uint32_t logs;
	uint32_t failed_logs; /* in the sticky failed state: only a restart helps */
	uint32_t full_logs;   /* refusing appends for a full disk (retried) */
	int64_t io_wait_ms;   /* the oldest write or fdatasync in flight, any log */
};
void sb_logmgr_health(struct sb_logmgr *mgr, struct sb_storage_health *out);

void sb_topic_count(struct sb_topic *t, int produced, int64_t records, int64_t bytes);
void sb_topic_stats(const struct sb_topic *t, struct sb_topic_stats *out);
const struct sb_topic_config *sb_topic_config(const struct sb_topic *t);
/* 1 if the topic's cleanup_policy includes "compact": records need keys,
 * and the log cleaner keeps the newest record of each key. */
int sb_topic_compacted(const struct sb_topic *t);
int32_t sb_topic_partitions(const struct sb_topic *t);
/* The partition's log, valid while the topic reference is held.
 * 0 or SB_ENOPARTITION. */
int sb_topic_log(struct sb_topic *t, int32_t partition, struct sb_log **out) SB_MUST_CHECK;
/* The partition's key store, valid while the topic reference is held.
 * 0, SB_ENOPARTITION, or SB_ENOTFOUND (the manager keeps no key stores). */
int sb_topic_kv(struct sb_topic *t, int32_t partition, struct sb_kvstore **out) SB_MUST_CHECK;

#endif
