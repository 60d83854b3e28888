/* sb_log.h - a partition log: an ordered sequence of segment files holding
 * record batches, with offsets assigned on append.
 *
 * Write path (runs on the I/O loop, see sb_ioloop.h): sb_log_append copies
 * the caller's batches into the log's staging memory and assigns offsets; the
 * loop writes everything staged since its previous write in one piece
 * (natural coalescing), splits at segment boundaries (never inside one
 * append), rolls segments, and acknowledges per the fsync policy:
 *   - ALWAYS: after an fdatasync covering the batch; the fdatasync is
 *     submitted right behind the write it covers, and one fdatasync covers
 *     every batch written while the previous one was in flight (group commit);
 *   - INTERVAL: after the write; an fdatasync runs every fsync_interval_ms;
 *   - NEVER: after the write (page cache); fdatasync at seal and close.
 * A write or fdatasync error fails every unacknowledged append and puts the
 * log in a sticky failed state: later appends get SB_EFAILED, and nothing
 * written after the failure is ever acknowledged (RELIABILITY.md rule 4).
 * A full disk is the exception: a write or a roll refused with ENOSPC (or
 * EDQUOT) fails the unacknowledged appends with that error and refuses new
 * ones with it (not SB_EFAILED), and every SB_LOG_FULL_RETRY_MS, once nothing
 * is in flight, the log cuts the active segment back to the acknowledged end
 * and takes appends again. An fdatasync error stays fatal whatever its errno.
 *
 * Read path (any thread): readers see exactly the acknowledged prefix
 * [log_start, stable_end): never a batch that could still fail, and never
 * part of an append (the acknowledged end only moves to append boundaries).
 *
 * Thread-safety: every function may be called from any thread unless noted;
 * callbacks run on the I/O loop thread and must not block.
 */
#ifndef SB_STORAGE_LOG_H
#define SB_STORAGE_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "sb_error.h"

struct sb_vfs;
struct sb_ioloop;
struct sb_log;

#define SB_LOG_FULL_RETRY_MS 1000

/* SB_FSYNC_DEFAULT appears only in requests ("use the server's default"). */
enum sb_fsync_policy { SB_FSYNC_DEFAULT = -1, SB_FSYNC_ALWAYS = 0, SB_FSYNC_INTERVAL = 1, SB_FSYNC_NEVER = 2 };

/* "always" | "interval" | "never"; 0 or SB_EINVAL. */
int sb_fsync_policy_parse(const char *s, enum sb_fsync_policy *out) SB_MUST_CHECK;
const char *sb_fsync_policy_name(enum sb_fsync_policy p);

struct sb_log_config {
	uint64_t segment_bytes;        /* roll when the active segment reaches this */
	int64_t segment_ms;            /* roll a non-empty segment this old; 0 = never */
	uint32_t index_interval_bytes; /* bytes between sparse index entries */
	enum sb_fsync_policy fsync_policy;
	int64_t fsync_interval_ms;     /* for INTERVAL */
	int64_t retention_bytes;       /* -1 = unlimited */
	int64_t retention_ms;          /* -1 = unlimited */
	uint32_t inflight_bytes_max;   /* appended but unacknowledged bytes bound */
	/* Open with the readable end held at the log start until
	 * sb_log_set_hw_cap raises it: a replicated log's readers wait for the
	 * high watermark instead of trusting a tail a new leader may cut. */
	int hw_capped;
};

/* Fills cfg with the defaults (1 GiB segments, fsync always, ...). */
void sb_log_config_default(struct sb_log_config *cfg);
/* Checks every field against sb_limits.h. 0 or SB_EBADCONFIG. */
int sb_log_config_check(const struct sb_log_config *cfg) SB_MUST_CHECK;

/* Optional notifications, called on the I/O loop thread. */
struct sb_log_listener {
	/* The acknowledged end advanced to stable_end (tail readers wake here). */
	void (*on_stable)(void *arg, struct sb_log *log, int64_t stable_end);
	/* A segment [base_offset, next_offset) was sealed and its files are final. */
	void (*on_sealed)(void *arg, struct sb_log *log, int64_t base_offset, int64_t next_offset);
	void *arg;
};

/* A tail waiter: a reader that caught up parks one of these on the log and
 * is called back (on the I/O loop thread, without log locks held) when the
 * acknowledged end moves past the offset it waited at. Owned by the caller;
 * must stay valid until it fired or sb_log_wait_cancel returned. */
struct sb_log_waiter {
	void (*fn)(struct sb_log_waiter *w);
	void *arg;
	/* Log-private. */
	struct sb_log_waiter *next, *prev;
	int64_t offset;
	int armed, kind;
};

/* Arms w to fire once the readable end (the high watermark, see
 * sb_log_set_hw_cap) exceeds offset. Returns 0 if armed, 1 if the end
 * already exceeds offset (then w is not armed and fn is not called),
 * SB_ECLOSED if the log is closing. Any thread. fn runs on the I/O loop
 * thread, or on the thread that called sb_log_set_hw_cap, without log locks
 * held; every waiter fires when the log closes. */
int sb_log_wait(struct sb_log *log, int64_t offset, struct sb_log_waiter *w) SB_MUST_CHECK;
/* The same on the acknowledged end (stable_end), which runs ahead of the
 * readable end on a replicated log: the leader's replication reads use it. */
int sb_log_wait_stable(struct sb_log *log, int64_t offset, struct sb_log_waiter *w) SB_MUST_CHECK;
/* Fires every armed waiter now, whatever the ends (as closing does): a
 * leader stepping down tells its ACKS_ALL requests to give up. Consumers
 * re-check and park again. Any thread, no locks held. */
void sb_log_wake_waiters(struct sb_log *log);
/* Disarms w. Returns 1 if it was armed (fn will never run), 0 if it has
 * fired (fn has returned by the time this returns). Not from inside fn. */
int sb_log_wait_cancel(struct sb_log *log, struct sb_log_waiter *w);

/* Called exactly once per accepted append, on the loop thread: result 0 and
 * the base offset of the first batch, or a negative error (the batches are
 * then not acknowledged, and after SB_EFAILED-class errors never will be). */
typedef void (*sb_append_cb)(void *arg, int64_t base_offset, int result);

/* Opens (creating if empty) the log in dir, which must exist. Recovers:
 * sealed segments are opened with their indexes (rebuilt if invalid), the
 * active segment is scanned and a torn tail truncated (cut bytes kept in
 * <base>.log.cut-<position>), corruption elsewhere reported and fenced off.
 * name is used in log lines ("topic/partition"). The log registers itself
 * with loop. Returns 0, SB_EBADCONFIG, SB_ECORRUPT (unrecoverable layout,
 * e.g. overlapping segments), -ENOMEM or -errno. */
int sb_log_open(struct sb_vfs *vfs, struct sb_ioloop *loop, const char *dir, const char *name,
		const struct sb_log_config *cfg, struct sb_log **out) SB_MUST_CHECK;

/* Stops accepting appends (SB_ECLOSED), waits until every accepted append
 * has completed, fdatasyncs the active segment, unregisters from the loop and
 * frees the log. Must not be called on the loop thread. */
void sb_log_close(struct sb_log *log);

/* Changes retention/roll/fsync settings of an open log (segment_bytes applies
 * from the next roll). 0 or SB_EBADCONFIG. */
int sb_log_reconfigure(struct sb_log *log, const struct sb_log_config *cfg) SB_MUST_CHECK;

void sb_log_set_listener(struct sb_log *log, const struct sb_log_listener *l);

/* Appends one or more complete batches (data[0..len), back to back, as built
 * by sb_batch_builder). Every batch's header is checked and its CRC
 * verified: use this for bytes from outside the process (replication, tools,
 * tests). The bytes are copied before the call returns (data is only
 * borrowed); each batch gets the next base offset and leader_epoch stamped
 * (no CRC change). The batches of one append are acknowledged together and
 * become readable together. cb(arg, ...) fires once, on the loop thread.
 * Returns 0 (accepted), or without calling cb: SB_EBADBATCH (malformed, not
 * exactly len bytes of batches, or CRC mismatch), SB_ETOOBIG (a batch or the
 * whole append over SB_BATCH_BYTES_MAX), SB_EBUSY (in-flight bytes at their
 * bound: back off and retry), SB_EFAILED (sticky failure), SB_EFENCED
 * (leader_epoch below the log's last epoch), SB_ECLOSED, -ENOMEM. */
int sb_log_append(struct sb_log *log, const void *data, size_t len, int32_t leader_epoch,
		  sb_append_cb cb, void *arg) SB_MUST_CHECK;

/* sb_log_append for a follower: the batches are the leader's, byte for
 * byte, and keep their base offsets and epochs. They must continue the log
 * exactly (the first base offset is the log's next offset, each batch
 * follows the previous one) with epochs that never go down. Every CRC is
 * verified. Errors as sb_log_append, plus SB_EINVAL (offsets do not continue
 * the log) and SB_EFENCED (an epoch below the log's last). */
int sb_log_append_replica(struct sb_log *log, const void *data, size_t len, sb_append_cb cb,
			  void *arg) SB_MUST_CHECK;

/* Removes every record at or after offset (a follower dropping a suffix
 * its new leader does not have). offset must be a batch boundary at or
 * above the log start, with no append in flight. A cut inside a sealed
 * segment removes the segments after it and makes it the active segment
 * again. Below the readable end (after an unclean promotion) the readable
 * end comes down too, with a warning. Durable before it returns. 0 (also
 * when offset >= the end), SB_EINVAL (not a batch boundary of the active
 * segment, or below the log start), SB_EBUSY (appends in flight),
 * SB_EFAILED, SB_ECLOSED, -errno and SB_ECORRUPT (the log then fails,
 * sticky). Not on the I/O loop thread. */
int sb_log_truncate(struct sb_log *log, int64_t offset) SB_MUST_CHECK;

/* The end of `epoch` in this log: the base offset of the first batch
 * written in a later epoch, or the acknowledged end if there is none (what
 * a leader tells a follower whose last epoch is `epoch`, as in Kafka's
 * KIP-101). 0, SB_ECORRUPT, -errno. */
int sb_log_epoch_end(struct sb_log *log, int32_t epoch, int64_t *end) SB_MUST_CHECK;

/* ---- whole sealed segments, for replication catch-up ---- */

struct sb_log_segment_info {
	int64_t base_offset, next_offset;
	uint64_t size;
	int32_t last_epoch;
};

/* 1 and *info if offset is the base offset of a sealed segment (whole
 * segments can then be shipped as files), 0 otherwise. */
int sb_log_sealed_at(struct sb_log *log, int64_t offset, struct sb_log_segment_info *info);
/* Reads up to len raw bytes at pos of the sealed segment whose base offset
 * is base. Returns the count (0 at its end), SB_ENOTFOUND if no such sealed
 * segment exists any more (retention), or -errno. */
int64_t sb_log_read_sealed(struct sb_log *log, int64_t base, uint64_t pos, void *buf, size_t len);
/* Reads every sealed segment whole and checks each batch (CRC, offsets):
 * what a follower runs at start-up, since sealed segments are otherwise
 * trusted through their index files and only checked when read. *bad_base
 * gets the base offset of the first segment with bad bytes, or -1. 0 or
 * -errno (an I/O error, not bad data). Any thread; reads only. */
int sb_log_verify_sealed(struct sb_log *log, int64_t *bad_base) SB_MUST_CHECK;

/* Where a follower stages a whole segment it receives: the directory
 * (<log dir>/replica, created by the caller) and the file
 * (<log dir>/replica/<base>.log). Either may be NULL; SB_PATH_MAX each. */
#define SB_LOG_REPLICA_DIR "replica"
void sb_log_replica_path(struct sb_log *log, int64_t base, char *dir, char *file);
/* Adopts the staged segment file for base. The log must end exactly at base
 * with nothing in flight. The file is checked where it lies, batch by batch
 * (CRC, offsets increasing from base, epochs not below the log's), before
 * anything changes: a bad file is removed and SB_ECORRUPT returned. Then the
 * active segment is sealed (if not empty), the file moves in durably as a
 * sealed segment, and a new active segment starts at its end. Not on the
 * I/O loop thread. 0, SB_ECORRUPT, SB_EINVAL (the log does not end at base),
 * SB_EBUSY, SB_EFAILED, -errno (the log then fails, sticky). */
int sb_log_install_segment(struct sb_log *log, int64_t base) SB_MUST_CHECK;

/* A follower's log rolls only when asked (sb_log_roll, where the leader
 * rolled), never by size or age on its own, so its segment files match the
 * leader's, and refuses client appends (sb_log_append, _trusted:
 * SB_ENOTLEADER); only sb_log_append_replica writes. Off again when the
 * node becomes the leader. Any thread. */
void sb_log_set_follower(struct sb_log *log, int on);

/* Caps the readable end of a replicated log at hw (the high watermark the
 * replication module computed, or learned from the leader). Readers, tail
 * waiters and sb_log_read see [log_start, min(stable_end, hw)); the readable
 * end never goes back, so a lower cap only holds it where it is. INT64_MAX
 * (the default) makes every acknowledged record readable. Any thread; fires
 * the waiters the move satisfies on the calling thread. */
void sb_log_set_hw_cap(struct sb_log *log, int64_t hw);

/* sb_log_append for batches this process built itself with
 * sb_batch_builder_finish and has not modified since (the produce path):
 * the headers are checked as above (structure, lengths, record counts), but
 * the CRC is not re-computed, which saves a pass over every byte. The caller
 * vouches for the CRC: a batch stored with a wrong one would be refused to
 * readers (SB_ECORRUPT) and cut at recovery like a torn tail, together with
 * everything after it. Sanitized builds verify the CRC here too. Same
 * parameters, ownership, threads and errors as sb_log_append. */
int sb_log_append_trusted(struct sb_log *log, const void *data, size_t len, int32_t leader_epoch,
			  sb_append_cb cb, void *arg) SB_MUST_CHECK;

struct sb_log_read {
	uint8_t *buf;          /* malloc'd; free(buf) when done (NULL if len == 0) */
	const uint8_t *data;   /* whole batches: data[0..len) */
	size_t len;
	int64_t next_offset;   /* offset to read next */
	int64_t log_start;     /* valid range at the time of the read: */
	int64_t stable_end;    /* [log_start, stable_end) */
	int64_t high_watermark; /* the readable end (== stable_end for sb_log_read) */
	int64_t segment_base;  /* base offset of the segment the batches come from */
};

/* Reads whole batches starting with the one containing offset, up to
 * max_bytes (at least one batch when offset < stable_end, even if larger).
 * len == 0 when offset == stable_end (caught up), and also when offset lies
 * in a gap between segments (offsets lost before a recovery, which logged
 * segment_gap): then next_offset > offset says where reading goes on, and
 * readers must continue from there. Every batch's CRC is
 * verified. Errors: SB_ERANGE_LOW (offset < log_start), SB_ERANGE_HIGH
 * (offset > stable_end) — out->log_start/stable_end then give the valid
 * range; SB_ECORRUPT (stored bytes invalid: DATA_LOSS), -errno. */
int sb_log_read(struct sb_log *log, int64_t offset, size_t max_bytes, struct sb_log_read *out) SB_MUST_CHECK;
/* sb_log_read bounded by the acknowledged end instead of the readable end:
 * what a leader ships to followers before the high watermark covers it.
 * out->stable_end is the acknowledged end, out->high_watermark the
 * readable one. */
int sb_log_read_stable(struct sb_log *log, int64_t offset, size_t max_bytes,
		       struct sb_log_read *out) SB_MUST_CHECK;

/* Offset of the first record whose timestamp is >= ts_ms, in *offset.
 * SB_ENOTFOUND if every acknowledged record is older (then *offset is the
 * stable end). SB_ECORRUPT / -errno on read failures. */
int sb_log_offset_for_time(struct sb_log *log, int64_t ts_ms, int64_t *offset) SB_MUST_CHECK;

struct sb_log_info {
	int64_t log_start;
	int64_t stable_end;     /* acknowledged end */
	int64_t high_watermark; /* readable end: min(stable_end, hw cap), see sb_log_set_hw_cap */
	uint64_t active_base;   /* base offset of the active segment */
	int64_t next_offset;    /* end including unacknowledged appends */
	uint64_t size_bytes;    /* bytes in all segments */
	uint32_t segments;
	int32_t last_epoch;
	int failed;             /* sticky failure error, 0 if healthy */
	int full;               /* failed is a full disk: retried (see above) */
	uint32_t rewinds;       /* times the readable end moved back (unclean promotion: sb_log_truncate) */
	int64_t keyed_end;      /* every batch at or past this offset has SB_BATCH_ATTR_NO_KEYS
				 * (conservative: the end after open, truncation or installs) */
	uint64_t inflight_bytes;
	/* Age of the oldest write or fdatasync in flight (0: none). A disk that
	 * stops answering (frozen, a dying device) shows here first. */
	int64_t io_wait_ms;
};
void sb_log_info(struct sb_log *log, struct sb_log_info *info);

/* Every group-commit fdatasync of every log in the process: how long it
 * took from submission to completion (metrics). */
#include "sb_histo.h"
extern struct sb_histo sb_log_fsync_histo;

/* Deletes sealed segments past the retention limits, oldest first (never the
 * active one), and advances log_start. now_ms is wall-clock time. Returns
 * the number of segments deleted or -errno. The I/O loop runs this on its
 * ticks; exposed for tests and tools. */
int sb_log_apply_retention(struct sb_log *log, int64_t now_ms) SB_MUST_CHECK;

/* ---- the log cleaner (compacted topics; sb_log_clean.c) ---- */

struct sb_record_view;
/* 1 to keep the record, 0 to drop it. Called on the cleaner's thread. */
typedef int (*sb_keep_fn)(void *arg, const struct sb_record_view *r);
struct sb_clean_stats {
	uint64_t bytes_before, bytes_after, records_dropped;
};
/* Rewrites the sealed segment whose base offset is base (it must lie
 * entirely below the readable end) keeping the records keep() keeps, at
 * their offsets, and always the segment's last record (so it still ends
 * where the next segment begins); the new file replaces the old atomically
 * and readers holding the old segment finish on its bytes. Nothing happens
 * when keep() keeps everything. Not on the I/O loop thread. 0,
 * SB_ENOTFOUND (no such sealed segment, or retention took it meanwhile),
 * SB_EFAILED, -errno (after the swap began: the log fails). */
int sb_log_rewrite_sealed(struct sb_log *log, int64_t base, sb_keep_fn keep, void *arg,
			  struct sb_clean_stats *st) SB_MUST_CHECK;
/* Base offsets (and, if sizes is not NULL, byte sizes) of the sealed
 * segments entirely below the readable end, oldest first, at most cap. */
int sb_log_sealed_bases(struct sb_log *log, int64_t *bases, uint64_t *sizes, uint32_t cap, uint32_t *n);

/* Seals the active segment now (if non-empty) and starts a new one, once
 * every queued write has completed. Waits for it. 0 or -errno/SB_EFAILED. */
int sb_log_roll(struct sb_log *log) SB_MUST_CHECK;

#endif
