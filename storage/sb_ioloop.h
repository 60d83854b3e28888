/* sb_ioloop.h - the storage I/O loop: one thread (or a test that drives it
 * by hand) that owns an sb_aio engine and runs every partition log's write
 * path: coalescing, writes, group-commit fdatasyncs, segment rolls, and
 * acknowledgement callbacks.
 *
 * Tasks (one per log) are registered with the loop. Any thread may kick a
 * task; the loop then calls its pump on the loop thread. Every tick_ms the
 * loop calls each task's tick (interval fsyncs, age-based rolls, retention).
 * All callbacks of a task run on the loop thread, one at a time.
 */
#ifndef SB_STORAGE_IOLOOP_H
#define SB_STORAGE_IOLOOP_H

#include <pthread.h>
#include <stdint.h>

#include "sb_error.h"

struct sb_aio;
struct sb_ioloop;

struct sb_ioloop_task {
	void (*pump)(struct sb_ioloop_task *task);
	void (*tick)(struct sb_ioloop_task *task, int64_t now_ms);
	/* Loop-private. */
	struct sb_ioloop_task *next_ready, *next_all, *prev_all;
	int queued;
};

/* Creates a loop over aio (which it owns and destroys). tick_ms: tick period.
 * Returns 0 or -ENOMEM. */
int sb_ioloop_new(struct sb_aio *aio, int tick_ms, struct sb_ioloop **out) SB_MUST_CHECK;
/* Stops the thread if running and frees the loop. Every task must have been
 * removed and every request completed. */
void sb_ioloop_free(struct sb_ioloop *loop);

struct sb_aio *sb_ioloop_aio(struct sb_ioloop *loop);

/* Starts the loop thread. 0 or -errno. */
int sb_ioloop_start(struct sb_ioloop *loop) SB_MUST_CHECK;
/* Asks the thread to exit and joins it. */
void sb_ioloop_stop(struct sb_ioloop *loop);
/* 1 if called on the loop thread (or the loop has no thread). */
int sb_ioloop_is_loop_thread(struct sb_ioloop *loop);
/* 1 if a loop thread is running. */
int sb_ioloop_threaded(struct sb_ioloop *loop);

/* One iteration: polls the engine (waiting up to timeout_ms), pumps every
 * kicked task, ticks when due. For tests and for the thread. Returns the
 * number of completions or -errno. */
int sb_ioloop_run_once(struct sb_ioloop *loop, int timeout_ms);

/* Registers / unregisters a task. remove waits until the task is not being
 * run; after it returns no callback of the task runs again. */
void sb_ioloop_add(struct sb_ioloop *loop, struct sb_ioloop_task *task);
void sb_ioloop_remove(struct sb_ioloop *loop, struct sb_ioloop_task *task);

/* Any thread: schedules task->pump on the loop thread (once, however many
 * kicks arrive before it runs). */
void sb_ioloop_kick(struct sb_ioloop *loop, struct sb_ioloop_task *task);

/* Any thread but the loop's: returns once the loop iteration running at the
 * time of the call (if any) has ended, so that no callback that was running
 * then is still running. Immediate on an unthreaded loop. */
void sb_ioloop_barrier(struct sb_ioloop *loop);

/* Blocks until done(arg) returns non-zero. On a threaded loop it waits on
 * the loop's condition variable (signalled after every iteration); without a
 * thread it runs iterations itself. Must not be called on the loop thread. */
void sb_ioloop_wait(struct sb_ioloop *loop, int (*done)(void *arg), void *arg);

#endif
