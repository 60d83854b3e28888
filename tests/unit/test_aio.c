/* test_aio.c - the I/O engines of sb_aio.h. Every behaviour test runs twice:
 * on the engine chosen by SB_TEST_IO (io_uring, or the sync engine with worker
 * threads; sbt_open_aio() exits 77 if io_uring is unavailable) and on the
 * inline sync engine (zero threads) used by the simulated-file-system tests.
 * A few tests target one engine (small io_uring depths, "auto"). */
#include "sb_test.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sb_aio.h"
#include "sb_limits.h"
#include "sb_time.h"
#include "sb_vfs.h"

#define BAD_FD (1 << 20) /* above any RLIMIT_NOFILE we run with */

struct fixture {
	struct sb_aio *aio;
	char *dir;
	int fd;
};

/* One test request and what its callback saw. */
struct tio {
	struct sb_aio_req req;
	int fired;
	int in_poll; /* 1 if the callback ran inside poll on the owner thread */
	int order;   /* completion sequence number */
};

static int g_polling;
static pthread_t g_owner;
static int g_completed;

static void tio_done(struct sb_aio_req *req)
{
	struct tio *t = req->data;
	t->fired++;
	t->in_poll = g_polling && pthread_equal(pthread_self(), g_owner);
	t->order = g_completed++;
}

static void tio_write(struct tio *t, int fd, const void *buf, uint32_t len, uint64_t off)
{
	memset(t, 0, sizeof(*t));
	t->req = (struct sb_aio_req){.op = SB_AIO_WRITE, .fd = fd, .buf = buf, .len = len,
				     .off = off, .done = tio_done, .data = t, .res = 12345};
}

static void tio_sync(struct tio *t, int fd)
{
	memset(t, 0, sizeof(*t));
	t->req = (struct sb_aio_req){.op = SB_AIO_DATASYNC, .fd = fd, .done = tio_done, .data = t,
				     .res = 12345};
}

static int do_poll(struct sb_aio *aio, int timeout_ms)
{
	int n;
	g_owner = pthread_self();
	g_polling = 1;
	n = aio->ops->poll(aio, timeout_ms);
	g_polling = 0;
	assert_true(n >= 0);
	return n;
}

/* Polls until `want` more completions have arrived (fails after 10 s). */
static void poll_for(struct sb_aio *aio, int want)
{
	int64_t deadline = sb_mono_ms() + 10000;
	while (want > 0) {
		want -= do_poll(aio, 100);
		assert_true(want >= 0);
		assert_true(sb_mono_ms() < deadline);
	}
}

static void read_back(int fd, void *buf, size_t len, uint64_t off)
{
	assert_int_equal(sb_vfs_read_all(sb_vfs_posix(), fd, buf, len, off), 0);
}

/* ---- fixtures ---- */

static int open_file(struct fixture *f)
{
	struct sb_vfs *v = sb_vfs_posix();
	char path[4096];
	f->dir = sbt_tmpdir("aio");
	snprintf(path, sizeof(path), "%s/data", f->dir);
	f->fd = v->ops->open(v, path, O_CREAT | O_RDWR, 0644);
	return f->fd >= 0 ? 0 : -1;
}

static int setup_env(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->aio = sbt_open_aio();
	*state = f;
	return open_file(f);
}

static int setup_inline(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	*state = f;
	if (sb_aio_sync_new(sb_vfs_posix(), 0, &f->aio))
		return -1;
	return open_file(f);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	/* Nothing may be in flight: every test waits for all its requests. */
	f->aio->ops->destroy(f->aio);
	sb_vfs_posix()->ops->close(sb_vfs_posix(), f->fd);
	free(f->dir);
	free(f);
	return 0;
}

/* ---- behaviour, on both engines ---- */

static void test_writes_at_offsets_complete_with_their_length_and_land_on_disk(void **state)
{
	struct fixture *f = *state;
	static char a[4096], b[100], c[1];
	char back[8192 + 100];
	struct tio t[3];
	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	c[0] = 'c';
	tio_write(&t[0], f->fd, b, sizeof(b), 8192);
	tio_write(&t[1], f->fd, a, sizeof(a), 0);
	tio_write(&t[2], f->fd, c, 1, 4096);
	for (int i = 0; i < 3; i++)
		assert_int_equal(f->aio->ops->submit(f->aio, &t[i].req), 0);
	poll_for(f->aio, 3);
	assert_int_equal(t[0].req.res, sizeof(b));
	assert_int_equal(t[1].req.res, sizeof(a));
	assert_int_equal(t[2].req.res, 1);
	read_back(f->fd, back, sizeof(back), 0);
	assert_memory_equal(back, a, sizeof(a));
	assert_int_equal(back[4096], 'c');
	assert_memory_equal(back + 8192, b, sizeof(b));
	for (int i = 0; i < 3; i++)
		assert_int_equal(t[i].fired, 1);
}

#define MANY 200

/* 200 writes in flight (polling only when the engine says -EAGAIN), then a
 * datasync: everything completes, the data is on disk, and the datasync
 * completes after every earlier write to its fd. */
static void test_many_writes_then_datasync_complete_in_order(void **state)
{
	struct fixture *f = *state;
	static struct tio t[MANY + 1];
	static char buf[MANY][512], back[512];
	int submitted = 0, completed = 0, rc;
	g_completed = 0;
	for (int i = 0; i <= MANY; i++) {
		if (i < MANY) {
			memset(buf[i], 'A' + i % 26, sizeof(buf[i]));
			tio_write(&t[i], f->fd, buf[i], sizeof(buf[i]), (uint64_t)i * 512);
		} else {
			tio_sync(&t[i], f->fd);
		}
		while ((rc = f->aio->ops->submit(f->aio, &t[i].req)) == -EAGAIN)
			completed += do_poll(f->aio, 100);
		assert_int_equal(rc, 0);
		submitted++;
	}
	poll_for(f->aio, submitted - completed);
	for (int i = 0; i < MANY; i++) {
		assert_int_equal(t[i].fired, 1);
		assert_int_equal(t[i].req.res, 512);
		assert_true(t[i].order < t[MANY].order);
		read_back(f->fd, back, sizeof(back), (uint64_t)i * 512);
		assert_memory_equal(back, buf[i], sizeof(back));
	}
	assert_int_equal(t[MANY].fired, 1);
	assert_int_equal(t[MANY].req.res, 0);
}

/* Write, datasync, write, datasync submitted back to back (the append path's
 * group-commit pattern): each datasync completes after the writes before it. */
static void test_datasync_never_completes_before_earlier_writes(void **state)
{
	struct fixture *f = *state;
	static char big[1 << 20];
	struct tio t[4];
	memset(big, 'z', sizeof(big));
	for (int round = 0; round < 20; round++) {
		g_completed = 0;
		tio_write(&t[0], f->fd, big, sizeof(big), 0);
		tio_sync(&t[1], f->fd);
		tio_write(&t[2], f->fd, big, 4096, sizeof(big));
		tio_sync(&t[3], f->fd);
		for (int i = 0; i < 4; i++)
			assert_int_equal(f->aio->ops->submit(f->aio, &t[i].req), 0);
		poll_for(f->aio, 4);
		assert_true(t[0].order < t[1].order);
		assert_true(t[0].order < t[3].order);
		assert_true(t[2].order < t[3].order);
		assert_int_equal(t[0].req.res, sizeof(big));
		assert_int_equal(t[1].req.res, 0);
		assert_int_equal(t[3].req.res, 0);
	}
}

static void test_invalid_fd_reports_ebadf_in_res(void **state)
{
	struct fixture *f = *state;
	struct tio w, s;
	tio_write(&w, BAD_FD, "x", 1, 0);
	tio_sync(&s, BAD_FD);
	assert_int_equal(f->aio->ops->submit(f->aio, &w.req), 0);
	assert_int_equal(f->aio->ops->submit(f->aio, &s.req), 0);
	poll_for(f->aio, 2);
	assert_int_equal(w.req.res, -EBADF);
	assert_int_equal(s.req.res, -EBADF);
}

static void test_invalid_request_is_rejected_and_never_completes(void **state)
{
	struct fixture *f = *state;
	struct tio t;
	tio_write(&t, f->fd, "x", 1, 0);
	t.req.op = 99;
	assert_int_equal(f->aio->ops->submit(f->aio, &t.req), -EINVAL);
	assert_int_equal(do_poll(f->aio, 0), 0);
	assert_int_equal(t.fired, 0);
}

static void *wake_later(void *arg)
{
	struct sb_aio *aio = arg;
	struct timespec ts = {.tv_nsec = 50 * 1000000L};
	nanosleep(&ts, NULL);
	aio->ops->wake(aio);
	return NULL;
}

static void test_wake_from_another_thread_unblocks_poll_forever(void **state)
{
	struct fixture *f = *state;
	alarm(20); /* a lost wake would hang: SIGALRM fails the test instead */
	for (int i = 0; i < 3; i++) {
		pthread_t th;
		int64_t t0 = sb_mono_ms();
		assert_int_equal(pthread_create(&th, NULL, wake_later, f->aio), 0);
		assert_int_equal(do_poll(f->aio, -1), 0);
		assert_true(sb_mono_ms() - t0 < 5000);
		pthread_join(th, NULL);
	}
	/* A wake before poll makes the next poll return promptly. */
	f->aio->ops->wake(f->aio);
	assert_int_equal(do_poll(f->aio, -1), 0);
	alarm(0);
}

static void test_poll_times_out_when_idle(void **state)
{
	struct fixture *f = *state;
	int64_t t0 = sb_mono_ms();
	assert_int_equal(do_poll(f->aio, 0), 0);
	assert_int_equal(do_poll(f->aio, 60), 0);
	assert_true(sb_mono_ms() - t0 >= 50);
}

static void test_submit_beyond_depth_is_eagain_and_never_completes(void **state)
{
	struct fixture *f = *state;
	static struct tio t[SB_AIO_DEPTH + 1];
	static char buf[64];
	int accepted = 0;
	for (; accepted <= (int)SB_AIO_DEPTH; accepted++) {
		tio_write(&t[accepted], f->fd, buf, sizeof(buf), (uint64_t)accepted * 64);
		int rc = f->aio->ops->submit(f->aio, &t[accepted].req);
		if (rc == -EAGAIN)
			break;
		assert_int_equal(rc, 0);
	}
	assert_true(accepted > 0 && accepted <= (int)SB_AIO_DEPTH);
	poll_for(f->aio, accepted);
	assert_int_equal(t[accepted].fired, 0);
	for (int i = 0; i < accepted; i++)
		assert_int_equal(t[i].req.res, 64);
	/* The slots are free again. */
	assert_int_equal(f->aio->ops->submit(f->aio, &t[accepted].req), 0);
	poll_for(f->aio, 1);
	assert_int_equal(t[accepted].fired, 1);
}

static void test_callbacks_run_only_inside_poll_on_the_owner_thread(void **state)
{
	struct fixture *f = *state;
	struct tio t[8];
	struct timespec ts = {.tv_nsec = 50 * 1000000L};
	for (int i = 0; i < 8; i++) {
		if (i == 7)
			tio_sync(&t[i], f->fd);
		else
			tio_write(&t[i], f->fd, "data", 4, (uint64_t)i * 4);
		assert_int_equal(f->aio->ops->submit(f->aio, &t[i].req), 0);
	}
	nanosleep(&ts, NULL); /* worker threads finish meanwhile */
	for (int i = 0; i < 8; i++)
		assert_int_equal(t[i].fired, 0);
	poll_for(f->aio, 8);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(t[i].fired, 1);
		assert_true(t[i].in_poll);
	}
}

/* A callback may submit the next request (short-write resubmission and the
 * write-then-datasync chain do this). */
struct chain {
	struct tio w, s;
	struct sb_aio *aio;
	int submit_rc;
};

static void chain_write_done(struct sb_aio_req *req)
{
	struct chain *c = req->data;
	c->w.fired++;
	tio_sync(&c->s, req->fd);
	c->submit_rc = c->aio->ops->submit(c->aio, &c->s.req);
}

static void test_callback_may_submit_a_follow_up_request(void **state)
{
	struct fixture *f = *state;
	struct chain c = {.aio = f->aio, .submit_rc = 1};
	tio_write(&c.w, f->fd, "abc", 3, 0);
	c.w.req.done = chain_write_done;
	c.w.req.data = &c;
	assert_int_equal(f->aio->ops->submit(f->aio, &c.w.req), 0);
	poll_for(f->aio, 1);
	assert_int_equal(c.submit_rc, 0);
	assert_int_equal(c.w.fired, 1);
	poll_for(f->aio, 1);
	assert_int_equal(c.s.fired, 1);
	assert_int_equal(c.s.req.res, 0);
}

/* ---- single-engine tests ---- */

/* ---- ordering against a write that cannot finish yet ---- */

/* A pipe whose buffer is full: an io_uring write to its (blocking) write end
 * waits until the test drains the read end. io_uring ignores the offset on
 * pipes; fdatasync on a pipe completes with -EINVAL, which is fine here: only
 * the completion order is checked. */
static void full_pipe(int p[2])
{
	static char junk[4096];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(fcntl(p[1], F_SETFL, O_NONBLOCK), 0);
	while (write(p[1], junk, sizeof(junk)) > 0)
		;
	assert_int_equal(fcntl(p[1], F_SETFL, 0), 0);
	assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
}

static void drain_pipe(int rfd)
{
	static char junk[4096];
	while (read(rfd, junk, sizeof(junk)) > 0)
		;
}

/* linked = 1: the datasync follows its write before any poll (the engine
 * may chain them in one submission); 0: the write is already in the kernel
 * when the datasync arrives (the engine must hold the datasync). */
static void check_uring_sync_waits_for_blocked_write(int linked)
{
	struct fixture f = {0};
	struct tio w, s, other;
	int p[2];
	if (sb_aio_uring_new(8, &f.aio)) {
		skip();
		return;
	}
	assert_int_equal(open_file(&f), 0);
	full_pipe(p);
	g_completed = 0;
	tio_write(&w, p[1], "x", 1, 0);
	tio_sync(&s, p[1]);
	tio_sync(&other, f.fd);
	assert_int_equal(f.aio->ops->submit(f.aio, &w.req), 0);
	if (!linked)
		assert_int_equal(do_poll(f.aio, 0), 0); /* the write is now in the kernel */
	assert_int_equal(f.aio->ops->submit(f.aio, &s.req), 0);
	assert_int_equal(f.aio->ops->submit(f.aio, &other.req), 0);
	/* A datasync on another fd is not held back by the blocked write. */
	poll_for(f.aio, 1);
	assert_int_equal(other.fired, 1);
	assert_int_equal(do_poll(f.aio, 100), 0);
	assert_int_equal(s.fired, 0);
	drain_pipe(p[0]);
	poll_for(f.aio, 2);
	assert_int_equal(w.req.res, 1);
	assert_true(w.order < s.order);
	f.aio->ops->destroy(f.aio);
	close(p[0]);
	close(p[1]);
	close(f.fd);
	free(f.dir);
}

static void test_uring_linked_datasync_waits_for_blocked_write(void **state)
{
	(void)state;
	check_uring_sync_waits_for_blocked_write(1);
}

static void test_uring_held_datasync_waits_for_blocked_write(void **state)
{
	(void)state;
	check_uring_sync_waits_for_blocked_write(0);
}

/* A vfs whose pwrite blocks until the test opens the gate. */
struct gate_vfs {
	struct sb_vfs vfs;
	struct sb_vfs_ops ops;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int open;
	int writes_running;
	int sync_saw_running_write;
};

static int64_t gate_pwrite(struct sb_vfs *v, int fd, const void *buf, size_t len, uint64_t off)
{
	struct gate_vfs *g = v->impl;
	int64_t n;
	pthread_mutex_lock(&g->mu);
	g->writes_running++;
	while (!g->open)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
	n = sb_vfs_posix()->ops->pwrite(sb_vfs_posix(), fd, buf, len, off);
	pthread_mutex_lock(&g->mu);
	g->writes_running--;
	pthread_mutex_unlock(&g->mu);
	return n;
}

static int gate_datasync(struct sb_vfs *v, int fd)
{
	struct gate_vfs *g = v->impl;
	pthread_mutex_lock(&g->mu);
	if (g->writes_running)
		g->sync_saw_running_write = 1;
	pthread_mutex_unlock(&g->mu);
	return sb_vfs_posix()->ops->datasync(sb_vfs_posix(), fd);
}

static void test_sync_pool_datasync_waits_for_blocked_write(void **state)
{
	(void)state;
	struct gate_vfs g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	struct fixture f = {0};
	struct tio w, s;
	g.ops = *sb_vfs_posix()->ops; /* POSIX ops ignore their vfs argument */
	g.ops.pwrite = gate_pwrite;
	g.ops.datasync = gate_datasync;
	g.vfs = (struct sb_vfs){.ops = &g.ops, .impl = &g};
	assert_int_equal(sb_aio_sync_new(&g.vfs, 2, &f.aio), 0);
	assert_int_equal(open_file(&f), 0);
	g_completed = 0;
	tio_write(&w, f.fd, "x", 1, 0);
	tio_sync(&s, f.fd);
	assert_int_equal(f.aio->ops->submit(f.aio, &w.req), 0);
	assert_int_equal(f.aio->ops->submit(f.aio, &s.req), 0);
	assert_int_equal(do_poll(f.aio, 100), 0); /* a free worker holds the datasync */
	pthread_mutex_lock(&g.mu);
	g.open = 1;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	poll_for(f.aio, 2);
	assert_false(g.sync_saw_running_write);
	assert_true(w.order < s.order);
	assert_int_equal(s.req.res, 0);
	f.aio->ops->destroy(f.aio);
	close(f.fd);
	free(f.dir);
}

static void test_uring_small_depth_gives_eagain_without_polling(void **state)
{
	(void)state;
	struct fixture f = {0};
	struct tio t[5];
	int rc = sb_aio_uring_new(4, &f.aio);
	if (rc) {
		skip();
		return;
	}
	assert_int_equal(open_file(&f), 0);
	for (int i = 0; i < 5; i++) {
		if (i % 2)
			tio_sync(&t[i], f.fd); /* datasyncs behind writes are held, and count */
		else
			tio_write(&t[i], f.fd, "wxyz", 4, (uint64_t)i * 4);
		rc = f.aio->ops->submit(f.aio, &t[i].req);
		assert_int_equal(rc, i < 4 ? 0 : -EAGAIN);
	}
	poll_for(f.aio, 4);
	assert_int_equal(t[4].fired, 0);
	f.aio->ops->destroy(f.aio);
	close(f.fd);
	free(f.dir);
}

static void test_uring_depth_one_runs_writes_and_datasyncs(void **state)
{
	(void)state;
	struct fixture f = {0};
	struct tio w, s;
	char back[4];
	if (sb_aio_uring_new(1, &f.aio)) {
		skip();
		return;
	}
	assert_int_equal(open_file(&f), 0);
	for (int i = 0; i < 10; i++) {
		tio_write(&w, f.fd, "1234", 4, (uint64_t)i * 4);
		assert_int_equal(f.aio->ops->submit(f.aio, &w.req), 0);
		tio_sync(&s, f.fd);
		assert_int_equal(f.aio->ops->submit(f.aio, &s.req), -EAGAIN);
		poll_for(f.aio, 1);
		assert_int_equal(f.aio->ops->submit(f.aio, &s.req), 0);
		poll_for(f.aio, 1);
		assert_int_equal(w.req.res, 4);
		assert_int_equal(s.req.res, 0);
	}
	read_back(f.fd, back, 4, 36);
	assert_memory_equal(back, "1234", 4);
	f.aio->ops->destroy(f.aio);
	close(f.fd);
	free(f.dir);
}

static void test_uring_rejects_zero_and_oversized_depth(void **state)
{
	(void)state;
	struct sb_aio *aio = NULL;
	assert_int_equal(sb_aio_uring_new(0, &aio), -EINVAL);
	assert_int_equal(sb_aio_uring_new(SB_AIO_DEPTH + 1, &aio), -EINVAL);
	assert_null(aio);
}

static void test_auto_open_succeeds_and_writes(void **state)
{
	(void)state;
	struct fixture f = {0};
	struct tio w;
	assert_int_equal(sb_aio_open(SB_AIO_AUTO, &f.aio), 0);
	assert_true(strcmp(f.aio->ops->name, "io_uring") == 0 ||
		    strcmp(f.aio->ops->name, "sync") == 0);
	assert_int_equal(open_file(&f), 0);
	tio_write(&w, f.fd, "auto", 4, 0);
	assert_int_equal(f.aio->ops->submit(f.aio, &w.req), 0);
	poll_for(f.aio, 1);
	assert_int_equal(w.req.res, 4);
	f.aio->ops->destroy(f.aio);
	close(f.fd);
	free(f.dir);
}

/* Makes io_uring_setup fail with EPERM in this process, as container seccomp
 * profiles do. Returns 0, or -1 if seccomp filters cannot be installed. */
static int block_io_uring(void)
{
	struct sock_filter insns[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(insns) / sizeof(insns[0]), .filter = insns};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0 ? -1 : 0;
}

/* Child: exit 0 if uring fails with -EPERM and auto gives the sync engine;
 * 77 if seccomp is unavailable; 1 otherwise. stderr goes to the pipe. */
static int fallback_child(int err_fd)
{
	struct sb_aio *aio = NULL;
	dup2(err_fd, 2);
	if (block_io_uring() != 0)
		return SB_TEST_SKIP;
	if (sb_aio_open(SB_AIO_URING, &aio) != -EPERM)
		return 1;
	if (sb_aio_open(SB_AIO_AUTO, &aio) != 0 || strcmp(aio->ops->name, "sync") != 0)
		return 1;
	aio->ops->destroy(aio);
	return 0;
}

static void test_auto_falls_back_to_sync_with_one_warning_when_io_uring_is_blocked(void **state)
{
	(void)state;
	char log[4096] = {0};
	int p[2], status = 0, lines = 0;
	size_t used = 0;
	ssize_t n;
	pid_t pid;
	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		_exit(fallback_child(p[1]));
	}
	close(p[1]);
	while (used < sizeof(log) - 1 && (n = read(p[0], log + used, sizeof(log) - 1 - used)) > 0)
		used += (size_t)n;
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == SB_TEST_SKIP) {
		skip();
		return;
	}
	assert_int_equal(WEXITSTATUS(status), 0);
	for (char *l = log; (l = strstr(l, "io_uring_unavailable")); l++)
		lines++;
	assert_int_equal(lines, 1);
	assert_non_null(strstr(log, "fallback=sync"));
	assert_non_null(strstr(log, "level=warn"));
}

static void test_open_sync_kind_uses_the_sync_engine(void **state)
{
	(void)state;
	struct sb_aio *aio = NULL;
	assert_int_equal(sb_aio_open(SB_AIO_SYNC, &aio), 0);
	assert_string_equal(aio->ops->name, "sync");
	aio->ops->destroy(aio);
}

static void test_parse_kind_accepts_the_three_names_only(void **state)
{
	(void)state;
	enum sb_aio_kind k = SB_AIO_SYNC;
	assert_int_equal(sb_aio_parse_kind("auto", &k), 0);
	assert_int_equal(k, SB_AIO_AUTO);
	assert_int_equal(sb_aio_parse_kind("uring", &k), 0);
	assert_int_equal(k, SB_AIO_URING);
	assert_int_equal(sb_aio_parse_kind("sync", &k), 0);
	assert_int_equal(k, SB_AIO_SYNC);
	assert_int_equal(sb_aio_parse_kind("io_uring", &k), SB_EINVAL);
	assert_int_equal(sb_aio_parse_kind("", &k), SB_EINVAL);
	assert_int_equal(k, SB_AIO_SYNC);
}

#define BOTH(fn) \
	cmocka_unit_test_setup_teardown(fn, setup_env, teardown), \
	cmocka_unit_test_setup_teardown(fn, setup_inline, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH(test_writes_at_offsets_complete_with_their_length_and_land_on_disk),
		BOTH(test_many_writes_then_datasync_complete_in_order),
		BOTH(test_datasync_never_completes_before_earlier_writes),
		BOTH(test_invalid_fd_reports_ebadf_in_res),
		BOTH(test_invalid_request_is_rejected_and_never_completes),
		BOTH(test_wake_from_another_thread_unblocks_poll_forever),
		BOTH(test_poll_times_out_when_idle),
		BOTH(test_submit_beyond_depth_is_eagain_and_never_completes),
		BOTH(test_callbacks_run_only_inside_poll_on_the_owner_thread),
		BOTH(test_callback_may_submit_a_follow_up_request),
		cmocka_unit_test(test_uring_linked_datasync_waits_for_blocked_write),
		cmocka_unit_test(test_uring_held_datasync_waits_for_blocked_write),
		cmocka_unit_test(test_sync_pool_datasync_waits_for_blocked_write),
		cmocka_unit_test(test_uring_small_depth_gives_eagain_without_polling),
		cmocka_unit_test(test_uring_depth_one_runs_writes_and_datasyncs),
		cmocka_unit_test(test_uring_rejects_zero_and_oversized_depth),
		cmocka_unit_test(test_auto_open_succeeds_and_writes),
		cmocka_unit_test(test_auto_falls_back_to_sync_with_one_warning_when_io_uring_is_blocked),
		cmocka_unit_test(test_open_sync_kind_uses_the_sync_engine),
		cmocka_unit_test(test_parse_kind_accepts_the_three_names_only),
	};
	/* Under SB_TEST_IO=uring, skip the whole executable (77) up front if
	 * io_uring is unavailable. */
	struct sb_aio *probe = sbt_open_aio();
	probe->ops->destroy(probe);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
