/* test_varint.c - unit tests for common/sb_varint.h: unsigned LEB128 and
 * zigzag round trips at the boundaries, exact encodings, size agreement, and
 * rejection of truncated, too-long and overflowing input. */
#include "sb_test.h"

#include "sb_varint.h"

#include <stdlib.h>
#include <string.h>

/* Expected encoded length: one byte per started group of 7 significant bits. */
static size_t expected_size(uint64_t v)
{
	size_t bits = v ? 64 - (size_t)__builtin_clzll(v) : 1;
	return (bits + 6) / 7;
}

static void assert_uvarint_round_trip(uint64_t v)
{
	uint8_t buf[SB_VARINT_MAX_BYTES + 2];
	memset(buf, 0xee, sizeof(buf));
	size_t n = sb_uvarint_put(buf, v);
	assert_int_equal(n, expected_size(v));
	assert_int_equal(n, sb_uvarint_size(v));
	assert_true(n <= SB_VARINT_MAX_BYTES);
	assert_int_equal(buf[n], 0xee); /* nothing written past the encoding */

	/* Decoding from a buffer with trailing bytes stops after the encoding. */
	const uint8_t *p = buf;
	uint64_t got = ~v;
	assert_int_equal(sb_uvarint_get(&p, buf + sizeof(buf), &got), 0);
	assert_ptr_equal(p, buf + n);
	assert_true(got == v);

	/* And from a buffer that ends exactly where the encoding does. */
	p = buf;
	got = ~v;
	assert_int_equal(sb_uvarint_get(&p, buf + n, &got), 0);
	assert_ptr_equal(p, buf + n);
	assert_true(got == v);
}

static void assert_varint_round_trip(int64_t v)
{
	uint8_t buf[SB_VARINT_MAX_BYTES];
	size_t n = sb_varint_put(buf, v);
	assert_int_equal(n, sb_varint_size(v));
	assert_int_equal(n, expected_size(sb_zigzag(v)));
	assert_true(sb_unzigzag(sb_zigzag(v)) == v);

	const uint8_t *p = buf;
	int64_t got = ~v;
	assert_int_equal(sb_varint_get(&p, buf + n, &got), 0);
	assert_ptr_equal(p, buf + n);
	assert_true(got == v);
}

static void test_uvarint_round_trips_at_boundaries(void **state)
{
	(void)state;
	static const uint64_t values[] = {0,
	                                  1,
	                                  127,
	                                  128,
	                                  300,
	                                  16383,
	                                  16384,
	                                  (uint64_t)INT64_MAX,
	                                  (uint64_t)INT64_MAX + 1,
	                                  UINT64_MAX - 1,
	                                  UINT64_MAX};
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		assert_uvarint_round_trip(values[i]);
	/* Both sides of every 7-bit group boundary, and every power of two. */
	for (unsigned k = 0; k < 64; k++) {
		uint64_t p2 = (uint64_t)1 << k;
		assert_uvarint_round_trip(p2 - 1);
		assert_uvarint_round_trip(p2);
		assert_uvarint_round_trip(p2 + 1);
	}
}

static void test_uvarint_encodings_are_exact(void **state)
{
	(void)state;
	uint8_t buf[SB_VARINT_MAX_BYTES];

	assert_int_equal(sb_uvarint_put(buf, 0), 1);
	assert_int_equal(buf[0], 0x00);
	assert_int_equal(sb_uvarint_put(buf, 127), 1);
	assert_int_equal(buf[0], 0x7f);
	assert_int_equal(sb_uvarint_put(buf, 128), 2);
	assert_memory_equal(buf, ((uint8_t[]){0x80, 0x01}), 2);
	assert_int_equal(sb_uvarint_put(buf, 300), 2);
	assert_memory_equal(buf, ((uint8_t[]){0xac, 0x02}), 2);
	assert_int_equal(sb_uvarint_put(buf, UINT64_MAX), 10);
	assert_memory_equal(
	    buf, ((uint8_t[]){0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), 10);
	assert_int_equal(sb_uvarint_put(buf, (uint64_t)INT64_MAX), 9);
	assert_memory_equal(buf,
	                    ((uint8_t[]){0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}), 9);
}

static void test_zigzag_varint_round_trips_at_boundaries(void **state)
{
	(void)state;
	static const int64_t values[] = {
	    0,    -1,    1,    -2,    2,         63,        -64,           64,           -65,
	    8191, -8192, 8192, -8193, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1};
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		assert_varint_round_trip(values[i]);
	for (unsigned k = 0; k < 63; k++) {
		int64_t p2 = (int64_t)1 << k;
		assert_varint_round_trip(p2);
		assert_varint_round_trip(-p2);
		assert_varint_round_trip(p2 - 1);
		assert_varint_round_trip(-p2 - 1);
	}
}

static void test_zigzag_maps_small_magnitudes_to_small_codes(void **state)
{
	(void)state;
	assert_true(sb_zigzag(0) == 0);
	assert_true(sb_zigzag(-1) == 1);
	assert_true(sb_zigzag(1) == 2);
	assert_true(sb_zigzag(-2) == 3);
	assert_true(sb_zigzag(INT64_MAX) == UINT64_MAX - 1);
	assert_true(sb_zigzag(INT64_MIN) == UINT64_MAX);
	assert_int_equal(sb_varint_size(-1), 1);
	assert_int_equal(sb_varint_size(-64), 1);
	assert_int_equal(sb_varint_size(63), 1);
	assert_int_equal(sb_varint_size(64), 2);
	assert_int_equal(sb_varint_size(-65), 2);
	assert_int_equal(sb_varint_size(INT64_MIN), 10);
	assert_int_equal(sb_varint_size(INT64_MAX), 10);
}

/* Decodes exactly len bytes held in a heap block of that size, so that the
 * sanitizer build reports any read past `end`. Returns the decoder's result
 * and checks that a failure leaves *pp and *v alone. */
static int decode_exact(const uint8_t *bytes, size_t len, uint64_t *v)
{
	uint8_t *copy = malloc(len ? len : 1);
	assert_non_null(copy);
	memcpy(copy, bytes, len);
	const uint8_t *p = copy;
	uint64_t out = 0xdeadbeef;
	int rc = sb_uvarint_get(&p, copy + len, &out);
	if (rc != 0) {
		assert_ptr_equal(p, copy);
		assert_true(out == 0xdeadbeef);
	} else {
		assert_ptr_equal(p, copy + len);
	}
	free(copy);
	*v = out;
	return rc;
}

static void test_truncated_input_is_rejected(void **state)
{
	(void)state;
	static const uint64_t values[] = {128, 300, 16384, (uint64_t)INT64_MAX, UINT64_MAX};
	uint8_t buf[SB_VARINT_MAX_BYTES] = {0};
	uint64_t v;

	assert_int_equal(decode_exact(buf, 0, &v), -1); /* empty input */
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		size_t n = sb_uvarint_put(buf, values[i]);
		for (size_t cut = 0; cut < n; cut++)
			assert_int_equal(decode_exact(buf, cut, &v), -1);
		assert_int_equal(decode_exact(buf, n, &v), 0);
		assert_true(v == values[i]);
	}

	/* The signed decoder rejects the same way and leaves *pp alone. */
	size_t n = sb_varint_put(buf, INT64_MIN);
	const uint8_t *p = buf;
	int64_t s = 5;
	assert_int_equal(sb_varint_get(&p, buf + n - 1, &s), -1);
	assert_ptr_equal(p, buf);
	assert_true(s == 5);
}

static void test_eleven_byte_and_overflowing_encodings_are_rejected(void **state)
{
	(void)state;
	uint64_t v;

	/* 11 bytes: ten continuation bytes, then a terminator. */
	static const uint8_t eleven[11] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
	                                   0x80, 0x80, 0x80, 0x80, 0x00};
	assert_int_equal(decode_exact(eleven, sizeof(eleven), &v), -1);
	/* Tenth byte still has the continuation bit set. */
	static const uint8_t cont10[10] = {0xff, 0xff, 0xff, 0xff, 0xff,
	                                   0xff, 0xff, 0xff, 0xff, 0x81};
	assert_int_equal(decode_exact(cont10, sizeof(cont10), &v), -1);
	/* Tenth byte carries bits past 2^64: 2^64 exactly, and all ones. */
	static const uint8_t two_to_64[10] = {0x80, 0x80, 0x80, 0x80, 0x80,
	                                      0x80, 0x80, 0x80, 0x80, 0x02};
	assert_int_equal(decode_exact(two_to_64, sizeof(two_to_64), &v), -1);
	static const uint8_t max7f[10] = {0xff, 0xff, 0xff, 0xff, 0xff,
	                                  0xff, 0xff, 0xff, 0xff, 0x7f};
	assert_int_equal(decode_exact(max7f, sizeof(max7f), &v), -1);

	/* The largest legal ten-byte encodings still decode. */
	static const uint8_t max[10] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
	assert_int_equal(decode_exact(max, sizeof(max), &v), 0);
	assert_true(v == UINT64_MAX);
	static const uint8_t top_bit[10] = {0x80, 0x80, 0x80, 0x80, 0x80,
	                                    0x80, 0x80, 0x80, 0x80, 0x01};
	assert_int_equal(decode_exact(top_bit, sizeof(top_bit), &v), 0);
	assert_true(v == (uint64_t)1 << 63);

	/* Signed: an overflowing unsigned encoding is rejected too. */
	const uint8_t *p = two_to_64;
	int64_t s = 0;
	assert_int_equal(sb_varint_get(&p, two_to_64 + sizeof(two_to_64), &s), -1);
	assert_ptr_equal(p, two_to_64);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_uvarint_round_trips_at_boundaries),
	    cmocka_unit_test(test_uvarint_encodings_are_exact),
	    cmocka_unit_test(test_zigzag_varint_round_trips_at_boundaries),
	    cmocka_unit_test(test_zigzag_maps_small_magnitudes_to_small_codes),
	    cmocka_unit_test(test_truncated_input_is_rejected),
	    cmocka_unit_test(test_eleven_byte_and_overflowing_encodings_are_rejected),
	};
	return cmocka_run_group_tests_name("varint", tests, NULL, NULL);
}
