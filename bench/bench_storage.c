/* bench_storage.c - throughput, latency, read and recovery figures of the
 * storage engine (storage/), next to raw file-system baselines measured on
 * the same machine, in the same directory, with the same bytes.
 *
 * What is measured, in order. Every figure is the median of --reps runs.
 *  1. Baselines: bandwidth of plain write() of 1 MiB buffers into a fresh
 *     file (page cache only); of 1 MiB write + fdatasync, repeated; and the
 *     latency of one fdatasync after a 4 KiB append to a growing file
 *     (p50/p99/p99.9). The buffers hold encoded 100 x 100 B batches.
 *  2. Append throughput through sb_log, for {100 B, 1 KiB} records x {1, 100,
 *     1000} records per batch x fsync {never, always} x {1, 64} appenders.
 *     An appender keeps one append in flight: its ack callback (on the loop
 *     thread) hands it back to the producer (the main thread), which issues
 *     its next append at once; SB_EBUSY makes the producer wait for an ack.
 *     Each batch is built once, before timing, and the same bytes are
 *     appended again and again (the log stamps offsets) with
 *     sb_log_append_trusted, as the produce path appends batches it built.
 *     A run writes a fresh log until its byte goal or its time cap; it is
 *     timed from the first append to the last ack. MB/s counts encoded batch
 *     bytes (what reaches the file) in 10^6 B/s; "vs base" divides by the
 *     plain write() bandwidth (never) or the write + fdatasync bandwidth
 *     (always).
 *  3. Ack latency with fsync always, one appender, one 100 B record per
 *     append: from the sb_log_append call to its callback, next to the raw
 *     fdatasync latency of (1). It runs right after (1), before (2): heavy
 *     writing and deleting leaves the device's fdatasync latency raised for
 *     a while, and both latencies must see the same conditions.
 *  4. Reads over a partition of 10 M 100 B records (1 M with --quick) written
 *     in batches of 100 with fsync never, then closed and reopened (sealed
 *     segments come back with their index files) and read once so it sits
 *     in page cache: (a) sb_index_lookup on the first segment's index for
 *     random offsets, ns per lookup (independent lookups back to back, so
 *     the CPU may overlap them); (b) sb_log_read(offset, max_bytes 1) for
 *     random offsets, median and p99.
 *  5. Recovery: ~1 GiB (256 MiB with --quick) of 100 x 100 B batches in one
 *     active segment, closed and read into page cache; sb_log_open (which
 *     scans and CRC-checks the whole active segment) is timed, in GiB/s.
 * A prefault pass first writes and deletes a file so that page-cache pages
 * are backed by memory (in a VM, first-touched memory writes ~10x slower).
 * Every log is closed (which fdatasyncs it) and deleted between runs, so no
 * run starts with another run's dirty pages. The runs of one measurement
 * share a time cap of ~5 s (0.6 s with --quick). --only and --cell restrict
 * a run to some sections or one append cell, e.g. to profile it with perf.
 */
#include "sb_aio.h"
#include "sb_batch.h"
#include "sb_crc32c.h"
#include "sb_index.h"
#include "sb_ioloop.h"
#include "sb_limits.h"
#include "sb_log.h"
#include "sb_log_internal.h" /* struct sb_log: a real segment's index for 4a */
#include "sb_logging.h"
#include "sb_path.h"
#include "sb_segment.h"
#include "sb_vfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MIB ((uint64_t)1 << 20)
#define GIB ((uint64_t)1 << 30)
#define REPS_MAX 15
#define APPENDERS_MAX 64
#define IO_BUF_BYTES (1u << 20)
#define SYNC_APPEND_BYTES 4096u
#define INFLIGHT_BYTES (64u << 20)
#define BUSY_WAIT_NS 200000 /* after SB_EBUSY: wait this long for an ack */
#define NO_DEADLINE INT64_MAX

/* ---- sizes ---- */

struct plan {
	uint64_t prefault_bytes;
	uint64_t never_bytes;  /* per run with fsync never; also the write() baseline */
	uint64_t always_bytes; /* per run with fsync always; also the write+fdatasync baseline */
	double cell_s;         /* time cap of one measurement, all its runs together */
	int fsync_samples;
	int ack_samples;
	int64_t read_records;
	int lookups;
	int reads;
	uint64_t recovery_bytes;
};

static const struct plan plan_full = {
    .prefault_bytes = GIB,
    .never_bytes = 512 * MIB,
    .always_bytes = 128 * MIB,
    .cell_s = 5.0,
    .fsync_samples = 2000,
    .ack_samples = 3000,
    .read_records = 10000000,
    .lookups = 1 << 20,
    .reads = 100000,
    .recovery_bytes = GIB,
};

static const struct plan plan_quick = {
    .prefault_bytes = 256 * MIB,
    .never_bytes = 64 * MIB,
    .always_bytes = 8 * MIB,
    .cell_s = 0.6,
    .fsync_samples = 300,
    .ack_samples = 300,
    .read_records = 1000000,
    .lookups = 1 << 18,
    .reads = 20000,
    .recovery_bytes = 256 * MIB,
};

/* ---- results ---- */

struct pct {
	double p50, p99, p999; /* microseconds */
};

static const uint32_t rec_sizes[] = {100, 1024};
static const uint32_t batch_sizes[] = {1, 100, 1000};
static const int appender_counts[] = {1, 64};
static const enum sb_fsync_policy policies[] = {SB_FSYNC_NEVER, SB_FSYNC_ALWAYS};
#define NSIZES 2
#define NBATCHES 3
#define NAPPENDERS 2
#define NPOLICIES 2

struct results {
	double write_mbps, sync_mbps;
	struct pct raw_fsync, ack;
	double rps[NPOLICIES][NSIZES][NBATCHES][NAPPENDERS]; /* records/s */
	double bpr[NSIZES][NBATCHES];                        /* encoded bytes per record */
	double lookup_ns;
	int lookup_sealed;
	uint32_t lookup_entries;
	uint32_t read_segments;
	double read_p50_us, read_p99_us;
	double pread_p50_us; /* baseline: one pread(2) of a batch's bytes */
	double recovery_gibps, recovery_gib;
};

enum section {
	SEC_BASELINES = 1 << 0,
	SEC_APPENDS = 1 << 1,
	SEC_LATENCY = 1 << 2,
	SEC_READS = 1 << 3,
	SEC_RECOVERY = 1 << 4,
	SEC_ALL = (1 << 5) - 1,
};
static const char *const section_names[] = {"baselines", "appends", "latency", "reads", "recovery"};

/* Which append cells to run: indexes into the arrays above, -1 = all. */
struct cell_filter {
	int policy, size, batch, appenders;
};

struct bench {
	const struct plan *plan;
	int reps;
	unsigned sections;
	struct cell_filter only_cell;
	char *workdir;
	char *created_parent; /* the parent directory, if this run created it */
	struct sb_ioloop *loop;
	const char *io_name;
	int run_seq;
	int64_t t_start_ns;
	int tty;
	uint8_t *iobuf; /* IO_BUF_BYTES of encoded batches */
	struct results r;
};

static volatile uint64_t sink; /* keeps timed loops from being optimised away */

/* ---- small helpers ---- */

/* Everything starts unmeasured (NAN): --only skips sections. */
static void results_init(struct results *r)
{
	double *all[] = {&r->write_mbps,     &r->sync_mbps,   &r->raw_fsync.p50, &r->raw_fsync.p99,
	                 &r->raw_fsync.p999, &r->ack.p50,     &r->ack.p99,       &r->ack.p999,
	                 &r->lookup_ns,      &r->read_p50_us, &r->read_p99_us,   &r->recovery_gibps,
	                 &r->recovery_gib,   &r->pread_p50_us};
	double *rps = &r->rps[0][0][0][0];
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		*all[i] = NAN;
	for (size_t i = 0; i < sizeof r->rps / sizeof *rps; i++)
		rps[i] = NAN;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Nearest-rank percentile (q in [0, 1]) of sorted samples, in us. */
static double percentile_us(const int64_t *sorted, size_t n, double q)
{
	size_t rank = (size_t)ceil((double)n * q);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)sorted[rank - 1] / 1000.0;
}

static struct pct pct_of(int64_t *ns, size_t n)
{
	struct pct p = {0};
	if (n == 0)
		return p;
	qsort(ns, n, sizeof *ns, cmp_i64);
	p.p50 = percentile_us(ns, n, 0.50);
	p.p99 = percentile_us(ns, n, 0.99);
	p.p999 = percentile_us(ns, n, 0.999);
	return p;
}

static struct pct pct_median(struct pct *v, int n)
{
	double a[REPS_MAX], b[REPS_MAX], c[REPS_MAX];
	for (int i = 0; i < n; i++) {
		a[i] = v[i].p50;
		b[i] = v[i].p99;
		c[i] = v[i].p999;
	}
	return (struct pct){median(a, n), median(b, n), median(c, n)};
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static double run_budget_s(const struct bench *b)
{
	return b->plan->cell_s / b->reps;
}

static void progress(struct bench *b, const char *fmt, ...)
{
	char line[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s[%6.1fs] %s%s", b->tty ? "\r\033[K" : "",
	        (double)(now_ns() - b->t_start_ns) / 1e9, line, b->tty ? "" : "\n");
}

static void progress_done(struct bench *b)
{
	if (b->tty)
		fprintf(stderr, "\r\033[K");
}

static int fail(const char *what, int rc)
{
	fprintf(stderr, "\nbench_storage: %s: %s\n", what, sb_strerror(rc));
	return rc;
}

/* ---- directories ---- */

/* A fresh, empty directory for one run; caller frees the path. */
static char *run_dir_new(struct bench *b)
{
	char *path = NULL;
	if (asprintf(&path, "%s/run-%04d", b->workdir, ++b->run_seq) < 0)
		return NULL;
	if (mkdir(path, 0755) != 0) {
		free(path);
		return NULL;
	}
	return path;
}

static void run_dir_remove(char *path)
{
	if (path && sb_vfs_remove_tree(sb_vfs_posix(), path) != 0)
		fprintf(stderr, "\nbench_storage: could not remove %s\n", path);
	free(path);
}

/* Reads every file of dir once, so its pages sit in page cache. */
static int warm_dir(const char *dir, uint8_t *buf)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	if (!d)
		return -errno;
	while ((e = readdir(d)) != NULL) {
		char path[SB_PATH_MAX];
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		while (read(fd, buf, IO_BUF_BYTES) > 0)
			;
		close(fd);
	}
	closedir(d);
	return 0;
}

/* ---- batches ---- */

struct payload {
	uint8_t *data;
	size_t len;
	uint32_t records;
};

/* Builds one batch of `records` records with value_bytes-byte values and
 * null keys. */
static int payload_build(struct payload *p, uint32_t records, uint32_t value_bytes)
{
	struct sb_batch_builder bb;
	uint8_t *value = malloc(value_bytes);
	uint64_t seed = 0x9E3779B97F4A7C15ull;
	const void *out;
	int rc = -ENOMEM;

	memset(p, 0, sizeof *p);
	if (!value || sb_batch_builder_init(&bb, SB_BATCH_BYTES_MAX) != 0) {
		free(value);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < value_bytes; i++)
		value[i] = (uint8_t)xorshift(&seed);
	int64_t ts = (int64_t)time(NULL) * 1000;
	rc = 0;
	for (uint32_t i = 0; i < records && !rc; i++) {
		struct sb_record_in r = {
		    .value = value, .value_len = value_bytes, .timestamp_ms = ts};
		rc = sb_batch_builder_add(&bb, &r);
	}
	if (!rc)
		rc = sb_batch_builder_finish(&bb, &out, &p->len);
	if (!rc && (p->data = malloc(p->len)) == NULL)
		rc = -ENOMEM;
	if (!rc) {
		memcpy(p->data, out, p->len);
		p->records = records;
	}
	sb_batch_builder_fini(&bb);
	free(value);
	return rc;
}

/* Fills buf with copies of one batch (the same bytes the log writes). */
static void fill_with_batches(uint8_t *buf, size_t len, const struct payload *p)
{
	for (size_t at = 0; at < len; at += p->len)
		memcpy(buf + at, p->data, len - at < p->len ? len - at : p->len);
}

/* ---- 1. baselines ---- */

static int write_full(int fd, const uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes up to `bytes` into a fresh file in 1 MiB write()s, with an
 * fdatasync after each if sync, until done or budget_s passed; MB/s. */
static int file_write_run(const char *path, const uint8_t *buf, uint64_t bytes, int sync,
                          double budget_s, double *mbps)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	uint64_t done = 0;
	int rc = 0;
	if (fd < 0)
		return -errno;
	int64_t t0 = now_ns(), deadline = t0 + (int64_t)(budget_s * 1e9);
	while (done < bytes && !rc && now_ns() < deadline) {
		rc = write_full(fd, buf, IO_BUF_BYTES);
		if (!rc && sync && fdatasync(fd) != 0)
			rc = -errno;
		done += IO_BUF_BYTES;
	}
	int64_t t1 = now_ns();
	close(fd);
	unlink(path);
	*mbps = (double)done / ((double)(t1 - t0) / 1e9) / 1e6;
	return rc;
}

/* fdatasync latency after each 4 KiB append to a growing file. */
static int fsync_latency_run(const char *path, const uint8_t *buf, int samples, double budget_s,
                             struct pct *out)
{
	int64_t *ns = calloc((size_t)samples, sizeof *ns);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	int rc = 0, n = 0;
	if (!ns || fd < 0) {
		rc = fd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	int64_t deadline = now_ns() + (int64_t)(budget_s * 1e9);
	for (; n < samples && !rc && now_ns() < deadline; n++) {
		rc = write_full(fd, buf, SYNC_APPEND_BYTES);
		int64_t t0 = now_ns();
		if (!rc && fdatasync(fd) != 0)
			rc = -errno;
		ns[n] = now_ns() - t0;
	}
	*out = pct_of(ns, (size_t)n);
out:
	if (fd >= 0)
		close(fd);
	unlink(path);
	free(ns);
	return rc;
}

static int bench_baselines(struct bench *b)
{
	double w[REPS_MAX], s[REPS_MAX];
	struct pct l[REPS_MAX];
	char path[SB_PATH_MAX];
	int rc = 0;

	snprintf(path, sizeof path, "%s/baseline.dat", b->workdir);
	progress(b, "prefault: writing and deleting %" PRIu64 " MiB",
	         b->plan->prefault_bytes / MIB);
	rc = file_write_run(path, b->iobuf, b->plan->prefault_bytes, 0, 60.0, &w[0]);
	for (int i = 0; i < b->reps && !rc; i++) {
		progress(b, "baseline write() run %d/%d", i + 1, b->reps);
		rc =
		    file_write_run(path, b->iobuf, b->plan->never_bytes, 0, run_budget_s(b), &w[i]);
		progress(b, "baseline write+fdatasync run %d/%d", i + 1, b->reps);
		if (!rc)
			rc = file_write_run(path, b->iobuf, b->plan->always_bytes, 1,
			                    run_budget_s(b), &s[i]);
		progress(b, "baseline fdatasync latency run %d/%d", i + 1, b->reps);
		if (!rc)
			rc = fsync_latency_run(path, b->iobuf, b->plan->fsync_samples,
			                       run_budget_s(b), &l[i]);
	}
	if (rc)
		return fail("baseline", rc);
	b->r.write_mbps = median(w, b->reps);
	b->r.sync_mbps = median(s, b->reps);
	b->r.raw_fsync = pct_median(l, b->reps);
	return 0;
}

/* ---- appenders ---- */

struct driver;

struct appender {
	struct driver *d;
	int id;
	int64_t issued_ns;
};

/* Appenders whose append completed wait in `ready` for the producer. */
struct driver {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int ready[APPENDERS_MAX];
	int nready;
	int outstanding; /* accepted, not yet acknowledged (may dip below 0 briefly) */
	uint64_t acks;
	int err; /* first failed ack */
	int64_t last_ack_ns;
	int64_t *lat_ns; /* per-ack latency, if non-NULL */
	size_t nlat, cap_lat;
	struct appender app[APPENDERS_MAX];
};

static void driver_init(struct driver *d, int appenders, int64_t *lat_ns, size_t cap_lat)
{
	memset(d, 0, sizeof *d);
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	d->lat_ns = lat_ns;
	d->cap_lat = cap_lat;
	for (int i = 0; i < appenders; i++) {
		d->app[i] = (struct appender){.d = d, .id = i};
		d->ready[d->nready++] = i;
	}
}

static void driver_fini(struct driver *d)
{
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
}

/* The ack callback, on the loop thread: hands the appender back. */
static void on_ack(void *arg, int64_t base_offset, int result)
{
	struct appender *a = arg;
	struct driver *d = a->d;
	int64_t now = now_ns();
	(void)base_offset;
	pthread_mutex_lock(&d->mu);
	if (result && !d->err)
		d->err = result;
	if (d->lat_ns && d->nlat < d->cap_lat)
		d->lat_ns[d->nlat++] = now - a->issued_ns;
	d->ready[d->nready++] = a->id;
	d->outstanding--;
	d->acks++;
	d->last_ack_ns = now;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

/* mu held. Waits for an ack, at most max_ns (forever if < 0). */
static void wait_ack(struct driver *d, int64_t max_ns)
{
	struct timespec ts;
	if (max_ns < 0) {
		pthread_cond_wait(&d->cv, &d->mu);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += max_ns;
	ts.tv_sec += ts.tv_nsec / 1000000000;
	ts.tv_nsec %= 1000000000;
	pthread_cond_timedwait(&d->cv, &d->mu, &ts);
}

struct goal {
	uint64_t appends;    /* stop issuing after this many */
	int64_t deadline_ns; /* or at this time */
};

/* Issues the next append of each appender in ids[0..n) unless the goal is
 * reached (the appender then retires). Returns how many were issued in
 * *issued; on SB_EBUSY stops and leaves the rest in ids from *rest. */
static int issue_round(struct driver *d, struct sb_log *log, const struct payload *p,
                       const struct goal *g, uint64_t *total, const int *ids, int n, int *issued,
                       int *rest)
{
	int rc = 0, i;
	*issued = 0;
	for (i = 0; i < n; i++) {
		int64_t t = now_ns();
		if (*total >= g->appends || t >= g->deadline_ns)
			continue;
		d->app[ids[i]].issued_ns = t;
		/* Built in-process by sb_batch_builder, as on the produce path. */
		rc = sb_log_append_trusted(log, p->data, p->len, 0, on_ack, &d->app[ids[i]]);
		if (rc)
			break;
		(*issued)++;
		(*total)++;
	}
	*rest = rc == SB_EBUSY ? i : n;
	return rc == SB_EBUSY ? 0 : rc;
}

/* The producer: keeps every appender's append in flight until the goal,
 * then waits for the last ack. Returns 0 or the first error. */
static int drive(struct driver *d, struct sb_log *log, const struct payload *p,
                 const struct goal *g)
{
	int ids[APPENDERS_MAX], n, issued, rest, busy = 0, rc = 0;
	uint64_t total = 0;

	pthread_mutex_lock(&d->mu);
	for (;;) {
		if (busy)
			wait_ack(d, BUSY_WAIT_NS);
		while (!d->nready && d->outstanding > 0 && !d->err)
			wait_ack(d, -1);
		if (d->err || (!d->nready && d->outstanding <= 0))
			break;
		n = d->nready;
		memcpy(ids, d->ready, (size_t)n * sizeof *ids);
		d->nready = 0;
		pthread_mutex_unlock(&d->mu);
		rc = issue_round(d, log, p, g, &total, ids, n, &issued, &rest);
		pthread_mutex_lock(&d->mu);
		d->outstanding += issued;
		busy = rest < n;
		for (int i = rest; i < n; i++)
			d->ready[d->nready++] = ids[i];
		if (rc)
			break;
	}
	if (!rc)
		rc = d->err;
	pthread_mutex_unlock(&d->mu);
	return rc;
}

static void log_config(struct sb_log_config *cfg, enum sb_fsync_policy policy,
                       uint64_t segment_bytes)
{
	sb_log_config_default(cfg);
	cfg->segment_bytes = segment_bytes;
	cfg->segment_ms = 0; /* no age-based rolls */
	cfg->retention_ms = -1;
	cfg->fsync_policy = policy;
	cfg->inflight_bytes_max = INFLIGHT_BYTES;
}

struct write_stats {
	uint64_t appends;
	double seconds;
};

/* Opens a log in dir, appends p with `appenders` appenders until g, closes
 * it. lat_ns (optional) receives per-ack latencies. */
static int log_write(struct bench *b, const char *dir, const struct sb_log_config *cfg,
                     const struct payload *p, int appenders, const struct goal *g, int64_t *lat_ns,
                     size_t *nlat, struct write_stats *st)
{
	struct sb_log *log = NULL;
	struct driver d;
	int rc = sb_log_open(sb_vfs_posix(), b->loop, dir, "bench/0", cfg, &log);
	if (rc)
		return rc;
	driver_init(&d, appenders, lat_ns, nlat ? *nlat : 0);
	int64_t t0 = now_ns();
	rc = drive(&d, log, p, g);
	sb_log_close(log); /* waits for every accepted append */
	st->appends = d.acks;
	st->seconds = (double)(d.last_ack_ns - t0) / 1e9;
	if (nlat)
		*nlat = d.nlat;
	driver_fini(&d);
	return rc;
}

/* ---- 2. append throughput ---- */

/* One run of one cell, in a fresh log; records per second. */
static int append_run(struct bench *b, enum sb_fsync_policy policy, const struct payload *p,
                      int appenders, double *rps)
{
	uint64_t bytes = policy == SB_FSYNC_NEVER ? b->plan->never_bytes : b->plan->always_bytes;
	struct goal g = {.appends = (bytes + p->len - 1) / p->len,
	                 .deadline_ns = now_ns() + (int64_t)(run_budget_s(b) * 1e9)};
	struct sb_log_config cfg;
	struct write_stats st = {0};
	char *dir = run_dir_new(b);
	int rc;

	if (!dir)
		return -errno;
	log_config(&cfg, policy, GIB);
	rc = log_write(b, dir, &cfg, p, appenders, &g, NULL, NULL, &st);
	run_dir_remove(dir);
	*rps = st.seconds > 0 ? (double)st.appends * p->records / st.seconds : 0;
	return rc;
}

static int append_cell(struct bench *b, int pi, int si, int bi, int ai, const struct payload *p)
{
	double v[REPS_MAX];
	for (int i = 0; i < b->reps; i++) {
		progress(b, "append fsync=%s %u B x %u, %d appender(s), run %d/%d",
		         sb_fsync_policy_name(policies[pi]), rec_sizes[si], batch_sizes[bi],
		         appender_counts[ai], i + 1, b->reps);
		int rc = append_run(b, policies[pi], p, appender_counts[ai], &v[i]);
		if (rc)
			return fail("append", rc);
	}
	b->r.rps[pi][si][bi][ai] = median(v, b->reps);
	return 0;
}

static int filter_ok(int want, int index)
{
	return want < 0 || want == index;
}

static int bench_appends(struct bench *b)
{
	const struct cell_filter *f = &b->only_cell;
	int rc = 0;
	for (int si = 0; si < NSIZES && !rc; si++) {
		for (int bi = 0; bi < NBATCHES && !rc; bi++) {
			struct payload p;
			if (!filter_ok(f->size, si) || !filter_ok(f->batch, bi))
				continue;
			rc = payload_build(&p, batch_sizes[bi], rec_sizes[si]);
			if (rc)
				return fail("build batch", rc);
			b->r.bpr[si][bi] = (double)p.len / p.records;
			for (int pi = 0; pi < NPOLICIES && !rc; pi++)
				for (int ai = 0; ai < NAPPENDERS && !rc; ai++)
					if (filter_ok(f->policy, pi) && filter_ok(f->size, si) &&
					    filter_ok(f->batch, bi) && filter_ok(f->appenders, ai))
						rc = append_cell(b, pi, si, bi, ai, &p);
			free(p.data);
		}
	}
	return rc;
}

/* ---- 3. ack latency ---- */

static int ack_latency_run(struct bench *b, const struct payload *p, struct pct *out)
{
	size_t n = (size_t)b->plan->ack_samples;
	int64_t *lat = calloc(n, sizeof *lat);
	struct goal g = {.appends = n, .deadline_ns = now_ns() + (int64_t)(run_budget_s(b) * 1e9)};
	struct sb_log_config cfg;
	struct write_stats st;
	char *dir = run_dir_new(b);
	int rc = !lat || !dir ? -ENOMEM : 0;

	log_config(&cfg, SB_FSYNC_ALWAYS, GIB);
	if (!rc)
		rc = log_write(b, dir, &cfg, p, 1, &g, lat, &n, &st);
	if (!rc)
		*out = pct_of(lat, n);
	run_dir_remove(dir);
	free(lat);
	return rc;
}

static int bench_ack_latency(struct bench *b)
{
	struct pct v[REPS_MAX];
	struct payload p;
	int rc = payload_build(&p, 1, 100);
	for (int i = 0; i < b->reps && !rc; i++) {
		progress(b, "ack latency, fsync always, 1 appender, run %d/%d", i + 1, b->reps);
		rc = ack_latency_run(b, &p, &v[i]);
	}
	free(p.data);
	if (rc)
		return fail("ack latency", rc);
	b->r.ack = pct_median(v, b->reps);
	return 0;
}

/* ---- 4. reads ---- */

/* Fills a fresh log in dir with `appends` copies of p (64 appenders, fsync
 * never) and closes it. */
static int fill_log(struct bench *b, const char *dir, uint64_t segment_bytes,
                    const struct payload *p, uint64_t appends)
{
	struct goal g = {.appends = appends, .deadline_ns = NO_DEADLINE};
	struct sb_log_config cfg;
	struct write_stats st;
	log_config(&cfg, SB_FSYNC_NEVER, segment_bytes);
	return log_write(b, dir, &cfg, p, APPENDERS_MAX, &g, NULL, NULL, &st);
}

/* ns per sb_index_lookup on the first segment's index, random offsets. */
static double lookup_run(struct bench *b, struct sb_log *log, uint64_t *seed)
{
	int n = b->plan->lookups;
	uint32_t *rel = malloc((size_t)n * sizeof *rel);
	uint64_t acc = 0;
	if (!rel)
		return -1;
	pthread_mutex_lock(&log->lock);
	struct sb_segment *seg = log->segs[0];
	uint64_t span = (uint64_t)(seg->next_offset - seg->base_offset);
	for (int i = 0; i < n; i++)
		rel[i] = (uint32_t)(xorshift(seed) % span);
	b->r.lookup_sealed = seg->sealed;
	b->r.lookup_entries = seg->idx.n_off;
	int64_t t0 = now_ns();
	for (int i = 0; i < n; i++)
		acc += sb_index_lookup(&seg->idx, rel[i]);
	int64_t t1 = now_ns();
	pthread_mutex_unlock(&log->lock);
	sink += acc;
	free(rel);
	return (double)(t1 - t0) / n;
}

/* sb_log_read(offset, 1) latencies for random offsets, p50/p99 in us. */
static int read_run(struct bench *b, struct sb_log *log, uint64_t *seed, struct pct *out)
{
	size_t n = (size_t)b->plan->reads;
	int64_t *ns = malloc(n * sizeof *ns), *offs = malloc(n * sizeof *offs);
	struct sb_log_info info;
	int rc = !ns || !offs ? -ENOMEM : 0;

	sb_log_info(log, &info);
	for (size_t i = 0; i < n && !rc; i++)
		offs[i] = info.log_start +
		          (int64_t)(xorshift(seed) % (uint64_t)(info.stable_end - info.log_start));
	for (size_t i = 0; i < n && !rc; i++) {
		struct sb_log_read rd;
		int64_t t0 = now_ns();
		rc = sb_log_read(log, offs[i], 1, &rd);
		ns[i] = now_ns() - t0;
		if (!rc && rd.len == 0)
			rc = SB_ECORRUPT; /* an offset below stable_end must return a batch */
		if (!rc)
			free(rd.buf);
	}
	if (!rc)
		*out = pct_of(ns, n);
	free(ns);
	free(offs);
	return rc;
}

/* The floor under a random read on this machine: one pread(2) of len bytes
 * at a random batch-aligned position of the first segment file, same count. */
static int pread_run(struct bench *b, const char *dir, size_t len, uint64_t *seed, double *p50)
{
	char path[SB_PATH_MAX];
	size_t n = (size_t)b->plan->reads;
	int64_t *ns = malloc(n * sizeof *ns);
	uint8_t *buf = malloc(len);
	struct stat st;
	int rc = 0, fd = -1;

	snprintf(path, sizeof path, "%s/%020d.log", dir, 0);
	if (!ns || !buf)
		rc = -ENOMEM;
	else if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0)
		rc = -errno;
	for (size_t i = 0; i < n && !rc && (uint64_t)st.st_size > len; i++) {
		off_t at = (off_t)(xorshift(seed) % ((uint64_t)st.st_size / len) * len);
		int64_t t0 = now_ns();
		ssize_t got = pread(fd, buf, len, at);
		ns[i] = now_ns() - t0;
		if (got < 0)
			rc = -errno;
		sink += buf[0];
	}
	if (!rc)
		*p50 = pct_of(ns, n).p50;
	if (fd >= 0)
		close(fd);
	free(buf);
	free(ns);
	return rc;
}

static int read_reps(struct bench *b, struct sb_log *log, const char *dir, size_t batch_len)
{
	double lk[REPS_MAX], p50[REPS_MAX], p99[REPS_MAX], base[REPS_MAX];
	uint64_t seed = 0x2545F4914F6CDD1Dull;
	for (int i = 0; i < b->reps; i++) {
		struct pct p;
		progress(b, "index lookups and random reads, run %d/%d", i + 1, b->reps);
		lk[i] = lookup_run(b, log, &seed);
		int rc = lk[i] < 0 ? -ENOMEM : read_run(b, log, &seed, &p);
		if (!rc)
			rc = pread_run(b, dir, batch_len, &seed, &base[i]);
		if (rc)
			return rc;
		p50[i] = p.p50;
		p99[i] = p.p99;
	}
	b->r.lookup_ns = median(lk, b->reps);
	b->r.read_p50_us = median(p50, b->reps);
	b->r.read_p99_us = median(p99, b->reps);
	b->r.pread_p50_us = median(base, b->reps);
	return 0;
}

static int bench_reads(struct bench *b)
{
	struct sb_log *log = NULL;
	struct sb_log_config cfg;
	struct sb_log_info info;
	struct payload p;
	char *dir = run_dir_new(b);
	int rc = dir ? payload_build(&p, 100, 100) : -errno;

	if (rc)
		goto out_dir;
	progress(b, "reads: writing %" PRId64 " records", b->plan->read_records);
	rc = fill_log(b, dir, GIB, &p, (uint64_t)b->plan->read_records / 100);
	log_config(&cfg, SB_FSYNC_NEVER, GIB);
	progress(b, "reads: reopening the log");
	if (!rc)
		rc = sb_log_open(sb_vfs_posix(), b->loop, dir, "bench/0", &cfg, &log);
	if (!rc)
		rc = warm_dir(dir, b->iobuf);
	if (!rc) {
		sb_log_info(log, &info);
		b->r.read_segments = info.segments;
		rc = read_reps(b, log, dir, p.len);
	}
	sb_log_close(log);
	free(p.data);
out_dir:
	run_dir_remove(dir);
	return rc ? fail("reads", rc) : 0;
}

/* ---- 5. recovery ---- */

static int recovery_reps(struct bench *b, const char *dir)
{
	double v[REPS_MAX];
	struct sb_log_config cfg;
	log_config(&cfg, SB_FSYNC_NEVER, 2 * GIB);
	for (int i = 0; i < b->reps; i++) {
		struct sb_log *log = NULL;
		struct sb_log_info info;
		progress(b, "recovery: timing sb_log_open, run %d/%d", i + 1, b->reps);
		int rc = warm_dir(dir, b->iobuf);
		int64_t t0 = now_ns();
		if (!rc)
			rc = sb_log_open(sb_vfs_posix(), b->loop, dir, "bench/0", &cfg, &log);
		int64_t t1 = now_ns();
		if (rc)
			return rc;
		sb_log_info(log, &info);
		sb_log_close(log);
		if (info.segments != 1)
			return SB_ECORRUPT; /* the measurement needs one active segment */
		b->r.recovery_gib = (double)info.size_bytes / GIB;
		v[i] = b->r.recovery_gib / ((double)(t1 - t0) / 1e9);
	}
	b->r.recovery_gibps = median(v, b->reps);
	return 0;
}

static int bench_recovery(struct bench *b)
{
	struct payload p;
	char *dir = run_dir_new(b);
	int rc = dir ? payload_build(&p, 100, 100) : -errno;
	if (rc)
		goto out;
	progress(b, "recovery: writing %" PRIu64 " MiB into one segment",
	         b->plan->recovery_bytes / MIB);
	rc = fill_log(b, dir, 2 * GIB, &p, b->plan->recovery_bytes / p.len);
	if (!rc)
		rc = recovery_reps(b, dir);
	free(p.data);
out:
	run_dir_remove(dir);
	return rc ? fail("recovery", rc) : 0;
}

/* ---- report ---- */

static void print_header(const struct bench *b, int quick)
{
	printf("StreamBus storage benchmark: io=%s, %s run, medians of %d runs, crc32c=%s\n",
	       b->io_name, quick ? "quick" : "full", b->reps, sb_crc32c_impl());
	printf("directory: %s; MB = 10^6 bytes; appends: segment 1 GiB, in-flight bound 64 MiB\n\n",
	       b->workdir);
}

static void print_baselines(const struct bench *b)
{
	const struct results *r = &b->r;
	printf("1. Baselines (same directory, same encoded bytes)\n");
	printf("  plain write(), 1 MiB buffers, %4" PRIu64 " MiB   %9.1f MB/s\n",
	       b->plan->never_bytes / MIB, r->write_mbps);
	printf("  1 MiB write + fdatasync,   %4" PRIu64 " MiB   %9.1f MB/s\n",
	       b->plan->always_bytes / MIB, r->sync_mbps);
	printf("  fdatasync after 4 KiB append (%d samples): p50 %.1f us  p99 %.1f us  p99.9 %.1f "
	       "us\n\n",
	       b->plan->fsync_samples, r->raw_fsync.p50, r->raw_fsync.p99, r->raw_fsync.p999);
}

static void print_appends(const struct bench *b)
{
	const struct results *r = &b->r;
	printf("2. Append throughput through sb_log (record = value bytes, null key)\n");
	printf("  %-6s %7s %6s %9s %13s %10s %8s %11s\n", "fsync", "record", "batch", "appenders",
	       "records/s", "MB/s", "vs base", "ns/record");
	for (int pi = 0; pi < NPOLICIES; pi++) {
		double base = policies[pi] == SB_FSYNC_NEVER ? r->write_mbps : r->sync_mbps;
		for (int si = 0; si < NSIZES; si++)
			for (int bi = 0; bi < NBATCHES; bi++)
				for (int ai = 0; ai < NAPPENDERS; ai++) {
					double rps = r->rps[pi][si][bi][ai];
					if (isnan(rps))
						continue;
					double mbps = rps * r->bpr[si][bi] / 1e6;
					printf("  %-6s %5u B %6u %9d %13.0f %10.1f %7.2fx %11.1f\n",
					       sb_fsync_policy_name(policies[pi]), rec_sizes[si],
					       batch_sizes[bi], appender_counts[ai], rps, mbps,
					       mbps / base, rps > 0 ? 1e9 / rps : 0);
				}
	}
	printf(
	    "  (vs base: never / plain write() bandwidth; always / write+fdatasync bandwidth)\n\n");
}

static void print_latency(const struct bench *b)
{
	const struct results *r = &b->r;
	printf(
	    "3. Ack latency, fsync always, 1 appender, 1 x 100 B record per append (%d samples)\n",
	    b->plan->ack_samples);
	printf("  %-28s %10s %10s %10s\n", "", "p50 us", "p99 us", "p99.9 us");
	printf("  %-28s %10.1f %10.1f %10.1f\n", "sb_log append -> ack", r->ack.p50, r->ack.p99,
	       r->ack.p999);
	printf("  %-28s %10.1f %10.1f %10.1f\n", "raw fdatasync (4 KiB)", r->raw_fsync.p50,
	       r->raw_fsync.p99, r->raw_fsync.p999);
	printf("  ratio p50 ack / p50 raw: %.2f\n\n", r->ack.p50 / r->raw_fsync.p50);
}

static void print_reads(const struct bench *b)
{
	const struct results *r = &b->r;
	printf("4. Reads, %" PRId64
	       " records of 100 B in batches of 100, reopened, page cache (%u segment%s)\n",
	       b->plan->read_records, r->read_segments, r->read_segments == 1 ? "" : "s");
	printf("  index lookup (%s segment, %u entries)     %8.1f ns\n",
	       r->lookup_sealed ? "sealed" : "active", r->lookup_entries, r->lookup_ns);
	printf("  sb_log_read(offset, 1), %d random reads  p50 %.2f us  p99 %.2f us\n",
	       b->plan->reads, r->read_p50_us, r->read_p99_us);
	printf("  baseline: one pread(2) of a batch's bytes   p50 %.2f us  (read / pread %.2fx)\n\n",
	       r->pread_p50_us, r->read_p50_us / r->pread_p50_us);
}

static void print_recovery(const struct bench *b)
{
	printf("5. Recovery: sb_log_open over one active segment of %.2f GiB (page cache)\n",
	       b->r.recovery_gib);
	printf("  %.2f GiB/s (%.0f ms per GiB)\n\n", b->r.recovery_gibps,
	       1000.0 / b->r.recovery_gibps);
}

/* One target line: value against limit (at_least: value >= limit, else
 * value <= limit). Skipped if the value was not measured (NAN). */
static void target_line(const char *what, double value, int at_least, double limit, int prec,
                        const char *unit)
{
	char val[32], tgt[32];
	if (isnan(value))
		return;
	int ok = at_least ? value >= limit : value <= limit;
	snprintf(val, sizeof val, "%.*f%s", prec, value, unit);
	snprintf(tgt, sizeof tgt, "%s %g%s", at_least ? ">=" : "<=", limit, unit);
	printf("  [%s] %-50s %14s  (target %s)\n", ok ? "PASS" : "FAIL", what, val, tgt);
}

static void print_targets(const struct bench *b)
{
	const struct results *r = &b->r;
	double never_rps = r->rps[0][0][1][1]; /* never, 100 B, 100 per batch, 64 appenders */
	double never_mbps = never_rps * r->bpr[0][1] / 1e6;
	char what[96];

	printf("Targets\n");
	target_line("never, 100 x 100 B, 64 appenders: vs write() bw",
	            100 * never_mbps / r->write_mbps, 1, 80, 0, "%");
	target_line("never, 100 x 100 B, 64 appenders: per record", 1e9 / never_rps, 0, 60, 1,
	            " ns");
	for (int si = 0; si < NSIZES; si++)
		for (int bi = 0; bi < NBATCHES; bi++) {
			snprintf(what, sizeof what, "always/never, %u x %u B, 64 appenders",
			         batch_sizes[bi], rec_sizes[si]);
			target_line(what, 100 * r->rps[1][si][bi][1] / r->rps[0][si][bi][1], 1, 50,
			            1, "%");
		}
	target_line("ack p50 (1 appender) / raw fdatasync p50", r->ack.p50 / r->raw_fsync.p50, 0,
	            1.3, 2, " x");
	target_line("offset index lookup", r->lookup_ns, 0, 100, 1, " ns");
	target_line("random single-batch read, median", r->read_p50_us, 0, 2, 2, " us");
	target_line("  (floor here: one bare pread of the same bytes)", r->pread_p50_us, 0, 2, 2,
	            " us");
	target_line("recovery of the active segment", r->recovery_gibps, 1, 1, 2, " GiB/s");
}

/* ---- set-up ---- */

struct opts {
	const char *dir;
	enum sb_aio_kind io;
	int quick;
	int reps;
	unsigned sections;
	struct cell_filter cell;
};

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: bench_storage [--dir DIR] [--io uring|sync] [--quick] [--reps N]\n"
	        "                     [--only S,..] [--cell P/S/B/A]\n"
	        "  --dir DIR   work in a fresh directory under DIR (default ./bench-data)\n"
	        "  --io        I/O engine (default uring; falls back to sync if unavailable)\n"
	        "  --quick     smaller sizes, under a minute\n"
	        "  --reps N    runs per figure, medians reported (default 3, max %d)\n"
	        "  --only S,.. run only these sections: baselines, appends, latency, reads,\n"
	        "              recovery (for profiling one part)\n"
	        "  --cell P/S/B/A  run one append cell, e.g. never/100/100/64\n",
	        REPS_MAX);
}

/* "baselines,reads" -> SEC_BASELINES | SEC_READS; 0 if a name is unknown. */
static unsigned parse_sections(const char *list)
{
	unsigned mask = 0;
	char buf[128], *save = NULL;
	snprintf(buf, sizeof buf, "%s", list);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		unsigned bit = 0;
		for (int i = 0; i < 5; i++)
			if (strcmp(t, section_names[i]) == 0)
				bit = 1u << i;
		if (!bit)
			return 0;
		mask |= bit;
	}
	return mask;
}

static int index_of(const uint32_t *v, int n, uint32_t x)
{
	for (int i = 0; i < n; i++)
		if (v[i] == x)
			return i;
	return -1;
}

/* "never/100/100/64" -> indexes into policies, rec_sizes, batch_sizes,
 * appender_counts. 0 or -1. */
static int parse_cell(const char *s, struct cell_filter *f)
{
	char pol[16];
	unsigned size, batch, app;
	enum sb_fsync_policy p;
	if (sscanf(s, "%15[a-z]/%u/%u/%u", pol, &size, &batch, &app) != 4 ||
	    sb_fsync_policy_parse(pol, &p) != 0)
		return -1;
	const uint32_t apps[] = {(uint32_t)appender_counts[0], (uint32_t)appender_counts[1]};
	f->policy = p == SB_FSYNC_NEVER ? 0 : p == SB_FSYNC_ALWAYS ? 1 : -1;
	f->size = index_of(rec_sizes, NSIZES, size);
	f->batch = index_of(batch_sizes, NBATCHES, batch);
	f->appenders = index_of(apps, NAPPENDERS, app);
	return f->policy < 0 || f->size < 0 || f->batch < 0 || f->appenders < 0 ? -1 : 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
	    {"dir", required_argument, NULL, 'd'},  {"io", required_argument, NULL, 'i'},
	    {"quick", no_argument, NULL, 'q'},      {"reps", required_argument, NULL, 'r'},
	    {"only", required_argument, NULL, 'o'}, {"cell", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
	};
	int c;
	*o = (struct opts){
	    .io = SB_AIO_URING, .reps = 3, .sections = SEC_ALL, .cell = {-1, -1, -1, -1}};
	while ((c = getopt_long(argc, argv, "d:i:qr:o:c:h", longopts, NULL)) != -1) {
		if (c == 'd')
			o->dir = optarg;
		else if (c == 'i' &&
		         (sb_aio_parse_kind(optarg, &o->io) != 0 || o->io == SB_AIO_AUTO))
			return -1;
		else if (c == 'q')
			o->quick = 1;
		else if (c == 'r' && ((o->reps = atoi(optarg)) < 1 || o->reps > REPS_MAX))
			return -1;
		else if (c == 'o' && (o->sections = parse_sections(optarg)) == 0)
			return -1;
		else if (c == 'c' && parse_cell(optarg, &o->cell) != 0)
			return -1;
		else if (c == 'h' || c == '?')
			return -1;
	}
	return optind == argc ? 0 : -1;
}

/* Creates <parent>/sb-bench-XXXXXX (parent: --dir or ./bench-data). */
static int workdir_open(struct bench *b, const char *dir)
{
	const char *parent = dir ? dir : "bench-data";
	struct stat st;
	int existed = stat(parent, &st) == 0;
	int rc = existed ? 0 : sb_vfs_mkdir_durable(sb_vfs_posix(), parent);
	if (rc)
		return rc;
	if (!existed)
		b->created_parent = strdup(parent);
	if (asprintf(&b->workdir, "%s/sb-bench-XXXXXX", parent) < 0)
		return -ENOMEM;
	return mkdtemp(b->workdir) ? 0 : -errno;
}

static void workdir_close(struct bench *b)
{
	if (b->workdir && sb_vfs_remove_tree(sb_vfs_posix(), b->workdir) != 0)
		fprintf(stderr, "bench_storage: could not remove %s\n", b->workdir);
	if (b->created_parent)
		rmdir(b->created_parent); /* only if empty */
	free(b->workdir);
	free(b->created_parent);
}

static int loop_open(struct bench *b, enum sb_aio_kind kind)
{
	struct sb_aio *aio = NULL;
	int rc = sb_aio_open(kind, &aio);
	if (rc && kind == SB_AIO_URING) {
		fprintf(stderr, "bench_storage: io_uring unavailable (%s), using the sync engine\n",
		        sb_strerror(rc));
		rc = sb_aio_open(SB_AIO_SYNC, &aio);
	}
	if (rc)
		return rc;
	b->io_name = aio->ops->name;
	rc = sb_ioloop_new(aio, 10, &b->loop);
	if (rc) {
		aio->ops->destroy(aio);
		return rc;
	}
	return sb_ioloop_start(b->loop);
}

static int bench_setup(struct bench *b, const struct opts *o)
{
	struct payload p;
	int rc;
	b->plan = o->quick ? &plan_quick : &plan_full;
	b->reps = o->reps;
	b->sections = o->sections;
	b->only_cell = o->cell;
	results_init(&b->r);
	b->tty = isatty(STDERR_FILENO);
	b->t_start_ns = now_ns();
	if ((rc = workdir_open(b, o->dir)) != 0)
		return fail("work directory", rc);
	if ((rc = loop_open(b, o->io)) != 0)
		return fail("I/O loop", rc);
	if ((rc = payload_build(&p, 100, 100)) != 0)
		return fail("build batch", rc);
	b->iobuf = malloc(IO_BUF_BYTES);
	if (b->iobuf)
		fill_with_batches(b->iobuf, IO_BUF_BYTES, &p);
	free(p.data);
	return b->iobuf ? 0 : fail("buffer", -ENOMEM);
}

/* Sections in print order. They run in `order`: ack latency right after
 * the baselines, because after the append matrix has written and deleted a
 * few GiB the device's fdatasync latency stays raised for a while, and the
 * two latencies must be compared under the same conditions. */
static const struct {
	enum section sec;
	int (*run)(struct bench *b);
	void (*print)(const struct bench *b);
} sections[] = {
    {SEC_BASELINES, bench_baselines, print_baselines}, {SEC_APPENDS, bench_appends, print_appends},
    {SEC_LATENCY, bench_ack_latency, print_latency},   {SEC_READS, bench_reads, print_reads},
    {SEC_RECOVERY, bench_recovery, print_recovery},
};
static const int order[] = {0, 2, 1, 3, 4};
#define NSECTIONS (sizeof sections / sizeof sections[0])

static int bench_run(struct bench *b, int quick)
{
	int rc = 0;
	for (size_t i = 0; i < NSECTIONS && !rc; i++)
		if (b->sections & sections[order[i]].sec)
			rc = sections[order[i]].run(b);
	progress_done(b);
	if (rc)
		return rc;
	print_header(b, quick);
	for (size_t i = 0; i < NSECTIONS; i++)
		if (b->sections & sections[i].sec)
			sections[i].print(b);
	print_targets(b);
	printf("\ntotal time %.0f s\n", (double)(now_ns() - b->t_start_ns) / 1e9);
	return 0;
}

int main(int argc, char **argv)
{
	struct bench b = {0};
	struct opts o;
	int rc;

	if (parse_opts(argc, argv, &o) != 0) {
		usage(stderr);
		return 2;
	}
	sb_logging_init(SB_LEVEL_WARN, SB_LOG_LOGFMT); /* no per-open/close info lines */
	rc = bench_setup(&b, &o);
	if (!rc)
		rc = bench_run(&b, o.quick);
	if (b.loop) {
		sb_ioloop_stop(b.loop);
		sb_ioloop_free(b.loop);
	}
	workdir_close(&b);
	free(b.iobuf);
	return rc ? 1 : 0;
}
