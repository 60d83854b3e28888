/* sb_aio_sync.c - the pwrite/fdatasync fallback engine of sb_aio.h.
 *
 * Requests go through an sb_vfs (the POSIX one in production, the simulated
 * file system in tests) in one of two modes:
 *   - threads == 0 (inline): submit appends to a FIFO; poll runs every queued
 *     request on the calling thread, in submission order, then runs their
 *     callbacks. Fully deterministic.
 *   - threads > 0 (pool): workers take requests from the FIFO, run them and
 *     append them to a completion list; poll waits for completions (or a
 *     wake) and runs the callbacks on the polling thread.
 *
 * Ordering (both modes, and the same rule as the io_uring engine): a
 * datasync never starts before every write to the same fd submitted earlier
 * has finished, so its result covers those writes. In pool mode workers take
 * requests strictly in FIFO order and record what they run in a per-worker
 * slot; a worker that took a datasync waits until no other worker is running
 * an earlier-taken write on that fd. Writes are not ordered against each
 * other (overlapping writes in flight at the same time are the caller's
 * problem, as with io_uring).
 *
 * Bounds: at most SB_AIO_DEPTH requests between submit and their callback
 * (-EAGAIN beyond); the FIFO and the completion list are intrusive (req->next)
 * so nothing is allocated per request.
 */
#include "sb_aio.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "sb_limits.h"
#include "sb_vfs.h"

struct req_fifo {
	struct sb_aio_req *head, *tail;
};

struct worker_slot {
	int busy;
	int op;
	int fd;
	uint64_t seq; /* FIFO position of the request being run */
};

struct sync_engine {
	struct sb_aio aio;
	struct sb_vfs *vfs;
	pthread_mutex_t mu;
	pthread_cond_t work_cv;  /* workers: queue non-empty or stopping */
	pthread_cond_t done_cv;  /* poller: completion or wake */
	pthread_cond_t order_cv; /* a datasync waits for earlier writes */
	struct req_fifo queue;   /* submitted, not started */
	struct req_fifo done;    /* finished, callback not yet run */
	unsigned inflight;       /* submitted, callback not yet run */
	uint64_t taken;          /* requests taken from the queue so far */
	int woken;
	int stopping;
	unsigned nthreads;       /* threads started */
	pthread_t *threads;
	struct worker_slot *slots;
	int mu_ok, work_ok, done_ok, order_ok;
};

static void fifo_push(struct req_fifo *f, struct sb_aio_req *r)
{
	r->next = NULL;
	if (f->tail)
		f->tail->next = r;
	else
		f->head = r;
	f->tail = r;
}

static struct sb_aio_req *fifo_pop(struct req_fifo *f)
{
	struct sb_aio_req *r = f->head;
	if (r) {
		f->head = r->next;
		if (!f->head)
			f->tail = NULL;
		r->next = NULL;
	}
	return r;
}

static void run_req(struct sb_vfs *vfs, struct sb_aio_req *r)
{
	if (r->op == SB_AIO_WRITE)
		r->res = (int32_t)vfs->ops->pwrite(vfs, r->fd, r->buf, r->len, r->off);
	else
		r->res = vfs->ops->datasync(vfs, r->fd);
}

/* With mu held: is a write on fd running, or queued (a worker was woken for
 * it)? That worker takes the next queued request when done, so another write
 * to the same file needs no second worker: the two would only queue on the
 * file's lock in the kernel, with a sleep and a wake-up each. */
static int write_pending(const struct sync_engine *e, int fd)
{
	for (unsigned i = 0; i < e->nthreads; i++)
		if (e->slots[i].busy && e->slots[i].op == SB_AIO_WRITE && e->slots[i].fd == fd)
			return 1;
	for (const struct sb_aio_req *r = e->queue.head; r; r = r->next)
		if (r->op == SB_AIO_WRITE && r->fd == fd)
			return 1;
	return 0;
}

static int sync_submit(struct sb_aio *aio, struct sb_aio_req *req)
{
	struct sync_engine *e = aio->impl;
	int rc = 0;
	if ((req->op != SB_AIO_WRITE && req->op != SB_AIO_DATASYNC) || !req->done ||
	    req->len > INT32_MAX)
		return -EINVAL;
	pthread_mutex_lock(&e->mu);
	if (e->inflight >= SB_AIO_DEPTH) {
		rc = -EAGAIN;
	} else {
		int pending = req->op == SB_AIO_WRITE && e->nthreads && write_pending(e, req->fd);
		e->inflight++;
		fifo_push(&e->queue, req);
		if (e->nthreads && !pending)
			pthread_cond_signal(&e->work_cv);
	}
	pthread_mutex_unlock(&e->mu);
	return rc;
}

/* Absolute CLOCK_MONOTONIC deadline timeout_ms from now. */
static struct timespec deadline_after(int timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

/* With mu held: waits until ready(e) or a wake or the timeout. Consumes the
 * wake flag. */
static void wait_ready(struct sync_engine *e, int timeout_ms, int (*ready)(struct sync_engine *))
{
	struct timespec dl = {0};
	if (timeout_ms > 0)
		dl = deadline_after(timeout_ms);
	while (!ready(e) && !e->woken && timeout_ms != 0) {
		if (timeout_ms < 0)
			pthread_cond_wait(&e->done_cv, &e->mu);
		else if (pthread_cond_timedwait(&e->done_cv, &e->mu, &dl) == ETIMEDOUT)
			break;
	}
	e->woken = 0;
}

static int queue_ready(struct sync_engine *e)
{
	return e->queue.head != NULL;
}

static int done_ready(struct sync_engine *e)
{
	return e->done.head != NULL;
}

/* Runs the callbacks of a detached list; inflight was already released. */
static int run_callbacks(struct sb_aio_req *r)
{
	int n = 0;
	while (r) {
		struct sb_aio_req *next = r->next;
		r->next = NULL;
		r->done(r); /* may resubmit r or free it */
		r = next;
		n++;
	}
	return n;
}

static int sync_poll(struct sb_aio *aio, int timeout_ms)
{
	struct sync_engine *e = aio->impl;
	struct sb_aio_req *list, *r;
	unsigned n = 0;

	pthread_mutex_lock(&e->mu);
	if (e->nthreads == 0) {
		wait_ready(e, timeout_ms, queue_ready);
		list = e->queue.head;
		e->queue.head = e->queue.tail = NULL;
		pthread_mutex_unlock(&e->mu);
		for (r = list; r; r = r->next, n++) /* in submission order */
			run_req(e->vfs, r);
		pthread_mutex_lock(&e->mu);
	} else {
		wait_ready(e, timeout_ms, done_ready);
		list = e->done.head;
		e->done.head = e->done.tail = NULL;
		for (r = list; r; r = r->next)
			n++;
	}
	e->inflight -= n; /* before the callbacks, so that they can resubmit */
	pthread_mutex_unlock(&e->mu);
	return run_callbacks(list);
}

static void sync_wake(struct sb_aio *aio)
{
	struct sync_engine *e = aio->impl;
	pthread_mutex_lock(&e->mu);
	e->woken = 1;
	pthread_cond_broadcast(&e->done_cv);
	pthread_mutex_unlock(&e->mu);
}

/* With mu held: is another worker running a write on fd taken before seq? */
static int earlier_write_running(struct sync_engine *e, int fd, uint64_t seq)
{
	for (unsigned i = 0; i < e->nthreads; i++) {
		const struct worker_slot *s = &e->slots[i];
		if (s->busy && s->op == SB_AIO_WRITE && s->fd == fd && s->seq < seq)
			return 1;
	}
	return 0;
}

struct worker_arg {
	struct sync_engine *e;
	unsigned index;
};

static void *worker_main(void *p)
{
	struct sync_engine *e = ((struct worker_arg *)p)->e;
	struct worker_slot *slot = &e->slots[((struct worker_arg *)p)->index];
	free(p);
	pthread_mutex_lock(&e->mu);
	for (;;) {
		while (!e->queue.head && !e->stopping)
			pthread_cond_wait(&e->work_cv, &e->mu);
		if (!e->queue.head)
			break; /* stopping with nothing left */
		struct sb_aio_req *r = fifo_pop(&e->queue);
		*slot = (struct worker_slot){
			.busy = 1, .op = r->op, .fd = r->fd, .seq = e->taken++};
		while (r->op == SB_AIO_DATASYNC && earlier_write_running(e, r->fd, slot->seq))
			pthread_cond_wait(&e->order_cv, &e->mu);
		pthread_mutex_unlock(&e->mu);
		run_req(e->vfs, r);
		pthread_mutex_lock(&e->mu);
		slot->busy = 0;
		if (r->op == SB_AIO_WRITE)
			pthread_cond_broadcast(&e->order_cv);
		fifo_push(&e->done, r);
		pthread_cond_signal(&e->done_cv);
	}
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

/* Stops and joins the started workers, then frees everything. Safe on a
 * partially constructed engine. */
static void engine_free(struct sync_engine *e)
{
	if (e->mu_ok) {
		pthread_mutex_lock(&e->mu);
		e->stopping = 1;
		if (e->work_ok)
			pthread_cond_broadcast(&e->work_cv);
		pthread_mutex_unlock(&e->mu);
	}
	for (unsigned i = 0; i < e->nthreads; i++)
		pthread_join(e->threads[i], NULL);
	if (e->order_ok)
		pthread_cond_destroy(&e->order_cv);
	if (e->done_ok)
		pthread_cond_destroy(&e->done_cv);
	if (e->work_ok)
		pthread_cond_destroy(&e->work_cv);
	if (e->mu_ok)
		pthread_mutex_destroy(&e->mu);
	free(e->threads);
	free(e->slots);
	free(e);
}

static void sync_destroy(struct sb_aio *aio)
{
	if (aio)
		engine_free(aio->impl);
}

static const struct sb_aio_ops sync_ops = {
	.name = "sync",
	.submit = sync_submit,
	.poll = sync_poll,
	.wake = sync_wake,
	.destroy = sync_destroy,
};

static int init_sync_objects(struct sync_engine *e)
{
	pthread_condattr_t ca;
	int rc;
	if ((rc = pthread_mutex_init(&e->mu, NULL)))
		return -rc;
	e->mu_ok = 1;
	if ((rc = pthread_condattr_init(&ca)))
		return -rc;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!rc && !(rc = pthread_cond_init(&e->done_cv, &ca)))
		e->done_ok = 1;
	if (!rc && !(rc = pthread_cond_init(&e->work_cv, NULL)))
		e->work_ok = 1;
	if (!rc && !(rc = pthread_cond_init(&e->order_cv, NULL)))
		e->order_ok = 1;
	pthread_condattr_destroy(&ca);
	return -rc;
}

static int start_workers(struct sync_engine *e, unsigned threads)
{
	e->threads = calloc(threads, sizeof(*e->threads));
	e->slots = calloc(threads, sizeof(*e->slots));
	if (!e->threads || !e->slots)
		return -ENOMEM;
	for (unsigned i = 0; i < threads; i++) {
		struct worker_arg *a = malloc(sizeof(*a));
		int rc;
		if (!a)
			return -ENOMEM;
		*a = (struct worker_arg){.e = e, .index = i};
		if ((rc = pthread_create(&e->threads[i], NULL, worker_main, a))) {
			free(a);
			return -rc;
		}
		pthread_mutex_lock(&e->mu); /* workers read nthreads under mu */
		e->nthreads++;
		pthread_mutex_unlock(&e->mu);
	}
	return 0;
}

int sb_aio_sync_new(struct sb_vfs *vfs, unsigned threads, struct sb_aio **out)
{
	struct sync_engine *e;
	int rc;

	if (!vfs || threads > SB_AIO_DEPTH)
		return -EINVAL;
	if (!(e = calloc(1, sizeof(*e))))
		return -ENOMEM;
	e->vfs = vfs;
	e->aio = (struct sb_aio){.ops = &sync_ops, .impl = e};
	if ((rc = init_sync_objects(e)))
		goto fail;
	if (threads && (rc = start_workers(e, threads)))
		goto fail;
	*out = &e->aio;
	return 0;
fail:
	engine_free(e);
	return rc;
}
