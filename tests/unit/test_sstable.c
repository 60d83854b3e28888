/* test_sstable.c - the bloom filter (storage/sb_bloom.h) and the SSTables of
 * the key store (storage/sb_sstable.h): round trips against an in-memory
 * model, iterator order and seeks, limits, corruption and truncation of
 * every byte, forged-CRC fuzzing for memory safety (run under ASan), merge
 * against a model map, and durable writes under simulated power loss
 * (storage/sb_simfs.h), including mutants the crash check must catch.
 * Lookups read a block from the table's mapping when the vfs can map, else
 * with pread: the corruption tests run on both paths (map_vfs below).
 *
 * Tables that need real I/O live under $SB_TEST_TMP; corruption and crash
 * tests run on the simulated file system, which is in memory and exact.
 * SB_TEST_FILTER runs a subset (cmocka pattern). */
#include "sb_test.h"

#include "sb_bloom.h"
#include "sb_crc32c.h"
#include "sb_endian.h"
#include "sb_logging.h"
#include "sb_simfs.h"
#include "sb_sstable.h"
#include "sb_time.h"
#include "sb_varint.h"
#include "sb_vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TS0 1700000000000ll
/* Footer fields, as docs/SSTABLE.md places them (the tests read them
 * directly, so the doc and the code cannot drift apart unnoticed). */
#define DOC_FT_INDEX_POS 56
#define DOC_FT_INDEX_LEN 64
#define DOC_FT_BLOCKS 68
#define DOC_FT_BLOOM_POS 72
#define DOC_FT_CRC 124

/* ---- a model of a table: sorted unique entries with owned bytes ---- */

struct ment {
	uint8_t *key, *val, *hdr;
	uint32_t key_len, val_len, hdr_len;
	int64_t off, ts;
	uint32_t flags;
};

static int mkey_cmp(const uint8_t *a, uint32_t an, const uint8_t *b, uint32_t bn)
{
	uint32_t n = an < bn ? an : bn;
	int c = n ? memcmp(a, b, n) : 0;
	return c ? c : (an > bn) - (an < bn);
}

static int ment_cmp(const void *x, const void *y)
{
	const struct ment *a = x, *b = y;
	return mkey_cmp(a->key, a->key_len, b->key, b->key_len);
}

static uint8_t *rand_bytes(uint64_t *s, uint32_t n)
{
	uint8_t *p = malloc(n ? n : 1);
	assert_non_null(p);
	for (uint32_t i = 0; i < n; i++)
		p[i] = (uint8_t)sbt_rand(s);
	return p;
}

/* A random key: half "user:NNNNNNNN:" plus a short random tail (long shared
 * prefixes), half random binary bytes of 1..24 (including 0x00 and 0xFF). */
static uint8_t *rand_key(uint64_t *s, uint32_t *len)
{
	if (sbt_rand(s) & 1) {
		char buf[64];
		int n =
		    snprintf(buf, sizeof buf, "user:%08u:", (unsigned)(sbt_rand(s) % 100000000u));
		uint32_t tail = (uint32_t)(sbt_rand(s) % 4);
		uint8_t *k = malloc((size_t)n + tail);
		assert_non_null(k);
		memcpy(k, buf, (size_t)n);
		for (uint32_t i = 0; i < tail; i++)
			k[n + i] = (uint8_t)('a' + sbt_rand(s) % 26);
		*len = (uint32_t)n + tail;
		return k;
	}
	*len = 1 + (uint32_t)(sbt_rand(s) % 24);
	return rand_bytes(s, *len);
}

static void ment_free(struct ment *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(m[i].key);
		free(m[i].val);
		free(m[i].hdr);
	}
	free(m);
}

/* n random entries (fewer after removing duplicate keys), sorted; offsets
 * are distinct in [100, 100 + 10 n); 1 in 10 is a tombstone. */
static struct ment *gen_entries(uint64_t seed, size_t n, uint32_t val_max, size_t *out_n)
{
	uint64_t s = seed;
	struct ment *m = calloc(n ? n : 1, sizeof *m);
	assert_non_null(m);
	for (size_t i = 0; i < n; i++) {
		m[i].key = rand_key(&s, &m[i].key_len);
		m[i].off = 100 + (int64_t)i * 10 + (int64_t)(sbt_rand(&s) % 10);
		m[i].ts = TS0 + (int64_t)(sbt_rand(&s) % 100000) - 50000;
		m[i].flags = sbt_rand(&s) % 10 == 0 ? SB_KV_TOMBSTONE : 0;
		m[i].val_len = m[i].flags ? 0 : (uint32_t)(sbt_rand(&s) % (val_max + 1));
		m[i].hdr_len = sbt_rand(&s) % 3 == 0 ? (uint32_t)(sbt_rand(&s) % 40) : 0;
		m[i].val = rand_bytes(&s, m[i].val_len);
		m[i].hdr = rand_bytes(&s, m[i].hdr_len);
	}
	qsort(m, n, sizeof *m, ment_cmp);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (k > 0 && ment_cmp(&m[k - 1], &m[i]) == 0) {
			free(m[i].key);
			free(m[i].val);
			free(m[i].hdr);
			continue;
		}
		m[k++] = m[i];
	}
	*out_n = k;
	return m;
}

static struct sb_kv_entry to_kv(const struct ment *m)
{
	struct sb_kv_entry e = {m->key, m->key_len, m->off, m->ts,     m->flags,
	                        m->val, m->val_len, m->hdr, m->hdr_len};
	return e;
}

static int entry_matches(const struct ment *m, const struct sb_kv_entry *e)
{
	return e->key && e->value && e->headers &&
	       mkey_cmp(m->key, m->key_len, e->key, e->key_len) == 0 && m->off == e->offset &&
	       m->ts == e->timestamp_ms && m->flags == e->flags && m->val_len == e->value_len &&
	       (m->val_len == 0 || memcmp(m->val, e->value, m->val_len) == 0) &&
	       m->hdr_len == e->headers_len &&
	       (m->hdr_len == 0 || memcmp(m->hdr, e->headers, m->hdr_len) == 0);
}

static void write_table(struct sb_vfs *vfs, const char *dir, const char *name, const struct ment *m,
                        size_t n, const struct sb_sst_opts *o, int64_t cmin, int64_t cmax)
{
	struct sb_sst_writer *w = NULL;
	assert_int_equal(sb_sst_writer_open(vfs, dir, name, o, &w), 0);
	for (size_t i = 0; i < n; i++) {
		struct sb_kv_entry e = to_kv(&m[i]);
		assert_int_equal(sb_sst_writer_add(w, &e), 0);
	}
	assert_int_equal(sb_sst_writer_entries(w), n);
	assert_int_equal(sb_sst_writer_finish(w, cmin, cmax), 0);
}

static struct sb_sst *must_open(struct sb_vfs *vfs, const char *path)
{
	struct sb_sst *t = NULL;
	int rc = sb_sst_open(vfs, path, &t);
	if (rc)
		fail_msg("sb_sst_open %s: %s", path, sb_strerror(rc));
	return t;
}

/* Iterates t from the start; asserts it yields exactly m[0..n). */
static void assert_scan_equals(const struct sb_sst *t, const struct ment *m, size_t n)
{
	struct sb_sst_iter *it = NULL;
	struct sb_kv_entry e;
	size_t i = 0;
	int rc;
	assert_int_equal(sb_sst_iter_new(t, &it), 0);
	while ((rc = sb_sst_iter_next(it, &e)) == 1) {
		assert_true(i < n);
		if (!entry_matches(&m[i], &e))
			fail_msg("scan: entry %zu differs", i);
		i++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(i, n);
	assert_int_equal(sb_sst_iter_next(it, &e), 0); /* stays at the end */
	sb_sst_iter_free(it);
}

/* Returns 0 if every get of m[] is found with exact bytes. */
static void assert_gets_equal(const struct sb_sst *t, const struct ment *m, size_t n)
{
	struct sb_sst_buf buf = SB_SST_BUF_INIT;
	struct sb_kv_entry e;
	for (size_t i = 0; i < n; i++) {
		int rc = sb_sst_get(t, m[i].key, m[i].key_len, &e, &buf);
		if (rc)
			fail_msg("get %zu: %s", i, sb_strerror(rc));
		if (!entry_matches(&m[i], &e))
			fail_msg("get %zu: wrong entry", i);
	}
	sb_sst_buf_free(&buf);
}

static int model_contains(const struct ment *m, size_t n, const uint8_t *k, uint32_t kl)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = mkey_cmp(m[mid].key, m[mid].key_len, k, kl);
		if (c == 0)
			return 1;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* Index of the first model entry >= k (lower bound). */
static size_t model_lower_bound(const struct ment *m, size_t n, const uint8_t *k, uint32_t kl)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (mkey_cmp(m[mid].key, m[mid].key_len, k, kl) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static char *path_in(const char *dir, const char *name)
{
	char *p = malloc(4200);
	assert_non_null(p);
	snprintf(p, 4200, "%s/%s", dir, name);
	return p;
}

static struct sb_simfs *new_simfs(uint64_t seed)
{
	struct sb_simfs *fs = NULL;
	assert_int_equal(sb_simfs_new(seed, &fs), 0);
	assert_int_equal(sb_vfs_mkdir_durable(sb_simfs_vfs(fs), "/db"), 0);
	return fs;
}

/* ---- a vfs over another one that decides how tables are mapped, and
 * counts mappings and preads ---- */

enum map_mode {
	MAP_NONE,     /* no mmap op: the reader must pread */
	MAP_UNDER,    /* the underlying vfs's own mmap (POSIX: a real mapping) */
	MAP_SNAPSHOT, /* a heap copy of exactly the bytes asked for, read at
	               * mapping time: lets the in-memory file system take the
	               * mapped path, and ASan catch a read one byte past it */
	MAP_FAIL,     /* mmap fails with -ENOMEM: the reader must fall back */
};

struct map_vfs {
	struct sb_vfs vfs; /* first: the ops find their map_vfs from it */
	struct sb_vfs_ops ops;
	struct sb_vfs *under;
	int maps, unmaps;
	uint64_t preads;
};

static struct map_vfs *map_vfs_of(struct sb_vfs *v)
{
	return (struct map_vfs *)v;
}

static int64_t mv_pread(struct sb_vfs *v, int fd, void *buf, size_t len, uint64_t off)
{
	struct map_vfs *m = map_vfs_of(v);
	m->preads++;
	return m->under->ops->pread(m->under, fd, buf, len, off);
}

static int mv_mmap_under(struct sb_vfs *v, int fd, uint64_t len, const void **addr)
{
	struct map_vfs *m = map_vfs_of(v);
	int rc = m->under->ops->mmap(m->under, fd, len, addr);
	m->maps += rc == 0;
	return rc;
}

static int mv_munmap_under(struct sb_vfs *v, const void *addr, uint64_t len)
{
	struct map_vfs *m = map_vfs_of(v);
	m->unmaps++;
	return m->under->ops->munmap(m->under, addr, len);
}

static int mv_mmap_snapshot(struct sb_vfs *v, int fd, uint64_t len, const void **addr)
{
	struct map_vfs *m = map_vfs_of(v);
	uint8_t *p = malloc((size_t)len);
	assert_non_null(p);
	assert_int_equal(sb_vfs_read_all(m->under, fd, p, (size_t)len, 0), 0);
	m->maps++;
	*addr = p;
	return 0;
}

static int mv_munmap_snapshot(struct sb_vfs *v, const void *addr, uint64_t len)
{
	(void)len;
	map_vfs_of(v)->unmaps++;
	free((void *)(uintptr_t)addr);
	return 0;
}

static int mv_mmap_fail(struct sb_vfs *v, int fd, uint64_t len, const void **addr)
{
	(void)v, (void)fd, (void)len, (void)addr;
	return -ENOMEM;
}

static int mv_munmap_fail(struct sb_vfs *v, const void *addr, uint64_t len)
{
	(void)addr, (void)len;
	map_vfs_of(v)->unmaps++; /* never called: nothing was mapped */
	return 0;
}

/* Every op but pread, mmap and munmap is under's own, called with &m->vfs:
 * m->vfs shares under's impl, which is all those ops look at. */
static struct sb_vfs *map_vfs_init(struct map_vfs *m, struct sb_vfs *under, enum map_mode mode)
{
	memset(m, 0, sizeof *m);
	m->under = under;
	m->ops = *under->ops;
	m->ops.pread = mv_pread;
	m->ops.mmap = mode == MAP_UNDER      ? mv_mmap_under
	              : mode == MAP_SNAPSHOT ? mv_mmap_snapshot
	              : mode == MAP_FAIL     ? mv_mmap_fail
	                                     : NULL;
	m->ops.munmap = mode == MAP_UNDER      ? mv_munmap_under
	                : mode == MAP_SNAPSHOT ? mv_munmap_snapshot
	                : mode == MAP_FAIL     ? mv_munmap_fail
	                                       : NULL;
	if (mode == MAP_UNDER)
		assert_non_null(under->ops->mmap);
	m->vfs.ops = &m->ops;
	m->vfs.impl = under->impl;
	return &m->vfs;
}

/* ======================================================================
 * Bloom filter
 * ====================================================================== */

/* The blocked-filter FPR formula of sb_bloom.h. */
static double predicted_fpr(unsigned bpk)
{
	unsigned k = (unsigned)lround(bpk * log(2.0));
	double lambda = 512.0 / bpk, pois = exp(-lambda), sum = 0;
	k = k < 1 ? 1 : k;
	for (unsigned j = 0; j < 2000; j++) {
		if (j > 0)
			pois *= lambda / j;
		sum += pois * pow(1.0 - pow(1.0 - 1.0 / 512, (double)k * j), k);
	}
	return sum;
}

static void make_bloom_key(uint8_t *k, uint64_t i, int absent)
{
	/* 16-byte keys; the absent set differs in its last byte's high bit. */
	sb_store64(k, i * 0x9E3779B97F4A7C15ull);
	sb_store64(k + 8, i | (absent ? 1ull << 63 : 0));
}

static void test_bloom_has_no_false_negatives_and_fpr_matches_prediction(void **state)
{
	static const unsigned bpks[] = {4, 6, 8, 10, 16};
	const uint64_t n = 100000;
	uint8_t key[16];
	(void)state;
	for (size_t b = 0; b < sizeof bpks / sizeof bpks[0]; b++) {
		struct sb_bloom_builder bb;
		struct sb_bloom_view v;
		assert_int_equal(sb_bloom_builder_init(&bb, bpks[b]), 0);
		for (uint64_t i = 0; i < n; i++) {
			make_bloom_key(key, i, 0);
			assert_int_equal(sb_bloom_builder_add(&bb, key, sizeof key), 0);
		}
		size_t len = sb_bloom_builder_bytes(&bb);
		uint8_t *bytes = malloc(len);
		assert_non_null(bytes);
		sb_bloom_builder_write(&bb, bytes);
		assert_int_equal(sb_bloom_view_init(&v, bytes, len), 0);
		assert_true(sb_bloom_bits(&v) >= n * bpks[b]);
		assert_true(sb_bloom_bits(&v) < n * bpks[b] + SB_BLOOM_BLOCK_BITS);
		for (uint64_t i = 0; i < n; i++) {
			make_bloom_key(key, i, 0);
			if (!sb_bloom_may_contain(&v, key, sizeof key))
				fail_msg("bpk %u: false negative for key %llu", bpks[b],
				         (unsigned long long)i);
		}
		uint64_t fp = 0;
		for (uint64_t i = 0; i < n; i++) {
			make_bloom_key(key, i, 1);
			fp += (uint64_t)sb_bloom_may_contain(&v, key, sizeof key);
		}
		double fpr = (double)fp / (double)n, want = predicted_fpr(bpks[b]);
		print_message("bloom: %2u bits/key: measured FPR %.3f %%, predicted %.3f %%\n",
		              bpks[b], 100 * fpr, 100 * want);
		if (fabs(fpr - want) > 0.1 * want + 0.0002)
			fail_msg("bpk %u: FPR %.4f far from the predicted %.4f", bpks[b], fpr,
			         want);
		if (bpks[b] == 10 && fpr >= 0.02)
			fail_msg("10 bits/key: FPR %.4f >= 2 %%", fpr);
		free(bytes);
		sb_bloom_builder_fini(&bb);
	}
}

static void test_bloom_hash_is_pinned_and_views_reject_bad_headers(void **state)
{
	struct sb_bloom_builder bb;
	struct sb_bloom_view v;
	uint8_t bytes[SB_BLOOM_HEADER_BYTES + 64 * 4];
	(void)state;
	/* The hash is part of the on-disk format (docs/SSTABLE.md lists these). */
	assert_true(sb_bloom_hash("", 0) == 0xD5D7C90DE4DEF658ull);
	assert_true(sb_bloom_hash("a", 1) == 0x6F30888BACD58153ull);
	assert_true(sb_bloom_hash("streambus", 9) == 0x27B414CDE8B0F363ull);
	assert_true(sb_bloom_hash("0123456789abcdef", 16) == 0x2D9A8AA9A20957B5ull);

	assert_int_equal(sb_bloom_builder_init(&bb, 0), 0); /* default */
	assert_int_equal(sb_bloom_builder_init(&bb, SB_BLOOM_BITS_PER_KEY_MAX + 1), SB_EINVAL);
	assert_int_equal(sb_bloom_builder_init(&bb, 10), 0);
	for (int i = 0; i < 150; i++)
		assert_int_equal(sb_bloom_builder_add(&bb, &i, sizeof i), 0);
	const size_t len = SB_BLOOM_HEADER_BYTES + 3 * 64; /* 1500 bits: 3 blocks */
	assert_int_equal(sb_bloom_builder_bytes(&bb), len);
	sb_bloom_builder_write(&bb, bytes);
	assert_int_equal(sb_bloom_view_init(&v, bytes, len), 0);
	assert_int_equal(v.block_count, 3);
	assert_int_equal(v.k, 7);
	for (int i = 0; i < 150; i++)
		assert_true(sb_bloom_may_contain(&v, &i, sizeof i));
	/* Wrong lengths, k, version, reserved bits, block count. */
	assert_int_equal(sb_bloom_view_init(&v, bytes, len + 64), SB_ECORRUPT);
	assert_int_equal(sb_bloom_view_init(&v, bytes, len - 1), SB_ECORRUPT);
	assert_int_equal(sb_bloom_view_init(&v, bytes, 7), SB_ECORRUPT);
	bytes[4] = 0;
	assert_int_equal(sb_bloom_view_init(&v, bytes, len), SB_ECORRUPT);
	bytes[4] = SB_BLOOM_PROBES_MAX + 1;
	assert_int_equal(sb_bloom_view_init(&v, bytes, len), SB_ECORRUPT);
	bytes[4] = 7;
	bytes[5] = 2;
	assert_int_equal(sb_bloom_view_init(&v, bytes, len), SB_ECORRUPT);
	bytes[5] = 1;
	bytes[7] = 1;
	assert_int_equal(sb_bloom_view_init(&v, bytes, len), SB_ECORRUPT);
	bytes[7] = 0;
	sb_store32(bytes, 0xFFFFFFFFu);
	assert_int_equal(sb_bloom_view_init(&v, bytes, len), SB_ECORRUPT);
	sb_store32(bytes, 3);
	assert_int_equal(sb_bloom_view_init(&v, bytes, len), 0);
	sb_bloom_builder_fini(&bb);
	/* A filter of no keys answers "no". */
	assert_int_equal(sb_bloom_builder_init(&bb, 10), 0);
	sb_bloom_builder_write(&bb, bytes);
	assert_int_equal(sb_bloom_view_init(&v, bytes, SB_BLOOM_HEADER_BYTES), 0);
	assert_int_equal(sb_bloom_may_contain(&v, "x", 1), 0);
	sb_bloom_builder_fini(&bb);
}

/* ======================================================================
 * Round trips
 * ====================================================================== */

static void test_round_trip_of_50k_random_entries_finds_every_key_exactly(void **state)
{
	char *dir = sbt_tmpdir("sst-roundtrip");
	char *path = path_in(dir, "t.sst");
	struct sb_vfs *vfs = sb_vfs_posix();
	struct sb_sst_buf buf = SB_SST_BUF_INIT;
	struct sb_kv_entry e;
	struct sb_stat st;
	size_t n;
	(void)state;
	struct ment *m = gen_entries(42, 50000, 300, &n);
	assert_true(n > 49000);
	write_table(vfs, dir, "t.sst", m, n, NULL, 100, 100 + 10 * 50000);
	struct sb_sst *t = must_open(vfs, path);
	assert_int_equal(sb_sst_entry_count(t), n);
	uint64_t tombs = 0;
	for (size_t i = 0; i < n; i++)
		tombs += m[i].flags & SB_KV_TOMBSTONE;
	assert_int_equal(sb_sst_tombstone_count(t), tombs);
	assert_int_equal(sb_sst_covered_min_offset(t), 100);
	assert_int_equal(sb_sst_covered_max_offset(t), 100 + 10 * 50000);
	assert_int_equal(vfs->ops->stat(vfs, path, &st), 0);
	assert_int_equal(sb_sst_file_bytes(t), st.size);
	assert_true(sb_sst_bloom_bits(t) >= 10 * n);
	assert_string_equal(sb_sst_path(t), path);
	const uint8_t *kmin, *kmax;
	uint32_t kmin_len, kmax_len;
	sb_sst_key_range(t, &kmin, &kmin_len, &kmax, &kmax_len);
	assert_int_equal(mkey_cmp(kmin, kmin_len, m[0].key, m[0].key_len), 0);
	assert_int_equal(mkey_cmp(kmax, kmax_len, m[n - 1].key, m[n - 1].key_len), 0);
	assert_gets_equal(t, m, n);
	/* Absent keys: not found (the bloom filter stops most, the block search
	 * the rest); tombstones are found with their flag. */
	uint64_t s = 777, absent = 0, passed_bloom = 0;
	for (int i = 0; i < 50000; i++) {
		uint32_t kl;
		uint8_t *k = rand_key(&s, &kl);
		if (!model_contains(m, n, k, kl)) {
			absent++;
			passed_bloom += (uint64_t)sb_sst_may_contain(t, k, kl);
			assert_int_equal(sb_sst_get(t, k, kl, &e, &buf), SB_ENOTFOUND);
		}
		free(k);
	}
	assert_true(absent > 40000);
	assert_true(passed_bloom < absent / 50);
	/* Keys next to present ones (a byte appended, the last byte dropped). */
	for (size_t i = 0; i < n; i += 7) {
		uint8_t k[64];
		memcpy(k, m[i].key, m[i].key_len);
		k[m[i].key_len] = 0;
		if (!model_contains(m, n, k, m[i].key_len + 1))
			assert_int_equal(sb_sst_get(t, k, m[i].key_len + 1, &e, &buf),
			                 SB_ENOTFOUND);
		if (m[i].key_len > 1 && !model_contains(m, n, k, m[i].key_len - 1))
			assert_int_equal(sb_sst_get(t, k, m[i].key_len - 1, &e, &buf),
			                 SB_ENOTFOUND);
	}
	uint8_t big[SB_SST_KEY_BYTES_MAX + 1] = {0};
	assert_int_equal(sb_sst_get(t, big, sizeof big, &e, &buf), SB_ENOTFOUND);
	assert_int_equal(sb_sst_may_contain(t, big, sizeof big), 0);
	sb_sst_buf_free(&buf);
	sb_sst_close(t);
	ment_free(m, n);
	free(path);
	free(dir);
}

struct reader_arg {
	const struct sb_sst *t;
	const struct ment *m;
	size_t n;
	uint64_t seed;
	int bad;
};

static void *reader_main(void *p)
{
	struct reader_arg *a = p;
	struct sb_sst_buf buf = SB_SST_BUF_INIT;
	struct sb_kv_entry e;
	uint64_t s = a->seed;
	for (int i = 0; i < 20000; i++) {
		const struct ment *m = &a->m[sbt_rand(&s) % a->n];
		if (sb_sst_get(a->t, m->key, m->key_len, &e, &buf) != 0 || !entry_matches(m, &e))
			a->bad++;
	}
	sb_sst_buf_free(&buf);
	return NULL;
}

static void test_concurrent_gets_on_one_shared_table_all_succeed(void **state)
{
	char *dir = sbt_tmpdir("sst-threads");
	char *path = path_in(dir, "t.sst");
	struct reader_arg args[4];
	pthread_t th[4];
	size_t n;
	(void)state;
	struct ment *m = gen_entries(5, 5000, 100, &n);
	write_table(sb_vfs_posix(), dir, "t.sst", m, n, NULL, 0, 100000);
	struct sb_sst *t = must_open(sb_vfs_posix(), path);
	for (int i = 0; i < 4; i++) {
		args[i] = (struct reader_arg){t, m, n, (uint64_t)i + 1, 0};
		assert_int_equal(pthread_create(&th[i], NULL, reader_main, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(args[i].bad, 0);
	}
	sb_sst_close(t);
	ment_free(m, n);
	free(path);
	free(dir);
}

static void test_iterator_yields_key_order_and_seeks_to_lower_bound_at_every_boundary(void **state)
{
	struct sb_simfs *fs = new_simfs(1);
	struct sb_vfs *vfs = sb_simfs_vfs(fs);
	struct sb_sst_opts o = {.block_bytes = SB_SST_BLOCK_TARGET_BYTES_MIN};
	struct sb_sst_iter *it = NULL;
	struct sb_kv_entry e;
	uint8_t k[64];
	size_t n;
	(void)state;
	struct ment *m = gen_entries(9, 3000, 60, &n);
	write_table(vfs, "/db", "t.sst", m, n, &o, 0, INT64_MAX);
	struct sb_sst *t = must_open(vfs, "/db/t.sst");
	assert_scan_equals(t, m, n);
	assert_int_equal(sb_sst_iter_new(t, &it), 0);
	for (size_t i = 0; i < n; i++) {
		/* Seek to the key itself, to just below it (last byte minus one,
		 * or its prefix) and to just above it (key + "\0"). */
		const struct ment *x = &m[i];
		memcpy(k, x->key, x->key_len);
		struct {
			uint32_t len;
			int adjust;
		} probes[3] = {{x->key_len, 0}, {x->key_len + 1, 0}, {x->key_len, -1}};
		k[x->key_len] = 0;
		for (int p = 0; p < 3; p++) {
			if (p == 2) {
				if (k[x->key_len - 1] == 0)
					probes[p].len = x->key_len - 1;
				else
					k[x->key_len - 1]--;
			}
			size_t want = model_lower_bound(m, n, k, probes[p].len);
			assert_int_equal(sb_sst_iter_seek(it, k, probes[p].len), 0);
			int rc = sb_sst_iter_next(it, &e);
			if (want == n) {
				assert_int_equal(rc, 0);
				continue;
			}
			assert_int_equal(rc, 1);
			if (!entry_matches(&m[want], &e))
				fail_msg("seek near key %zu (probe %d): wrong entry", i, p);
			/* and the scan goes on in order from there */
			if (want + 1 < n) {
				assert_int_equal(sb_sst_iter_next(it, &e), 1);
				assert_true(entry_matches(&m[want + 1], &e));
			}
		}
	}
	/* Before everything, after everything, longer than any key. */
	assert_int_equal(sb_sst_iter_seek(it, NULL, 0), 0);
	assert_int_equal(sb_sst_iter_next(it, &e), 1);
	assert_true(entry_matches(&m[0], &e));
	memset(k, 0xFF, sizeof k);
	assert_int_equal(sb_sst_iter_seek(it, k, sizeof k), 0);
	assert_int_equal(sb_sst_iter_next(it, &e), 0);
	uint8_t *huge = calloc(1, SB_SST_KEY_BYTES_MAX + 10);
	memcpy(huge, m[n / 2].key, m[n / 2].key_len);
	assert_int_equal(sb_sst_iter_seek(it, huge, SB_SST_KEY_BYTES_MAX + 10), 0);
	assert_int_equal(sb_sst_iter_next(it, &e), 1);
	assert_true(mkey_cmp(e.key, e.key_len, huge, SB_SST_KEY_BYTES_MAX + 10) > 0);
	assert_true(entry_matches(&m[model_lower_bound(m, n, huge, SB_SST_KEY_BYTES_MAX)], &e));
	free(huge);
	sb_sst_iter_seek_first(it);
	assert_int_equal(sb_sst_iter_next(it, &e), 1);
	assert_true(entry_matches(&m[0], &e));
	sb_sst_iter_free(it);
	sb_sst_close(t);
	ment_free(m, n);
	sb_simfs_free(fs);
}

static void test_empty_table_opens_finds_nothing_and_keeps_its_range(void **state)
{
	struct sb_simfs *fs = new_simfs(2);
	struct sb_vfs *vfs = sb_simfs_vfs(fs);
	struct sb_sst_buf buf = SB_SST_BUF_INIT;
	struct sb_sst_iter *it = NULL;
	struct sb_kv_entry e;
	(void)state;
	write_table(vfs, "/db", "empty.sst", NULL, 0, NULL, 10, 20);
	struct sb_sst *t = must_open(vfs, "/db/empty.sst");
	assert_int_equal(sb_sst_entry_count(t), 0);
	assert_int_equal(sb_sst_covered_min_offset(t), 10);
	assert_int_equal(sb_sst_covered_max_offset(t), 20);
	assert_int_equal(sb_sst_bloom_bits(t), 0);
	const uint8_t *kmin, *kmax;
	uint32_t kmin_len = 1, kmax_len = 1;
	sb_sst_key_range(t, &kmin, &kmin_len, &kmax, &kmax_len);
	assert_int_equal(kmin_len, 0);
	assert_int_equal(kmax_len, 0);
	assert_int_equal(sb_sst_get(t, (const uint8_t *)"a", 1, &e, &buf), SB_ENOTFOUND);
	assert_int_equal(sb_sst_get(t, NULL, 0, &e, &buf), SB_ENOTFOUND);
	assert_int_equal(sb_sst_iter_new(t, &it), 0);
	assert_int_equal(sb_sst_iter_next(it, &e), 0);
	assert_int_equal(sb_sst_iter_seek(it, (const uint8_t *)"a", 1), 0);
	assert_int_equal(sb_sst_iter_next(it, &e), 0);
	sb_sst_iter_free(it);
	sb_sst_buf_free(&buf);
	sb_sst_close(t);
	sb_simfs_free(fs);
}

static void test_single_huge_entry_between_small_ones_round_trips(void **state)
{
	char *dir = sbt_tmpdir("sst-huge");
	char *path = path_in(dir, "h.sst");
	uint64_t s = 3;
	struct ment m[3] = {{0}};
	(void)state;
	for (int i = 0; i < 3; i++) {
		m[i].key = (uint8_t *)strdup(i == 0 ? "a" : i == 1 ? "huge" : "z");
		m[i].key_len = (uint32_t)strlen((char *)m[i].key);
		m[i].off = 5 + i;
		m[i].ts = TS0;
		m[i].val_len = i == 1 ? 1u << 20 : 3;
		m[i].hdr_len = i == 1 ? 70000 : 0;
		m[i].val = rand_bytes(&s, m[i].val_len);
		m[i].hdr = rand_bytes(&s, m[i].hdr_len);
	}
	write_table(sb_vfs_posix(), dir, "h.sst", m, 3, NULL, 5, 7);
	struct sb_sst *t = must_open(sb_vfs_posix(), path);
	assert_true(sb_sst_file_bytes(t) > (1u << 20) + 70000);
	assert_gets_equal(t, m, 3);
	assert_scan_equals(t, m, 3);
	sb_sst_close(t);
	for (int i = 0; i < 3; i++) {
		free(m[i].key);
		free(m[i].val);
		free(m[i].hdr);
	}
	free(path);
	free(dir);
}

static int exists(struct sb_vfs *vfs, const char *path)
{
	struct sb_stat st;
	int rc = vfs->ops->stat(vfs, path, &st);
	assert_true(rc == 0 || rc == -ENOENT);
	return rc == 0;
}

static void test_writer_rejects_bad_order_limits_names_and_ranges(void **state)
{
	struct sb_simfs *fs = new_simfs(4);
	struct sb_vfs *vfs = sb_simfs_vfs(fs);
	struct sb_sst_writer *w = NULL;
	struct sb_sst_opts bad = {.block_bytes = 100};
	uint8_t *big = calloc(1, SB_SST_KEY_BYTES_MAX + 1);
	(void)state;
	assert_int_equal(sb_sst_writer_open(vfs, "/db", "t.sst", &bad, &w), SB_EINVAL);
	bad = (struct sb_sst_opts){.bloom_bits_per_key = 99};
	assert_int_equal(sb_sst_writer_open(vfs, "/db", "t.sst", &bad, &w), SB_EINVAL);
	assert_int_equal(sb_sst_writer_open(vfs, "/db", "t.tbl", NULL, &w), SB_EINVAL);
	assert_int_equal(sb_sst_writer_open(vfs, "/db", "a/t.sst", NULL, &w), SB_EINVAL);
	assert_int_equal(sb_sst_writer_open(vfs, "/db", ".sst", NULL, &w), SB_EINVAL);
	assert_int_equal(sb_sst_writer_open(vfs, "/nodir", "t.sst", NULL, &w), -ENOENT);

	assert_int_equal(sb_sst_writer_open(vfs, "/db", "t.sst", NULL, &w), 0);
	assert_true(exists(vfs, "/db/t.sst.tmp"));
	struct sb_kv_entry e = {(const uint8_t *)"m", 1, 50,   TS0, 0,
	                        (const uint8_t *)"v", 1, NULL, 0};
	assert_int_equal(sb_sst_writer_add(w, &e), 0);
	assert_int_equal(sb_sst_writer_add(w, &e), SB_EINVAL); /* same key again */
	e.key = (const uint8_t *)"a";
	assert_int_equal(sb_sst_writer_add(w, &e), SB_EINVAL); /* smaller */
	e.key = (const uint8_t *)"z";
	e.offset = -1;
	assert_int_equal(sb_sst_writer_add(w, &e), SB_EINVAL);
	e.offset = 60;
	e.value = NULL;
	assert_int_equal(sb_sst_writer_add(w, &e), SB_EINVAL);
	e.value = (const uint8_t *)"v";
	e.key = big;
	e.key_len = SB_SST_KEY_BYTES_MAX + 1;
	assert_int_equal(sb_sst_writer_add(w, &e), SB_ETOOBIG);
	e.key_len = 1;
	big[0] = 'z';
	e.value = big; /* any readable pointer: the length is checked first */
	e.value_len = SB_SST_VALUE_BYTES_MAX + 1;
	assert_int_equal(sb_sst_writer_add(w, &e), SB_ETOOBIG);
	/* The writer is still good after rejected entries. */
	e.value = (const uint8_t *)"v";
	e.value_len = 1;
	assert_int_equal(sb_sst_writer_add(w, &e), 0);
	assert_int_equal(sb_sst_writer_entries(w), 2);
	/* Offsets 50 and 60 are outside [55, 100]: finish refuses, cleans up. */
	assert_int_equal(sb_sst_writer_finish(w, 55, 100), SB_EINVAL);
	assert_false(exists(vfs, "/db/t.sst"));
	assert_false(exists(vfs, "/db/t.sst.tmp"));
	assert_int_equal(sb_sst_writer_open(vfs, "/db", "t.sst", NULL, &w), 0);
	assert_int_equal(sb_sst_writer_finish(w, 10, 9), SB_EINVAL);
	assert_int_equal(sb_sst_writer_open(vfs, "/db", "t.sst", NULL, &w), 0);
	assert_int_equal(sb_sst_writer_finish(w, -1, 9), SB_EINVAL);
	/* Abort removes the temp file. */
	assert_int_equal(sb_sst_writer_open(vfs, "/db", "t.sst", NULL, &w), 0);
	sb_sst_writer_abort(w);
	assert_false(exists(vfs, "/db/t.sst.tmp"));
	sb_sst_writer_abort(NULL);
	free(big);
	sb_simfs_free(fs);
}

/* ======================================================================
 * Corruption
 * ====================================================================== */

struct layout {
	uint64_t size, index_pos, bloom_pos;
	uint32_t index_len, blocks;
	uint64_t block_pos[512];
	uint32_t block_len[512];
};

/* Reads the layout of a table from its bytes, per docs/SSTABLE.md. */
static void parse_layout(const uint8_t *b, uint64_t size, struct layout *l)
{
	const uint8_t *f = b + size - SB_SST_FOOTER_BYTES;
	uint64_t v = 0;
	l->size = size;
	assert_int_equal(sb_load32(f + DOC_FT_CRC), sb_crc32c(f, DOC_FT_CRC));
	l->index_pos = sb_load64(f + DOC_FT_INDEX_POS);
	l->index_len = sb_load32(f + DOC_FT_INDEX_LEN);
	l->blocks = sb_load32(f + DOC_FT_BLOCKS);
	l->bloom_pos = sb_load64(f + DOC_FT_BLOOM_POS);
	assert_true(l->blocks <= 512);
	const uint8_t *p = b + l->index_pos, *end = p + l->index_len;
	assert_int_equal(sb_uvarint_get(&p, end, &v), 0); /* first key */
	p += v;
	uint64_t pos = 0;
	for (uint32_t i = 0; i < l->blocks; i++) {
		assert_int_equal(sb_uvarint_get(&p, end, &v), 0);
		p += v;
		assert_int_equal(sb_uvarint_get(&p, end, &v), 0);
		l->block_pos[i] = pos;
		l->block_len[i] = (uint32_t)v;
		assert_int_equal(sb_load32(b + pos + v), sb_crc32c(b + pos, v));
		pos += v + 4;
	}
	assert_true(p == end);
	assert_int_equal(pos, l->index_pos);
	assert_int_equal(l->bloom_pos, l->index_pos + l->index_len + 4);
}

/* Every get returns the exact entry or SB_ECORRUPT (never a wrong entry,
 * never "not found" for a present key). Returns the number of ECORRUPTs. */
static int gets_exact_or_corrupt(const struct sb_sst *t, const struct ment *m, size_t n,
                                 struct sb_sst_buf *buf)
{
	struct sb_kv_entry e;
	int corrupt = 0;
	for (size_t i = 0; i < n; i++) {
		int rc = sb_sst_get(t, m[i].key, m[i].key_len, &e, buf);
		if (rc == SB_ECORRUPT)
			corrupt++;
		else if (rc != 0 || !entry_matches(&m[i], &e))
			fail_msg("get %zu on a damaged table: rc %d, or a wrong entry", i, rc);
	}
	return corrupt;
}

/* Scans t to the end; returns the final rc (0 or an error). */
static int scan_rc(const struct sb_sst *t)
{
	struct sb_sst_iter *it = NULL;
	struct sb_kv_entry e;
	int rc;
	assert_int_equal(sb_sst_iter_new(t, &it), 0);
	while ((rc = sb_sst_iter_next(it, &e)) == 1)
		;
	sb_sst_iter_free(it);
	return rc;
}

/* mode: how the reader gets its blocks (MAP_NONE: pread; MAP_SNAPSHOT: the
 * mapped path, over an exact-size copy of the blocks taken at open). */
static void check_every_flipped_byte(enum map_mode mode)
{
	struct sb_simfs *fs = new_simfs(5);
	struct sb_vfs *vfs = sb_simfs_vfs(fs);
	struct map_vfs mv;
	struct sb_vfs *rvfs = map_vfs_init(&mv, vfs, mode);
	struct sb_sst_opts o = {.block_bytes = SB_SST_BLOCK_TARGET_BYTES_MIN};
	struct sb_sst_buf buf = SB_SST_BUF_INIT;
	struct layout l;
	uint8_t *orig = NULL;
	uint64_t size = 0;
	size_t n;
	int in_data = 0, in_index = 0, in_bloom = 0, in_footer = 0;
	struct ment *m = gen_entries(11, 80, 30, &n);
	write_table(vfs, "/db", "t.sst", m, n, &o, 0, 10000);
	assert_int_equal(sb_simfs_read_whole(fs, "/db/t.sst", &orig, &size), 0);
	parse_layout(orig, size, &l);
	assert_true(l.blocks >= 4);
	/* Blocks close once they reach the target: every block but the last is
	 * at least the target, and none exceeds it by more than one entry
	 * (here at most ~110 bytes) plus a restart slot. */
	for (uint32_t i = 0; i < l.blocks; i++) {
		assert_true(l.block_len[i] < SB_SST_BLOCK_TARGET_BYTES_MIN + 120);
		if (i + 1 < l.blocks)
			assert_true(l.block_len[i] >= SB_SST_BLOCK_TARGET_BYTES_MIN);
	}
	for (uint64_t pos = 0; pos < size; pos++) {
		uint8_t flip = orig[pos] ^ (uint8_t)(1u << (pos % 8));
		struct sb_sst *t = NULL;
		assert_int_equal(sb_simfs_corrupt(fs, "/db/t.sst", pos, &flip, 1), 0);
		int rc = sb_sst_open(rvfs, "/db/t.sst", &t);
		if (pos < l.index_pos) { /* a data block or its CRC: found on read */
			assert_int_equal(rc, 0);
			assert_true(gets_exact_or_corrupt(t, m, n, &buf) > 0);
			assert_int_equal(scan_rc(t), SB_ECORRUPT);
			sb_sst_close(t);
			in_data++;
		} else { /* index, bloom, footer or their CRCs: found on open */
			if (rc != SB_ECORRUPT)
				fail_msg("flip at %llu (size %llu): open returned %d",
				         (unsigned long long)pos, (unsigned long long)size, rc);
			in_index += pos < l.bloom_pos;
			in_bloom += pos >= l.bloom_pos && pos < size - SB_SST_FOOTER_BYTES;
			in_footer += pos >= size - SB_SST_FOOTER_BYTES;
		}
		assert_int_equal(sb_simfs_corrupt(fs, "/db/t.sst", pos, &orig[pos], 1), 0);
	}
	assert_true(in_data > 0 && in_index > 0 && in_bloom > 0 &&
	            in_footer == SB_SST_FOOTER_BYTES);
	/* Restored: all good again. */
	struct sb_sst *t = must_open(rvfs, "/db/t.sst");
	assert_int_equal(gets_exact_or_corrupt(t, m, n, &buf), 0);
	sb_sst_close(t);
	/* Only the opens that succeeded mapped (and unmapped) the blocks. */
	assert_int_equal(mv.maps, mode == MAP_NONE ? 0 : in_data + 1);
	assert_int_equal(mv.unmaps, mv.maps);
	sb_sst_buf_free(&buf);
	free(orig);
	ment_free(m, n);
	sb_simfs_free(fs);
}

static void test_every_flipped_byte_is_detected_and_never_gives_a_wrong_value(void **state)
{
	(void)state;
	check_every_flipped_byte(MAP_NONE);
	check_every_flipped_byte(MAP_SNAPSHOT);
}

static void put_file(struct sb_vfs *vfs, const char *path, const uint8_t *b, uint64_t len)
{
	int fd = vfs->ops->open(vfs, path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(sb_vfs_write_all(vfs, fd, b, (size_t)len, 0), 0);
	assert_int_equal(vfs->ops->close(vfs, fd), 0);
}

static void test_truncated_table_is_rejected_at_every_length(void **state)
{
	struct sb_simfs *fs = new_simfs(6);
	struct sb_vfs *vfs = sb_simfs_vfs(fs);
	struct sb_sst_opts o = {.block_bytes = 512};
	struct sb_sst_buf buf = SB_SST_BUF_INIT;
	uint8_t *orig = NULL;
	uint64_t size = 0;
	size_t n;
	(void)state;
	struct ment *m = gen_entries(12, 200, 40, &n);
	write_table(vfs, "/db", "t.sst", m, n, &o, 0, 10000);
	assert_int_equal(sb_simfs_read_whole(fs, "/db/t.sst", &orig, &size), 0);
	for (uint64_t len = 0; len < size; len++) {
		struct sb_sst *t = NULL;
		put_file(vfs, "/db/cut.sst", orig, len);
		int rc = sb_sst_open(vfs, "/db/cut.sst", &t);
		if (rc != SB_ECORRUPT)
			fail_msg("cut at %llu of %llu: open returned %d", (unsigned long long)len,
			         (unsigned long long)size, rc);
	}
	/* Also a file cut short after it was opened: reads fail, not crash. */
	put_file(vfs, "/db/cut.sst", orig, size);
	struct sb_sst *t = must_open(vfs, "/db/cut.sst");
	int fd = vfs->ops->open(vfs, "/db/cut.sst", O_RDWR, 0);
	assert_true(fd >= 0);
	assert_int_equal(vfs->ops->truncate(vfs, fd, size / 3), 0);
	assert_int_equal(vfs->ops->close(vfs, fd), 0);
	assert_true(gets_exact_or_corrupt(t, m, n, &buf) > 0);
	assert_int_equal(scan_rc(t), SB_ECORRUPT);
	sb_sst_close(t);
	/* And garbage of every small size, and a missing file. */
	uint64_t s = 99;
	for (uint64_t len = 0; len < 600; len += 7) {
		uint8_t *junk = rand_bytes(&s, (uint32_t)len);
		put_file(vfs, "/db/junk.sst", junk, len);
		assert_int_equal(sb_sst_open(vfs, "/db/junk.sst", &t), SB_ECORRUPT);
		free(junk);
	}
	assert_int_equal(sb_sst_open(vfs, "/db/none.sst", &t), -ENOENT);
	sb_sst_buf_free(&buf);
	free(orig);
	ment_free(m, n);
	sb_simfs_free(fs);
}

/* Rewrites the CRC after region [pos, pos + len) so damage inside passes it. */
static void forge_crc(uint8_t *b, uint64_t pos, uint32_t len)
{
	sb_store32(b + pos + len, sb_crc32c(b + pos, len));
}

static void check_forged_crcs(enum map_mode mode)
{
	struct sb_simfs *fs = new_simfs(7);
	struct sb_vfs *vfs = sb_simfs_vfs(fs);
	struct map_vfs mv;
	struct sb_vfs *rvfs = map_vfs_init(&mv, vfs, mode);
	struct sb_sst_opts o = {.block_bytes = 300};
	struct sb_sst_buf buf = SB_SST_BUF_INIT;
	struct sb_kv_entry e;
	struct layout l;
	uint8_t *orig = NULL;
	uint64_t size = 0, s = 1234;
	size_t n;
	int opened = 0, rejected = 0;
	struct ment *m = gen_entries(13, 120, 50, &n);
	write_table(vfs, "/db", "t.sst", m, n, &o, 0, 10000);
	assert_int_equal(sb_simfs_read_whole(fs, "/db/t.sst", &orig, &size), 0);
	parse_layout(orig, size, &l);
	uint8_t *b = malloc(size);
	assert_non_null(b);
	/* Only memory safety can be asked of these (ASan checks it): the damage
	 * carries a valid CRC, as if the writer had produced it. */
	for (int round = 0; round < 3000; round++) {
		memcpy(b, orig, size);
		int what = round % 3, hits = 1 + (int)(sbt_rand(&s) % 3);
		uint64_t pos;
		uint32_t len;
		if (what == 0) { /* a data block */
			uint32_t i = (uint32_t)(sbt_rand(&s) % l.blocks);
			pos = l.block_pos[i];
			len = l.block_len[i];
		} else if (what == 1) { /* the index */
			pos = l.index_pos;
			len = l.index_len;
		} else { /* the footer's fields */
			pos = size - SB_SST_FOOTER_BYTES;
			len = DOC_FT_CRC;
		}
		for (int h = 0; h < hits; h++) {
			uint64_t at = pos + sbt_rand(&s) % len;
			b[at] = sbt_rand(&s) & 1 ? (uint8_t)sbt_rand(&s) : b[at] ^ 0x80;
		}
		if (what == 2) /* the footer CRC sits inside the footer */
			sb_store32(b + pos + DOC_FT_CRC, sb_crc32c(b + pos, DOC_FT_CRC));
		else
			forge_crc(b, pos, len);
		put_file(vfs, "/db/f.sst", b, size);
		struct sb_sst *t = NULL;
		int rc = sb_sst_open(rvfs, "/db/f.sst", &t);
		if (rc) {
			assert_int_equal(rc, SB_ECORRUPT);
			rejected++;
			continue;
		}
		opened++;
		for (size_t i = 0; i < n; i++) {
			rc = sb_sst_get(t, m[i].key, m[i].key_len, &e, &buf);
			assert_true(rc == 0 || rc == SB_ENOTFOUND || rc == SB_ECORRUPT);
		}
		rc = scan_rc(t);
		assert_true(rc == 0 || rc == SB_ECORRUPT);
		sb_sst_close(t);
	}
	print_message("forged damage (%s): %d tables opened, %d rejected at open\n",
	              mode == MAP_NONE ? "pread" : "mapped", opened, rejected);
	assert_true(opened > 0 && rejected > 0);
	assert_int_equal(mv.maps, mode == MAP_NONE ? 0 : opened);
	assert_int_equal(mv.unmaps, mv.maps);
	free(b);
	sb_sst_buf_free(&buf);
	free(orig);
	ment_free(m, n);
	sb_simfs_free(fs);
}

static void test_forged_crcs_over_damaged_sections_never_read_out_of_bounds(void **state)
{
	(void)state;
	check_forged_crcs(MAP_NONE);
	check_forged_crcs(MAP_SNAPSHOT);
}

/* A table rebuilt from parts (data, index, bloom) with a footer copied from
 * `footer` but pointing at the new sections, every CRC recomputed: a file
 * the writer could have produced, except for what the test changed. */
static uint8_t *assemble(const uint8_t *data, uint64_t data_len, const uint8_t *index,
                         uint32_t index_len, const uint8_t *bloom, uint32_t bloom_len,
                         const uint8_t *footer, uint64_t *out_len)
{
	uint64_t len = data_len + index_len + 4 + bloom_len + 4 + SB_SST_FOOTER_BYTES;
	uint8_t *b = malloc(len), *p = b;
	assert_non_null(b);
	memcpy(p, data, data_len);
	p += data_len;
	memcpy(p, index, index_len);
	sb_store32(p + index_len, sb_crc32c(index, index_len));
	p += index_len + 4;
	memcpy(p, bloom, bloom_len);
	sb_store32(p + bloom_len, sb_crc32c(bloom, bloom_len));
	p += bloom_len + 4;
	memcpy(p, footer, SB_SST_FOOTER_BYTES);
	sb_store64(p + DOC_FT_INDEX_POS, data_len);
	sb_store32(p + DOC_FT_INDEX_LEN, index_len);
	sb_store64(p + DOC_FT_BLOOM_POS, data_len + index_len + 4);
	sb_store32(p + 80, bloom_len); /* bloom_len */
	sb_store32(p + DOC_FT_CRC, sb_crc32c(p, DOC_FT_CRC));
	*out_len = len;
	return b;
}

/* The index section re-encoded from parts, per docs/SSTABLE.md. */
struct idx_parts {
	const uint8_t *first;
	uint32_t first_len;
	const uint8_t *key[512];
	uint32_t key_len[512];
	uint64_t block_len[512];
	uint32_t n;
};

static void split_index(const uint8_t *p, uint32_t len, uint32_t blocks, struct idx_parts *x)
{
	const uint8_t *end = p + len;
	uint64_t v = 0;
	assert_int_equal(sb_uvarint_get(&p, end, &v), 0);
	x->first = p;
	x->first_len = (uint32_t)v;
	p += v;
	for (x->n = 0; x->n < blocks; x->n++) {
		assert_int_equal(sb_uvarint_get(&p, end, &v), 0);
		x->key[x->n] = p;
		x->key_len[x->n] = (uint32_t)v;
		p += v;
		assert_int_equal(sb_uvarint_get(&p, end, &x->block_len[x->n]), 0);
	}
	assert_true(p == end);
}

static uint32_t join_index(const struct idx_parts *x, uint8_t *out)
{
	uint8_t *p = out;
	p += sb_uvarint_put(p, x->first_len);
	memcpy(p, x->first, x->first_len);
	p += x->first_len;
	for (uint32_t i = 0; i < x->n; i++) {
		p += sb_uvarint_put(p, x->key_len[i]);
		memcpy(p, x->key[i], x->key_len[i]);
		p += x->key_len[i];
		p += sb_uvarint_put(p, x->block_len[i]);
	}
	return (uint32_t)(p - out);
}

/* Opens the assembled table; returns the open rc (closing the table). */
static int open_assembled(struct sb_vfs *vfs, const uint8_t *b, uint64_t len)
{
	struct sb_sst *t = NULL;
	put_file(vfs, "/db/a.sst", b, len);
	int rc = sb_sst_open(vfs, "/db/a.sst", &t);
	sb_sst_close(t);
	return rc;
}

static void test_structurally_invalid_tables_with_valid_crcs_are_rejected(void **state)
{
	struct sb_simfs *fs = new_simfs(14);
	struct sb_vfs *vfs = sb_simfs_vfs(fs);
	struct sb_sst_opts o = {.block_bytes = 300};
	struct sb_sst_buf buf = SB_SST_BUF_INIT;
	struct layout l;
	struct idx_parts x;
	uint8_t *orig = NULL, foot[SB_SST_FOOTER_BYTES], *idx = malloc(1 << 16), *b;
	uint64_t size = 0, len;
	size_t n;
	(void)state;
	struct ment *m = gen_entries(15, 150, 50, &n);
	write_table(vfs, "/db", "t.sst", m, n, &o, 100, 100 + 10 * 150);
	assert_int_equal(sb_simfs_read_whole(fs, "/db/t.sst", &orig, &size), 0);
	parse_layout(orig, size, &l);
	const uint8_t *bloom = orig + l.bloom_pos;
	uint32_t bloom_len = (uint32_t)(size - SB_SST_FOOTER_BYTES - 4 - l.bloom_pos);
	memcpy(foot, orig + size - SB_SST_FOOTER_BYTES, sizeof foot);
	split_index(orig + l.index_pos, l.index_len, l.blocks, &x);

#define REASSEMBLE(data_len, ilen, bl, blen)                                                       \
	(free(b), b = assemble(orig, (data_len), idx, (ilen), (bl), (blen), foot, &len))
	b = NULL;
	/* The assembler itself reproduces the table byte for byte. */
	uint32_t ilen = join_index(&x, idx);
	REASSEMBLE(l.index_pos, ilen, bloom, bloom_len);
	assert_int_equal(len, size);
	assert_memory_equal(b, orig, size);
	assert_int_equal(open_assembled(vfs, b, len), 0);
	/* Bytes after the last index entry. */
	idx[ilen] = 0;
	REASSEMBLE(l.index_pos, ilen + 1, bloom, bloom_len);
	assert_int_equal(open_assembled(vfs, b, len), SB_ECORRUPT);
	/* A byte of data the index does not account for. */
	REASSEMBLE(l.index_pos + 1, ilen, bloom, bloom_len);
	assert_int_equal(open_assembled(vfs, b, len), SB_ECORRUPT);
	/* Block count one off either way. */
	for (int d = -1; d <= 1; d += 2) {
		sb_store32(foot + DOC_FT_BLOCKS, l.blocks + (uint32_t)d);
		REASSEMBLE(l.index_pos, ilen, bloom, bloom_len);
		assert_int_equal(open_assembled(vfs, b, len), SB_ECORRUPT);
	}
	sb_store32(foot + DOC_FT_BLOCKS, l.blocks);
	/* Last keys out of order; first key after block 0's last key. */
	struct idx_parts y = x;
	y.key[0] = x.key[1];
	y.key_len[0] = x.key_len[1];
	y.key[1] = x.key[0];
	y.key_len[1] = x.key_len[0];
	REASSEMBLE(l.index_pos, join_index(&y, idx), bloom, bloom_len);
	assert_int_equal(open_assembled(vfs, b, len), SB_ECORRUPT);
	y = x;
	y.first = x.key[1];
	y.first_len = x.key_len[1];
	REASSEMBLE(l.index_pos, join_index(&y, idx), bloom, bloom_len);
	assert_int_equal(open_assembled(vfs, b, len), SB_ECORRUPT);
	/* Block lengths shifted by one (same sum): opens, but reads of the two
	 * blocks fail their CRC instead of returning anything. */
	y = x;
	y.block_len[0]++;
	y.block_len[1]--;
	REASSEMBLE(l.index_pos, join_index(&y, idx), bloom, bloom_len);
	assert_int_equal(open_assembled(vfs, b, len), 0);
	struct sb_sst *t = must_open(vfs, "/db/a.sst");
	assert_true(gets_exact_or_corrupt(t, m, n, &buf) > 0);
	assert_int_equal(scan_rc(t), SB_ECORRUPT);
	sb_sst_close(t);
	/* The untouched index again, for the cases below. */
	assert_int_equal(join_index(&x, idx), ilen);
	/* A bloom section with a bad header. */
	uint8_t *bl = malloc(bloom_len);
	memcpy(bl, bloom, bloom_len);
	bl[4] = 0; /* k */
	REASSEMBLE(l.index_pos, ilen, bl, bloom_len);
	assert_int_equal(open_assembled(vfs, b, len), SB_ECORRUPT);
	REASSEMBLE(l.index_pos, ilen, bloom, bloom_len - 64); /* a block short */
	assert_int_equal(open_assembled(vfs, b, len), SB_ECORRUPT);
	free(bl);
	/* Footer fields out of their bounds, one at a time. */
	struct {
		unsigned at, width;
		uint64_t value;
	} bad[] = {
	    {4, 4, 2},                   /* version */
	    {8, 8, 0},                   /* entries 0 with blocks > 0 */
	    {16, 8, 1000},               /* more tombstones than entries */
	    {24, 8, (uint64_t)-5},       /* covered_min < 0 */
	    {24, 8, 100 + 10 * 150 + 1}, /* covered_min > covered_max */
	    {84, 4, 0},                  /* block target */
	    {100, 4, 1},                 /* reserved */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint8_t keep[8];
		memcpy(keep, foot + bad[i].at, bad[i].width);
		if (bad[i].width == 8)
			sb_store64(foot + bad[i].at, bad[i].value);
		else
			sb_store32(foot + bad[i].at, (uint32_t)bad[i].value);
		REASSEMBLE(l.index_pos, ilen, bloom, bloom_len);
		if (open_assembled(vfs, b, len) != SB_ECORRUPT)
			fail_msg("footer field at %u = %llu was accepted", bad[i].at,
			         (unsigned long long)bad[i].value);
		memcpy(foot + bad[i].at, keep, bad[i].width);
	}
	/* A covered range that excludes stored offsets: those entries are
	 * reported corrupt, never returned. */
	sb_store64(foot + 32, 100 + 10 * 75); /* covered_max */
	REASSEMBLE(l.index_pos, ilen, bloom, bloom_len);
	assert_int_equal(open_assembled(vfs, b, len), 0);
	t = must_open(vfs, "/db/a.sst");
	assert_true(gets_exact_or_corrupt(t, m, n, &buf) > 0);
	assert_int_equal(scan_rc(t), SB_ECORRUPT);
	sb_sst_close(t);
#undef REASSEMBLE
	free(b);
	free(idx);
	free(orig);
	sb_sst_buf_free(&buf);
	ment_free(m, n);
	sb_simfs_free(fs);
}

/* ======================================================================
 * The two read paths: the table's mapping, or pread
 * ====================================================================== */

static void test_lookups_read_the_mapping_when_the_vfs_can_map_and_pread_otherwise(void **state)
{
	static const enum map_mode modes[] = {MAP_UNDER, MAP_SNAPSHOT, MAP_NONE, MAP_FAIL};
	char *dir = sbt_tmpdir("sst-map");
	char *path = path_in(dir, "t.sst"), *empty = path_in(dir, "e.sst");
	struct sb_sst_buf buf = SB_SST_BUF_INIT;
	struct sb_kv_entry e;
	struct map_vfs mv;
	size_t n;
	(void)state;
	struct ment *m = gen_entries(60, 5000, 200, &n);
	write_table(sb_vfs_posix(), dir, "t.sst", m, n, NULL, 0, 100000);
	write_table(sb_vfs_posix(), dir, "e.sst", NULL, 0, NULL, 0, 10);
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		struct sb_vfs *vfs = map_vfs_init(&mv, sb_vfs_posix(), modes[i]);
		int mapped = modes[i] == MAP_UNDER || modes[i] == MAP_SNAPSHOT;
		struct sb_sst *t = must_open(vfs, path);
		assert_int_equal(mv.maps, mapped);
		/* Every entry exact; no pread on the mapped path, exactly one per
		 * lookup on the other (a failed mapping falls back to it). */
		uint64_t before = mv.preads;
		assert_gets_equal(t, m, n);
		assert_int_equal(mv.preads - before, mapped ? 0 : n);
		uint64_t s = 61;
		for (int j = 0; j < 2000; j++) {
			uint32_t kl;
			uint8_t *k = rand_key(&s, &kl);
			if (!model_contains(m, n, k, kl))
				assert_int_equal(sb_sst_get(t, k, kl, &e, &buf), SB_ENOTFOUND);
			free(k);
		}
		/* Iterators read with pread on both paths (sequential read-ahead). */
		before = mv.preads;
		assert_scan_equals(t, m, n);
		assert_true(mv.preads > before);
		sb_sst_close(t);
		assert_int_equal(mv.unmaps, mapped);
		/* An empty table has no blocks: nothing to map. */
		t = must_open(vfs, empty);
		assert_int_equal(sb_sst_get(t, (const uint8_t *)"a", 1, &e, &buf), SB_ENOTFOUND);
		sb_sst_close(t);
		assert_int_equal(mv.maps, mapped);
		assert_int_equal(mv.unmaps, mapped);
	}
	/* The entry's bytes live in buf, not in the table: they stay readable
	 * after the table is closed (and unmapped). */
	struct sb_sst *t = must_open(map_vfs_init(&mv, sb_vfs_posix(), MAP_SNAPSHOT), path);
	assert_int_equal(sb_sst_get(t, m[n / 2].key, m[n / 2].key_len, &e, &buf), 0);
	sb_sst_close(t);
	assert_int_equal(mv.unmaps, 1);
	assert_true(entry_matches(&m[n / 2], &e)); /* ASan: a freed snapshot would fail */
	sb_sst_buf_free(&buf);
	ment_free(m, n);
	free(empty);
	free(path);
	free(dir);
}

/* Entries of model m that fall in block b of a table whose index is x. */
static size_t entries_in_block(const struct ment *m, size_t n, const struct idx_parts *x,
                               uint32_t b)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += mkey_cmp(m[i].key, m[i].key_len, x->key[b], x->key_len[b]) <= 0 &&
		     (b == 0 ||
		      mkey_cmp(m[i].key, m[i].key_len, x->key[b - 1], x->key_len[b - 1]) > 0);
	return c;
}

static void test_a_damaged_block_is_corrupt_on_the_mapped_and_the_pread_path(void **state)
{
	static const enum map_mode modes[] = {MAP_UNDER, MAP_NONE};
	char *dir = sbt_tmpdir("sst-map-damage");
	char *path = path_in(dir, "t.sst");
	struct sb_vfs *posix = sb_vfs_posix();
	struct sb_sst_opts o = {.block_bytes = 512};
	struct sb_sst_buf buf = SB_SST_BUF_INIT;
	struct map_vfs mv;
	struct layout l;
	struct idx_parts x;
	void *file = NULL;
	size_t size = 0, n;
	(void)state;
	struct ment *m = gen_entries(62, 400, 40, &n);
	write_table(posix, dir, "t.sst", m, n, &o, 0, 100000);
	assert_int_equal(sb_vfs_read_file(posix, path, 1u << 20, &file, &size), 0);
	const uint8_t *orig = file;
	parse_layout(orig, size, &l);
	assert_true(l.blocks >= 5);
	split_index(orig + l.index_pos, l.index_len, l.blocks, &x);
	/* A byte inside block 2; a byte of block 3's CRC; block 4's last byte. */
	struct {
		uint64_t pos;
		uint32_t block;
	} hits[] = {{l.block_pos[2] + l.block_len[2] / 2, 2},
	            {l.block_pos[3] + l.block_len[3] + 1, 3},
	            {l.block_pos[4] + l.block_len[4] - 1, 4}};
	for (size_t h = 0; h < sizeof hits / sizeof hits[0]; h++) {
		/* Damaged before the table is opened: an open table is never
		 * written (sb_sstable.h). */
		uint8_t flip = orig[hits[h].pos] ^ 0x10;
		int fd = posix->ops->open(posix, path, O_RDWR, 0);
		assert_true(fd >= 0);
		assert_int_equal(sb_vfs_write_all(posix, fd, &flip, 1, hits[h].pos), 0);
		size_t want = entries_in_block(m, n, &x, hits[h].block);
		assert_true(want > 0);
		for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
			struct sb_sst *t = must_open(map_vfs_init(&mv, posix, modes[i]), path);
			assert_int_equal(mv.maps, modes[i] == MAP_UNDER);
			/* Every key of the damaged block and no other is corrupt. */
			int corrupt = gets_exact_or_corrupt(t, m, n, &buf);
			if ((size_t)corrupt != want)
				fail_msg(
				    "damage at %llu (block %u), %s: %d corrupt lookups, not %zu",
				    (unsigned long long)hits[h].pos, hits[h].block,
				    modes[i] == MAP_UNDER ? "mapped" : "pread", corrupt, want);
			assert_int_equal(scan_rc(t), SB_ECORRUPT);
			sb_sst_close(t);
		}
		assert_int_equal(sb_vfs_write_all(posix, fd, &orig[hits[h].pos], 1, hits[h].pos),
		                 0);
		assert_int_equal(posix->ops->close(posix, fd), 0);
	}
	/* Repaired: both paths read every entry again. */
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		struct sb_sst *t = must_open(map_vfs_init(&mv, posix, modes[i]), path);
		assert_int_equal(gets_exact_or_corrupt(t, m, n, &buf), 0);
		sb_sst_close(t);
	}
	sb_sst_buf_free(&buf);
	free(file);
	ment_free(m, n);
	free(path);
	free(dir);
}

static void test_absent_keys_the_bloom_rejects_cost_no_io(void **state)
{
	struct sb_simfs *fs = new_simfs(16);
	struct sb_vfs *vfs = sb_simfs_vfs(fs);
	struct sb_sst_buf buf = SB_SST_BUF_INIT;
	struct sb_kv_entry e;
	uint8_t k[8];
	size_t n;
	(void)state;
	struct ment *m = gen_entries(17, 2000, 20, &n);
	write_table(vfs, "/db", "t.sst", m, n, NULL, 0, 100000);
	struct sb_sst *t = must_open(vfs, "/db/t.sst");
	uint64_t before = sb_simfs_op_count(fs), maybe = 0;
	for (uint64_t i = 0; i < 5000; i++) { /* 8-byte keys: never generated */
		sb_store64(k, i * 0x9E3779B97F4A7C15ull);
		maybe += (uint64_t)sb_sst_may_contain(t, k, sizeof k);
		assert_int_equal(sb_sst_get(t, k, sizeof k, &e, &buf), SB_ENOTFOUND);
	}
	/* One pread per bloom false positive (when the key falls inside the
	 * table's key range), none for the rest. */
	uint64_t ops = sb_simfs_op_count(fs) - before;
	assert_true(maybe < 100);
	assert_true(ops <= maybe);
	sb_sst_close(t);
	sb_sst_buf_free(&buf);
	ment_free(m, n);
	sb_simfs_free(fs);
}

/* The worked example of docs/SSTABLE.md, byte for byte: "apple" -> "red"
 * at offset 41, then a tombstone for "apricot" at offset 42, 250 ms later;
 * covering offsets 40..42; default options. */
static const uint8_t doc_example[268] = {
    0x00, 0x05, 0x00, 0x52, 0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62, 0x03, 0x00, 0x61, 0x70, 0x70, 0x6c,
    0x65, 0x72, 0x65, 0x64, 0x02, 0x05, 0x01, 0x02, 0xf4, 0x03, 0x00, 0x00, 0x72, 0x69, 0x63, 0x6f,
    0x74, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x1b, 0xd7, 0x0d, 0x75, 0x05, 0x61, 0x70,
    0x70, 0x6c, 0x65, 0x07, 0x61, 0x70, 0x72, 0x69, 0x63, 0x6f, 0x74, 0x29, 0x1c, 0x0c, 0x02, 0x73,
    0x01, 0x00, 0x00, 0x00, 0x07, 0x01, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08,
    0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80,
    0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x18,
    0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xad, 0x2b, 0xa3, 0x5a, 0x53, 0x42, 0x53, 0x54,
    0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, 0xfa, 0x68, 0xe5, 0xcf,
    0x8b, 0x01, 0x00, 0x00, 0x2d, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x48, 0x00, 0x00, 0x00,
    0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x16, 0x8a, 0xb1, 0x6a,
};

static void write_doc_example(struct sb_vfs *vfs, const char *name)
{
	struct sb_sst_writer *w = NULL;
	struct sb_kv_entry a = {(const uint8_t *)"apple", 5, 41,   TS0, 0,
	                        (const uint8_t *)"red",   3, NULL, 0};
	struct sb_kv_entry b = {
	    (const uint8_t *)"apricot", 7, 42, TS0 + 250, SB_KV_TOMBSTONE, NULL, 0, NULL, 0};
	assert_int_equal(sb_sst_writer_open(vfs, "/db", name, NULL, &w), 0);
	assert_int_equal(sb_sst_writer_add(w, &a), 0);
	assert_int_equal(sb_sst_writer_add(w, &b), 0);
	assert_int_equal(sb_sst_writer_finish(w, 40, 42), 0);
}

static void test_writer_output_matches_the_format_doc_example(void **state)
{
	struct sb_simfs *fs = new_simfs(18);
	struct sb_vfs *vfs = sb_simfs_vfs(fs);
	struct sb_sst_buf buf = SB_SST_BUF_INIT;
	struct sb_kv_entry e;
	uint8_t *got = NULL;
	uint64_t len = 0;
	(void)state;
	write_doc_example(vfs, "ex.sst");
	assert_int_equal(sb_simfs_read_whole(fs, "/db/ex.sst", &got, &len), 0);
	assert_int_equal(len, sizeof doc_example);
	for (uint64_t i = 0; i < len; i++)
		if (got[i] != doc_example[i])
			fail_msg("byte %llu: 0x%02x, the doc says 0x%02x", (unsigned long long)i,
			         got[i], doc_example[i]);
	/* And the doc's bytes read back as the doc says. */
	put_file(vfs, "/db/doc.sst", doc_example, sizeof doc_example);
	struct sb_sst *t = must_open(vfs, "/db/doc.sst");
	assert_int_equal(sb_sst_get(t, (const uint8_t *)"apricot", 7, &e, &buf), 0);
	assert_int_equal(e.offset, 42);
	assert_int_equal(e.timestamp_ms, TS0 + 250);
	assert_int_equal(e.flags, SB_KV_TOMBSTONE);
	assert_int_equal(e.value_len, 0);
	assert_int_equal(sb_sst_get(t, (const uint8_t *)"apple", 5, &e, &buf), 0);
	assert_memory_equal(e.value, "red", 3);
	assert_int_equal(sb_sst_covered_min_offset(t), 40);
	assert_int_equal(sb_sst_bloom_bits(t), 512);
	sb_sst_close(t);
	sb_sst_buf_free(&buf);
	free(got);
	sb_simfs_free(fs);
}

static void test_keys_out_of_order_or_past_the_index_fail_the_scan(void **state)
{
	struct sb_simfs *fs = new_simfs(19);
	struct sb_vfs *vfs = sb_simfs_vfs(fs);
	struct layout l;
	struct idx_parts x;
	uint8_t data[64], idx[64], foot[SB_SST_FOOTER_BYTES];
	uint64_t len;
	(void)state;
	/* The doc example with the second key's suffix "ricot" turned into
	 * "aicot" (key "apaicot" < "apple"), the block CRC redone, and an index
	 * that agrees (first key "a", last key "apaicot"): every CRC and every
	 * index check holds; only the order of the keys in the block is wrong. */
	parse_layout(doc_example, sizeof doc_example, &l);
	assert_int_equal(l.blocks, 1);
	memcpy(data, doc_example, l.index_pos);
	assert_int_equal(data[28], 'r'); /* the suffix starts at byte 28 */
	data[28] = 'a';
	forge_crc(data, 0, l.block_len[0]);
	split_index(doc_example + l.index_pos, l.index_len, 1, &x);
	x.first = (const uint8_t *)"a";
	x.first_len = 1;
	x.key[0] = (const uint8_t *)"apaicot";
	memcpy(foot, doc_example + sizeof doc_example - SB_SST_FOOTER_BYTES, sizeof foot);
	uint32_t ilen = join_index(&x, idx);
	const uint8_t *bloom = doc_example + l.bloom_pos;
	uint8_t *b = assemble(
	    data, l.index_pos, idx, ilen, bloom,
	    (uint32_t)(sizeof doc_example - SB_SST_FOOTER_BYTES - 4 - l.bloom_pos), foot, &len);
	put_file(vfs, "/db/bad.sst", b, len);
	struct sb_sst *t = must_open(vfs, "/db/bad.sst");
	assert_int_equal(scan_rc(t), SB_ECORRUPT);
	sb_sst_close(t);
	free(b);
	/* The untouched block under an index that names a larger last key
	 * ("apricots"): in order, but the block does not end where the index
	 * says, so the next block's keys could overlap it. */
	split_index(doc_example + l.index_pos, l.index_len, 1, &x);
	x.key[0] = (const uint8_t *)"apricots";
	x.key_len[0] = 8;
	ilen = join_index(&x, idx);
	b = assemble(doc_example, l.index_pos, idx, ilen, bloom,
	             (uint32_t)(sizeof doc_example - SB_SST_FOOTER_BYTES - 4 - l.bloom_pos), foot,
	             &len);
	put_file(vfs, "/db/bad.sst", b, len);
	t = must_open(vfs, "/db/bad.sst");
	assert_int_equal(scan_rc(t), SB_ECORRUPT);
	sb_sst_close(t);
	free(b);
	sb_simfs_free(fs);
}

/* ======================================================================
 * Merge
 * ====================================================================== */

#define MERGE_KEYS 1500
#define MERGE_OPS 12000
#define MERGE_TABLES 4

struct op {
	uint32_t key;
	int64_t off, ts;
	uint32_t flags;
	uint32_t val_len;
	uint64_t val_seed;
};

static void op_key(uint32_t k, uint8_t *buf, uint32_t *len)
{
	*len = (uint32_t)snprintf((char *)buf, 32, "k%05u", k);
}

/* The entry an op writes, with owned bytes. */
static void op_ment(const struct op *o, struct ment *m)
{
	uint8_t kb[32];
	uint64_t s = o->val_seed;
	op_key(o->key, kb, &m->key_len);
	m->key = malloc(m->key_len);
	memcpy(m->key, kb, m->key_len);
	m->off = o->off;
	m->ts = o->ts;
	m->flags = o->flags;
	m->val_len = o->val_len;
	m->val = rand_bytes(&s, o->val_len);
	m->hdr_len = (uint32_t)(o->val_seed % 5);
	m->hdr = rand_bytes(&s, m->hdr_len);
}

/* The latest op of each key among ops[from, to): latest[k] = op index or -1. */
static void latest_ops(const struct op *ops, size_t from, size_t to, int64_t *latest)
{
	for (uint32_t k = 0; k < MERGE_KEYS; k++)
		latest[k] = -1;
	for (size_t i = from; i < to; i++)
		latest[ops[i].key] = (int64_t)i;
}

/* Writes the table a memtable flush of ops[from, to) produces. */
static void flush_ops(struct sb_vfs *vfs, const char *name, const struct op *ops, size_t from,
                      size_t to)
{
	static int64_t latest[MERGE_KEYS];
	struct ment *m = calloc(MERGE_KEYS, sizeof *m);
	size_t n = 0;
	latest_ops(ops, from, to, latest);
	for (uint32_t k = 0; k < MERGE_KEYS; k++) /* "k%05u": numeric order = key order */
		if (latest[k] >= 0)
			op_ment(&ops[latest[k]], &m[n++]);
	write_table(vfs, "/db", name, m, n, NULL, ops[from].off, ops[to - 1].off + 3);
	ment_free(m, n);
}

static void check_merge_against_model(struct sb_vfs *vfs, const struct op *ops, int drop,
                                      int64_t now_ms, int64_t retention_ms)
{
	static int64_t latest[MERGE_KEYS];
	static const char *names[MERGE_TABLES] = {"t0.sst", "t1.sst", "t2.sst", "t3.sst"};
	struct sb_sst *in[MERGE_TABLES];
	struct sb_sst_merge_stats st;
	struct sb_sst_opts o = {.drop_tombstones = drop, .block_bytes = 1024};
	struct ment *m = calloc(MERGE_KEYS, sizeof *m);
	uint64_t in_entries = 0;
	size_t n = 0;
	char path[64];

	for (int i = 0; i < MERGE_TABLES; i++) { /* newest first */
		snprintf(path, sizeof path, "/db/%s", names[MERGE_TABLES - 1 - i]);
		in[i] = must_open(vfs, path);
		in_entries += sb_sst_entry_count(in[i]);
	}
	assert_int_equal(
	    sb_sst_merge(vfs, "/db", in, MERGE_TABLES, "out.sst", &o, now_ms, retention_ms, &st),
	    0);
	/* The model: the latest op of every key, minus expired tombstones. */
	int64_t cutoff = now_ms < INT64_MIN + retention_ms ? INT64_MIN : now_ms - retention_ms;
	latest_ops(ops, 0, MERGE_OPS, latest);
	uint64_t expired = 0;
	for (uint32_t k = 0; k < MERGE_KEYS; k++) {
		if (latest[k] < 0)
			continue;
		const struct op *x = &ops[latest[k]];
		if (drop && (x->flags & SB_KV_TOMBSTONE) && x->ts < cutoff) {
			expired++;
			continue;
		}
		op_ment(x, &m[n++]);
	}
	struct sb_sst *out = must_open(vfs, "/db/out.sst");
	assert_int_equal(sb_sst_entry_count(out), n);
	assert_scan_equals(out, m, n);
	assert_gets_equal(out, m, n);
	/* Every key of the key space: present exactly when the model has it. */
	struct sb_sst_buf buf = SB_SST_BUF_INIT;
	struct sb_kv_entry e;
	for (uint32_t k = 0; k < MERGE_KEYS + 50; k++) {
		uint8_t kb[32];
		uint32_t kl;
		op_key(k, kb, &kl);
		int rc = sb_sst_get(out, kb, kl, &e, &buf);
		assert_int_equal(rc == 0, model_contains(m, n, kb, kl));
	}
	sb_sst_buf_free(&buf);
	assert_int_equal(sb_sst_covered_min_offset(out), ops[0].off);
	assert_int_equal(sb_sst_covered_max_offset(out), ops[MERGE_OPS - 1].off + 3);
	assert_int_equal(st.entries_in, in_entries);
	assert_int_equal(st.entries_out, n);
	assert_int_equal(st.tombstones_dropped, expired);
	assert_int_equal(st.entries_out + st.shadowed_dropped + st.tombstones_dropped,
	                 st.entries_in);
	assert_int_equal(st.bytes_written, sb_sst_file_bytes(out));
	uint64_t in_bytes = 0;
	for (int i = 0; i < MERGE_TABLES; i++)
		in_bytes += sb_sst_file_bytes(in[i]);
	assert_true(st.bytes_read > 0 && st.bytes_read < in_bytes); /* blocks only */
	sb_sst_close(out);
	for (int i = 0; i < MERGE_TABLES; i++)
		sb_sst_close(in[i]);
	ment_free(m, n);
}

static void test_merge_of_four_tables_matches_a_model_map(void **state)
{
	struct sb_simfs *fs = new_simfs(8);
	struct sb_vfs *vfs = sb_simfs_vfs(fs);
	struct op *ops = calloc(MERGE_OPS, sizeof *ops);
	uint64_t s = 2024;
	char name[32];
	(void)state;
	/* Random puts and deletes over a small key space; offsets increase with
	 * gaps; timestamps increase with the offsets, 1 ms apart. */
	int64_t off = 1000;
	for (size_t i = 0; i < MERGE_OPS; i++) {
		off += 1 + (int64_t)(sbt_rand(&s) % 3);
		ops[i].key = (uint32_t)(sbt_rand(&s) % MERGE_KEYS);
		ops[i].off = off;
		ops[i].ts = TS0 + off;
		ops[i].flags = sbt_rand(&s) % 4 == 0 ? SB_KV_TOMBSTONE : 0;
		ops[i].val_len = ops[i].flags ? 0 : (uint32_t)(sbt_rand(&s) % 80);
		ops[i].val_seed = sbt_rand(&s);
	}
	/* Four flushes of consecutive op ranges: t0 oldest, t3 newest. */
	for (int t = 0; t < MERGE_TABLES; t++) {
		snprintf(name, sizeof name, "t%d.sst", t);
		flush_ops(vfs, name, ops, (size_t)t * MERGE_OPS / MERGE_TABLES,
		          (size_t)(t + 1) * MERGE_OPS / MERGE_TABLES);
	}
	int64_t mid_ts = ops[MERGE_OPS / 2].ts;
	check_merge_against_model(vfs, ops, 0, mid_ts, 0);            /* keep all tombstones */
	check_merge_against_model(vfs, ops, 1, mid_ts + 1000, 1000);  /* drop the older half */
	check_merge_against_model(vfs, ops, 1, INT64_MAX, 0);         /* drop every tombstone */
	check_merge_against_model(vfs, ops, 1, INT64_MIN, INT64_MAX); /* drop none: no overflow */
	free(ops);
	sb_simfs_free(fs);
}

static void test_merge_prefers_highest_offset_then_newest_table(void **state)
{
	struct sb_simfs *fs = new_simfs(9);
	struct sb_vfs *vfs = sb_simfs_vfs(fs);
	struct sb_sst_buf buf = SB_SST_BUF_INIT;
	struct sb_kv_entry e;
	struct sb_sst *in[3];
	(void)state;
	/* "a": the older table holds the higher offset (wins). "b": equal
	 * offsets, the newest table wins. "c": only in one table. */
	struct sb_kv_entry older[] = {
	    {(const uint8_t *)"a", 1, 9, TS0, 0, (const uint8_t *)"old-a", 5, NULL, 0},
	    {(const uint8_t *)"b", 1, 5, TS0, 0, (const uint8_t *)"old-b", 5, NULL, 0}};
	struct sb_kv_entry newer[] = {
	    {(const uint8_t *)"a", 1, 7, TS0, 0, (const uint8_t *)"new-a", 5, NULL, 0},
	    {(const uint8_t *)"b", 1, 5, TS0, 0, (const uint8_t *)"new-b", 5, NULL, 0},
	    {(const uint8_t *)"c", 1, 8, TS0, SB_KV_TOMBSTONE, NULL, 0, NULL, 0}};
	struct sb_sst_writer *w;
	assert_int_equal(sb_sst_writer_open(vfs, "/db", "old.sst", NULL, &w), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(sb_sst_writer_add(w, &older[i]), 0);
	assert_int_equal(sb_sst_writer_finish(w, 0, 9), 0);
	assert_int_equal(sb_sst_writer_open(vfs, "/db", "new.sst", NULL, &w), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(sb_sst_writer_add(w, &newer[i]), 0);
	assert_int_equal(sb_sst_writer_finish(w, 5, 12), 0);
	/* An empty table listed last: its range still widens the output's (the
	 * hull is taken over every input, not only the newest). */
	write_table(vfs, "/db", "empty.sst", NULL, 0, NULL, 20, 30);
	in[0] = must_open(vfs, "/db/new.sst");
	in[1] = must_open(vfs, "/db/old.sst");
	in[2] = must_open(vfs, "/db/empty.sst");
	struct sb_sst_opts o = {.drop_tombstones = 0};
	assert_int_equal(sb_sst_merge(vfs, "/db", in, 3, "m.sst", &o, TS0, 0, NULL), 0);
	struct sb_sst *t = must_open(vfs, "/db/m.sst");
	assert_int_equal(sb_sst_entry_count(t), 3);
	assert_int_equal(sb_sst_get(t, (const uint8_t *)"a", 1, &e, &buf), 0);
	assert_memory_equal(e.value, "old-a", 5);
	assert_int_equal(sb_sst_get(t, (const uint8_t *)"b", 1, &e, &buf), 0);
	assert_memory_equal(e.value, "new-b", 5);
	assert_int_equal(sb_sst_get(t, (const uint8_t *)"c", 1, &e, &buf), 0);
	assert_int_equal(e.flags, SB_KV_TOMBSTONE);
	assert_int_equal(sb_sst_covered_min_offset(t), 0);
	assert_int_equal(sb_sst_covered_max_offset(t), 30);
	sb_sst_close(t);
	/* Bottom-most with the tombstone expired (TS0 < TS0 + 1 - 0): dropped. */
	o.drop_tombstones = 1;
	assert_int_equal(sb_sst_merge(vfs, "/db", in, 3, "m.sst", &o, TS0 + 1, 0, NULL), 0);
	t = must_open(vfs, "/db/m.sst");
	assert_int_equal(sb_sst_entry_count(t), 2);
	assert_int_equal(sb_sst_get(t, (const uint8_t *)"c", 1, &e, &buf), SB_ENOTFOUND);
	sb_sst_close(t);
	/* Not yet expired (TS0 is not < TS0): kept. */
	assert_int_equal(sb_sst_merge(vfs, "/db", in, 3, "m.sst", &o, TS0 + 10, 10, NULL), 0);
	t = must_open(vfs, "/db/m.sst");
	assert_int_equal(sb_sst_entry_count(t), 3);
	sb_sst_close(t);
	/* Bad arguments; a merge with a corrupt input writes nothing. */
	assert_int_equal(sb_sst_merge(vfs, "/db", in, 0, "x.sst", NULL, 0, 0, NULL), SB_EINVAL);
	assert_int_equal(sb_sst_merge(vfs, "/db", in, 3, "x.sst", NULL, 0, -1, NULL), SB_EINVAL);
	uint8_t junk = 0x55;
	assert_int_equal(sb_simfs_corrupt(fs, "/db/old.sst", 3, &junk, 1), 0);
	struct sb_sst_merge_stats st;
	assert_int_equal(sb_sst_merge(vfs, "/db", in, 3, "x.sst", NULL, 0, 0, &st), SB_ECORRUPT);
	assert_false(exists(vfs, "/db/x.sst"));
	assert_false(exists(vfs, "/db/x.sst.tmp"));
	for (int i = 0; i < 3; i++)
		sb_sst_close(in[i]);
	sb_sst_buf_free(&buf);
	sb_simfs_free(fs);
}

static void test_merge_rate_bound_paces_its_io(void **state)
{
	struct sb_simfs *fs = new_simfs(10);
	struct sb_vfs *vfs = sb_simfs_vfs(fs);
	struct sb_sst_merge_stats st;
	struct sb_sst *in[2];
	size_t n1, n2;
	(void)state;
	struct ment *a = gen_entries(20, 3000, 300, &n1);
	struct ment *b = gen_entries(21, 3000, 300, &n2);
	write_table(vfs, "/db", "a.sst", a, n1, NULL, 0, 100000);
	write_table(vfs, "/db", "b.sst", b, n2, NULL, 0, 100000);
	in[0] = must_open(vfs, "/db/b.sst");
	in[1] = must_open(vfs, "/db/a.sst");
	struct sb_sst_opts o = {.rate_bytes_per_s = 2u << 20};
	int64_t t0 = sb_mono_ns();
	assert_int_equal(sb_sst_merge(vfs, "/db", in, 2, "m.sst", &o, 0, 0, &st), 0);
	double elapsed = (double)(sb_mono_ns() - t0) / 1e9;
	double total = (double)(st.bytes_read + st.bytes_written);
	/* Bytes not yet counted at the last check: the check interval, the
	 * writer's buffer and the index/bloom/footer written by finish; 512 KiB
	 * covers them all. */
	double floor_s = (total - 512 * 1024.0) / (double)o.rate_bytes_per_s;
	print_message("rate bound: %.0f bytes in %.3f s (floor %.3f s, slept %.3f s)\n", total,
	              elapsed, floor_s, (double)st.sleep_ns / 1e9);
	/* Only a lower bound: a loaded machine may be slower, never faster. */
	assert_true(floor_s > 0.3);
	assert_true(elapsed >= floor_s);
	assert_true(st.sleep_ns > 0);
	sb_sst_close(in[0]);
	sb_sst_close(in[1]);
	ment_free(a, n1);
	ment_free(b, n2);
	sb_simfs_free(fs);
}

/* ======================================================================
 * Durable write under simulated power loss
 * ====================================================================== */

/* Writes m[] as /db/t.sst on fs; returns the first error (0 on success). */
static int try_write(struct sb_vfs *vfs, const struct ment *m, size_t n)
{
	struct sb_sst_opts o = {.block_bytes = 512, .write_buffer_bytes = 4096};
	struct sb_sst_writer *w = NULL;
	int rc = sb_sst_writer_open(vfs, "/db", "t.sst", &o, &w);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		struct sb_kv_entry e = to_kv(&m[i]);
		if ((rc = sb_sst_writer_add(w, &e))) {
			sb_sst_writer_abort(w);
			return rc;
		}
	}
	return sb_sst_writer_finish(w, 0, 100000);
}

/* After a crash: the table is whole or absent; if the writer reported
 * success it must be there. Returns the number of violations. */
static int check_after_crash(struct sb_simfs *fs, const struct ment *m, size_t n, int wrote_ok)
{
	struct sb_vfs *vfs = sb_simfs_vfs(fs);
	struct sb_sst *t = NULL;
	int bad = 0;
	if (!exists(vfs, "/db/t.sst"))
		return wrote_ok; /* a table reported durable is gone */
	if (sb_sst_open(vfs, "/db/t.sst", &t) != 0)
		return 1;
	if (sb_sst_entry_count(t) != n || scan_rc(t) != 0)
		bad = 1;
	struct sb_sst_iter *it = NULL;
	struct sb_kv_entry e;
	assert_int_equal(sb_sst_iter_new(t, &it), 0);
	for (size_t i = 0; i < n && !bad; i++)
		bad = sb_sst_iter_next(it, &e) != 1 || !entry_matches(&m[i], &e);
	sb_sst_iter_free(it);
	sb_sst_close(t);
	return bad;
}

static int count_temps(struct sb_simfs *fs)
{
	return exists(sb_simfs_vfs(fs), "/db/t.sst.tmp");
}

/* One run: power off at op `k` after the start of the write, crash, check,
 * clean temps, and write again. Returns violations. */
static int crash_run(uint64_t seed, uint64_t k, enum sb_simfs_crash_mode mode, unsigned mutants,
                     const struct ment *m, size_t n)
{
	struct sb_simfs *fs = new_simfs(seed);
	struct sb_vfs *vfs = sb_simfs_vfs(fs);
	sb_simfs_set_mutants(fs, mutants);
	sb_simfs_power_off_at(fs, sb_simfs_op_count(fs) + k);
	int rc = try_write(vfs, m, n);
	sb_simfs_crash(fs, mode);
	sb_simfs_set_mutants(fs, 0);
	int bad = check_after_crash(fs, m, n, rc == 0);
	/* Recovery: temps go, others' files stay, and the table can be rebuilt. */
	int fd = vfs->ops->open(vfs, "/db/other.tmp", O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(vfs->ops->close(vfs, fd), 0);
	int had_temp = count_temps(fs);
	assert_int_equal(sb_sst_remove_temps(vfs, "/db"), had_temp);
	assert_int_equal(count_temps(fs), 0);
	assert_true(exists(vfs, "/db/other.tmp"));
	if (!mutants) {
		assert_int_equal(try_write(vfs, m, n), 0);
		sb_simfs_crash(fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
		bad += check_after_crash(fs, m, n, 1);
	}
	sb_simfs_free(fs);
	return bad;
}

static void test_power_loss_at_every_op_leaves_the_whole_table_or_none(void **state)
{
	size_t n;
	(void)state;
	struct ment *m = gen_entries(30, 300, 60, &n);
	/* Dry run: how many ops a full write takes. */
	struct sb_simfs *fs = new_simfs(1);
	uint64_t c0 = sb_simfs_op_count(fs);
	assert_int_equal(try_write(sb_simfs_vfs(fs), m, n), 0);
	uint64_t ops = sb_simfs_op_count(fs) - c0;
	sb_simfs_free(fs);
	assert_true(ops >= 8); /* open, several writes, datasync, close, rename, sync_dir */
	int bad = 0, runs = 0;
	for (uint64_t k = 0; k <= ops + 1; k++) {
		/* Per crash point: 16 random crashes (torn writes, partial
		 * directory updates), 2 that keep exactly the synced state, 2
		 * process crashes that keep everything. */
		for (uint64_t seed = 1; seed <= 20; seed++, runs++) {
			enum sb_simfs_crash_mode mode = seed <= 16   ? SB_SIMFS_CRASH_RANDOM
			                                : seed <= 18 ? SB_SIMFS_CRASH_DROP_UNSYNCED
			                                             : SB_SIMFS_CRASH_KEEP_ALL;
			int b = crash_run(seed * 1000 + k, k, mode, 0, m, n);
			if (b)
				print_error("violation: power off at op %llu, seed %llu\n",
				            (unsigned long long)k, (unsigned long long)seed);
			bad += b;
		}
	}
	print_message("power loss: %d runs over %llu op indexes, %d violations\n", runs,
	              (unsigned long long)ops + 2, bad);
	assert_int_equal(bad, 0);
	ment_free(m, n);
}

static void test_crash_check_catches_mutant_disks(void **state)
{
	size_t n;
	(void)state;
	struct ment *m = gen_entries(31, 100, 60, &n);
	/* Power stays on through the write (op 10^6), then the machine loses
	 * exactly what was never synced. A disk that skips fsync loses the
	 * data; one that skips directory fsync loses the rename. */
	unsigned mutants[] = {SB_SIMFS_MUTANT_SKIP_SYNC, SB_SIMFS_MUTANT_SKIP_DIR_SYNC};
	for (int i = 0; i < 2; i++) {
		int bad = crash_run(77, 1000000, SB_SIMFS_CRASH_DROP_UNSYNCED, mutants[i], m, n);
		if (bad == 0)
			fail_msg("mutant %u went unnoticed", mutants[i]);
	}
	ment_free(m, n);
}

static void test_io_errors_fail_the_write_and_leave_no_table(void **state)
{
	size_t n;
	(void)state;
	struct ment *m = gen_entries(32, 300, 60, &n);
	struct {
		unsigned mask;
		uint64_t nth;
		int err;
	} faults[] = {
	    {SB_SIMFS_OP_SYNC, 0, -EIO},     /* the datasync */
	    {SB_SIMFS_OP_WRITE, 0, -EIO},    /* the first write */
	    {SB_SIMFS_OP_WRITE, 3, -ENOSPC}, /* a later write */
	    {SB_SIMFS_OP_META, 0, -EIO},     /* creating the temp file */
	    {SB_SIMFS_OP_META, 1, -EIO},     /* the rename */
	};
	for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
		struct sb_simfs *fs = new_simfs(40 + i);
		struct sb_vfs *vfs = sb_simfs_vfs(fs);
		sb_simfs_fail_nth(fs, faults[i].mask, faults[i].nth, faults[i].err);
		int rc = try_write(vfs, m, n);
		if (rc != faults[i].err)
			fail_msg("fault %zu: write returned %d, not %d", i, rc, faults[i].err);
		assert_false(exists(vfs, "/db/t.sst"));
		assert_false(exists(vfs, "/db/t.sst.tmp"));
		sb_simfs_free(fs);
	}
	/* A failed directory fsync is reported (the table itself is whole). */
	struct sb_simfs *fs = new_simfs(50);
	sb_simfs_fail_nth(fs, SB_SIMFS_OP_DIRSYNC, 0, -EIO);
	assert_int_equal(try_write(sb_simfs_vfs(fs), m, n), -EIO);
	sb_simfs_free(fs);
	/* Short writes are retried: the table is whole. */
	fs = new_simfs(51);
	sb_simfs_short_write_nth(fs, 1, 100);
	assert_int_equal(try_write(sb_simfs_vfs(fs), m, n), 0);
	sb_simfs_crash(fs, SB_SIMFS_CRASH_DROP_UNSYNCED);
	assert_int_equal(check_after_crash(fs, m, n, 1), 0);
	sb_simfs_free(fs);
	ment_free(m, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bloom_has_no_false_negatives_and_fpr_matches_prediction),
	    cmocka_unit_test(test_bloom_hash_is_pinned_and_views_reject_bad_headers),
	    cmocka_unit_test(test_round_trip_of_50k_random_entries_finds_every_key_exactly),
	    cmocka_unit_test(test_concurrent_gets_on_one_shared_table_all_succeed),
	    cmocka_unit_test(
	        test_iterator_yields_key_order_and_seeks_to_lower_bound_at_every_boundary),
	    cmocka_unit_test(test_empty_table_opens_finds_nothing_and_keeps_its_range),
	    cmocka_unit_test(test_single_huge_entry_between_small_ones_round_trips),
	    cmocka_unit_test(test_writer_rejects_bad_order_limits_names_and_ranges),
	    cmocka_unit_test(test_every_flipped_byte_is_detected_and_never_gives_a_wrong_value),
	    cmocka_unit_test(test_truncated_table_is_rejected_at_every_length),
	    cmocka_unit_test(test_forged_crcs_over_damaged_sections_never_read_out_of_bounds),
	    cmocka_unit_test(test_structurally_invalid_tables_with_valid_crcs_are_rejected),
	    cmocka_unit_test(
	        test_lookups_read_the_mapping_when_the_vfs_can_map_and_pread_otherwise),
	    cmocka_unit_test(test_a_damaged_block_is_corrupt_on_the_mapped_and_the_pread_path),
	    cmocka_unit_test(test_absent_keys_the_bloom_rejects_cost_no_io),
	    cmocka_unit_test(test_writer_output_matches_the_format_doc_example),
	    cmocka_unit_test(test_keys_out_of_order_or_past_the_index_fail_the_scan),
	    cmocka_unit_test(test_merge_of_four_tables_matches_a_model_map),
	    cmocka_unit_test(test_merge_prefers_highest_offset_then_newest_table),
	    cmocka_unit_test(test_merge_rate_bound_paces_its_io),
	    cmocka_unit_test(test_power_loss_at_every_op_leaves_the_whole_table_or_none),
	    cmocka_unit_test(test_crash_check_catches_mutant_disks),
	    cmocka_unit_test(test_io_errors_fail_the_write_and_leave_no_table),
	};
	/* Corruption tests provoke many sst_corrupt lines; SB_TEST_VERBOSE=1
	 * keeps them. */
	const char *verbose = getenv("SB_TEST_VERBOSE");
	if (!verbose || strcmp(verbose, "1") != 0)
		sb_logging_level = -1;
	const char *filter = getenv("SB_TEST_FILTER");
	if (filter && *filter)
		cmocka_set_test_filter(filter);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
