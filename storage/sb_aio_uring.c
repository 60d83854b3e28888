/* sb_aio_uring.c - the io_uring engine of sb_aio.h (liburing).
 *
 * One ring per engine, touched only by the owner thread (submit, poll,
 * destroy). wake() never touches the ring: it writes to an eventfd on which
 * the engine keeps a one-shot IORING_OP_POLL_ADD armed (user_data WAKE_TAG);
 * when that completes, poll drains the eventfd, re-arms and returns.
 *
 * Ordering (the same rule as the sync engine): io_uring runs SQEs in any
 * order, so a datasync submitted after a write to the same fd could finish
 * before the write and not cover it. The engine therefore never lets a
 * datasync start before every earlier-submitted write to its fd finished:
 *   - if the datasync directly follows its fd's only outstanding write in the
 *     not-yet-submitted part of the SQ, the two are chained with
 *     IOSQE_IO_HARDLINK (one trip to the kernel; a hard link is not severed
 *     by a short or failed write, so the datasync always runs);
 *   - otherwise it is held back in a per-fd FIFO (with every later request on
 *     that fd, so it cannot be starved) until those writes complete, and is
 *     submitted by a later poll.
 *
 * Bounds: at most depth requests between submit and their callback (-EAGAIN
 * beyond). The CQ ring (2 * depth entries) always has room for them plus the
 * wake poll, so completions never overflow.
 */
#include "sb_aio.h"

#include <assert.h>
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "sb_limits.h"

#define WAKE_TAG ((uint64_t)1) /* never a request pointer (those are aligned) */

/* Per-fd ordering state; exists while writes > 0 or requests are held. */
struct fd_order {
	int fd;
	unsigned writes; /* writes handed to the ring, not yet completed */
	struct sb_aio_req *held_head, *held_tail;
};

struct uring_engine {
	struct sb_aio aio;
	struct io_uring ring;
	int ring_ok;
	int efd;
	int wake_armed;
	unsigned depth;
	unsigned inflight; /* submitted, callback not yet run */
	/* The last SQE prepared since the last io_uring_submit, if it is a
	 * request (a datasync may hard-link to it). */
	struct io_uring_sqe *last_sqe;
	struct sb_aio_req *last_req;
	/* Released from a hold, waiting for an SQE (FIFO). */
	struct sb_aio_req *ready_head, *ready_tail;
	struct fd_order *fds; /* depth entries; nfds in use */
	unsigned nfds;
};

static void list_push(struct sb_aio_req **head, struct sb_aio_req **tail, struct sb_aio_req *r)
{
	r->next = NULL;
	if (*tail)
		(*tail)->next = r;
	else
		*head = r;
	*tail = r;
}

static struct sb_aio_req *list_pop(struct sb_aio_req **head, struct sb_aio_req **tail)
{
	struct sb_aio_req *r = *head;
	if (r) {
		*head = r->next;
		if (!*head)
			*tail = NULL;
		r->next = NULL;
	}
	return r;
}

static struct fd_order *fd_find(struct uring_engine *e, int fd)
{
	for (unsigned i = 0; i < e->nfds; i++)
		if (e->fds[i].fd == fd)
			return &e->fds[i];
	return NULL;
}

/* Never fails: every entry in use accounts for at least one of the at most
 * depth requests in flight, and the caller holds a slot for a new one. */
static struct fd_order *fd_get(struct uring_engine *e, int fd)
{
	struct fd_order *o = fd_find(e, fd);
	if (!o) {
		assert(e->nfds < e->depth);
		o = &e->fds[e->nfds++];
		*o = (struct fd_order){.fd = fd};
	}
	return o;
}

static void fd_put(struct uring_engine *e, struct fd_order *o)
{
	if (o->writes == 0 && !o->held_head)
		*o = e->fds[--e->nfds];
}

static int ring_submit(struct uring_engine *e)
{
	e->last_sqe = NULL;
	e->last_req = NULL;
	return io_uring_submit(&e->ring);
}

/* An SQE, submitting what is queued once if the SQ is full; NULL if none. */
static struct io_uring_sqe *get_sqe(struct uring_engine *e)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);
	if (!sqe) {
		(void)ring_submit(e);
		sqe = io_uring_get_sqe(&e->ring);
	}
	return sqe;
}

static void prep_req(struct uring_engine *e, struct io_uring_sqe *sqe, struct sb_aio_req *r)
{
	if (r->op == SB_AIO_WRITE)
		io_uring_prep_write(sqe, r->fd, r->buf, r->len, r->off);
	else
		io_uring_prep_fsync(sqe, r->fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data(sqe, r);
	e->last_sqe = sqe;
	e->last_req = r;
}

static void arm_wake(struct uring_engine *e)
{
	struct io_uring_sqe *sqe = get_sqe(e);
	if (!sqe)
		return; /* retried at the next poll; a pending wake is not lost */
	io_uring_prep_poll_add(sqe, e->efd, POLLIN);
	io_uring_sqe_set_data64(sqe, WAKE_TAG);
	e->last_sqe = NULL; /* a link from the previous SQE would hit this one */
	e->last_req = NULL;
	e->wake_armed = 1;
}

/* A datasync on fd o->fd, which has writes outstanding: hard-link it to the
 * only one if that is the last unsubmitted SQE, else hold it. */
static void submit_ordered_sync(struct uring_engine *e, struct fd_order *o, struct sb_aio_req *r)
{
	struct sb_aio_req *last = e->last_req;
	if (o->writes == 1 && !o->held_head && last && last->op == SB_AIO_WRITE &&
	    last->fd == r->fd) {
		/* No implicit submit here: both SQEs must go in one batch. */
		struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);
		if (sqe) {
			e->last_sqe->flags |= IOSQE_IO_HARDLINK;
			prep_req(e, sqe, r);
			return;
		}
	}
	list_push(&o->held_head, &o->held_tail, r);
}

static int uring_submit(struct sb_aio *aio, struct sb_aio_req *req)
{
	struct uring_engine *e = aio->impl;
	struct fd_order *o;
	struct io_uring_sqe *sqe;

	if ((req->op != SB_AIO_WRITE && req->op != SB_AIO_DATASYNC) || !req->done ||
	    req->len > INT32_MAX)
		return -EINVAL;
	if (e->inflight >= e->depth)
		return -EAGAIN;
	o = fd_find(e, req->fd);
	if (o && (o->held_head || (req->op == SB_AIO_DATASYNC && o->writes > 0))) {
		if (req->op == SB_AIO_DATASYNC)
			submit_ordered_sync(e, o, req);
		else
			list_push(&o->held_head, &o->held_tail, req);
		e->inflight++;
		return 0;
	}
	if (!(sqe = get_sqe(e)))
		return -EAGAIN;
	if (req->op == SB_AIO_WRITE)
		fd_get(e, req->fd)->writes++;
	prep_req(e, sqe, req);
	e->inflight++;
	return 0;
}

/* Hands held requests of o to the ready list, up to the next datasync that
 * still has earlier writes outstanding. */
static void release_held(struct uring_engine *e, struct fd_order *o)
{
	while (o->held_head) {
		if (o->held_head->op == SB_AIO_DATASYNC && o->writes > 0)
			break;
		struct sb_aio_req *r = list_pop(&o->held_head, &o->held_tail);
		if (r->op == SB_AIO_WRITE)
			o->writes++;
		list_push(&e->ready_head, &e->ready_tail, r);
	}
}

static void flush_ready(struct uring_engine *e)
{
	while (e->ready_head) {
		struct io_uring_sqe *sqe = get_sqe(e);
		if (!sqe)
			return; /* the rest go at the next poll */
		prep_req(e, sqe, list_pop(&e->ready_head, &e->ready_tail));
	}
}

static void write_finished(struct uring_engine *e, const struct sb_aio_req *r)
{
	struct fd_order *o = fd_find(e, r->fd);
	assert(o && o->writes > 0);
	o->writes--;
	release_held(e, o);
	fd_put(e, o);
}

static void drain_wake(struct uring_engine *e)
{
	uint64_t v;
	while (read(e->efd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	e->wake_armed = 0;
}

/* Takes every available CQE; returns the completed requests as a list
 * (linked through next, in completion order) and their count in *n. */
static struct sb_aio_req *reap(struct uring_engine *e, unsigned *n)
{
	struct sb_aio_req *head = NULL, *tail = NULL;
	struct io_uring_cqe *cqe;
	unsigned cq_head, seen = 0;
	int woken = 0;

	*n = 0;
	io_uring_for_each_cqe(&e->ring, cq_head, cqe) {
		seen++;
		if (cqe->user_data == WAKE_TAG) {
			woken = 1;
			continue;
		}
		struct sb_aio_req *r = io_uring_cqe_get_data(cqe);
		r->res = cqe->res;
		list_push(&head, &tail, r);
		(*n)++;
	}
	io_uring_cq_advance(&e->ring, seen);
	if (woken)
		drain_wake(e);
	for (struct sb_aio_req *r = head; r; r = r->next)
		if (r->op == SB_AIO_WRITE)
			write_finished(e, r);
	e->inflight -= *n; /* before the callbacks, so that they can resubmit */
	return head;
}

/* Submits what is queued and waits up to timeout_ms for one CQE. */
static int submit_and_wait(struct uring_engine *e, int timeout_ms)
{
	struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
				       .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
	struct io_uring_cqe *cqe;
	int rc;

	if (timeout_ms == 0 || io_uring_cq_ready(&e->ring))
		return ring_submit(e);
	e->last_sqe = NULL;
	e->last_req = NULL;
	rc = io_uring_submit_and_wait_timeout(&e->ring, &cqe, 1, timeout_ms < 0 ? NULL : &ts, NULL);
	return rc == -ETIME || rc == -EINTR ? 0 : rc; /* timeout, signal: not failures */
}

static int uring_poll(struct sb_aio *aio, int timeout_ms)
{
	struct uring_engine *e = aio->impl;
	struct sb_aio_req *list;
	unsigned n;
	int rc;

	flush_ready(e);
	if (!e->wake_armed)
		arm_wake(e);
	rc = submit_and_wait(e, timeout_ms);
	/* Transient kernel back-pressure: the SQEs stay queued for the next poll. */
	if (rc == -EAGAIN || rc == -EBUSY)
		rc = 0;
	list = reap(e, &n);
	while (list) {
		struct sb_aio_req *r = list;
		list = r->next;
		r->next = NULL;
		r->done(r); /* may resubmit r or free it */
	}
	/* What the callbacks submitted (and what completions released from a
	 * hold) goes to the kernel now, not after whatever the owner does
	 * between polls: a write or datasync waiting in the SQ is idle disk. */
	if (n > 0) {
		flush_ready(e);
		if (io_uring_sq_ready(&e->ring)) {
			int src = ring_submit(e);
			if (src < 0 && src != -EAGAIN && src != -EBUSY && rc >= 0)
				rc = src;
		}
	}
	return n > 0 || rc >= 0 ? (int)n : rc;
}

static void uring_wake(struct sb_aio *aio)
{
	struct uring_engine *e = aio->impl;
	uint64_t one = 1;
	/* EAGAIN: the counter is saturated, so the eventfd is readable anyway. */
	while (write(e->efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static void engine_free(struct uring_engine *e)
{
	if (e->ring_ok)
		io_uring_queue_exit(&e->ring); /* cancels the armed wake poll */
	if (e->efd >= 0)
		close(e->efd);
	free(e->fds);
	free(e);
}

static void uring_destroy(struct sb_aio *aio)
{
	struct uring_engine *e;
	if (!aio)
		return;
	e = aio->impl;
	assert(e->inflight == 0 && "sb_aio destroy with requests in flight");
	engine_free(e);
}

static const struct sb_aio_ops uring_ops = {
	.name = "io_uring",
	.submit = uring_submit,
	.poll = uring_poll,
	.wake = uring_wake,
	.destroy = uring_destroy,
};

int sb_aio_uring_new(unsigned depth, struct sb_aio **out)
{
	struct uring_engine *e;
	int rc;

	if (depth == 0 || depth > SB_AIO_DEPTH)
		return -EINVAL;
	if (!(e = calloc(1, sizeof(*e))))
		return -ENOMEM;
	e->efd = -1;
	e->depth = depth;
	e->aio = (struct sb_aio){.ops = &uring_ops, .impl = e};
	if (!(e->fds = calloc(depth, sizeof(*e->fds)))) {
		rc = -ENOMEM;
		goto fail;
	}
	/* SUBMIT_ALL (5.18+): one bad SQE does not hold back the rest.
	 * COOP_TASKRUN + TASKRUN_FLAG (5.19+): a completion from an io-wq worker
	 * does not interrupt the owner thread; it is processed at the owner's
	 * next io_uring_enter (liburing enters when the flag says work waits). */
	rc = io_uring_queue_init(depth, &e->ring, IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
							  IORING_SETUP_TASKRUN_FLAG);
	if (rc == -EINVAL)
		rc = io_uring_queue_init(depth, &e->ring, IORING_SETUP_SUBMIT_ALL);
	if (rc == -EINVAL)
		rc = io_uring_queue_init(depth, &e->ring, 0);
	if (rc)
		goto fail;
	e->ring_ok = 1;
	if ((e->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		rc = -errno;
		goto fail;
	}
	/* Arm the wake poll now: this also proves io_uring_enter works (a
	 * seccomp profile may allow setup but not enter). */
	arm_wake(e);
	rc = ring_submit(e);
	if (rc < 0)
		goto fail;
	*out = &e->aio;
	return 0;
fail:
	engine_free(e);
	return rc;
}
