/* sb_repl_internal.h - replication state shared by sb_repl.c (roles, epoch,
 * in-sync set, high watermark), sb_repl_leader.c (Follow streams) and
 * sb_repl_follower.c (the follower thread). Not part of the API. */
#ifndef SB_REPLICATION_REPL_INTERNAL_H
#define SB_REPLICATION_REPL_INTERNAL_H

#include <pthread.h>

#include "sb_limits.h"
#include "sb_log.h"
#include "sb_repl.h"

struct sb_topic;
struct fstream;

/* The leader's view of one partition: each follower's acknowledged end and
 * in-sync state, by node index (position in r->nodes). */
struct rpart {
	char topic[SB_TOPIC_NAME_MAX + 1];
	int32_t partition;
	int32_t min_insync;
	uint64_t topic_id;  /* incarnation */
	uint32_t index;     /* position in its set */
	struct sb_topic *t; /* reference, released with the set */
	struct sb_log *log;
	int64_t acked[SB_REPL_NODES_MAX];       /* durable end per follower, -1 unknown */
	int64_t caught_up_ms[SB_REPL_NODES_MAX]; /* last time it reached the leader's end */
	uint8_t in_sync[SB_REPL_NODES_MAX];
	/* For metrics, kept across disconnections: the last durable end a
	 * follower reported, and the last time it had caught up. */
	int64_t seen[SB_REPL_NODES_MAX];
	int64_t seen_caught_up_ms[SB_REPL_NODES_MAX];
	int64_t cap;                            /* high-watermark cap last applied */
	int below_min;                          /* fewer in sync than min_insync at the last apply */
};

/* Every partition of every topic, sorted by (topic, partition), replaced as
 * a whole when topics change. Follow streams hold references; the topic
 * references are released with the last one. */
struct pset {
	struct pset *next_dead; /* on r->dead, freed outside the lock */
	int refs;
	uint64_t gen;
	uint32_t n;
	struct rpart **v;
};

enum sb_repl_role { SB_ROLE_LEADER, SB_ROLE_FOLLOWER };

struct sb_repl {
	struct sb_logmgr *mgr;
	struct sb_vfs *vfs;
	char *data_dir;
	int32_t node_id;
	int self;              /* index of this node in nodes */
	int nnodes;
	struct sb_repl_node nodes[SB_REPL_NODES_MAX];
	int64_t lag_max_ms;

	pthread_mutex_t apply;   /* held while raising caps (see sb_repl.h) */
	pthread_mutex_t lock;    /* everything below */
	enum sb_repl_role role;
	int32_t leader_id;
	int64_t epoch;
	int ready;               /* start-up checked the peers' epochs: a leader may take writes */
	uint64_t gen;            /* bumped by every topic change */
	struct pset *cur;
	struct pset *dead;       /* sets whose last reference went: freed by sb_repl__unlock */
	uint32_t connected;      /* bit per node index: a Follow stream is up */
	struct fstream *streams; /* live Follow streams */
	struct fstream *by_node[SB_REPL_NODES_MAX]; /* the stream each follower is connected by */
	int stopping;

	uint32_t isr_all;        /* bit per node index: in sync on every partition (leader's view) */
	int fol_in_sync;         /* follower: the leader listed this node in sync at last contact */
	int64_t fol_in_sync_until; /* follower: its in-sync lease ends then (mono ms; 0 none) */
	int64_t last_heartbeat_ms; /* leader: the ticker last woke the Follow streams */
	int fol_session_up;      /* follower: the Follow stream delivers */
	int64_t fol_lag;         /* follower: records behind the leader's end, as last seen (atomic) */

	pthread_t ticker, follower, announcer;
	int ticker_started, follower_started, announcer_started;
	pthread_cond_t tick_cv;
	struct sb_repl_follower *fol;
};

/* Node index of id, or -1. */
int sb_repl__node_index(const struct sb_repl *r, int32_t id);
/* Lock held: the set's partition for (topic, partition), or NULL. */
struct rpart *sb_repl__find(struct pset *s, const char *topic, size_t topic_len, int32_t partition);
/* Position of rp (a member of s) in s->v. */
static inline uint32_t sb_repl__index(const struct pset *s, const struct rpart *rp)
{
	(void)s;
	return rp->index;
}
/* Takes a reference on the current set (building it if topics changed).
 * Lock held. NULL on OOM. */
struct pset *sb_repl__cur(struct sb_repl *r);
/* Drops a set reference (lock held). The last one queues the set on
 * r->dead: releasing its topics may close logs, which fires waiters that
 * take the lock, so sets are freed by sb_repl__unlock after unlocking. */
void sb_repl__pset_unref(struct sb_repl *r, struct pset *s);
void sb_repl__unlock(struct sb_repl *r);
void sb_repl__pset_free(struct pset *s);

/* Lock held: records that follower node (index) durably holds rp's log up
 * to end; updates its in-sync state. */
void sb_repl__acked(struct sb_repl *r, struct rpart *rp, int node, int64_t end, int64_t now_ms);
/* A follower's stream came up / went down (lock held). */
void sb_repl__connected(struct sb_repl *r, int node, int up);
/* Recomputes every partition's cap and applies the ones that changed.
 * Takes apply then lock itself: call with neither held. */
void sb_repl__apply_caps(struct sb_repl *r);
/* Persists a higher epoch (and leader) met on the wire. Lock NOT held.
 * 0 or -errno. */
int sb_repl__adopt_epoch(struct sb_repl *r, int64_t epoch, int32_t leader_id);

/* Steps down to follow leader_id at epoch (lock NOT held): ends the Follow
 * streams, fails waiting ACKS_ALL requests, starts the follower thread. */
void sb_repl__become_follower(struct sb_repl *r);

/* Leader streams (sb_repl_leader.c): wake all (topics changed) / end all. */
void sb_repl__streams_wake(struct sb_repl *r);
void sb_repl__streams_end(struct sb_repl *r);

/* Follower thread (sb_repl_follower.c). */
int sb_repl__follower_start(struct sb_repl *r);
void sb_repl__follower_stop(struct sb_repl *r);

/* How often an idle Follow stream carries a message each way. */
static inline int64_t sb_repl__heartbeat_ms(const struct sb_repl *r)
{
	int64_t hb = r->lag_max_ms / 4;
	return hb < SB_REPL_HEARTBEAT_MIN_MS ? SB_REPL_HEARTBEAT_MIN_MS
	       : hb > SB_REPL_HEARTBEAT_MAX_MS ? SB_REPL_HEARTBEAT_MAX_MS : hb;
}

#endif
