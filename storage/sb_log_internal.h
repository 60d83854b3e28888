/* sb_log_internal.h - the partition log's state, shared by sb_log.c (open,
 * recovery, reads, retention, close) and sb_log_write.c (the write path).
 * Not part of the storage API. */
#ifndef SB_STORAGE_LOG_INTERNAL_H
#define SB_STORAGE_LOG_INTERNAL_H

#include <pthread.h>

#include "sb_aio.h"
#include "sb_ioloop.h"
#include "sb_log.h"
#include "sb_segment.h"

/* One accepted append. Records live at the top of the chunk that holds the
 * append's bytes (data grows up from the start of the chunk, records grow
 * down from its end), so accepting an append allocates nothing. Written by
 * the appender under the log lock, read by the loop; never changed after. */
struct sb_append_rec {
	sb_append_cb cb;
	void *arg;
	int64_t base_offset;
	int64_t end_offset; /* offset after its last batch */
	uint32_t data_end;  /* its bytes end here in the chunk's buf */
	uint32_t reserved;
};

/* Staged bytes: whole appends with offsets assigned, written in FIFO order.
 * Appenders only ever add to the tail chunk (bytes past len, records below
 * the lowest one), so the bytes a write reads never change under it. A chunk
 * is recycled once every append in it is written and acknowledged. */
struct sb_chunk {
	struct sb_chunk *next;
	uint32_t cap;      /* bytes of buf, a multiple of 8 */
	uint32_t len;      /* data bytes staged */
	uint32_t written;  /* data bytes [0, written) are on the file */
	uint32_t nrec;     /* appends staged */
	uint32_t nplanned; /* appends handed to the writer (in a piece) */
	uint32_t nacked;   /* appends whose callback has been claimed */
	uint8_t buf[];
};

static inline struct sb_append_rec *sb_chunk_rec(struct sb_chunk *c, uint32_t i)
{
	return (struct sb_append_rec *)(void *)(c->buf + c->cap) - 1 - i;
}

/* Start of append i's bytes in c->buf. */
static inline uint32_t sb_chunk_rec_start(struct sb_chunk *c, uint32_t i)
{
	return i ? sb_chunk_rec(c, i - 1)->data_end : 0;
}

/* Standard chunks: one 2 MiB huge page each (madvise'd), kept in a per-log
 * pool up to inflight_bytes_max worth so that a busy log never re-faults its
 * staging memory; an append larger than a standard chunk gets a chunk of its
 * own, freed after use. A log that stays idle for SB_CHUNK_TRIM_MS gives its
 * unused chunks back. */
#define SB_CHUNK_BYTES (2u << 20)
#define SB_CHUNK_TRIM_MS 1000

/* A run of acknowledged (or failed) appends whose callbacks are still to be
 * run: n records from record i of chunk c on, in FIFO order; it ends at
 * record last_end of chunk last. */
struct sb_ack_run {
	struct sb_chunk *c, *last;
	uint32_t i, last_end;
	uint64_t n;
};

/* A piece: whole appends from one chunk, written with one request (plus
 * resubmissions of the rest after a short write). Up to SB_LOG_PIECES_MAX are
 * planned at a time, so that the engine has the next write queued when one
 * completes (the kernel worker goes on without a wake-up round trip). */
enum sb_piece_state { SB_PIECE_PLANNED = 0, SB_PIECE_INFLIGHT, SB_PIECE_DONE };

struct sb_piece {
	struct sb_aio_req req;
	struct sb_log *log;
	struct sb_chunk *chunk;
	uint32_t start, end;  /* bytes [start, end) of chunk->buf */
	uint32_t done;        /* bytes of it on the file so far */
	int state;            /* enum sb_piece_state */
	uint64_t file_off;    /* where start goes in the active segment */
	int64_t end_offset;   /* offset after its last append */
	int32_t epoch;        /* of its last batch */
	int64_t submitted_ms; /* when (the rest of) it went to the engine */
};

#define SB_LOG_PIECES_MAX 2
/* Staged bytes are split in two pieces only when both halves reach this:
 * smaller writes cost more per byte than the pipelining saves. */
#define SB_PIECE_SPLIT_MIN (64u << 10)

struct sb_log {
	struct sb_ioloop_task task; /* first member: task -> log */
	struct sb_vfs *vfs;
	struct sb_ioloop *loop;
	struct sb_aio *aio;
	char *dir, *name;
	pthread_mutex_t lock;
	pthread_cond_t waiters_idle; /* signalled when a waiter firing round ends */
	/* Armed tail waiters: [0] on the readable end (visible_end), [1] on the
	 * acknowledged end (stable_end: replication reads ahead of readers). */
	struct sb_log_waiter *waiters[2];
	int waiters_firing;
	struct sb_log_config cfg;
	struct sb_log_listener listener;

	/* Segments, oldest first; the last is the active one. */
	struct sb_segment **segs;
	uint32_t nsegs, cap_segs;
	uint64_t total_bytes;

	int64_t log_start;
	int64_t next_offset;  /* next offset to assign */
	int64_t stable_end;   /* acknowledged end (durable per the fsync policy) */
	/* Readers see [log_start, visible_end): visible_end = min(stable_end,
	 * hw_cap), never decreasing. hw_cap is INT64_MAX for a log nobody
	 * replicates; replication lowers it to the high watermark. */
	int64_t hw_cap, visible_end;
	uint32_t rewinds;     /* times visible_end moved back (sb_log_truncate below it) */
	int64_t keyed_end;    /* no batch at or past it holds a key (sb_log_info) */
	uint64_t stable_pos;  /* readable bytes of the active segment */
	int32_t last_epoch;

	/* Staging (appenders and loop, under lock). */
	struct sb_chunk *chunk_head, *chunk_tail; /* oldest first */
	struct sb_chunk *pool;    /* free standard chunks, most recently used first */
	uint32_t npool, pool_low; /* pool size, and its minimum since the last trim */
	uint64_t inflight_bytes;
	uint64_t appends_since_trim;
	int64_t last_trim_ms;
	int pump_pending;         /* an appender kicked the loop; the pump has not run yet */
	/* Acknowledgements claimed by completions, run by the next pump: after
	 * the engine sent what the completions submitted (loop thread). */
	struct sb_ack_run stash;
	int64_t stash_stable_end;
	int stash_kicked;

	/* Write state (loop thread; read by others under lock). Planned pieces
	 * (pieces[piece_head], then the next) lie back to back in the file. */
	struct sb_piece pieces[SB_LOG_PIECES_MAX];
	uint32_t piece_head, npieces;
	uint32_t writes_inflight;
	int sync_inflight;
	struct sb_aio_req sreq;
	uint64_t plan_pos;        /* end of the planned bytes in the active segment */
	int64_t written_end;      /* offset after the last append fully on the file */
	uint64_t written_pos;     /* its end position in the active segment */
	int64_t sync_target;      /* what the in-flight datasync covers */
	uint64_t sync_target_pos;
	int64_t synced_end;
	int64_t last_sync_ms;
	int64_t sync_started_ns;    /* the datasync in flight, for sb_log_fsync_histo */
	int64_t last_retention_ms;
	int sync_due;             /* INTERVAL: a datasync should start */
	int follower;             /* rolls only on request (where the leader rolled) */
	int roll_requested;
	int rolls_done;           /* counts rolls, for sb_log_roll waiters */
	int64_t roll_started_ms;  /* a roll's blocking I/O is under way (0: none) */
	int failed;               /* sticky error, 0 while healthy */
	/* failed is a full disk (a write or a roll refused with ENOSPC/EDQUOT):
	 * the tick retries every SB_LOG_FULL_RETRY_MS once nothing is in
	 * flight (sb_log__retry_full). */
	int full;
	int64_t full_retry_ms;
	uint32_t full_retries;    /* retries since the disk filled; logged once writes succeed */
	int closing;
};

static inline struct sb_segment *sb_log__active(struct sb_log *log)
{
	return log->segs[log->nsegs - 1];
}

/* Lock held: raises visible_end to min(stable_end, hw_cap) if that is
 * higher. Returns 1 if it moved. sb_log.c. */
int sb_log__raise_visible(struct sb_log *log);
/* Fires the armed tail waiters whose offset the ends have passed (all of
 * them with all != 0: the log is closing). No lock held. sb_log.c. */
void sb_log__fire_waiters(struct sb_log *log, int all);

/* Write path, loop side (sb_log_write.c). */
void sb_log__pump(struct sb_ioloop_task *task);
void sb_log__tick(struct sb_ioloop_task *task, int64_t now_ms);
/* Appends seg to the segment list (lock held). 0 or -ENOMEM. */
int sb_log__push_segment(struct sb_log *log, struct sb_segment *seg) SB_MUST_CHECK;
/* 1 when nothing is staged, unacknowledged or in flight (lock held). */
int sb_log__drained(struct sb_log *log);

/* Staging and acknowledgement (sb_log_stage.c). Lock held unless noted. */
/* Claims the callbacks of every unclaimed append ending at or before upto
 * (all of them with INT64_MAX) into *run, releasing their in-flight bytes. */
void sb_log__take_acked(struct sb_log *log, int64_t upto, struct sb_ack_run *run);
/* Loop thread, lock NOT held: runs the claimed callbacks with result. */
void sb_log__run_acks(const struct sb_ack_run *run, int result);
/* Appends run `next` (claimed right after `run`) to run. */
void sb_log__join_runs(struct sb_ack_run *run, const struct sb_ack_run *next);
/* Loop thread: recycles head chunks that are written and acknowledged.
 * Never while claimed callbacks are still to run. */
void sb_log__recycle(struct sb_log *log);
/* Loop thread: gives back staging memory an idle log does not need. */
void sb_log__trim(struct sb_log *log, int64_t now_ms);
/* Frees every chunk (close; nothing may be in flight). */
void sb_log__free_staging(struct sb_log *log);

#endif
