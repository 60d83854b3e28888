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

/* One accepted append, acknowledged once stable_end reaches end_offset. */
struct sb_pending {
	struct sb_pending *next;
	sb_append_cb cb;
	void *arg;
	int64_t base_offset;
	int64_t end_offset;
	size_t bytes;
};

/* Staged bytes: whole batches with offsets assigned, written in FIFO order.
 * The tail chunk takes appends while it is open; the loop closes it before
 * writing it, so a chunk's bytes never change while a write reads them. */
struct sb_chunk {
	struct sb_chunk *next;
	size_t len, cap;
	size_t written;          /* bytes [0, written) are on the file */
	int64_t end_offset;      /* offset after the last batch in the chunk */
	uint8_t buf[];
};

#define SB_CHUNK_BYTES_DEFAULT (1u << 20)
#define SB_CHUNK_SPARES 2

struct sb_log {
	struct sb_ioloop_task task; /* first member: task -> log */
	struct sb_vfs *vfs;
	struct sb_ioloop *loop;
	struct sb_aio *aio;
	char *dir, *name;
	pthread_mutex_t lock;
	pthread_cond_t waiters_idle; /* signalled when a waiter firing round ends */
	struct sb_log_waiter *waiters; /* armed tail waiters */
	int waiters_firing;
	struct sb_log_config cfg;
	struct sb_log_listener listener;

	/* Segments, oldest first; the last is the active one. */
	struct sb_segment **segs;
	uint32_t nsegs, cap_segs;
	uint64_t total_bytes;

	int64_t log_start;
	int64_t next_offset;  /* next offset to assign */
	int64_t stable_end;   /* acknowledged (readable) end */
	uint64_t stable_pos;  /* readable bytes of the active segment */
	int32_t last_epoch;

	/* Staging (appenders and loop, under lock). */
	struct sb_chunk *chunk_head, *chunk_tail;
	int tail_open;
	struct sb_chunk *spares[SB_CHUNK_SPARES];
	struct sb_pending *pend_head, *pend_tail;
	uint64_t inflight_bytes;

	/* Write state (loop thread; read by others under lock). */
	struct sb_aio_req wreq, sreq;
	int write_inflight, sync_inflight;
	int piece_open;           /* a piece of chunk_head is planned, not fully written */
	size_t piece_end;         /* in chunk_head: the piece being written ends here */
	int64_t piece_end_offset; /* offset after the piece's last batch */
	int32_t piece_epoch;
	int64_t written_end;      /* offset after the last batch fully on the file */
	int64_t sync_target;      /* written_end when the in-flight datasync began */
	uint64_t sync_target_pos;
	int64_t synced_end;
	int64_t last_sync_ms;
	int64_t last_retention_ms;
	int sync_due;             /* INTERVAL: a datasync should start */
	int roll_requested;
	int rolls_done;           /* counts rolls, for sb_log_roll waiters */
	int failed;               /* sticky error, 0 while healthy */
	int closing;
};

static inline struct sb_segment *sb_log__active(struct sb_log *log)
{
	return log->segs[log->nsegs - 1];
}

/* Fires every armed tail waiter (loop thread, no lock held). sb_log.c. */
void sb_log__fire_waiters(struct sb_log *log);

/* Write path, sb_log_write.c. */
void sb_log__pump(struct sb_ioloop_task *task);
void sb_log__tick(struct sb_ioloop_task *task, int64_t now_ms);
/* Appends seg to the segment list (lock held). 0 or -ENOMEM. */
int sb_log__push_segment(struct sb_log *log, struct sb_segment *seg) SB_MUST_CHECK;
void sb_log__free_staging(struct sb_log *log);

#endif
