/* test_memtable.c - the skip-list memtable: round trips, versions and
 * tombstones, key order, iteration and seek against a sorted-array model,
 * offset monotonicity, exact memory accounting and the cap, the validator
 * (and that it catches damage), and one writer racing three readers. */
#include "sb_test.h"

#include "sb_memtable.h"

#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CAP_BIG (256ull << 20)

static struct sb_memtable *new_table(uint64_t cap)
{
	struct sb_memtable *mt = NULL;
	assert_int_equal(sb_memtable_new(cap, &mt), 0);
	assert_non_null(mt);
	return mt;
}

/* Puts a string key and value with no headers. */
static int put_str(struct sb_memtable *mt, const char *key, int64_t offset, const char *value)
{
	struct sb_kv_entry e = {
	    .key = (const uint8_t *)key,
	    .key_len = (uint32_t)strlen(key),
	    .offset = offset,
	    .timestamp_ms = offset * 10,
	    .value = (const uint8_t *)value,
	    .value_len = (uint32_t)strlen(value),
	};
	return sb_memtable_put(mt, &e);
}

static int get_str(struct sb_memtable *mt, const char *key, struct sb_kv_entry *out)
{
	return sb_memtable_get(mt, (const uint8_t *)key, (uint32_t)strlen(key), out);
}

static void assert_entry(const struct sb_kv_entry *e, const char *key, int64_t offset,
                         const char *value)
{
	assert_int_equal(e->key_len, strlen(key));
	assert_memory_equal(e->key, key, e->key_len);
	assert_int_equal(e->offset, offset);
	assert_int_equal(e->value_len, strlen(value));
	if (e->value_len)
		assert_memory_equal(e->value, value, e->value_len);
}

static void test_put_then_get_round_trips_every_field(void **state)
{
	(void)state;
	struct sb_memtable *mt = new_table(CAP_BIG);
	struct sb_kv_entry got;
	static const uint8_t hdr[] = {1, 2, 3, 0, 255};

	struct sb_kv_entry e = {.key = (const uint8_t *)"alpha",
	                        .key_len = 5,
	                        .offset = 10,
	                        .timestamp_ms = 1234,
	                        .value = (const uint8_t *)"one",
	                        .value_len = 3,
	                        .headers = hdr,
	                        .headers_len = sizeof hdr};
	assert_int_equal(sb_memtable_put(mt, &e), 0);
	assert_int_equal(get_str(mt, "alpha", &got), 0);
	assert_entry(&got, "alpha", 10, "one");
	assert_int_equal(got.timestamp_ms, 1234);
	assert_int_equal(got.flags, 0);
	assert_int_equal(got.headers_len, sizeof hdr);
	assert_memory_equal(got.headers, hdr, sizeof hdr);

	/* Empty value, NULL pointer: found, length 0, pointer still valid. */
	struct sb_kv_entry empty = {.key = (const uint8_t *)"empty", .key_len = 5, .offset = 11};
	assert_int_equal(sb_memtable_put(mt, &empty), 0);
	assert_int_equal(get_str(mt, "empty", &got), 0);
	assert_entry(&got, "empty", 11, "");
	assert_non_null(got.value);
	assert_non_null(got.headers);
	assert_int_equal(got.headers_len, 0);

	/* One-byte key 0x00. */
	static const uint8_t zero = 0;
	struct sb_kv_entry z = {
	    .key = &zero, .key_len = 1, .offset = 12, .value = hdr, .value_len = 2};
	assert_int_equal(sb_memtable_put(mt, &z), 0);
	assert_int_equal(sb_memtable_get(mt, &zero, 1, &got), 0);
	assert_int_equal(got.offset, 12);

	/* The longest key, with a value and headers: a dedicated block. */
	uint8_t *big = malloc(SB_KV_KEY_MAX + 1), *val = malloc(1000), *hb = malloc(300);
	uint64_t s = 1;
	for (uint32_t i = 0; i < SB_KV_KEY_MAX + 1; i++)
		big[i] = (uint8_t)sbt_rand(&s);
	for (int i = 0; i < 1000; i++)
		val[i] = (uint8_t)(i * 7);
	for (int i = 0; i < 300; i++)
		hb[i] = (uint8_t)(i * 3);
	struct sb_kv_entry b = {.key = big,
	                        .key_len = SB_KV_KEY_MAX,
	                        .offset = 13,
	                        .timestamp_ms = -1,
	                        .value = val,
	                        .value_len = 1000,
	                        .headers = hb,
	                        .headers_len = 300};
	assert_int_equal(sb_memtable_put(mt, &b), 0);
	memset(&got, 0, sizeof got);
	assert_int_equal(sb_memtable_get(mt, big, SB_KV_KEY_MAX, &got), 0);
	assert_int_equal(got.key_len, SB_KV_KEY_MAX);
	assert_memory_equal(got.key, big, SB_KV_KEY_MAX);
	assert_int_equal(got.timestamp_ms, -1);
	assert_int_equal(got.value_len, 1000);
	assert_memory_equal(got.value, val, 1000);
	assert_int_equal(got.headers_len, 300);
	assert_memory_equal(got.headers, hb, 300);
	/* Same length, last byte different: absent. One byte over: refused. */
	big[SB_KV_KEY_MAX - 1] ^= 1;
	assert_int_equal(sb_memtable_get(mt, big, SB_KV_KEY_MAX, &got), SB_ENOTFOUND);
	b.key_len = SB_KV_KEY_MAX + 1;
	b.offset = 14;
	assert_int_equal(sb_memtable_put(mt, &b), SB_ETOOBIG);
	assert_int_equal(sb_memtable_get(mt, big, SB_KV_KEY_MAX + 1, &got), SB_EINVAL);
	assert_int_equal(sb_memtable_get(mt, big, 0, &got), SB_EINVAL);

	assert_int_equal(get_str(mt, "alph", &got), SB_ENOTFOUND);
	assert_int_equal(get_str(mt, "alphaa", &got), SB_ENOTFOUND);
	assert_int_equal(sb_memtable_count(mt), 4);
	assert_int_equal(sb_memtable_validate(mt), 0);
	free(big);
	free(val);
	free(hb);
	sb_memtable_free(mt);
}

static void test_put_rejects_invalid_entries_and_leaves_table_unchanged(void **state)
{
	(void)state;
	struct sb_memtable *mt = new_table(CAP_BIG);
	assert_int_equal(put_str(mt, "k", 1, "v"), 0);
	uint64_t payload = sb_memtable_payload_bytes(mt), bytes = sb_memtable_bytes(mt);
	const struct sb_kv_entry good = {.key = (const uint8_t *)"x", .key_len = 1, .offset = 2};
	struct sb_kv_entry e;

	e = good, e.key_len = 0;
	assert_int_equal(sb_memtable_put(mt, &e), SB_EINVAL);
	e = good, e.key = NULL;
	assert_int_equal(sb_memtable_put(mt, &e), SB_EINVAL);
	e = good, e.value_len = 3; /* value NULL */
	assert_int_equal(sb_memtable_put(mt, &e), SB_EINVAL);
	e = good, e.headers_len = 3; /* headers NULL */
	assert_int_equal(sb_memtable_put(mt, &e), SB_EINVAL);
	e = good, e.flags = 0x2;
	assert_int_equal(sb_memtable_put(mt, &e), SB_EINVAL);
	e = good, e.flags = SB_KV_TOMBSTONE, e.value = (const uint8_t *)"v", e.value_len = 1;
	assert_int_equal(sb_memtable_put(mt, &e), SB_EINVAL);
	e = good, e.offset = -5;
	assert_int_equal(sb_memtable_put(mt, &e), SB_EINVAL);
	assert_int_equal(sb_memtable_delete(mt, NULL, 0, 3, 0), SB_EINVAL);

	assert_int_equal(sb_memtable_count(mt), 1);
	assert_int_equal(sb_memtable_payload_bytes(mt), payload);
	assert_int_equal(sb_memtable_bytes(mt), bytes);
	assert_int_equal(sb_memtable_max_offset(mt), 1);
	e = good;
	assert_int_equal(sb_memtable_put(mt, &e), 0);
	assert_int_equal(sb_memtable_validate(mt), 0);
	sb_memtable_free(mt);
}

static void test_put_rejects_offset_not_above_previous(void **state)
{
	(void)state;
	struct sb_memtable *mt = new_table(CAP_BIG);
	struct sb_kv_entry got;
	assert_int_equal(sb_memtable_min_offset(mt), -1);
	assert_int_equal(sb_memtable_max_offset(mt), -1);
	assert_int_equal(put_str(mt, "a", 0, "zero"), 0); /* 0 is a valid first offset */
	assert_int_equal(put_str(mt, "a", 5, "five"), 0);
	assert_int_equal(put_str(mt, "b", 5, "again"), SB_EINVAL);
	assert_int_equal(put_str(mt, "a", 4, "back"), SB_EINVAL);
	assert_int_equal(sb_memtable_delete(mt, (const uint8_t *)"a", 1, 3, 0), SB_EINVAL);
	assert_int_equal(get_str(mt, "b", &got), SB_ENOTFOUND);
	assert_int_equal(get_str(mt, "a", &got), 0);
	assert_entry(&got, "a", 5, "five");
	assert_int_equal(put_str(mt, "b", 20, "twenty"), 0); /* gaps are fine */
	assert_int_equal(sb_memtable_count(mt), 3);
	assert_int_equal(sb_memtable_min_offset(mt), 0);
	assert_int_equal(sb_memtable_max_offset(mt), 20);
	assert_int_equal(sb_memtable_validate(mt), 0);
	sb_memtable_free(mt);
}

static void test_get_returns_newest_version_after_overwrites(void **state)
{
	(void)state;
	struct sb_memtable *mt = new_table(CAP_BIG);
	struct sb_kv_entry got;
	char v[16];
	int64_t off = 1;
	for (int i = 1; i <= 50; i++) {
		snprintf(v, sizeof v, "v%d", i);
		assert_int_equal(put_str(mt, "k", off++, v), 0);
		assert_int_equal(put_str(mt, i % 2 ? "j" : "l", off++, "n"), 0);
		assert_int_equal(get_str(mt, "k", &got), 0);
		assert_entry(&got, "k", off - 2, v);
	}
	/* All versions: j's 25, k's 50 newest first, l's 25. */
	struct sb_memtable_iter it;
	sb_memtable_iter_init(mt, &it, 0);
	int64_t prev = INT64_MAX;
	for (int i = 0; i < 25; i++)
		assert_int_equal(sb_memtable_iter_next(&it, &got), 0);
	for (int i = 50; i >= 1; i--) {
		assert_int_equal(sb_memtable_iter_next(&it, &got), 0);
		snprintf(v, sizeof v, "v%d", i);
		assert_entry(&got, "k", got.offset, v);
		assert_true(got.offset < prev);
		prev = got.offset;
	}
	/* Latest only: one entry per key, the newest. */
	sb_memtable_iter_init(mt, &it, 1);
	assert_int_equal(sb_memtable_iter_next(&it, &got), 0);
	assert_entry(&got, "j", 98, "n");
	assert_int_equal(sb_memtable_iter_next(&it, &got), 0);
	assert_entry(&got, "k", 99, "v50");
	assert_int_equal(sb_memtable_iter_next(&it, &got), 0);
	assert_entry(&got, "l", 100, "n");
	assert_int_equal(sb_memtable_iter_next(&it, &got), SB_ENOTFOUND);
	assert_int_equal(sb_memtable_iter_next(&it, &got), SB_ENOTFOUND);
	assert_int_equal(sb_memtable_count(mt), 100);
	assert_int_equal(sb_memtable_validate(mt), 0);
	sb_memtable_free(mt);
}

static void test_tombstone_is_found_flagged_and_shadows_older_versions(void **state)
{
	(void)state;
	struct sb_memtable *mt = new_table(CAP_BIG);
	struct sb_kv_entry got;
	struct sb_memtable_iter it;
	assert_int_equal(put_str(mt, "k", 1, "live"), 0);
	assert_int_equal(sb_memtable_delete(mt, (const uint8_t *)"k", 1, 2, 99), 0);
	assert_int_equal(get_str(mt, "k", &got), 0);
	assert_int_equal(got.flags & SB_KV_TOMBSTONE, SB_KV_TOMBSTONE);
	assert_int_equal(got.offset, 2);
	assert_int_equal(got.timestamp_ms, 99);
	assert_int_equal(got.value_len, 0);
	/* The flusher sees the tombstone, not the older live value. */
	sb_memtable_iter_init(mt, &it, 1);
	assert_int_equal(sb_memtable_iter_next(&it, &got), 0);
	assert_int_equal(got.flags, SB_KV_TOMBSTONE);
	assert_int_equal(sb_memtable_iter_next(&it, &got), SB_ENOTFOUND);
	/* Deleting a key never seen still records a tombstone (it may live in
	 * an older SSTable). */
	assert_int_equal(sb_memtable_delete(mt, (const uint8_t *)"gone", 4, 3, 0), 0);
	assert_int_equal(get_str(mt, "gone", &got), 0);
	assert_int_equal(got.flags, SB_KV_TOMBSTONE);
	/* A put after the delete revives the key. */
	assert_int_equal(put_str(mt, "k", 4, "back"), 0);
	assert_int_equal(get_str(mt, "k", &got), 0);
	assert_int_equal(got.flags, 0);
	assert_entry(&got, "k", 4, "back");
	/* A tombstone may carry the record's headers. */
	static const uint8_t hdr[] = {9, 8};
	struct sb_kv_entry t = {.key = (const uint8_t *)"h",
	                        .key_len = 1,
	                        .offset = 5,
	                        .flags = SB_KV_TOMBSTONE,
	                        .headers = hdr,
	                        .headers_len = 2};
	assert_int_equal(sb_memtable_put(mt, &t), 0);
	assert_int_equal(get_str(mt, "h", &got), 0);
	assert_int_equal(got.flags, SB_KV_TOMBSTONE);
	assert_int_equal(got.headers_len, 2);
	assert_memory_equal(got.headers, hdr, 2);
	struct sb_memtable_stats st;
	sb_memtable_stats(mt, &st);
	assert_int_equal(st.entries, 5);
	assert_int_equal(st.tombstones, 3);
	assert_int_equal(st.distinct_keys, 3);
	assert_int_equal(sb_memtable_validate(mt), 0);
	sb_memtable_free(mt);
}

static void test_key_order_is_bytewise_unsigned_then_shorter_first(void **state)
{
	(void)state;
	static const struct {
		const char *k;
		uint32_t len;
	} want[] = {{"\x00", 1}, {"a", 1},    {"a\x00", 2}, {"aa", 2},      {"ab", 2},
	            {"b", 1},    {"\x80", 1}, {"\xff", 1},  {"\xff\x00", 2}};
	const int n = (int)(sizeof want / sizeof want[0]);
	for (int i = 0; i + 1 < n; i++) {
		const uint8_t *a = (const uint8_t *)want[i].k, *b = (const uint8_t *)want[i + 1].k;
		assert_true(sb_kv_key_cmp(a, want[i].len, b, want[i + 1].len) < 0);
		assert_true(sb_kv_key_cmp(b, want[i + 1].len, a, want[i].len) > 0);
		assert_int_equal(sb_kv_key_cmp(a, want[i].len, a, want[i].len), 0);
	}
	assert_int_equal(sb_kv_key_cmp(NULL, 0, NULL, 0), 0);

	/* Put in a scrambled order; iteration gives the order above. */
	struct sb_memtable *mt = new_table(CAP_BIG);
	int order[] = {5, 8, 0, 3, 7, 1, 4, 6, 2};
	for (int i = 0; i < n; i++) {
		struct sb_kv_entry e = {.key = (const uint8_t *)want[order[i]].k,
		                        .key_len = want[order[i]].len,
		                        .offset = i};
		assert_int_equal(sb_memtable_put(mt, &e), 0);
	}
	struct sb_memtable_iter it;
	struct sb_kv_entry got;
	sb_memtable_iter_init(mt, &it, 0);
	for (int i = 0; i < n; i++) {
		assert_int_equal(sb_memtable_iter_next(&it, &got), 0);
		assert_int_equal(got.key_len, want[i].len);
		assert_memory_equal(got.key, want[i].k, want[i].len);
	}
	assert_int_equal(sb_memtable_iter_next(&it, &got), SB_ENOTFOUND);
	sb_memtable_free(mt);
}

/* ---- random operations against a sorted-array model ---- */

#define MODEL_OPS 100000
#define MODEL_POOL 3000
#define MODEL_KEY_MAX 8 /* pool keys are 1..8 bytes; 9-byte keys are absent */

struct model_entry {
	uint8_t key[MODEL_KEY_MAX + 1];
	uint32_t key_len;
	int64_t offset;
	uint32_t flags;
	uint32_t value_len;
	uint32_t headers_len;
};

/* Deterministic contents from the offset, so the model need not store them. */
static uint8_t value_byte(int64_t offset, uint32_t i)
{
	return (uint8_t)(offset * 31 + i * 7);
}
static uint8_t header_byte(int64_t offset, uint32_t i)
{
	return (uint8_t)(offset ^ (i * 13 + 5));
}

/* The model's own key order, written independently of sb_kv_key_cmp. */
static int model_key_cmp(const uint8_t *a, uint32_t al, const uint8_t *b, uint32_t bl)
{
	for (uint32_t i = 0; i < al && i < bl; i++)
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	return al < bl ? -1 : al > bl ? 1 : 0;
}

static int model_cmp(const void *pa, const void *pb)
{
	const struct model_entry *a = pa, *b = pb;
	int c = model_key_cmp(a->key, a->key_len, b->key, b->key_len);
	if (c)
		return c;
	return a->offset < b->offset ? 1 : a->offset > b->offset ? -1 : 0;
}

static void random_key(uint64_t *s, uint8_t *key, uint32_t *len, uint32_t len_min, uint32_t len_max)
{
	static const uint8_t alphabet[] = {0x00, 0x01, 'a', 0x7f, 0x80, 0xff};
	*len = len_min + (uint32_t)(sbt_rand(s) % (len_max - len_min + 1));
	for (uint32_t i = 0; i < *len; i++)
		key[i] = alphabet[sbt_rand(s) % sizeof alphabet];
}

static void assert_matches_model(const struct sb_kv_entry *e, const struct model_entry *m)
{
	assert_int_equal(e->key_len, m->key_len);
	assert_memory_equal(e->key, m->key, m->key_len);
	assert_int_equal(e->offset, m->offset);
	assert_int_equal(e->timestamp_ms, m->offset * 3 - 7);
	assert_int_equal(e->flags, m->flags);
	assert_int_equal(e->value_len, m->value_len);
	for (uint32_t i = 0; i < m->value_len; i++)
		assert_int_equal(e->value[i], value_byte(m->offset, i));
	assert_int_equal(e->headers_len, m->headers_len);
	for (uint32_t i = 0; i < m->headers_len; i++)
		assert_int_equal(e->headers[i], header_byte(m->offset, i));
}

/* Index of the first model entry with key >= key (n if none). */
static size_t model_lower_bound(const struct model_entry *m, size_t n, const uint8_t *key,
                                uint32_t len)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (model_key_cmp(m[mid].key, m[mid].key_len, key, len) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void assert_seek_matches(struct sb_memtable *mt, const struct model_entry *all, size_t n_all,
                                const struct model_entry *latest, size_t n_latest,
                                const uint8_t *key, uint32_t len)
{
	struct sb_memtable_iter it;
	struct sb_kv_entry got;
	for (int latest_only = 0; latest_only <= 1; latest_only++) {
		const struct model_entry *m = latest_only ? latest : all;
		size_t n = latest_only ? n_latest : n_all;
		size_t i = model_lower_bound(m, n, key, len);
		sb_memtable_iter_init(mt, &it, latest_only);
		sb_memtable_iter_seek(&it, key, len);
		for (size_t k = i; k < i + 3 && k <= n; k++) {
			if (k == n) {
				assert_int_equal(sb_memtable_iter_next(&it, &got), SB_ENOTFOUND);
				break;
			}
			assert_int_equal(sb_memtable_iter_next(&it, &got), 0);
			assert_matches_model(&got, &m[k]);
		}
	}
}

static void test_random_ops_match_sorted_model(void **state)
{
	(void)state;
	struct model_entry *all = calloc(MODEL_OPS, sizeof *all);
	struct model_entry *latest = calloc(MODEL_OPS, sizeof *latest);
	struct model_entry *pool = calloc(MODEL_POOL, sizeof *pool);
	uint8_t *buf = malloc(64);
	uint64_t s = 20240611;
	struct sb_memtable *mt = new_table(CAP_BIG);
	struct sb_kv_entry got;
	uint64_t key_bytes = 0, value_bytes = 0, headers_bytes = 0, tombstones = 0;

	for (int i = 0; i < MODEL_POOL; i++)
		random_key(&s, pool[i].key, &pool[i].key_len, 1, MODEL_KEY_MAX);
	int64_t offset = 1000;
	for (size_t i = 0; i < MODEL_OPS; i++) {
		struct model_entry *m = &all[i];
		*m = pool[sbt_rand(&s) % MODEL_POOL];
		m->offset = offset;
		offset += 1 + (int64_t)(sbt_rand(&s) % 3); /* unkeyed records between */
		m->flags = sbt_rand(&s) % 100 < 15 ? SB_KV_TOMBSTONE : 0;
		m->value_len = m->flags ? 0 : (uint32_t)(sbt_rand(&s) % 41);
		m->headers_len = (uint32_t)(sbt_rand(&s) % 7);
		uint8_t value[40], headers[6];
		for (uint32_t k = 0; k < m->value_len; k++)
			value[k] = value_byte(m->offset, k);
		for (uint32_t k = 0; k < m->headers_len; k++)
			headers[k] = header_byte(m->offset, k);
		struct sb_kv_entry e = {.key = m->key,
		                        .key_len = m->key_len,
		                        .offset = m->offset,
		                        .timestamp_ms = m->offset * 3 - 7,
		                        .flags = m->flags,
		                        .value = value,
		                        .value_len = m->value_len,
		                        .headers = headers,
		                        .headers_len = m->headers_len};
		assert_int_equal(sb_memtable_put(mt, &e), 0);
		key_bytes += m->key_len;
		value_bytes += m->value_len;
		headers_bytes += m->headers_len;
		tombstones += m->flags != 0;
		if (i % 25000 == 24999)
			assert_int_equal(sb_memtable_validate(mt), 0);
	}
	assert_int_equal(sb_memtable_min_offset(mt), all[0].offset);
	assert_int_equal(sb_memtable_max_offset(mt), all[MODEL_OPS - 1].offset);
	qsort(all, MODEL_OPS, sizeof *all, model_cmp);
	size_t n_latest = 0;
	for (size_t i = 0; i < MODEL_OPS; i++)
		if (i == 0 || model_key_cmp(all[i].key, all[i].key_len, all[i - 1].key,
		                            all[i - 1].key_len) != 0)
			latest[n_latest++] = all[i];

	/* Iteration, both modes, equals the model exactly. */
	struct sb_memtable_iter it;
	sb_memtable_iter_init(mt, &it, 0);
	for (size_t i = 0; i < MODEL_OPS; i++) {
		assert_int_equal(sb_memtable_iter_next(&it, &got), 0);
		assert_matches_model(&got, &all[i]);
	}
	assert_int_equal(sb_memtable_iter_next(&it, &got), SB_ENOTFOUND);
	sb_memtable_iter_init(mt, &it, 1);
	for (size_t i = 0; i < n_latest; i++) {
		assert_int_equal(sb_memtable_iter_next(&it, &got), 0);
		assert_matches_model(&got, &latest[i]);
	}
	assert_int_equal(sb_memtable_iter_next(&it, &got), SB_ENOTFOUND);

	/* get: every pool key (newest version or absent), and absent keys. */
	for (int i = 0; i < MODEL_POOL; i++) {
		size_t k = model_lower_bound(latest, n_latest, pool[i].key, pool[i].key_len);
		int rc = sb_memtable_get(mt, pool[i].key, pool[i].key_len, &got);
		if (k < n_latest && model_key_cmp(latest[k].key, latest[k].key_len, pool[i].key,
		                                  pool[i].key_len) == 0) {
			assert_int_equal(rc, 0);
			assert_matches_model(&got, &latest[k]);
		} else {
			assert_int_equal(rc, SB_ENOTFOUND);
		}
	}
	for (int i = 0; i < 1000; i++) {
		uint32_t len;
		random_key(&s, buf, &len, MODEL_KEY_MAX + 1, MODEL_KEY_MAX + 1);
		assert_int_equal(sb_memtable_get(mt, buf, len, &got), SB_ENOTFOUND);
	}

	/* seek: at every present key, just after it, and at random probes. */
	for (size_t i = 0; i < n_latest; i += 3) {
		memcpy(buf, latest[i].key, latest[i].key_len);
		assert_seek_matches(mt, all, MODEL_OPS, latest, n_latest, buf, latest[i].key_len);
		buf[latest[i].key_len] = 0x00;
		assert_seek_matches(mt, all, MODEL_OPS, latest, n_latest, buf,
		                    latest[i].key_len + 1);
	}
	for (int i = 0; i < 2000; i++) {
		uint32_t len;
		random_key(&s, buf, &len, 0, MODEL_KEY_MAX + 1);
		assert_seek_matches(mt, all, MODEL_OPS, latest, n_latest, buf, len);
	}

	struct sb_memtable_stats st;
	sb_memtable_stats(mt, &st);
	assert_int_equal(st.entries, MODEL_OPS);
	assert_int_equal(st.distinct_keys, n_latest);
	assert_int_equal(st.tombstones, tombstones);
	assert_int_equal(st.key_bytes, key_bytes);
	assert_int_equal(st.value_bytes, value_bytes);
	assert_int_equal(st.headers_bytes, headers_bytes);
	assert_int_equal(sb_memtable_count(mt), MODEL_OPS);
	assert_int_equal(sb_memtable_validate(mt), 0);
	sb_memtable_free(mt);
	free(buf);
	free(pool);
	free(latest);
	free(all);
}

static void test_seek_lands_on_first_key_at_or_after_target(void **state)
{
	(void)state;
	struct sb_memtable *mt = new_table(CAP_BIG);
	struct sb_memtable_iter it;
	struct sb_kv_entry got;

	/* Empty table: every seek is at the end. */
	sb_memtable_iter_init(mt, &it, 0);
	sb_memtable_iter_seek(&it, (const uint8_t *)"a", 1);
	assert_int_equal(sb_memtable_iter_next(&it, &got), SB_ENOTFOUND);

	assert_int_equal(put_str(mt, "b", 1, "b1"), 0);
	assert_int_equal(put_str(mt, "d", 2, "d2"), 0);
	assert_int_equal(put_str(mt, "f", 3, "f3"), 0);
	assert_int_equal(put_str(mt, "b", 4, "b4"), 0);
	static const struct {
		const char *target;
		uint32_t len;
		const char *key; /* NULL: end */
		int64_t offset;
	} cases[] = {
	    {"", 0, "b", 4},       /* empty target: the start */
	    {"a", 1, "b", 4},      /* before the first key */
	    {"b", 1, "b", 4},      /* exact: the newest version */
	    {"b\x00", 2, "d", 2},  /* just after a key */
	    {"c", 1, "d", 2},      /* between */
	    {"d", 1, "d", 2},      /* exact, middle */
	    {"ezzz", 4, "f", 3},   /* longer, between */
	    {"f", 1, "f", 3},      /* exact, last */
	    {"f\x00", 2, NULL, 0}, /* just after the last */
	    {"g", 1, NULL, 0},     /* after the last */
	    {"\xff\xff", 2, NULL, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		for (int latest_only = 0; latest_only <= 1; latest_only++) {
			sb_memtable_iter_init(mt, &it, latest_only);
			sb_memtable_iter_seek(&it, (const uint8_t *)cases[i].target, cases[i].len);
			int rc = sb_memtable_iter_next(&it, &got);
			if (!cases[i].key) {
				assert_int_equal(rc, SB_ENOTFOUND);
				continue;
			}
			assert_int_equal(rc, 0);
			assert_int_equal(got.key_len, 1);
			assert_memory_equal(got.key, cases[i].key, 1);
			assert_int_equal(got.offset, cases[i].offset);
		}
	}
	/* After an exact seek, all versions continue with the older version;
	 * latest-only skips it. */
	sb_memtable_iter_init(mt, &it, 0);
	sb_memtable_iter_seek(&it, (const uint8_t *)"b", 1);
	assert_int_equal(sb_memtable_iter_next(&it, &got), 0);
	assert_int_equal(sb_memtable_iter_next(&it, &got), 0);
	assert_entry(&got, "b", 1, "b1");
	sb_memtable_iter_init(mt, &it, 1);
	sb_memtable_iter_seek(&it, (const uint8_t *)"b", 1);
	assert_int_equal(sb_memtable_iter_next(&it, &got), 0);
	assert_int_equal(sb_memtable_iter_next(&it, &got), 0);
	assert_entry(&got, "d", 2, "d2");
	/* An exhausted iterator can seek back. */
	while (sb_memtable_iter_next(&it, &got) == 0)
		;
	sb_memtable_iter_seek(&it, (const uint8_t *)"c", 1);
	assert_int_equal(sb_memtable_iter_next(&it, &got), 0);
	assert_entry(&got, "d", 2, "d2");
	sb_memtable_free(mt);
}

static void test_iterator_sees_the_snapshot_taken_at_init(void **state)
{
	(void)state;
	struct sb_memtable *mt = new_table(CAP_BIG);
	struct sb_memtable_iter all, latest, empty;
	struct sb_kv_entry got;
	sb_memtable_iter_init(mt, &empty, 0);
	assert_int_equal(put_str(mt, "a", 1, "a1"), 0);
	assert_int_equal(put_str(mt, "c", 2, "c2"), 0);
	sb_memtable_iter_init(mt, &all, 0);
	sb_memtable_iter_init(mt, &latest, 1);
	assert_int_equal(put_str(mt, "b", 3, "b3"), 0);
	assert_int_equal(put_str(mt, "a", 4, "a4"), 0); /* newer version, before a1 */
	assert_int_equal(put_str(mt, "d", 5, "d5"), 0);

	assert_int_equal(sb_memtable_iter_next(&empty, &got), SB_ENOTFOUND);
	for (int i = 0; i < 2; i++) {
		struct sb_memtable_iter *it = i ? &latest : &all;
		assert_int_equal(sb_memtable_iter_next(it, &got), 0);
		assert_entry(&got, "a", 1, "a1");
		assert_int_equal(sb_memtable_iter_next(it, &got), 0);
		assert_entry(&got, "c", 2, "c2");
		assert_int_equal(sb_memtable_iter_next(it, &got), SB_ENOTFOUND);
	}
	/* get is not bound to a snapshot; a new iterator sees everything. */
	assert_int_equal(get_str(mt, "a", &got), 0);
	assert_entry(&got, "a", 4, "a4");
	sb_memtable_iter_init(mt, &latest, 1);
	int n = 0;
	while (sb_memtable_iter_next(&latest, &got) == 0)
		n++;
	assert_int_equal(n, 4);
	sb_memtable_free(mt);
}

/* ---- accounting and the cap ---- */

static void test_accounting_is_exact_after_many_puts(void **state)
{
	(void)state;
	struct sb_memtable *mt = new_table(CAP_BIG);
	struct sb_memtable_stats st;
	uint8_t key[64], value[300], headers[20];
	uint64_t s = 77, kb = 0, vb = 0, hb = 0;
	const int n = 20000;

	assert_int_equal(sb_memtable_bytes(mt), 0); /* no block before the first put */
	assert_int_equal(sb_memtable_payload_bytes(mt), 0);
	memset(value, 'v', sizeof value);
	memset(headers, 'h', sizeof headers);
	for (int i = 0; i < n; i++) {
		struct sb_kv_entry e = {.key = key,
		                        .key_len = 1 + (uint32_t)(sbt_rand(&s) % 64),
		                        .offset = i,
		                        .value = value,
		                        .value_len = (uint32_t)(sbt_rand(&s) % 301),
		                        .headers = headers,
		                        .headers_len = (uint32_t)(sbt_rand(&s) % 21)};
		for (uint32_t k = 0; k < e.key_len; k++)
			key[k] = (uint8_t)sbt_rand(&s);
		assert_int_equal(sb_memtable_put(mt, &e), 0);
		kb += e.key_len;
		vb += e.value_len;
		hb += e.headers_len;
	}
	sb_memtable_stats(mt, &st);
	assert_int_equal(st.entries, n);
	assert_int_equal(st.key_bytes, kb);
	assert_int_equal(st.value_bytes, vb);
	assert_int_equal(st.headers_bytes, hb);
	uint64_t nodes = 0, node_bytes = 0;
	for (int h = 1; h <= SB_MEMTABLE_HEIGHT_MAX; h++) {
		nodes += st.nodes_by_height[h];
		node_bytes += st.nodes_by_height[h] * SB_MEMTABLE_NODE_BYTES(h);
	}
	assert_int_equal(st.nodes_by_height[0], 0);
	assert_int_equal(nodes, n);
	assert_int_equal(st.node_bytes, node_bytes);
	assert_int_equal(sb_memtable_payload_bytes(mt), kb + vb + hb + node_bytes);
	/* Heights: P(1) = 3/4, P(2) = 3/16. */
	assert_in_range(st.nodes_by_height[1], n * 72 / 100, n * 78 / 100);
	assert_in_range(st.nodes_by_height[2], n * 16 / 100, n * 22 / 100);
	assert_in_range(st.height, 5, SB_MEMTABLE_HEIGHT_MAX);
	/* Arena: only ordinary blocks so far, each exactly the block size. The
	 * rest is the tails of full blocks (each smaller than one record), the
	 * unused parts of the current index and record blocks, and padding of
	 * nodes and records to 8 bytes. */
	assert_int_equal(sb_memtable_bytes(mt), st.blocks * SB_MEMTABLE_BLOCK_BYTES);
	assert_int_equal(st.arena_bytes, sb_memtable_bytes(mt));
	uint64_t waste = sb_memtable_bytes(mt) - sb_memtable_payload_bytes(mt);
	assert_true(waste < st.blocks * (SB_MEMTABLE_BLOCK_HEADER_BYTES + 420) +
	                        2 * SB_MEMTABLE_BLOCK_BYTES + (uint64_t)n * 7);

	/* A big entry's record gets a dedicated block of exactly its size. */
	uint64_t bytes0 = sb_memtable_bytes(mt), payload0 = sb_memtable_payload_bytes(mt);
	uint64_t big_len = SB_MEMTABLE_BLOCK_BYTES; /* > a quarter block */
	uint8_t *big = calloc(1, big_len);
	struct sb_kv_entry e = {.key = (const uint8_t *)"big",
	                        .key_len = 3,
	                        .offset = n,
	                        .value = big,
	                        .value_len = (uint32_t)big_len,
	                        .headers = headers,
	                        .headers_len = 5};
	assert_int_equal(sb_memtable_put(mt, &e), 0);
	struct sb_memtable_stats st2;
	sb_memtable_stats(mt, &st2);
	uint64_t node = st2.node_bytes - st.node_bytes; /* NODE_BYTES(its height) */
	assert_int_equal(sb_memtable_payload_bytes(mt) - payload0, node + 3 + big_len + 5);
	/* The record: its 24-byte header, key, value and headers, rounded to 8. */
	uint64_t record = (24 + 3 + big_len + 5 + 7) & ~7ull;
	uint64_t grown = sb_memtable_bytes(mt) - bytes0;
	if (st2.blocks == st.blocks + 2) /* the index block was full too */
		grown -= SB_MEMTABLE_BLOCK_BYTES;
	else
		assert_int_equal(st2.blocks, st.blocks + 1);
	assert_int_equal(grown, SB_MEMTABLE_BLOCK_HEADER_BYTES + record);
	assert_int_equal(sb_memtable_validate(mt), 0);
	free(big);
	sb_memtable_free(mt);
}

static void test_put_past_cap_returns_etoobig_and_table_stays_intact(void **state)
{
	(void)state;
	struct sb_memtable *mt = NULL;
	assert_int_equal(sb_memtable_new(SB_MEMTABLE_BYTES_MIN - 1, &mt), SB_EINVAL);
	assert_null(mt);
	assert_int_equal(sb_memtable_new(SB_MEMTABLE_BYTES_MAX + 1, &mt), SB_EINVAL);
	assert_null(mt);

	/* 1.125 MiB: an index block, three record blocks and a last, smaller
	 * record block of 128 KiB. */
	const uint64_t cap = (1ull << 20) + (128ull << 10);
	mt = new_table(cap);
	uint8_t key[16], value[100];
	memset(value, 'x', sizeof value);
	int64_t off = 0;
	int rc;
	for (;;) {
		memcpy(key, &off, sizeof off);
		memcpy(key + 8, "padding!", 8);
		struct sb_kv_entry e = {
		    .key = key, .key_len = 16, .offset = off, .value = value, .value_len = 100};
		uint64_t count = sb_memtable_count(mt), payload = sb_memtable_payload_bytes(mt);
		rc = sb_memtable_put(mt, &e);
		if (rc) {
			assert_int_equal(sb_memtable_count(mt), count);
			assert_int_equal(sb_memtable_payload_bytes(mt), payload);
			break;
		}
		off++;
		assert_true(off < 100000);
	}
	assert_int_equal(rc, SB_ETOOBIG);
	assert_int_equal(sb_memtable_bytes(mt), cap); /* the cap is reached, not passed */
	assert_int_equal(sb_memtable_count(mt), off);
	assert_int_equal(sb_memtable_max_offset(mt), off - 1);
	assert_int_equal(sb_memtable_validate(mt), 0);
	for (int64_t i = 0; i < off; i++) {
		struct sb_kv_entry got;
		memcpy(key, &i, sizeof i);
		assert_int_equal(sb_memtable_get(mt, key, 16, &got), 0);
		assert_int_equal(got.offset, i);
	}
	sb_memtable_free(mt);

	/* An entry bigger than the whole cap, into an empty table. */
	mt = new_table(SB_MEMTABLE_BYTES_MIN);
	uint8_t *huge = calloc(1, SB_MEMTABLE_BYTES_MIN);
	struct sb_kv_entry e = {.key = (const uint8_t *)"k",
	                        .key_len = 1,
	                        .offset = 1,
	                        .value = huge,
	                        .value_len = (uint32_t)SB_MEMTABLE_BYTES_MIN};
	assert_int_equal(sb_memtable_put(mt, &e), SB_ETOOBIG);
	assert_int_equal(sb_memtable_bytes(mt), 0);
	assert_int_equal(sb_memtable_count(mt), 0);
	assert_int_equal(sb_memtable_max_offset(mt), -1);
	e.value_len = 1000; /* the same offset is still free */
	assert_int_equal(sb_memtable_put(mt, &e), 0);
	assert_int_equal(sb_memtable_validate(mt), 0);
	free(huge);
	sb_memtable_free(mt);
}

/* ---- the validator ---- */

/* Runs the validator with stderr captured into buf. */
static int validate_capturing(struct sb_memtable *mt, char *buf, size_t cap)
{
	FILE *tmp = tmpfile();
	assert_non_null(tmp);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
	int rc = sb_memtable_validate(mt);
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	rewind(tmp);
	size_t n = fread(buf, 1, cap - 1, tmp);
	buf[n] = '\0';
	fclose(tmp);
	return rc;
}

static struct sb_memtable *table_of(int n)
{
	struct sb_memtable *mt = new_table(CAP_BIG);
	uint64_t s = 5;
	for (int i = 0; i < n; i++) {
		char key[32], value[32];
		snprintf(key, sizeof key, "key-%llu", (unsigned long long)(sbt_rand(&s) % 700));
		snprintf(value, sizeof value, "value-%d", i);
		assert_int_equal(put_str(mt, key, i, value), 0);
	}
	return mt;
}

static void test_validator_catches_swapped_next_pointers(void **state)
{
	(void)state;
	char out[4096];
	struct sb_memtable *mt = table_of(1000);
	assert_int_equal(validate_capturing(mt, out, sizeof out), 0);
	assert_string_equal(out, "");
	assert_int_equal(sb_memtable_debug_corrupt(mt, SB_MEMTABLE_CORRUPT_SWAP_ADJACENT), 0);
	assert_int_equal(validate_capturing(mt, out, sizeof out), SB_ECORRUPT);
	assert_non_null(strstr(out, "event=memtable_corrupt"));
	assert_non_null(strstr(out, "check=order"));
	sb_memtable_free(mt);
}

static void test_validator_catches_each_damaged_invariant(void **state)
{
	(void)state;
	static const struct {
		enum sb_memtable_corruption what;
		const char *check;
	} cases[] = {
	    {SB_MEMTABLE_CORRUPT_SKIP_IN_LEVEL0, "check=sublist"},
	    {SB_MEMTABLE_CORRUPT_COUNT, "check=count"},
	    {SB_MEMTABLE_CORRUPT_PAYLOAD_BYTES, "check=bytes"},
	    {SB_MEMTABLE_CORRUPT_MAX_OFFSET, "check=offset_range"},
	};
	char out[4096];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct sb_memtable *mt = table_of(1000);
		assert_int_equal(sb_memtable_validate(mt), 0);
		assert_int_equal(sb_memtable_debug_corrupt(mt, cases[i].what), 0);
		assert_int_equal(validate_capturing(mt, out, sizeof out), SB_ECORRUPT);
		if (!strstr(out, cases[i].check))
			fail_msg("corruption %d: wanted %s, validator said: %s", (int)cases[i].what,
			         cases[i].check, out);
		sb_memtable_free(mt);
	}
	/* Nothing to damage in an empty table. */
	struct sb_memtable *mt = new_table(CAP_BIG);
	assert_int_equal(sb_memtable_validate(mt), 0);
	assert_int_equal(sb_memtable_debug_corrupt(mt, SB_MEMTABLE_CORRUPT_SWAP_ADJACENT),
	                 SB_ENOTFOUND);
	assert_int_equal(sb_memtable_debug_corrupt(mt, SB_MEMTABLE_CORRUPT_MAX_OFFSET),
	                 SB_ENOTFOUND);
	sb_memtable_free(mt);
}

/* ---- one writer, three readers ---- */

#define CONC_PUTS 200000
#define CONC_KEYS 50000
#define CONC_READERS 3
#define CONC_BASE 1000 /* offset of put i is CONC_BASE + i */

struct conc {
	struct sb_memtable *mt;
	_Atomic uint64_t published; /* puts that have returned */
	_Atomic int done;
	_Atomic uint64_t failures;
	_Atomic uint64_t gets_during_writes;
	_Atomic uint64_t iterations;
	char first_failure[512];
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

/* Everything about put i is a function of i. */
static uint32_t conc_key(uint64_t i, uint8_t *buf)
{
	return (uint32_t)snprintf((char *)buf, 24, "key-%llu",
	                          (unsigned long long)(mix64(i) % CONC_KEYS));
}
static bool conc_is_delete(uint64_t i)
{
	return mix64(i ^ 0xabcdefull) % 8 == 0;
}
static uint32_t conc_value(uint64_t i, uint8_t *buf)
{
	uint32_t len = conc_is_delete(i) ? 0 : (uint32_t)(mix64(i + 7) % 48);
	for (uint32_t k = 0; k < len; k++)
		buf[k] = (uint8_t)(i * 13 + k);
	return len;
}

static void conc_fail(struct conc *c, const char *fmt, ...)
{
	if (atomic_fetch_add(&c->failures, 1) == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->first_failure, sizeof c->first_failure, fmt, ap);
		va_end(ap);
	}
}

/* Is e exactly what put (e->offset - CONC_BASE) wrote, with that put
 * already started (below `limit` puts)? */
static bool conc_entry_ok(struct conc *c, const struct sb_kv_entry *e, uint64_t limit)
{
	uint8_t key[24], value[48];
	if (e->offset < CONC_BASE || (uint64_t)(e->offset - CONC_BASE) >= limit) {
		conc_fail(c, "offset %lld outside the puts made", (long long)e->offset);
		return false;
	}
	uint64_t i = (uint64_t)(e->offset - CONC_BASE);
	uint32_t klen = conc_key(i, key), vlen = conc_value(i, value);
	int64_t h;
	if (e->key_len != klen || memcmp(e->key, key, klen) != 0 ||
	    e->flags != (conc_is_delete(i) ? SB_KV_TOMBSTONE : 0u) ||
	    e->timestamp_ms != e->offset * 10 || e->value_len != vlen ||
	    (vlen && memcmp(e->value, value, vlen) != 0) || e->headers_len != sizeof h) {
		conc_fail(c, "entry at offset %lld does not match its put", (long long)e->offset);
		return false;
	}
	memcpy(&h, e->headers, sizeof h);
	if (h != e->offset) {
		conc_fail(c, "headers at offset %lld do not match", (long long)e->offset);
		return false;
	}
	return true;
}

static void *conc_writer(void *arg)
{
	struct conc *c = arg;
	uint8_t key[24], value[48];
	for (uint64_t i = 0; i < CONC_PUTS; i++) {
		int64_t off = CONC_BASE + (int64_t)i;
		struct sb_kv_entry e = {.key = key,
		                        .key_len = conc_key(i, key),
		                        .offset = off,
		                        .timestamp_ms = off * 10,
		                        .value = value,
		                        .value_len = conc_value(i, value),
		                        .flags = conc_is_delete(i) ? SB_KV_TOMBSTONE : 0,
		                        .headers = (const uint8_t *)&off,
		                        .headers_len = sizeof off};
		int rc = sb_memtable_put(c->mt, &e);
		if (rc) {
			conc_fail(c, "put %llu: %s", (unsigned long long)i, sb_strerror(rc));
			break;
		}
		atomic_store_explicit(&c->published, i + 1, memory_order_release);
	}
	atomic_store(&c->done, 1);
	return NULL;
}

/* Walks from a random key (or the start) checking order and contents. */
static void conc_iterate(struct conc *c, uint64_t *s, bool full)
{
	struct sb_memtable_iter it;
	struct sb_kv_entry e, prev = {0};
	uint8_t key[24];
	int latest_only = (int)(sbt_rand(s) & 1);
	uint64_t before = atomic_load_explicit(&c->published, memory_order_acquire);
	sb_memtable_iter_init(c->mt, &it, latest_only);
	if (!full)
		sb_memtable_iter_seek(&it, key, conc_key(sbt_rand(s) % CONC_PUTS, key));
	uint64_t n = 0;
	while ((full || n < 2000) && sb_memtable_iter_next(&it, &e) == 0) {
		uint64_t limit = atomic_load_explicit(&c->published, memory_order_acquire) + 1;
		if (!conc_entry_ok(c, &e, limit))
			return;
		if (n > 0) {
			int k = sb_kv_key_cmp(prev.key, prev.key_len, e.key, e.key_len);
			if (k > 0 || (k == 0 && (latest_only || prev.offset <= e.offset))) {
				conc_fail(c, "iteration out of order at offset %lld",
				          (long long)e.offset);
				return;
			}
		}
		prev = e;
		n++;
	}
	uint64_t after = atomic_load_explicit(&c->published, memory_order_acquire);
	/* A full all-versions walk sees exactly the snapshot: at least the puts
	 * done before init, at most those done by the end. */
	if (full && !latest_only && (n < before || n > after + 1))
		conc_fail(c, "full iteration saw %llu entries, puts were %llu..%llu",
		          (unsigned long long)n, (unsigned long long)before,
		          (unsigned long long)after);
	atomic_fetch_add(&c->iterations, 1);
}

static void *conc_reader(void *arg)
{
	struct conc *c = arg;
	uint64_t s = (uint64_t)(uintptr_t)&s | 1;
	uint8_t key[24];
	for (unsigned round = 0; !atomic_load(&c->done) && !atomic_load(&c->failures); round++) {
		uint64_t pub = atomic_load_explicit(&c->published, memory_order_acquire);
		if (pub == 0) {
			sched_yield();
			continue;
		}
		for (int k = 0; k < 1000; k++) {
			struct sb_kv_entry e;
			uint64_t f = atomic_load_explicit(&c->published, memory_order_acquire);
			if (k % 2 && f < CONC_PUTS) {
				/* The write frontier: put f is in flight; once linked
				 * it must be complete. */
				int rc = sb_memtable_get(c->mt, key, conc_key(f, key), &e);
				uint64_t limit =
				    atomic_load_explicit(&c->published, memory_order_acquire) + 1;
				if (rc == 0 && !conc_entry_ok(c, &e, limit))
					return NULL;
				continue;
			}
			uint64_t j = sbt_rand(&s) % pub;
			uint32_t klen = conc_key(j, key);
			int rc = sb_memtable_get(c->mt, key, klen, &e);
			if (rc) {
				conc_fail(c, "get of published put %llu: %s", (unsigned long long)j,
				          sb_strerror(rc));
				return NULL;
			}
			uint64_t limit =
			    atomic_load_explicit(&c->published, memory_order_acquire) + 1;
			if (e.offset < CONC_BASE + (int64_t)j) {
				conc_fail(c, "get of put %llu returned the older offset %lld",
				          (unsigned long long)j, (long long)e.offset);
				return NULL;
			}
			if (!conc_entry_ok(c, &e, limit))
				return NULL;
		}
		if (pub < CONC_PUTS)
			atomic_fetch_add(&c->gets_during_writes, 1000);
		conc_iterate(c, &s, round % 8 == 7);
	}
	return NULL;
}

static void test_readers_see_consistent_entries_while_writer_puts(void **state)
{
	(void)state;
	static struct conc c;
	pthread_t writer, readers[CONC_READERS];
	memset(&c, 0, sizeof c);
	c.mt = new_table(CAP_BIG);
	for (int i = 0; i < CONC_READERS; i++)
		assert_int_equal(pthread_create(&readers[i], NULL, conc_reader, &c), 0);
	assert_int_equal(pthread_create(&writer, NULL, conc_writer, &c), 0);
	assert_int_equal(pthread_join(writer, NULL), 0);
	for (int i = 0; i < CONC_READERS; i++)
		assert_int_equal(pthread_join(readers[i], NULL), 0);
	if (atomic_load(&c.failures))
		fail_msg("%llu failures, first: %s", (unsigned long long)atomic_load(&c.failures),
		         c.first_failure);
	assert_true(atomic_load(&c.gets_during_writes) > 0);
	assert_true(atomic_load(&c.iterations) > 0);
	assert_int_equal(sb_memtable_count(c.mt), CONC_PUTS);
	assert_int_equal(sb_memtable_validate(c.mt), 0);

	/* Afterwards every key holds exactly its last put. */
	static int64_t last[CONC_KEYS];
	uint8_t key[24];
	memset(last, 0xff, sizeof last);
	for (uint64_t i = 0; i < CONC_PUTS; i++)
		last[mix64(i) % CONC_KEYS] = (int64_t)i;
	for (uint64_t id = 0; id < CONC_KEYS; id++) {
		struct sb_kv_entry e;
		uint32_t klen =
		    (uint32_t)snprintf((char *)key, sizeof key, "key-%llu", (unsigned long long)id);
		int rc = sb_memtable_get(c.mt, key, klen, &e);
		if (last[id] < 0) {
			assert_int_equal(rc, SB_ENOTFOUND);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_int_equal(e.offset, CONC_BASE + last[id]);
		assert_true(conc_entry_ok(&c, &e, CONC_PUTS));
	}
	sb_memtable_free(c.mt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_put_then_get_round_trips_every_field),
	    cmocka_unit_test(test_put_rejects_invalid_entries_and_leaves_table_unchanged),
	    cmocka_unit_test(test_put_rejects_offset_not_above_previous),
	    cmocka_unit_test(test_get_returns_newest_version_after_overwrites),
	    cmocka_unit_test(test_tombstone_is_found_flagged_and_shadows_older_versions),
	    cmocka_unit_test(test_key_order_is_bytewise_unsigned_then_shorter_first),
	    cmocka_unit_test(test_random_ops_match_sorted_model),
	    cmocka_unit_test(test_seek_lands_on_first_key_at_or_after_target),
	    cmocka_unit_test(test_iterator_sees_the_snapshot_taken_at_init),
	    cmocka_unit_test(test_accounting_is_exact_after_many_puts),
	    cmocka_unit_test(test_put_past_cap_returns_etoobig_and_table_stays_intact),
	    cmocka_unit_test(test_validator_catches_swapped_next_pointers),
	    cmocka_unit_test(test_validator_catches_each_damaged_invariant),
	    cmocka_unit_test(test_readers_see_consistent_entries_while_writer_puts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
