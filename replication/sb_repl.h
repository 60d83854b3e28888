/* sb_repl.h - replication: one leader, N followers, every partition copied
 * byte for byte (docs/REPLICATION.md).
 *
 * The leader serves streambus.v1.Replication/Follow: each follower keeps one
 * stream open, says where it stands, and receives the topic list and then
 * batches exactly as the leader stored them (sealed segments and the live
 * tail alike, from the follower's end on). The follower appends them with
 * sb_log_append_replica, so offsets, epochs and segment boundaries match,
 * and acknowledges its durable end.
 *
 * The leader tracks, per partition, each follower's acknowledged end and
 * whether it is in sync (it reached the leader's end within
 * replica_lag_max_ms). The high watermark is the end every in-sync replica
 * holds; it caps what consumers read (sb_log_set_hw_cap) on the leader, and
 * the leader sends it to the followers, which cap their own readers with it.
 * ACKS_ALL produce requests are answered once the high watermark covers them.
 *
 * Roles come from configuration (--peers, --leader-id) and the leader epoch
 * is persisted in <data>/cluster.state with the durable-write recipe. A node
 * that meets a higher epoch than its own stops taking writes (fencing).
 * Promotion and divergent-suffix truncation build on this interface.
 *
 * Locking: one mutex guards the replication state; a second (apply) is held
 * around raising high-watermark caps, which fires produce and consume
 * waiters. The order is apply, then state; waiter callbacks may take the
 * state lock but never the apply lock.
 */
#ifndef SB_REPLICATION_REPL_H
#define SB_REPLICATION_REPL_H

#include <grpc/grpc.h>
#include <stddef.h>
#include <stdint.h>

#include "sb_error.h"
#include "sb_limits.h"

struct sb_logmgr;
struct sb_vfs;
struct sb_repl;

/* SB_REPL_NODES_MAX and the message budgets live in sb_limits.h. */
/* How often the in-sync set is re-evaluated. */
#define SB_REPL_TICK_MS 50
/* Leader and follower each send something at least this often on an idle
 * Follow stream (a quarter of --replica-lag-max-ms, within these bounds),
 * so the follower's in-sync lease keeps being renewed. */
#define SB_REPL_HEARTBEAT_MIN_MS 50
#define SB_REPL_HEARTBEAT_MAX_MS 1000
/* Nodes that are not connected to the leader as followers are told the
 * epoch this often (and asked for theirs). */
#define SB_REPL_ANNOUNCE_MS 1000
/* A follower's reconnect back-off bounds. */
#define SB_REPL_BACKOFF_MIN_MS 100
#define SB_REPL_BACKOFF_MAX_MS 2000

struct sb_repl_node {
	int32_t id;
	char address[256]; /* HOST:PORT clients and peers use */
};

struct sb_repl_options {
	int32_t node_id;
	const char *peers;   /* "ID=HOST:PORT,..." including this node; "" = single node */
	int32_t leader_id;   /* initial leader; -1 = the lowest id in peers */
	int64_t replica_lag_max_ms;
	const char *data_dir;
	struct sb_vfs *vfs;  /* NULL = POSIX */
	struct sb_logmgr *mgr;
};

/* Parses "ID=HOST:PORT,..." into nodes (at most cap). Returns the count,
 * or SB_EBADCONFIG (syntax, duplicate id, id out of 0..1023, too many). */
int sb_repl_parse_peers(const char *peers, struct sb_repl_node *nodes, int cap) SB_MUST_CHECK;

/* Reads or creates <data>/cluster.state, decides this node's role. Starts
 * nothing. 0, SB_EBADCONFIG (node not in peers, bad leader id), -errno. */
int sb_repl_open(const struct sb_repl_options *opt, struct sb_repl **out) SB_MUST_CHECK;
/* Starts the in-sync ticker and, on a follower, the thread that follows the
 * leader. 0 or -errno. */
int sb_repl_start(struct sb_repl *r) SB_MUST_CHECK;
/* Stops the follower thread (its in-flight appends complete first) and the
 * ticker, and ends every Follow stream the leader serves. Idempotent. */
void sb_repl_stop(struct sb_repl *r);
/* Frees everything (after sb_repl_stop and after the gRPC server stopped:
 * no Follow stream may be left). */
void sb_repl_close(struct sb_repl *r);

/* ---- what the rest of the server asks ---- */

int sb_repl_clustered(const struct sb_repl *r);  /* more than one node configured */
int sb_repl_is_leader(struct sb_repl *r);        /* leads, and start-up found no newer epoch */
int64_t sb_repl_epoch(struct sb_repl *r);
int32_t sb_repl_node_id(const struct sb_repl *r);
/* The leader's id and address ("" if unknown); returns the id or -1. */
int32_t sb_repl_leader(struct sb_repl *r, char *address, size_t cap);
/* Fills nodes[0..cap) with every configured node (this one alone if single)
 * and their roles ("leader" / "follower"); returns the count. */
int sb_repl_nodes(struct sb_repl *r, struct sb_repl_node *nodes, const char **roles, int cap);
/* The in-sync replicas of a partition, leader first, in ids[0..cap);
 * returns how many there are (1 on a single node or a follower's view of
 * itself). */
int sb_repl_insync(struct sb_repl *r, const char *topic, int32_t partition, int32_t *ids, int cap);
/* The leader created or deleted a topic: followers get the new list. */
void sb_repl_topics_changed(struct sb_repl *r);

/* How far each follower is behind on one partition (metrics). */
struct sb_repl_lag {
	int32_t node_id;
	int64_t records;   /* leader's acknowledged end minus the follower's durable end; -1 unknown */
	int64_t ms;        /* since the follower last reached the leader's end */
	int in_sync;
};
/* On the leader: fills up to cap entries (one per follower) for the
 * partition, given the leader's acknowledged end; returns how many. 0 on a
 * follower, a single node, or an unknown partition. */
int sb_repl_lag(struct sb_repl *r, const char *topic, int32_t partition, int64_t leader_end,
		struct sb_repl_lag *out, int cap);

/* ---- leadership changes ---- */

struct sb_repl_promotion {
	int64_t epoch;          /* the epoch now in force */
	int32_t leader_id;
	int64_t records_at_risk; /* records the old leader had that this node lacks (last seen) */
	int was_in_sync;
};

/* Admin.Promote on this node: makes it the leader with the next epoch
 * (persisted), stops following, and announces the change to the peers.
 * Refused unless it is this node's id (SB_EINVAL), or when it is not in
 * sync and !unclean (SB_ENOTLEADER: out->records_at_risk says how far
 * behind it is). Promoting the current leader is a no-op. 0 or an error. */
int sb_repl_promote(struct sb_repl *r, int32_t node_id, int unclean, struct sb_repl_promotion *out) SB_MUST_CHECK;

/* A leader that is shutting down (writes already refused) hands over: it
 * waits up to timeout_ms for an in-sync follower to hold everything, then
 * asks it to promote itself (Admin.Promote). 0 when a follower took over
 * or there is nothing to hand over (single node, not the leader);
 * SB_ENOTFOUND when no follower is in sync, or the error of the promotion. */
int sb_repl_handover(struct sb_repl *r, int64_t timeout_ms);

/* Replication.Announce: a peer says it knows (epoch, leader). A higher
 * epoch is adopted (a leader that is not the new one steps down and
 * follows). *epoch and *leader_id return this node's view afterwards. */
void sb_repl_announce(struct sb_repl *r, int64_t *epoch, int32_t *leader_id);

/* ---- the leader's side of streambus.v1.Replication/Follow ---- */

/* Takes over a newly arrived Follow call (server side, on the server's
 * completion queue, whose worker threads run sb_rpc tags). done(arg) runs
 * once the stream is over and holds nothing any more. */
void sb_repl_serve_follow(struct sb_repl *r, grpc_call *call, void (*done)(void *arg), void *arg);

#endif
