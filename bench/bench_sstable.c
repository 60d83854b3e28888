/* bench_sstable.c - SSTable write, point lookup and merge (storage/sb_sstable.h)
 * against the key store's targets: point lookup <= 3 us from page cache,
 * compaction >= 200 MB/s.
 *
 * What is measured. Every figure is the median of --runs runs (default 3).
 *  1. Write: a table of --entries entries (default 1 M) with 16-byte random
 *     keys (sorted) and 100-byte values, default options (4 KiB blocks, 10
 *     bloom bits per key), written with the durable recipe (temp file,
 *     fdatasync, rename, directory fsync) through the POSIX vfs. MB/s is
 *     file bytes (10^6 B) over the whole sb_sst_writer_open .. finish; the
 *     time spent in fdatasync and the directory fsync is shown beside it.
 *  2. Point lookups: the table is opened and scanned once so that it sits in
 *     page cache; then --lookups sb_sst_get calls on random present keys
 *     (every one checked found), each timed alone with CLOCK_MONOTONIC
 *     (about 20 ns of the figure is the clock): p50 and p99 in ns. A run's
 *     p50 is the figure; the median over runs is reported. The POSIX vfs
 *     can map files, so these lookups copy their block out of the table's
 *     mapping (no system call).
 *     Beside it, the same lookups through a vfs that cannot map (the POSIX
 *     vfs without its mmap op: one pread per lookup, as on the simulated
 *     file system), and one bare pread of a block's size (block target + 4)
 *     at random positions of the same file, through the POSIX vfs, timed
 *     the same way: the floor under a lookup on the pread path.
 *  3. Absent keys: the same with random 16-byte keys that are not in the
 *     table (inside its key range, so only the bloom filter keeps a lookup
 *     from reading a block); also the share that passed the filter.
 *  4. Merge: four tables of --entries / 4 entries (10 % of table j's keys
 *     are keys of table (j + 1) mod 4, with other values and offsets; 1 % of
 *     entries are tombstones), merged newest first by sb_sst_merge into one
 *     bottom-most table (expired tombstones dropped, no rate bound). The
 *     inputs were just written, so they are in page cache; the output is
 *     written durably.
 *     MB/s is input file bytes over the merge's wall time; the fsync time
 *     inside it is shown, and the MB/s without it.
 * Tables live in --dir (default a fresh directory under /tmp), removed at
 * the end. --block-bytes changes the block target of every table. Nothing
 * here asserts on timing: [PASS]/[FAIL] lines compare the medians with the
 * targets.
 */
#include "sb_sstable.h"
#include "sb_vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEY_BYTES 16
#define VALUE_BYTES 100
#define RUNS_MIN 3
#define RUNS_MAX 15
#define TS0 1700000000000ll
#define LOOKUP_TARGET_NS 3000.0
#define MERGE_TARGET_MBPS 200.0

struct opts {
	const char *dir;
	uint64_t entries;
	uint64_t lookups;
	uint32_t block_bytes;
	int runs;
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static int cmp_key(const void *a, const void *b)
{
	return memcmp(a, b, KEY_BYTES);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return v[n / 2];
}

/* ---- a vfs that times fdatasync and directory fsync (the POSIX vfs
 * underneath; single-threaded use) ---- */

static struct sb_vfs_ops g_timed_ops;
static struct sb_vfs g_timed = {&g_timed_ops, NULL};
static int64_t g_sync_ns;

static int timed_datasync(struct sb_vfs *vfs, int fd)
{
	struct sb_vfs *p = sb_vfs_posix();
	int64_t t0 = now_ns();
	int rc = p->ops->datasync(p, fd);
	(void)vfs;
	g_sync_ns += now_ns() - t0;
	return rc;
}

static int timed_sync_dir(struct sb_vfs *vfs, const char *path)
{
	struct sb_vfs *p = sb_vfs_posix();
	int64_t t0 = now_ns();
	int rc = p->ops->sync_dir(p, path);
	(void)vfs;
	g_sync_ns += now_ns() - t0;
	return rc;
}

static struct sb_vfs *timed_vfs(void)
{
	g_timed_ops = *sb_vfs_posix()->ops;
	g_timed_ops.datasync = timed_datasync;
	g_timed_ops.sync_dir = timed_sync_dir;
	return &g_timed;
}

/* The POSIX vfs without its optional mapping ops: tables opened through it
 * are read with one pread per lookup. */
static struct sb_vfs_ops g_nomap_ops;
static struct sb_vfs g_nomap = {&g_nomap_ops, NULL};

static struct sb_vfs *nomap_vfs(void)
{
	g_nomap_ops = *sb_vfs_posix()->ops;
	g_nomap_ops.mmap = NULL;
	g_nomap_ops.munmap = NULL;
	return &g_nomap;
}

/* ---- data ---- */

/* n distinct sorted keys: 8 random bytes, then the index big-endian (so two
 * keys never collide even if their random halves do). */
static uint8_t *make_keys(uint64_t n, uint64_t seed)
{
	uint8_t *k = malloc(n * KEY_BYTES);
	uint64_t s = seed;
	if (!k)
		return NULL;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t r = rnd(&s), be = __builtin_bswap64(i);
		memcpy(k + i * KEY_BYTES, &r, 8);
		memcpy(k + i * KEY_BYTES + 8, &be, 8);
	}
	qsort(k, n, KEY_BYTES, cmp_key);
	return k;
}

static void make_value(uint8_t *v, uint64_t i, uint64_t salt)
{
	uint64_t s = (i + 1) * 0x9E3779B97F4A7C15ull ^ salt;
	for (int j = 0; j < VALUE_BYTES; j += 4) {
		uint32_t r = (uint32_t)rnd(&s);
		memcpy(v + j, &r, VALUE_BYTES - j < 4 ? (size_t)(VALUE_BYTES - j) : 4);
	}
}

/* Writes entries keys[idx[0..n)] (sorted) as dir/name. Returns 0 or an
 * error; *file_bytes gets the file size. */
static int write_table(struct sb_vfs *vfs, const char *dir, const char *name,
                       const struct sb_sst_opts *so, const uint8_t *keys, const uint64_t *idx,
                       uint64_t n, uint64_t salt, int64_t off0, int tomb_pct, uint64_t *file_bytes)
{
	struct sb_sst_writer *w = NULL;
	uint8_t value[VALUE_BYTES];
	uint64_t s = salt | 1;
	int rc = sb_sst_writer_open(vfs, dir, name, so, &w);
	if (rc)
		return rc;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t k = idx ? idx[i] : i;
		int tomb = tomb_pct && rnd(&s) % 100 < (uint64_t)tomb_pct;
		make_value(value, k, salt);
		struct sb_kv_entry e = {keys + k * KEY_BYTES,
		                        KEY_BYTES,
		                        off0 + (int64_t)i,
		                        TS0 + (int64_t)i,
		                        tomb ? SB_KV_TOMBSTONE : 0,
		                        value,
		                        tomb ? 0 : VALUE_BYTES,
		                        NULL,
		                        0};
		if ((rc = sb_sst_writer_add(w, &e))) {
			sb_sst_writer_abort(w);
			return rc;
		}
	}
	if ((rc = sb_sst_writer_finish(w, off0, off0 + (int64_t)n)))
		return rc;
	if (file_bytes) {
		struct sb_stat st;
		char path[4200];
		snprintf(path, sizeof path, "%s/%s", dir, name);
		if ((rc = vfs->ops->stat(vfs, path, &st)))
			return rc;
		*file_bytes = st.size;
	}
	return 0;
}

static int scan_all(const struct sb_sst *t, uint64_t *count)
{
	struct sb_sst_iter *it = NULL;
	struct sb_kv_entry e;
	int rc = sb_sst_iter_new(t, &it);
	*count = 0;
	if (rc)
		return rc;
	while ((rc = sb_sst_iter_next(it, &e)) == 1)
		(*count)++;
	sb_sst_iter_free(it);
	return rc;
}

/* Times each of n lookups; returns p50 in *p50 and p99 in *p99 (ns). found
 * counts successful gets. */
static int time_lookups(const struct sb_sst *t, const uint8_t *keys, uint64_t nkeys, uint64_t n,
                        uint64_t seed, double *p50, double *p99, uint64_t *found)
{
	struct sb_sst_buf buf = SB_SST_BUF_INIT;
	struct sb_kv_entry e;
	double *ns = malloc(n * sizeof *ns);
	uint64_t s = seed;
	if (!ns)
		return -ENOMEM;
	*found = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint8_t k[KEY_BYTES]; /* as a request's key would be: in cache */
		memcpy(k, keys + (rnd(&s) % nkeys) * KEY_BYTES, KEY_BYTES);
		int64_t t0 = now_ns();
		int rc = sb_sst_get(t, k, KEY_BYTES, &e, &buf);
		ns[i] = (double)(now_ns() - t0);
		if (rc == 0)
			(*found)++;
		else if (rc != SB_ENOTFOUND) {
			fprintf(stderr, "bench_sstable: get: %s\n", sb_strerror(rc));
			free(ns);
			sb_sst_buf_free(&buf);
			return rc;
		}
	}
	qsort(ns, n, sizeof *ns, cmp_double);
	*p50 = ns[n / 2];
	*p99 = ns[n * 99 / 100];
	free(ns);
	sb_sst_buf_free(&buf);
	return 0;
}

/* The floor under a lookup on this machine: one pread through the POSIX vfs
 * of `len` bytes at a random block-aligned position of the file (in page
 * cache), each timed alone. */
static int time_preads(const char *path, uint64_t file_bytes, uint32_t len, uint64_t n,
                       uint64_t seed, double *p50, double *p99)
{
	struct sb_vfs *vfs = sb_vfs_posix();
	uint8_t *buf = malloc(len);
	double *ns = malloc(n * sizeof *ns);
	uint64_t s = seed, slots = file_bytes / len;
	int fd = vfs->ops->open(vfs, path, O_RDONLY, 0), rc = 0;
	if (!buf || !ns || fd < 0 || slots < 2) {
		rc = fd < 0 ? fd : -ENOMEM;
		goto out;
	}
	for (uint64_t i = 0; i < n && !rc; i++) {
		uint64_t off = (rnd(&s) % (slots - 1)) * len;
		int64_t t0 = now_ns();
		int64_t got = vfs->ops->pread(vfs, fd, buf, len, off);
		ns[i] = (double)(now_ns() - t0);
		if (got != (int64_t)len)
			rc = got < 0 ? (int)got : -EIO;
	}
	if (!rc) {
		qsort(ns, n, sizeof *ns, cmp_double);
		*p50 = ns[n / 2];
		*p99 = ns[n * 99 / 100];
	}
out:
	if (fd >= 0)
		(void)vfs->ops->close(vfs, fd);
	free(buf);
	free(ns);
	return rc;
}

static int remove_file(const char *dir, const char *name)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return unlink(path) == 0 || errno == ENOENT ? 0 : -errno;
}

/* ---- the four measurements ---- */

static int bench(const struct opts *o)
{
	struct sb_vfs *vfs = timed_vfs();
	const struct sb_sst_opts so = {.block_bytes = o->block_bytes};
	const uint64_t n = o->entries, nq = n / 4;
	double write_mbps[RUNS_MAX], write_sync_s[RUNS_MAX], hit_p50[RUNS_MAX], hit_p99[RUNS_MAX];
	double miss_p50[RUNS_MAX], miss_p99[RUNS_MAX], merge_mbps[RUNS_MAX];
	double pread_p50[RUNS_MAX], pread_p99[RUNS_MAX], hitp_p50[RUNS_MAX], hitp_p99[RUNS_MAX];
	double merge_nosync_mbps[RUNS_MAX], merge_sync_s[RUNS_MAX];
	uint64_t file_bytes = 0, miss_passed = 0, misses = 0, in_bytes = 0, pick = 99;
	struct sb_sst *in[4] = {NULL, NULL, NULL, NULL};
	struct sb_sst_merge_stats ms = {0};
	char path[4200];
	int rc = 0;

	uint8_t *keys = make_keys(n, 42), *absent = make_keys(o->lookups, 4242);
	uint64_t *idx[4] = {NULL, NULL, NULL, NULL};
	if (!keys || !absent) {
		rc = -ENOMEM;
		goto out;
	}
	printf("sstable: %" PRIu64 " entries of %d-byte keys and %d-byte values; %u-byte blocks; "
	       "dir %s; median of %d runs\n",
	       n, KEY_BYTES, VALUE_BYTES, o->block_bytes, o->dir, o->runs);

	/* 1 + 2 + 3: write, then lookups on that table. */
	for (int r = 0; r < o->runs; r++) {
		struct sb_sst *t = NULL;
		uint64_t found, count;
		g_sync_ns = 0;
		int64_t t0 = now_ns();
		if ((rc = write_table(vfs, o->dir, "bench.sst", &so, keys, NULL, n, 1, 0, 0,
		                      &file_bytes)))
			goto out;
		double s = (double)(now_ns() - t0) / 1e9;
		write_mbps[r] = (double)file_bytes / 1e6 / s;
		write_sync_s[r] = (double)g_sync_ns / 1e9;
		snprintf(path, sizeof path, "%s/bench.sst", o->dir);
		if ((rc = sb_sst_open(vfs, path, &t)))
			goto out;
		if ((rc = scan_all(t, &count)) || count != n) { /* into page cache */
			sb_sst_close(t);
			rc = rc ? rc : SB_ECORRUPT;
			goto out;
		}
		rc = time_lookups(t, keys, n, o->lookups, 7 + (uint64_t)r, &hit_p50[r], &hit_p99[r],
		                  &found);
		if (!rc && found != o->lookups) {
			fprintf(stderr, "bench_sstable: %" PRIu64 " present keys not found\n",
			        o->lookups - found);
			rc = SB_ECORRUPT;
		}
		if (!rc)
			rc = time_lookups(t, absent, o->lookups, o->lookups, 9 + (uint64_t)r,
			                  &miss_p50[r], &miss_p99[r], &found);
		misses += o->lookups;
		if (!rc) { /* how many absent keys pass the filter */
			for (uint64_t i = 0; i < o->lookups; i++)
				miss_passed += (uint64_t)sb_sst_may_contain(
				    t, absent + i * KEY_BYTES, KEY_BYTES);
		}
		sb_sst_close(t);
		t = NULL;
		if (!rc && !(rc = sb_sst_open(nomap_vfs(), path, &t))) { /* the pread path */
			uint64_t found_p = 0;
			rc = time_lookups(t, keys, n, o->lookups, 7 + (uint64_t)r, &hitp_p50[r],
			                  &hitp_p99[r], &found_p);
			if (!rc && found_p != o->lookups) {
				fprintf(stderr,
				        "bench_sstable: pread path: %" PRIu64
				        " present keys not found\n",
				        o->lookups - found_p);
				rc = SB_ECORRUPT;
			}
			sb_sst_close(t);
		}
		if (!rc)
			rc = time_preads(path, file_bytes, o->block_bytes + 4, o->lookups,
			                 11 + (uint64_t)r, &pread_p50[r], &pread_p99[r]);
		if (rc)
			goto out;
		if (found) /* random 128-bit keys: a hit would be a bug */
			fprintf(stderr, "bench_sstable: %" PRIu64 " absent keys found\n", found);
	}
	if ((rc = remove_file(o->dir, "bench.sst")))
		goto out;

	/* 4: merge of four tables. Table j (0 = oldest) holds key 4i + j for
	 * each i, except that 10 % of them hold key 4i + (j + 1) % 4 instead. */
	for (int j = 0; j < 4; j++) {
		char name[32];
		uint64_t fb;
		if (!(idx[j] = malloc(nq * sizeof *idx[j]))) {
			rc = -ENOMEM;
			goto out;
		}
		for (uint64_t i = 0; i < nq; i++)
			idx[j][i] =
			    4 * i + (rnd(&pick) % 10 == 0 ? (uint64_t)(j + 1) % 4 : (uint64_t)j);
		snprintf(name, sizeof name, "in%d.sst", j);
		if ((rc = write_table(vfs, o->dir, name, &so, keys, idx[j], nq, 100 + (uint64_t)j,
		                      (int64_t)j * (int64_t)nq, 1, &fb)))
			goto out;
		in_bytes += fb;
	}
	for (int j = 0; j < 4 && !rc; j++) { /* newest first */
		snprintf(path, sizeof path, "%s/in%d.sst", o->dir, 3 - j);
		rc = sb_sst_open(vfs, path, &in[j]);
	}
	for (int r = 0; r < o->runs && !rc; r++) {
		struct sb_sst_opts mo = {.block_bytes = o->block_bytes, .drop_tombstones = 1};
		g_sync_ns = 0;
		int64_t t0 = now_ns();
		rc = sb_sst_merge(vfs, o->dir, in, 4, "merged.sst", &mo, TS0 + (int64_t)n, 0, &ms);
		double sec = (double)(now_ns() - t0) / 1e9;
		merge_mbps[r] = (double)in_bytes / 1e6 / sec;
		merge_sync_s[r] = (double)g_sync_ns / 1e9;
		merge_nosync_mbps[r] = (double)in_bytes / 1e6 / (sec - merge_sync_s[r]);
	}
	if (rc)
		goto out;

	double w = median(write_mbps, o->runs), ws = median(write_sync_s, o->runs);
	double hp50 = median(hit_p50, o->runs), hp99 = median(hit_p99, o->runs);
	double mp50 = median(miss_p50, o->runs), mp99 = median(miss_p99, o->runs);
	double mm = median(merge_mbps, o->runs), mns = median(merge_nosync_mbps, o->runs);
	double msy = median(merge_sync_s, o->runs);
	double pp50 = median(pread_p50, o->runs), pp99 = median(pread_p99, o->runs);
	double hpp50 = median(hitp_p50, o->runs), hpp99 = median(hitp_p99, o->runs);
	printf("\n%-34s %12s %s\n", "measurement", "median", "detail");
	printf("%-34s %9.1f MB/s %.1f MB file, %.3f s of it in fdatasync + dir fsync\n",
	       "write 1 table (durable)", w, (double)file_bytes / 1e6, ws);
	printf("%-34s %10.0f ns p99 %.0f ns; %" PRIu64 " lookups per run; block copied from the "
	       "mapping\n",
	       "get, present key (page cache)", hp50, hp99, o->lookups);
	printf("%-34s %10.0f ns p99 %.0f ns; the same keys, a vfs that cannot map\n",
	       "get, present key, pread path", hpp50, hpp99);
	printf("%-34s %10.0f ns p99 %.0f ns; the floor under a lookup on the pread path\n",
	       "pread(2) of one block, random", pp50, pp99);
	printf("%-34s %10.0f ns p99 %.0f ns; %.2f %% passed the bloom filter\n", "get, absent key",
	       mp50, mp99, 100.0 * (double)miss_passed / (double)misses);
	printf("%-34s %9.1f MB/s %.1f MB in, %.1f MB out, %.3f s in fsyncs; %.1f MB/s without\n",
	       "merge 4 tables -> 1 (durable)", mm, (double)in_bytes / 1e6,
	       (double)ms.bytes_written / 1e6, msy, mns);
	printf("%-34s %12s %" PRIu64 " in, %" PRIu64 " out, %" PRIu64 " shadowed, %" PRIu64
	       " tombstones dropped\n",
	       "merge entries", "", ms.entries_in, ms.entries_out, ms.shadowed_dropped,
	       ms.tombstones_dropped);
	printf("\n[%s] point lookup p50 %.0f ns <= %.0f ns\n",
	       hp50 <= LOOKUP_TARGET_NS ? "PASS" : "FAIL", hp50, LOOKUP_TARGET_NS);
	printf("[%s] compaction %.1f MB/s >= %.0f MB/s\n",
	       mm >= MERGE_TARGET_MBPS ? "PASS" : "FAIL", mm, MERGE_TARGET_MBPS);
out:
	if (rc)
		fprintf(stderr, "bench_sstable: %s\n", sb_strerror(rc));
	for (int j = 0; j < 4; j++)
		sb_sst_close(in[j]);
	(void)remove_file(o->dir, "bench.sst");
	(void)remove_file(o->dir, "merged.sst");
	for (int j = 0; j < 4; j++) {
		char name[32];
		snprintf(name, sizeof name, "in%d.sst", j);
		(void)remove_file(o->dir, name);
		free(idx[j]);
	}
	free(keys);
	free(absent);
	return rc ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: bench_sstable [--dir DIR] [--entries N] [--lookups N] [--runs R]\n"
	        "                     [--block-bytes B]\n"
	        "  --dir      directory for the tables (default: a new one under /tmp)\n"
	        "  --entries  entries of the written table, and of the four merge inputs\n"
	        "             together (default 1000000; at least 1000)\n"
	        "  --lookups  timed lookups per run and kind (default 200000)\n"
	        "  --runs     runs per measurement, %d..%d (default 3)\n"
	        "  --block-bytes  data block target (default 4096)\n",
	        RUNS_MIN, RUNS_MAX);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"dir", required_argument, NULL, 'd'},
	    {"entries", required_argument, NULL, 'e'},
	    {"lookups", required_argument, NULL, 'l'},
	    {"runs", required_argument, NULL, 'r'},
	    {"block-bytes", required_argument, NULL, 'b'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct opts o = {NULL, 1000000, 200000, SB_SST_BLOCK_TARGET_BYTES_DEFAULT, 3};
	char tmpdir[] = "/tmp/bench_sstable-XXXXXX";
	int c, made_dir = 0;
	while ((c = getopt_long(argc, argv, "d:e:l:r:b:h", longopts, NULL)) != -1) {
		if (c == 'd')
			o.dir = optarg;
		else if (c == 'b' &&
		         (o.block_bytes = (uint32_t)strtoul(optarg, NULL, 10)) >=
		             SB_SST_BLOCK_TARGET_BYTES_MIN &&
		         o.block_bytes <= SB_SST_BLOCK_TARGET_BYTES_MAX)
			continue;
		else if (c == 'e' && (o.entries = strtoull(optarg, NULL, 10)) >= 1000)
			continue;
		else if (c == 'l' && (o.lookups = strtoull(optarg, NULL, 10)) >= 100)
			continue;
		else if (c == 'r' && (o.runs = atoi(optarg)) >= RUNS_MIN && o.runs <= RUNS_MAX)
			continue;
		else {
			usage();
			return c == 'h' ? 0 : 2;
		}
	}
	if (!o.dir) {
		if (!mkdtemp(tmpdir)) {
			perror("bench_sstable: mkdtemp");
			return 1;
		}
		o.dir = tmpdir;
		made_dir = 1;
	}
	int rc = bench(&o);
	if (made_dir)
		rmdir(tmpdir);
	return rc;
}
