/* test_batch.c - record batches (storage/sb_batch.h): builder/iterator round
 * trips, byte-exact encoding against an independent hand encoder and the
 * docs/FORMAT.md example, CRC coverage, truncation, header bounds, structural
 * validation of hand-crafted records, builder limits, and a seeded
 * random-input loop that must never crash and must agree with a reference
 * decoder written straight from the format description.
 */
#include "sb_test.h"

#include "sb_batch.h"
#include "sb_crc32c.h"
#include "sb_endian.h"
#include "sb_limits.h"
#include "sb_varint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Helpers ---- */

/* Copies a batch into a buffer of exactly len bytes so that ASan flags any
 * read past its end. */
static uint8_t *exact_copy(const void *src, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	assert_non_null(p);
	if (len)
		memcpy(p, src, len);
	return p;
}

/* Builds recs[0..n) into an exact-size heap copy. */
static uint8_t *build(const struct sb_record_in *recs, size_t n, size_t *len)
{
	struct sb_batch_builder b;
	const void *out;
	assert_int_equal(sb_batch_builder_init(&b, SB_BATCH_BYTES_MAX), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(sb_batch_builder_add(&b, &recs[i]), 0);
	assert_int_equal(sb_batch_builder_finish(&b, &out, len), 0);
	assert_int_equal(*len, sb_batch_builder_size(&b));
	uint8_t *copy = exact_copy(out, *len);
	sb_batch_builder_fini(&b);
	return copy;
}

static void fix_crc(uint8_t *buf, size_t len)
{
	sb_store32(buf + SB_BATCH_OFF_CRC,
	           sb_crc32c(buf + SB_BATCH_CRC_START, len - SB_BATCH_CRC_START));
}

static void assert_nullable_eq(const void *want, uint32_t want_len, const uint8_t *got,
                               int32_t got_len)
{
	if (!want) {
		assert_null(got);
		assert_int_equal(got_len, -1);
		return;
	}
	assert_non_null(got);
	assert_int_equal(got_len, (int32_t)want_len);
	if (want_len)
		assert_memory_equal(got, want, want_len);
}

static void assert_headers_eq(const struct sb_record_in *want, const struct sb_record_view *r)
{
	const uint8_t *p = r->headers;
	struct sb_header_view h;
	assert_int_equal(r->header_count, want->header_count);
	for (uint32_t i = 0; i < want->header_count; i++) {
		const struct sb_header_in *w = &want->headers[i];
		assert_int_equal(sb_record_header_next(&p, r->headers_end, &h), 1);
		assert_int_equal(h.key_len, w->key_len);
		if (w->key_len)
			assert_memory_equal(h.key, w->key, w->key_len);
		assert_nullable_eq(w->value, w->value_len, h.value, h.value_len);
	}
	assert_int_equal(sb_record_header_next(&p, r->headers_end, &h), 0);
}

/* Builds recs, validates the result and checks every decoded field. */
static void check_round_trip(const struct sb_record_in *recs, size_t n)
{
	struct sb_batch_header h;
	struct sb_record_iter it;
	struct sb_record_view r;
	size_t len;
	uint8_t *buf = build(recs, n, &len);
	int64_t max_ts = recs[0].timestamp_ms;
	int keyed = 0;
	for (size_t i = 1; i < n; i++)
		max_ts = recs[i].timestamp_ms > max_ts ? recs[i].timestamp_ms : max_ts;
	for (size_t i = 0; i < n; i++)
		keyed |= recs[i].key && recs[i].key_len > 0;

	assert_int_equal(sb_batch_validate(buf, len, &h), 0);
	assert_int_equal(sb_batch_total_bytes(&h), len);
	assert_int_equal(h.base_offset, 0);
	assert_int_equal(h.leader_epoch, 0);
	assert_int_equal(h.magic, SB_BATCH_MAGIC);
	assert_int_equal(h.attributes, keyed ? 0 : SB_BATCH_ATTR_NO_KEYS); /* the key store skips keyless batches */
	assert_int_equal(h.record_count, n);
	assert_int_equal(h.last_offset_delta, n - 1);
	assert_int_equal(h.first_timestamp_ms, recs[0].timestamp_ms);
	assert_int_equal(h.max_timestamp_ms, max_ts);
	assert_int_equal(h.producer_id, -1);
	assert_int_equal(h.producer_epoch, -1);
	assert_int_equal(h.base_sequence, -1);
	assert_int_equal(sb_batch_next_offset(&h), (int64_t)n);

	sb_record_iter_init(&it, buf, &h);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(sb_record_iter_next(&it, &r), 1);
		assert_int_equal(r.offset, (int64_t)i);
		assert_int_equal(r.timestamp_ms, recs[i].timestamp_ms);
		assert_int_equal(r.attributes, recs[i].attributes);
		assert_nullable_eq(recs[i].key, recs[i].key_len, r.key, r.key_len);
		assert_nullable_eq(recs[i].value, recs[i].value_len, r.value, r.value_len);
		assert_headers_eq(&recs[i], &r);
	}
	assert_int_equal(sb_record_iter_next(&it, &r), 0);
	free(buf);
}

/* A hand encoder written from the format description, independent of the
 * builder, for crafting well-formed and deliberately malformed records. */
struct wbuf {
	uint8_t b[8192];
	size_t n;
};

static void w_uv(struct wbuf *w, uint64_t v)
{
	w->n += sb_uvarint_put(w->b + w->n, v);
}
static void w_zz(struct wbuf *w, int64_t v)
{
	w->n += sb_varint_put(w->b + w->n, v);
}
static void w_raw(struct wbuf *w, const void *p, size_t n)
{
	memcpy(w->b + w->n, p, n);
	w->n += n;
}
static void w_str(struct wbuf *w, const char *s) /* NULL = null */
{
	if (!s) {
		w_zz(w, -1);
		return;
	}
	w_zz(w, (int64_t)strlen(s));
	w_raw(w, s, strlen(s));
}

/* Appends one record with no headers; its length prefix is off by adjust. */
static void w_record(struct wbuf *w, int64_t ts_delta, uint64_t offset_delta, const char *key,
                     const char *value, int adjust)
{
	struct wbuf body = {.n = 0};
	body.b[body.n++] = 0; /* attributes */
	w_zz(&body, ts_delta);
	w_uv(&body, offset_delta);
	w_str(&body, key);
	w_str(&body, value);
	w_uv(&body, 0); /* header count */
	w_uv(w, (uint64_t)((int64_t)body.n + adjust));
	w_raw(w, body.b, body.n);
}

/* Wraps a hand-encoded record section in a header with a correct CRC, so
 * that only the record structure can be wrong. */
static uint8_t *craft_batch(const struct wbuf *records, uint32_t count, size_t *len)
{
	*len = SB_BATCH_HEADER_BYTES + records->n;
	uint8_t *p = calloc(1, *len);
	assert_non_null(p);
	sb_store32(p + SB_BATCH_OFF_LENGTH, (uint32_t)(*len - SB_BATCH_PREFIX_BYTES));
	p[SB_BATCH_OFF_MAGIC] = SB_BATCH_MAGIC;
	sb_store32(p + SB_BATCH_OFF_LAST_DELTA, count - 1);
	sb_store64(p + SB_BATCH_OFF_FIRST_TS, 1000);
	sb_store64(p + SB_BATCH_OFF_MAX_TS, 1000);
	sb_store64(p + SB_BATCH_OFF_PRODUCER_ID, (uint64_t)-1);
	sb_store16(p + SB_BATCH_OFF_PRODUCER_EPOCH, (uint16_t)-1);
	sb_store32(p + SB_BATCH_OFF_BASE_SEQ, (uint32_t)-1);
	sb_store32(p + SB_BATCH_OFF_COUNT, count);
	memcpy(p + SB_BATCH_HEADER_BYTES, records->b, records->n);
	fix_crc(p, *len);
	return p;
}

/* verify must pass (the CRC is right) and validate must fail. */
static void assert_structure_rejected(const struct wbuf *records, uint32_t count)
{
	struct sb_batch_header h;
	size_t len;
	uint8_t *buf = craft_batch(records, count, &len);
	assert_int_equal(sb_batch_verify(buf, len, &h), 0);
	assert_int_equal(sb_batch_validate(buf, len, &h), SB_ECORRUPT);
	free(buf);
}

static uint8_t *small_batch(size_t *len)
{
	static const struct sb_header_in hd[] = {{"h", 1, "x", 1}};
	const struct sb_record_in recs[] = {
	    {.key = "k1", .key_len = 2, .value = "v1", .value_len = 2, .timestamp_ms = 10},
	    {.key = "k2",
	     .key_len = 2,
	     .value = NULL,
	     .headers = hd,
	     .header_count = 1,
	     .timestamp_ms = 12,
	     .attributes = SB_RECORD_ATTR_TOMBSTONE},
	};
	return build(recs, 2, len);
}

/* ---- Round trips ---- */

static void test_null_and_empty_keys_and_values_round_trip(void **state)
{
	(void)state;
	const struct sb_record_in recs[] = {
	    {.key = NULL, .value = NULL, .timestamp_ms = 1},
	    {.key = "", .key_len = 0, .value = "", .value_len = 0, .timestamp_ms = 2},
	    {.key = NULL, .value = "", .value_len = 0, .timestamp_ms = 3},
	    {.key = "", .key_len = 0, .value = NULL, .timestamp_ms = 4},
	    {.key = "key", .key_len = 3, .value = "value", .value_len = 5, .timestamp_ms = 5},
	    {.key = "gone",
	     .key_len = 4,
	     .attributes = SB_RECORD_ATTR_TOMBSTONE,
	     .timestamp_ms = 6},
	};
	check_round_trip(recs, sizeof(recs) / sizeof(recs[0]));
}

static void test_headers_with_null_and_empty_values_round_trip(void **state)
{
	(void)state;
	const struct sb_header_in hd[] = {
	    {.key = "trace", .key_len = 5, .value = "abc", .value_len = 3},
	    {.key = "null", .key_len = 4, .value = NULL, .value_len = 0},
	    {.key = "empty", .key_len = 5, .value = "", .value_len = 0},
	    {.key = "", .key_len = 0, .value = "anonymous", .value_len = 9},
	};
	const struct sb_record_in recs[] = {
	    {.key = "a",
	     .key_len = 1,
	     .value = "1",
	     .value_len = 1,
	     .headers = hd,
	     .header_count = 4,
	     .timestamp_ms = 100},
	    {.key = "b",
	     .key_len = 1,
	     .value = "2",
	     .value_len = 1,
	     .headers = hd + 1,
	     .header_count = 1,
	     .timestamp_ms = 100},
	};
	check_round_trip(recs, 2);
}

static void test_one_mib_value_round_trips(void **state)
{
	(void)state;
	size_t n = 1u << 20;
	uint8_t *value = malloc(n);
	assert_non_null(value);
	for (size_t i = 0; i < n; i++)
		value[i] = (uint8_t)(i * 131 + (i >> 9));
	const struct sb_record_in rec = {.key = "big",
	                                 .key_len = 3,
	                                 .value = value,
	                                 .value_len = (uint32_t)n,
	                                 .timestamp_ms = 1700000000000};
	check_round_trip(&rec, 1);
	free(value);
}

static void test_ten_thousand_records_round_trip(void **state)
{
	(void)state;
	enum { N = 10000 };
	static char keys[N][16], values[N][40];
	static const struct sb_header_in hd[] = {{"src", 3, "unit", 4}, {"n", 1, NULL, 0}};
	struct sb_record_in *recs = calloc(N, sizeof(*recs));
	uint64_t seed = 42;
	assert_non_null(recs);
	for (int i = 0; i < N; i++) {
		int kl = snprintf(keys[i], sizeof(keys[i]), "key-%d", i);
		int vl = snprintf(values[i], sizeof(values[i]), "value-%llu",
		                  (unsigned long long)sbt_rand(&seed));
		recs[i].key = keys[i];
		recs[i].key_len = (uint32_t)kl;
		recs[i].value = i % 97 == 0 ? NULL : values[i];
		recs[i].value_len = (uint32_t)vl;
		recs[i].headers = hd;
		recs[i].header_count = (uint32_t)(i % 3);
		recs[i].timestamp_ms = 1700000000000 + i * 7 - (int64_t)(sbt_rand(&seed) % 50);
	}
	check_round_trip(recs, N);
	free(recs);
}

static void test_timestamps_going_backwards_round_trip(void **state)
{
	(void)state;
	const struct sb_record_in recs[] = {
	    {.value = "a", .value_len = 1, .timestamp_ms = 1000},
	    {.value = "b", .value_len = 1, .timestamp_ms = 500},
	    {.value = "c", .value_len = 1, .timestamp_ms = 2000},
	    {.value = "d", .value_len = 1, .timestamp_ms = -5},
	    {.value = "e", .value_len = 1, .timestamp_ms = 1999},
	};
	check_round_trip(recs, 5);
}

static void test_extreme_timestamps_round_trip(void **state)
{
	(void)state;
	const struct sb_record_in recs[] = {
	    {.timestamp_ms = INT64_MIN},
	    {.timestamp_ms = INT64_MAX},
	    {.timestamp_ms = 0},
	    {.timestamp_ms = INT64_MIN + 1},
	};
	check_round_trip(recs, 4);
}

/* ---- Exact encoding ---- */

static void test_builder_matches_hand_encoding_of_the_format(void **state)
{
	(void)state;
	const struct sb_header_in hd[] = {{"hk", 2, NULL, 0}, {"h2", 2, "hv", 2}};
	const struct sb_record_in recs[] = {
	    {.key = "k", .key_len = 1, .value = "v", .value_len = 1, .timestamp_ms = 5000},
	    {.key = NULL,
	     .value = "",
	     .value_len = 0,
	     .headers = hd,
	     .header_count = 2,
	     .timestamp_ms = 4990,
	     .attributes = SB_RECORD_ATTR_TOMBSTONE},
	};
	struct wbuf w = {.n = 0}, body = {.n = 0};
	size_t len, want_len;
	uint8_t *got = build(recs, 2, &len);

	w_record(&w, 0, 0, "k", "v", 0);
	body.b[body.n++] = SB_RECORD_ATTR_TOMBSTONE;
	w_zz(&body, -10);
	w_uv(&body, 1);
	w_str(&body, NULL);
	w_str(&body, "");
	w_uv(&body, 2);
	w_uv(&body, 2);
	w_raw(&body, "hk", 2);
	w_zz(&body, -1);
	w_uv(&body, 2);
	w_raw(&body, "h2", 2);
	w_str(&body, "hv");
	w_uv(&w, body.n);
	w_raw(&w, body.b, body.n);

	uint8_t *want = craft_batch(&w, 2, &want_len);
	sb_store64(want + SB_BATCH_OFF_FIRST_TS, 5000);
	sb_store64(want + SB_BATCH_OFF_MAX_TS, 5000);
	fix_crc(want, want_len);
	assert_int_equal(len, want_len);
	assert_memory_equal(got, want, len);
	free(got);
	free(want);
}

/* The worked example in docs/FORMAT.md; keep the two in step. */
static void test_builder_output_matches_format_doc_example(void **state)
{
	(void)state;
	static const uint8_t want[] = {
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3a, 0x00, 0x00, 0x00, 0x00, 0x00,
	    0x00, 0x00, 0x01, 0xdf, 0xea, 0x4c, 0x91, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	    0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, 0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00,
	    0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0xff, 0x01, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x02, 0x6b, 0x02, 0x76, 0x00,
	};
	const struct sb_record_in rec = {
	    .key = "k", .key_len = 1, .value = "v", .value_len = 1, .timestamp_ms = 1700000000000};
	size_t len;
	uint8_t *got = build(&rec, 1, &len);
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(got, want, sizeof(want));
	free(got);
}

/* ---- CRC, truncation, rewrites ---- */

static void test_base_offset_and_epoch_rewrite_keeps_crc_valid(void **state)
{
	(void)state;
	struct sb_batch_header h;
	struct sb_record_iter it;
	struct sb_record_view r;
	size_t len;
	uint8_t *buf = small_batch(&len);
	uint32_t crc = sb_load32(buf + SB_BATCH_OFF_CRC);

	sb_batch_set_base_offset(buf, 123456789012);
	sb_batch_set_leader_epoch(buf, 42);
	assert_int_equal(sb_load32(buf + SB_BATCH_OFF_CRC), crc);
	assert_int_equal(sb_batch_validate(buf, len, &h), 0);
	assert_int_equal(h.base_offset, 123456789012);
	assert_int_equal(h.leader_epoch, 42);
	assert_int_equal(sb_batch_next_offset(&h), 123456789014);
	sb_record_iter_init(&it, buf, &h);
	assert_int_equal(sb_record_iter_next(&it, &r), 1);
	assert_int_equal(r.offset, 123456789012);
	assert_int_equal(sb_record_iter_next(&it, &r), 1);
	assert_int_equal(r.offset, 123456789013);
	assert_int_equal(r.timestamp_ms, 12);
	assert_int_equal(sb_record_iter_next(&it, &r), 0);
	free(buf);
}

static void test_corrupt_byte_anywhere_is_detected(void **state)
{
	(void)state;
	struct sb_batch_header h;
	size_t len;
	uint8_t *buf = small_batch(&len);
	assert_int_equal(sb_batch_verify(buf, len, &h), 0);
	/* Every byte from the CRC field on, every possible flip. */
	for (size_t i = SB_BATCH_OFF_CRC; i < len; i++) {
		for (unsigned x = 1; x < 256; x++) {
			buf[i] ^= (uint8_t)x;
			assert_int_equal(sb_batch_verify(buf, len, &h), SB_ECORRUPT);
			buf[i] ^= (uint8_t)x;
		}
	}
	assert_int_equal(sb_batch_verify(buf, len, &h), 0);
	free(buf);
}

static void test_every_truncation_is_reported_as_missing_data(void **state)
{
	(void)state;
	struct sb_batch_header h;
	size_t len;
	uint8_t *full = small_batch(&len);
	for (size_t n = 0; n < len; n++) {
		uint8_t *cut = exact_copy(full, n);
		assert_int_equal(sb_batch_verify(cut, n, &h), -ENODATA);
		assert_int_equal(sb_batch_validate(cut, n, &h), -ENODATA);
		free(cut);
	}
	assert_int_equal(sb_batch_verify(full, len, &h), 0);
	free(full);
}

static void test_parse_header_needs_only_the_header(void **state)
{
	(void)state;
	struct sb_batch_header h;
	size_t len;
	uint8_t *full = small_batch(&len);
	uint8_t *head = exact_copy(full, SB_BATCH_HEADER_BYTES);
	assert_int_equal(sb_batch_parse_header(head, SB_BATCH_HEADER_BYTES, &h), 0);
	assert_int_equal(sb_batch_total_bytes(&h), len);
	assert_int_equal(h.record_count, 2);
	assert_int_equal(h.first_timestamp_ms, 10);
	assert_int_equal(h.max_timestamp_ms, 12);
	assert_int_equal(sb_batch_parse_header(head, SB_BATCH_HEADER_BYTES - 1, &h), -ENODATA);
	free(head);
	free(full);
}

/* ---- Header bounds ---- */

/* Applies one header edit to a valid batch (CRC recomputed) and expects err
 * from parse_header, verify and validate alike. */
typedef void (*header_edit_fn)(uint8_t *buf);

static void assert_header_edit_rejected(header_edit_fn edit, int err)
{
	struct sb_batch_header h;
	size_t len;
	uint8_t *buf = small_batch(&len);
	edit(buf);
	fix_crc(buf, len);
	assert_int_equal(sb_batch_parse_header(buf, len, &h), err);
	assert_int_equal(sb_batch_verify(buf, len, &h), err);
	assert_int_equal(sb_batch_validate(buf, len, &h), err);
	free(buf);
}

static void edit_magic(uint8_t *b)
{
	b[SB_BATCH_OFF_MAGIC] = 2;
}
static void edit_length_small(uint8_t *b)
{
	sb_store32(b + SB_BATCH_OFF_LENGTH, SB_BATCH_HEADER_BYTES - SB_BATCH_PREFIX_BYTES - 1);
}
static void edit_length_large(uint8_t *b)
{
	sb_store32(b + SB_BATCH_OFF_LENGTH, SB_BATCH_BYTES_MAX - SB_BATCH_PREFIX_BYTES + 1);
}
static void edit_length_huge(uint8_t *b)
{
	sb_store32(b + SB_BATCH_OFF_LENGTH, UINT32_MAX);
}
static void edit_codec(uint8_t *b)
{
	sb_store16(b + SB_BATCH_OFF_ATTRIBUTES, 1);
}
static void edit_count_zero(uint8_t *b)
{
	sb_store32(b + SB_BATCH_OFF_COUNT, 0);
	sb_store32(b + SB_BATCH_OFF_LAST_DELTA, UINT32_MAX);
}
static void edit_count_over_max(uint8_t *b)
{
	sb_store32(b + SB_BATCH_OFF_COUNT, SB_BATCH_RECORDS_MAX + 1);
	sb_store32(b + SB_BATCH_OFF_LAST_DELTA, SB_BATCH_RECORDS_MAX);
}
static void edit_last_delta(uint8_t *b)
{
	sb_store32(b + SB_BATCH_OFF_LAST_DELTA, 0);
}
static void edit_base_negative(uint8_t *b)
{
	sb_batch_set_base_offset(b, -1);
}
static void edit_base_overflowing(uint8_t *b)
{
	sb_batch_set_base_offset(b, INT64_MAX - 1);
}

static void test_bad_magic_is_rejected(void **state)
{
	(void)state;
	assert_header_edit_rejected(edit_magic, SB_ECORRUPT);
}

static void test_length_shorter_than_header_is_rejected(void **state)
{
	(void)state;
	assert_header_edit_rejected(edit_length_small, SB_ECORRUPT);
}

static void test_length_over_batch_limit_is_too_big(void **state)
{
	(void)state;
	assert_header_edit_rejected(edit_length_large, SB_ETOOBIG);
	assert_header_edit_rejected(edit_length_huge, SB_ETOOBIG);
}

static void test_compressed_batch_is_rejected(void **state)
{
	(void)state;
	assert_header_edit_rejected(edit_codec, SB_ECORRUPT);
}

static void test_record_count_out_of_range_is_rejected(void **state)
{
	(void)state;
	assert_header_edit_rejected(edit_count_zero, SB_ECORRUPT);
	assert_header_edit_rejected(edit_count_over_max, SB_ECORRUPT);
}

static void test_last_offset_delta_mismatch_is_rejected(void **state)
{
	(void)state;
	assert_header_edit_rejected(edit_last_delta, SB_ECORRUPT);
}

static void test_negative_or_overflowing_base_offset_is_rejected(void **state)
{
	(void)state;
	assert_header_edit_rejected(edit_base_negative, SB_ECORRUPT);
	assert_header_edit_rejected(edit_base_overflowing, SB_ECORRUPT);
}

/* ---- Record structure (hand-crafted, CRC correct) ---- */

static void test_hand_crafted_well_formed_batch_validates(void **state)
{
	(void)state;
	struct sb_batch_header h;
	struct wbuf w = {.n = 0};
	size_t len;
	w_record(&w, 0, 0, "a", "1", 0);
	w_record(&w, -3, 1, NULL, "2", 0);
	w_record(&w, 9, 2, "c", NULL, 0);
	uint8_t *buf = craft_batch(&w, 3, &len);
	assert_int_equal(sb_batch_validate(buf, len, &h), 0);
	free(buf);
}

static void test_record_length_prefix_too_long_is_rejected(void **state)
{
	(void)state;
	struct wbuf w = {.n = 0};
	w_record(&w, 0, 0, "a", "1", 1);
	w.b[w.n++] = 0; /* the extra byte the prefix claims exists */
	assert_structure_rejected(&w, 1);
}

static void test_record_length_prefix_too_short_is_rejected(void **state)
{
	(void)state;
	struct wbuf w = {.n = 0};
	w_record(&w, 0, 0, "a", "1", -1);
	assert_structure_rejected(&w, 1);
	w.n = 0; /* in the middle of a batch, too */
	w_record(&w, 0, 0, "a", "1", -1);
	w_record(&w, 0, 1, "b", "2", 0);
	assert_structure_rejected(&w, 2);
}

static void test_record_length_past_batch_end_is_rejected(void **state)
{
	(void)state;
	struct wbuf w = {.n = 0};
	w_record(&w, 0, 0, "a", "1", 5);
	assert_structure_rejected(&w, 1);
}

static void test_out_of_order_offset_deltas_are_rejected(void **state)
{
	(void)state;
	struct wbuf w = {.n = 0};
	w_record(&w, 0, 1, "a", "1", 0);
	w_record(&w, 0, 0, "b", "2", 0);
	assert_structure_rejected(&w, 2);
	w.n = 0; /* a gap */
	w_record(&w, 0, 0, "a", "1", 0);
	w_record(&w, 0, 2, "b", "2", 0);
	assert_structure_rejected(&w, 2);
	w.n = 0; /* a repeat */
	w_record(&w, 0, 0, "a", "1", 0);
	w_record(&w, 0, 0, "b", "2", 0);
	assert_structure_rejected(&w, 2);
}

static void test_trailing_bytes_after_last_record_are_rejected(void **state)
{
	(void)state;
	struct wbuf w = {.n = 0};
	w_record(&w, 0, 0, "a", "1", 0);
	w.b[w.n++] = 0;
	assert_structure_rejected(&w, 1);
}

static void test_record_count_disagreeing_with_records_is_rejected(void **state)
{
	(void)state;
	struct wbuf w = {.n = 0};
	w_record(&w, 0, 0, "a", "1", 0);
	w_record(&w, 0, 1, "b", "2", 0);
	assert_structure_rejected(&w, 1); /* more records than counted */
	assert_structure_rejected(&w, 3); /* fewer records than counted */
}

static void test_bad_key_and_value_lengths_are_rejected(void **state)
{
	(void)state;
	static const int64_t bad[] = {-2, -1000, 2, 100, INT64_MAX, INT64_MIN};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (int field = 0; field < 2; field++) {
			struct wbuf body = {.n = 0}, w = {.n = 0};
			body.b[body.n++] = 0;
			w_zz(&body, 0);
			w_uv(&body, 0);
			if (field == 1)
				w_str(&body, "k");
			w_zz(&body, bad[i]); /* claims bad[i] bytes; one follows */
			w_raw(&body, "x", 1);
			if (field == 0)
				w_str(&body, "v");
			w_uv(&body, 0);
			w_uv(&w, body.n);
			w_raw(&w, body.b, body.n);
			assert_structure_rejected(&w, 1);
		}
	}
}

static void w_record_with_headers(struct wbuf *w, uint64_t header_count, const void *headers,
                                  size_t headers_len)
{
	struct wbuf body = {.n = 0};
	body.b[body.n++] = 0;
	w_zz(&body, 0);
	w_uv(&body, 0);
	w_str(&body, "k");
	w_str(&body, "v");
	w_uv(&body, header_count);
	w_raw(&body, headers, headers_len);
	w_uv(w, body.n);
	w_raw(w, body.b, body.n);
}

static void test_malformed_record_headers_are_rejected(void **state)
{
	(void)state;
	static const uint8_t one[] = {0x01, 'a', 0x00};                   /* "a" = "" */
	static const uint8_t two_nulls[] = {0x01, 'a', 0x01, 0x00, 0x01}; /* "a"=null, ""=null */
	static const uint8_t bad_value[] = {0x01, 'a', 0x03};             /* value length -2 */
	static const uint8_t long_key[] = {0x05, 'a', 0x00};              /* key past the record */
	struct wbuf w = {.n = 0};
	w_record_with_headers(&w, 2, one, sizeof(one)); /* count says 2, one present */
	assert_structure_rejected(&w, 1);
	w.n = 0;
	w_record_with_headers(&w, 1, two_nulls, sizeof(two_nulls)); /* count says 1, two present */
	assert_structure_rejected(&w, 1);
	w.n = 0;
	w_record_with_headers(&w, 1, bad_value, sizeof(bad_value));
	assert_structure_rejected(&w, 1);
	w.n = 0;
	w_record_with_headers(&w, 1, long_key, sizeof(long_key));
	assert_structure_rejected(&w, 1);
}

/* sb_record_header_next on its own, on exact-size buffers (ASan-checked). */
static int walk_one_header(const uint8_t *bytes, size_t n, struct sb_header_view *h)
{
	uint8_t *buf = exact_copy(bytes, n);
	const uint8_t *p = buf;
	int rc = sb_record_header_next(&p, buf + n, h);
	if (rc == 1)
		assert_ptr_equal(p, buf + n);
	else
		assert_ptr_equal(p, buf); /* not advanced on error */
	free(buf);
	return rc;
}

static void test_header_walk_rejects_fields_past_end(void **state)
{
	(void)state;
	static const uint8_t ok[] = {0x02, 'a', 'b', 0x02, 'x'};
	static const uint8_t key_past_end[] = {0x03, 'a', 'b'};
	static const uint8_t value_past_end[] = {0x01, 'a', 0x04, 'x'};
	static const uint8_t value_below_null[] = {0x01, 'a', 0x03};
	static const uint8_t truncated_varint[] = {0x80};
	static const uint8_t missing_value[] = {0x01, 'a'};
	struct sb_header_view h;
	const uint8_t *p = ok;
	assert_int_equal(walk_one_header(ok, sizeof(ok), &h), 1);
	assert_int_equal(sb_record_header_next(&p, ok + sizeof(ok), &h), 1);
	assert_int_equal(h.key_len, 2);
	assert_memory_equal(h.key, "ab", 2);
	assert_int_equal(h.value_len, 1);
	assert_memory_equal(h.value, "x", 1);
	assert_int_equal(sb_record_header_next(&p, ok + sizeof(ok), &h), 0);
	assert_int_equal(walk_one_header(key_past_end, sizeof(key_past_end), &h), SB_ECORRUPT);
	assert_int_equal(walk_one_header(value_past_end, sizeof(value_past_end), &h), SB_ECORRUPT);
	assert_int_equal(walk_one_header(value_below_null, sizeof(value_below_null), &h),
	                 SB_ECORRUPT);
	assert_int_equal(walk_one_header(truncated_varint, sizeof(truncated_varint), &h),
	                 SB_ECORRUPT);
	assert_int_equal(walk_one_header(missing_value, sizeof(missing_value), &h), SB_ECORRUPT);
}

static void test_header_count_over_limit_is_rejected(void **state)
{
	(void)state;
	enum { N = SB_RECORD_HEADERS_MAX + 1 };
	static uint8_t headers[2 * N];
	struct sb_batch_header h;
	struct wbuf w = {.n = 0};
	size_t len;
	for (size_t i = 0; i < N; i++) { /* empty key, null value */
		headers[2 * i] = 0x00;
		headers[2 * i + 1] = 0x01;
	}
	w_record_with_headers(&w, N, headers, sizeof(headers));
	assert_structure_rejected(&w, 1);
	w.n = 0; /* exactly at the limit is fine */
	w_record_with_headers(&w, N - 1, headers, sizeof(headers) - 2);
	uint8_t *buf = craft_batch(&w, 1, &len);
	assert_int_equal(sb_batch_validate(buf, len, &h), 0);
	free(buf);
}

/* ---- Builder limits and lifecycle ---- */

static void test_builder_too_big_leaves_builder_usable(void **state)
{
	(void)state;
	struct sb_batch_builder b;
	struct sb_batch_header h;
	const void *out;
	size_t len, before, max = 200;
	char big[300] = {0};
	const struct sb_record_in rec = {
	    .key = "k", .key_len = 1, .value = "0123456789", .value_len = 10, .timestamp_ms = 7};
	const struct sb_record_in huge = {.value = big, .value_len = sizeof(big)};
	uint32_t n = 0;

	assert_int_equal(sb_batch_builder_init(&b, max), 0);
	assert_int_equal(sb_batch_builder_add(&b, &huge), SB_ETOOBIG);
	assert_int_equal(sb_batch_builder_size(&b), SB_BATCH_HEADER_BYTES);
	assert_int_equal(sb_batch_builder_finish(&b, &out, &len), SB_EINVAL);
	for (;;) {
		before = sb_batch_builder_size(&b);
		int rc = sb_batch_builder_add(&b, &rec);
		if (rc == SB_ETOOBIG)
			break;
		assert_int_equal(rc, 0);
		assert_true(sb_batch_builder_size(&b) <= max);
		n++;
	}
	assert_true(n > 1);
	assert_int_equal(sb_batch_builder_size(&b), before);
	assert_int_equal(b.count, n);
	assert_int_equal(sb_batch_builder_finish(&b, &out, &len), 0);
	assert_int_equal(len, before);
	assert_int_equal(sb_batch_validate(out, len, &h), 0);
	assert_int_equal(h.record_count, n);

	sb_batch_builder_reset(&b); /* reusable after reset */
	assert_int_equal(sb_batch_builder_add(&b, &rec), 0);
	assert_int_equal(sb_batch_builder_finish(&b, &out, &len), 0);
	assert_int_equal(sb_batch_validate(out, len, &h), 0);
	assert_int_equal(h.record_count, 1);
	sb_batch_builder_fini(&b);
}

static void test_builder_can_fill_exactly_to_max_bytes(void **state)
{
	(void)state;
	struct sb_batch_builder b;
	struct sb_batch_header h;
	const void *out;
	size_t len;
	/* One record of 9 bytes: a 70-byte batch, as in docs/FORMAT.md. */
	const struct sb_record_in rec = {.key = "k", .key_len = 1, .value = "v", .value_len = 1};
	assert_int_equal(sb_batch_builder_init(&b, 70), 0);
	assert_int_equal(sb_batch_builder_add(&b, &rec), 0);
	assert_int_equal(sb_batch_builder_size(&b), 70);
	assert_int_equal(sb_batch_builder_add(&b, &rec), SB_ETOOBIG);
	assert_int_equal(sb_batch_builder_finish(&b, &out, &len), 0);
	assert_int_equal(sb_batch_validate(out, len, &h), 0);
	sb_batch_builder_fini(&b);
	assert_int_equal(sb_batch_builder_init(&b, 69), 0);
	assert_int_equal(sb_batch_builder_add(&b, &rec), SB_ETOOBIG);
	sb_batch_builder_fini(&b);
}

static void test_builder_refuses_record_past_records_max(void **state)
{
	(void)state;
	struct sb_batch_builder b;
	struct sb_batch_header h;
	const void *out;
	size_t len;
	const struct sb_record_in rec = {.timestamp_ms = 1};
	assert_int_equal(sb_batch_builder_init(&b, SB_BATCH_BYTES_MAX), 0);
	for (uint32_t i = 0; i < SB_BATCH_RECORDS_MAX; i++)
		assert_int_equal(sb_batch_builder_add(&b, &rec), 0);
	size_t size = sb_batch_builder_size(&b);
	assert_int_equal(sb_batch_builder_add(&b, &rec), SB_ETOOBIG);
	assert_int_equal(sb_batch_builder_size(&b), size);
	assert_int_equal(sb_batch_builder_finish(&b, &out, &len), 0);
	assert_int_equal(sb_batch_validate(out, len, &h), 0);
	assert_int_equal(h.record_count, SB_BATCH_RECORDS_MAX);
	assert_int_equal(h.last_offset_delta, SB_BATCH_RECORDS_MAX - 1);
	sb_batch_builder_fini(&b);
}

static void test_builder_refuses_too_many_headers(void **state)
{
	(void)state;
	struct sb_batch_builder b;
	static struct sb_header_in hd[SB_RECORD_HEADERS_MAX + 1];
	struct sb_record_in rec = {.headers = hd, .header_count = SB_RECORD_HEADERS_MAX + 1};
	assert_int_equal(sb_batch_builder_init(&b, SB_BATCH_BYTES_MAX), 0);
	assert_int_equal(sb_batch_builder_add(&b, &rec), SB_ETOOBIG);
	assert_int_equal(sb_batch_builder_size(&b), SB_BATCH_HEADER_BYTES);
	rec.header_count = SB_RECORD_HEADERS_MAX;
	assert_int_equal(sb_batch_builder_add(&b, &rec), 0);
	sb_batch_builder_fini(&b);
}

static void test_add_after_finish_extends_the_batch(void **state)
{
	(void)state;
	struct sb_batch_builder b;
	struct sb_batch_header h;
	const void *out;
	size_t len;
	const struct sb_record_in r1 = {.value = "1", .value_len = 1, .timestamp_ms = 50};
	const struct sb_record_in r2 = {.value = "2", .value_len = 1, .timestamp_ms = 80};
	assert_int_equal(sb_batch_builder_init(&b, 1 << 20), 0);
	assert_int_equal(sb_batch_builder_add(&b, &r1), 0);
	assert_int_equal(sb_batch_builder_finish(&b, &out, &len), 0);
	assert_int_equal(sb_batch_builder_add(&b, &r2), 0);
	assert_int_equal(sb_batch_builder_finish(&b, &out, &len), 0);
	assert_int_equal(sb_batch_validate(out, len, &h), 0);
	assert_int_equal(h.record_count, 2);
	assert_int_equal(h.first_timestamp_ms, 50);
	assert_int_equal(h.max_timestamp_ms, 80);
	sb_batch_builder_reset(&b); /* reset forgets first/max timestamps */
	assert_int_equal(sb_batch_builder_add(&b, &r2), 0);
	assert_int_equal(sb_batch_builder_add(&b, &r1), 0);
	assert_int_equal(sb_batch_builder_finish(&b, &out, &len), 0);
	assert_int_equal(sb_batch_validate(out, len, &h), 0);
	assert_int_equal(h.first_timestamp_ms, 80);
	assert_int_equal(h.max_timestamp_ms, 80);
	sb_batch_builder_fini(&b);
}

/* ---- Random input ---- */

/* Reference decoder, written straight from docs/FORMAT.md, that shares no
 * code with sb_batch.c beyond the varint primitives. 0 if the records
 * section [p, end) holds exactly count well-formed records. */
static int ref_nullable(const uint8_t **p, const uint8_t *end)
{
	int64_t n;
	if (sb_varint_get(p, end, &n) || n < -1 || (n > 0 && n > end - *p))
		return -1;
	*p += n > 0 ? n : 0;
	return 0;
}

static int ref_record(const uint8_t *p, const uint8_t *end, uint64_t index)
{
	uint64_t od, hc, kl;
	int64_t ts;
	if (p >= end)
		return -1;
	p++; /* attributes */
	if (sb_varint_get(&p, end, &ts) || sb_uvarint_get(&p, end, &od) || od != index)
		return -1;
	if (ref_nullable(&p, end) || ref_nullable(&p, end))
		return -1;
	if (sb_uvarint_get(&p, end, &hc) || hc > SB_RECORD_HEADERS_MAX)
		return -1;
	for (uint64_t i = 0; i < hc; i++) {
		if (sb_uvarint_get(&p, end, &kl) || kl > (uint64_t)(end - p))
			return -1;
		p += kl;
		if (ref_nullable(&p, end))
			return -1;
	}
	return p == end ? 0 : -1;
}

static int ref_records(const uint8_t *p, const uint8_t *end, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++) {
		uint64_t len;
		if (sb_uvarint_get(&p, end, &len) || len > (uint64_t)(end - p))
			return -1;
		if (ref_record(p, p + len, i))
			return -1;
		p += len;
	}
	return p == end ? 0 : -1;
}

/* Iterates a verified batch, checking that every view stays inside it.
 * Returns 0 if the iterator accepted exactly the whole batch. */
static int iterate_all(const uint8_t *buf, const struct sb_batch_header *h)
{
	const uint8_t *lo = buf + SB_BATCH_HEADER_BYTES, *hi = buf + sb_batch_total_bytes(h);
	struct sb_record_iter it;
	struct sb_record_view r;
	struct sb_header_view hv;
	uint32_t n = 0;
	int rc;
	sb_record_iter_init(&it, buf, h);
	while ((rc = sb_record_iter_next(&it, &r)) == 1) {
		assert_int_equal(r.offset, h->base_offset + n);
		assert_true(r.key_len >= -1 && r.value_len >= -1);
		assert_true(r.key_len < 0 || (r.key >= lo && r.key + r.key_len <= hi));
		assert_true(r.value_len < 0 || (r.value >= lo && r.value + r.value_len <= hi));
		assert_true(r.headers >= lo && r.headers <= r.headers_end && r.headers_end <= hi);
		const uint8_t *p = r.headers;
		uint32_t hn = 0;
		while (sb_record_header_next(&p, r.headers_end, &hv) == 1) {
			assert_true(hv.key >= lo && hv.key + hv.key_len <= r.headers_end);
			assert_true(hv.value_len < 0 || hv.value + hv.value_len <= r.headers_end);
			hn++;
		}
		assert_int_equal(hn, r.header_count);
		n++;
	}
	if (rc < 0) {
		assert_int_equal(rc, SB_ECORRUPT);
		return rc;
	}
	assert_int_equal(n, h->record_count);
	return it.p == it.end ? 0 : SB_ECORRUPT;
}

/* A batch from the builder with 1-4 random records. */
static uint8_t *random_valid_batch(uint64_t *seed, size_t *len)
{
	static const char pool[] = "abcdefghijklmnopqrstuvwxyz";
	struct sb_header_in hd[3];
	struct sb_record_in recs[4];
	size_t n = 1 + sbt_rand(seed) % 4;
	for (size_t i = 0; i < 3; i++) {
		hd[i] = (struct sb_header_in){pool + i, (uint32_t)(sbt_rand(seed) % 4), NULL, 0};
		if (sbt_rand(seed) & 1)
			hd[i].value = pool + 5, hd[i].value_len = (uint32_t)(sbt_rand(seed) % 6);
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t r = sbt_rand(seed);
		recs[i] = (struct sb_record_in){.key = r & 1 ? pool : NULL,
		                                .key_len = (uint32_t)(r >> 8) % 5,
		                                .value = r & 2 ? pool + 3 : NULL,
		                                .value_len = (uint32_t)(r >> 16) % 20,
		                                .headers = hd,
		                                .header_count = (uint32_t)(r >> 24) % 4,
		                                .timestamp_ms = (int64_t)(r >> 32) % 100000 - 50000,
		                                .attributes = (uint8_t)(r >> 40) & 1};
	}
	return build(recs, n, len);
}

/* One random input: kind 0 raw bytes, 1 a valid header + random body with a
 * correct CRC, 2 a valid batch with a few body bytes changed (CRC fixed). */
static uint8_t *random_input(uint64_t *seed, int kind, size_t *len)
{
	uint8_t *buf;
	if (kind == 2) {
		buf = random_valid_batch(seed, len);
		for (uint64_t k = sbt_rand(seed) % 4; k > 0; k--) {
			size_t at =
			    SB_BATCH_HEADER_BYTES + sbt_rand(seed) % (*len - SB_BATCH_HEADER_BYTES);
			buf[at] = (uint8_t)sbt_rand(seed);
		}
		fix_crc(buf, *len);
		return buf;
	}
	*len = kind == 0 ? sbt_rand(seed) % 200 : SB_BATCH_HEADER_BYTES + sbt_rand(seed) % 64;
	buf = malloc(*len ? *len : 1);
	assert_non_null(buf);
	for (size_t i = 0; i < *len; i++) /* small values look like plausible varints */
		buf[i] = (uint8_t)(sbt_rand(seed) % (kind == 0 ? 256 : 12));
	if (kind == 1) {
		uint32_t count = 1 + (uint32_t)(sbt_rand(seed) % 4);
		sb_store64(buf, sbt_rand(seed) >> 2);
		sb_store32(buf + SB_BATCH_OFF_LENGTH, (uint32_t)(*len - SB_BATCH_PREFIX_BYTES));
		buf[SB_BATCH_OFF_MAGIC] = SB_BATCH_MAGIC;
		sb_store16(buf + SB_BATCH_OFF_ATTRIBUTES, 0);
		sb_store32(buf + SB_BATCH_OFF_LAST_DELTA, count - 1);
		sb_store32(buf + SB_BATCH_OFF_COUNT, count);
		fix_crc(buf, *len);
	}
	return buf;
}

static void test_random_inputs_never_crash_and_validate_agrees_with_decoding(void **state)
{
	(void)state;
	uint64_t seed = 0x5EEDB47C4ull;
	unsigned accepted = 0, rejected_after_crc = 0;
	struct sb_batch_header h;
	for (int i = 0; i < 10000; i++) {
		int kind = i % 3;
		size_t len;
		uint8_t *buf = random_input(&seed, kind, &len);
		int rv = sb_batch_validate(buf, len, &h);
		int rc = sb_batch_verify(buf, len, &h);
		if (kind > 0)
			assert_int_equal(rc, 0);
		if (rc != 0) {
			assert_int_equal(rv, rc);
		} else {
			int it = iterate_all(buf, &h);
			int ref =
			    ref_records(buf + SB_BATCH_HEADER_BYTES, buf + len, h.record_count);
			assert_int_equal(rv, it);
			assert_int_equal(rv == 0, ref == 0);
			accepted += rv == 0;
			rejected_after_crc += rv != 0;
		}
		free(buf);
	}
	/* Both outcomes must actually have been exercised. */
	assert_true(accepted > 1000);
	assert_true(rejected_after_crc > 1000);
}

static void test_iterator_on_unparsed_short_header_yields_nothing_unsafe(void **state)
{
	(void)state;
	struct sb_batch_header h = {.batch_length = 0, .record_count = 3};
	struct sb_record_iter it;
	struct sb_record_view r;
	uint8_t *buf = calloc(1, SB_BATCH_HEADER_BYTES);
	assert_non_null(buf);
	sb_record_iter_init(&it, buf, &h);
	assert_int_equal(sb_record_iter_next(&it, &r), SB_ECORRUPT);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_null_and_empty_keys_and_values_round_trip),
	    cmocka_unit_test(test_headers_with_null_and_empty_values_round_trip),
	    cmocka_unit_test(test_one_mib_value_round_trips),
	    cmocka_unit_test(test_ten_thousand_records_round_trip),
	    cmocka_unit_test(test_timestamps_going_backwards_round_trip),
	    cmocka_unit_test(test_extreme_timestamps_round_trip),
	    cmocka_unit_test(test_builder_matches_hand_encoding_of_the_format),
	    cmocka_unit_test(test_builder_output_matches_format_doc_example),
	    cmocka_unit_test(test_base_offset_and_epoch_rewrite_keeps_crc_valid),
	    cmocka_unit_test(test_corrupt_byte_anywhere_is_detected),
	    cmocka_unit_test(test_every_truncation_is_reported_as_missing_data),
	    cmocka_unit_test(test_parse_header_needs_only_the_header),
	    cmocka_unit_test(test_bad_magic_is_rejected),
	    cmocka_unit_test(test_length_shorter_than_header_is_rejected),
	    cmocka_unit_test(test_length_over_batch_limit_is_too_big),
	    cmocka_unit_test(test_compressed_batch_is_rejected),
	    cmocka_unit_test(test_record_count_out_of_range_is_rejected),
	    cmocka_unit_test(test_last_offset_delta_mismatch_is_rejected),
	    cmocka_unit_test(test_negative_or_overflowing_base_offset_is_rejected),
	    cmocka_unit_test(test_hand_crafted_well_formed_batch_validates),
	    cmocka_unit_test(test_record_length_prefix_too_long_is_rejected),
	    cmocka_unit_test(test_record_length_prefix_too_short_is_rejected),
	    cmocka_unit_test(test_record_length_past_batch_end_is_rejected),
	    cmocka_unit_test(test_out_of_order_offset_deltas_are_rejected),
	    cmocka_unit_test(test_trailing_bytes_after_last_record_are_rejected),
	    cmocka_unit_test(test_record_count_disagreeing_with_records_is_rejected),
	    cmocka_unit_test(test_bad_key_and_value_lengths_are_rejected),
	    cmocka_unit_test(test_malformed_record_headers_are_rejected),
	    cmocka_unit_test(test_header_walk_rejects_fields_past_end),
	    cmocka_unit_test(test_header_count_over_limit_is_rejected),
	    cmocka_unit_test(test_builder_too_big_leaves_builder_usable),
	    cmocka_unit_test(test_builder_can_fill_exactly_to_max_bytes),
	    cmocka_unit_test(test_builder_refuses_record_past_records_max),
	    cmocka_unit_test(test_builder_refuses_too_many_headers),
	    cmocka_unit_test(test_add_after_finish_extends_the_batch),
	    cmocka_unit_test(test_random_inputs_never_crash_and_validate_agrees_with_decoding),
	    cmocka_unit_test(test_iterator_on_unparsed_short_header_yields_nothing_unsafe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
