/* sb_ioloop.c - the storage I/O loop (see sb_ioloop.h). */
#include "sb_ioloop.h"

#include "sb_aio.h"
#include "sb_logging.h"
#include "sb_time.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct sb_ioloop {
	struct sb_aio *aio;
	pthread_mutex_t lock;
	pthread_cond_t cond;       /* signalled after each iteration */
	struct sb_ioloop_task *ready_head, *ready_tail;
	struct sb_ioloop_task *all;
	struct sb_ioloop_task *running; /* task whose callback runs now */
	int tick_ms;
	int64_t next_tick_ms;
	uint64_t iterations;       /* completed iterations (under lock) */
	int stop;
	int threaded;
	pthread_t thread;
};

int sb_ioloop_new(struct sb_aio *aio, int tick_ms, struct sb_ioloop **out)
{
	struct sb_ioloop *loop = calloc(1, sizeof *loop);
	pthread_condattr_t attr;
	if (!loop)
		return -ENOMEM;
	loop->aio = aio;
	loop->tick_ms = tick_ms > 0 ? tick_ms : 10;
	pthread_mutex_init(&loop->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&loop->cond, &attr);
	pthread_condattr_destroy(&attr);
	*out = loop;
	return 0;
}

void sb_ioloop_free(struct sb_ioloop *loop)
{
	if (!loop)
		return;
	sb_ioloop_stop(loop);
	loop->aio->ops->destroy(loop->aio);
	pthread_mutex_destroy(&loop->lock);
	pthread_cond_destroy(&loop->cond);
	free(loop);
}

struct sb_aio *sb_ioloop_aio(struct sb_ioloop *loop) { return loop->aio; }

static void *loop_main(void *arg)
{
	struct sb_ioloop *loop = arg;
	for (;;) {
		pthread_mutex_lock(&loop->lock);
		int stop = loop->stop;
		pthread_mutex_unlock(&loop->lock);
		if (stop)
			break;
		int rc = sb_ioloop_run_once(loop, loop->tick_ms);
		if (rc < 0 && rc != -EINTR)
			SB_LOG_RATELIMITED(SB_LEVEL_ERROR, 1000, "ioloop_poll_failed", "error=\"%s\"", sb_strerror(rc));
	}
	return NULL;
}

int sb_ioloop_start(struct sb_ioloop *loop)
{
	loop->stop = 0;
	loop->threaded = 1;
	int rc = pthread_create(&loop->thread, NULL, loop_main, loop);
	if (rc) {
		loop->threaded = 0;
		return -rc;
	}
	return 0;
}

void sb_ioloop_stop(struct sb_ioloop *loop)
{
	if (!loop->threaded)
		return;
	pthread_mutex_lock(&loop->lock);
	loop->stop = 1;
	pthread_mutex_unlock(&loop->lock);
	loop->aio->ops->wake(loop->aio);
	pthread_join(loop->thread, NULL);
	loop->threaded = 0;
}

int sb_ioloop_threaded(struct sb_ioloop *loop) { return loop->threaded; }

int sb_ioloop_is_loop_thread(struct sb_ioloop *loop)
{
	return !loop->threaded || pthread_equal(pthread_self(), loop->thread);
}

void sb_ioloop_add(struct sb_ioloop *loop, struct sb_ioloop_task *task)
{
	pthread_mutex_lock(&loop->lock);
	task->queued = 0;
	task->next_ready = NULL;
	task->prev_all = NULL;
	task->next_all = loop->all;
	if (loop->all)
		loop->all->prev_all = task;
	loop->all = task;
	pthread_mutex_unlock(&loop->lock);
}

void sb_ioloop_remove(struct sb_ioloop *loop, struct sb_ioloop_task *task)
{
	pthread_mutex_lock(&loop->lock);
	while (loop->running == task && loop->threaded && !pthread_equal(pthread_self(), loop->thread))
		pthread_cond_wait(&loop->cond, &loop->lock);
	if (task->prev_all)
		task->prev_all->next_all = task->next_all;
	else
		loop->all = task->next_all;
	if (task->next_all)
		task->next_all->prev_all = task->prev_all;
	if (task->queued) {
		struct sb_ioloop_task **pp = &loop->ready_head, *prev = NULL;
		while (*pp && *pp != task) {
			prev = *pp;
			pp = &(*pp)->next_ready;
		}
		if (*pp)
			*pp = task->next_ready;
		if (loop->ready_tail == task)
			loop->ready_tail = prev;
		task->queued = 0;
	}
	pthread_mutex_unlock(&loop->lock);
}

void sb_ioloop_kick(struct sb_ioloop *loop, struct sb_ioloop_task *task)
{
	int wake = 0;
	pthread_mutex_lock(&loop->lock);
	if (!task->queued) {
		task->queued = 1;
		task->next_ready = NULL;
		if (loop->ready_tail)
			loop->ready_tail->next_ready = task;
		else
			loop->ready_head = task;
		loop->ready_tail = task;
		wake = 1;
	}
	pthread_mutex_unlock(&loop->lock);
	if (wake && loop->threaded && !pthread_equal(pthread_self(), loop->thread))
		loop->aio->ops->wake(loop->aio);
}

/* Runs the pump of every task kicked so far (and any kicked meanwhile). */
static void pump_ready(struct sb_ioloop *loop)
{
	pthread_mutex_lock(&loop->lock);
	for (;;) {
		struct sb_ioloop_task *t = loop->ready_head;
		if (!t)
			break;
		loop->ready_head = t->next_ready;
		if (!loop->ready_head)
			loop->ready_tail = NULL;
		t->queued = 0;
		loop->running = t;
		pthread_mutex_unlock(&loop->lock);
		t->pump(t);
		pthread_mutex_lock(&loop->lock);
		loop->running = NULL;
	}
	pthread_mutex_unlock(&loop->lock);
}

static void tick_all(struct sb_ioloop *loop, int64_t now_ms)
{
	pthread_mutex_lock(&loop->lock);
	for (struct sb_ioloop_task *t = loop->all; t; t = t->next_all) {
		if (!t->tick)
			continue;
		loop->running = t;
		pthread_mutex_unlock(&loop->lock);
		t->tick(t, now_ms);
		pthread_mutex_lock(&loop->lock);
		loop->running = NULL;
		/* t stays valid: remove() waits while it is running, and the list
		 * link is re-read under the lock. */
	}
	pthread_mutex_unlock(&loop->lock);
}

int sb_ioloop_run_once(struct sb_ioloop *loop, int timeout_ms)
{
	int n;
	pthread_mutex_lock(&loop->lock);
	if (loop->ready_head)
		timeout_ms = 0;
	pthread_mutex_unlock(&loop->lock);
	n = loop->aio->ops->poll(loop->aio, timeout_ms);
	pump_ready(loop);
	int64_t now = sb_mono_ms();
	if (now >= loop->next_tick_ms) {
		loop->next_tick_ms = now + loop->tick_ms;
		tick_all(loop, sb_wall_ms());
		pump_ready(loop);
	}
	pthread_mutex_lock(&loop->lock);
	loop->iterations++;
	pthread_cond_broadcast(&loop->cond);
	pthread_mutex_unlock(&loop->lock);
	return n;
}

static void wait_cond_5ms(struct sb_ioloop *loop)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += 5 * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&loop->cond, &loop->lock, &ts);
}

void sb_ioloop_barrier(struct sb_ioloop *loop)
{
	if (sb_ioloop_is_loop_thread(loop))
		return;
	pthread_mutex_lock(&loop->lock);
	uint64_t target = loop->iterations + 1;
	pthread_mutex_unlock(&loop->lock);
	loop->aio->ops->wake(loop->aio); /* do not wait out a poll timeout */
	pthread_mutex_lock(&loop->lock);
	while (loop->iterations < target && loop->threaded)
		wait_cond_5ms(loop);
	pthread_mutex_unlock(&loop->lock);
}

void sb_ioloop_wait(struct sb_ioloop *loop, int (*done)(void *arg), void *arg)
{
	if (!loop->threaded) {
		while (!done(arg))
			if (sb_ioloop_run_once(loop, 1) < 0)
				break;
		return;
	}
	pthread_mutex_lock(&loop->lock);
	while (!done(arg))
		wait_cond_5ms(loop);
	pthread_mutex_unlock(&loop->lock);
}
