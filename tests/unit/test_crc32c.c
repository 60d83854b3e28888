/* test_crc32c.c - unit tests for common/sb_crc32c: published check values,
 * agreement of the chosen (hardware) implementation with the portable one at
 * every length class and alignment, incremental use, and error detection. */
#include "sb_test.h"

#include "sb_crc32c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RANDOM_LEN_MAX 100000
#define RANDOM_OFFSET_MAX 15

struct vector {
	const char *name;
	uint8_t data[48];
	size_t len;
	uint32_t crc;
};

static void fill_random(uint8_t *buf, size_t len, uint64_t *seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(sbt_rand(seed) >> 56);
}

/* Checks one buffer through every entry point. */
static void assert_crc_everywhere(const void *buf, size_t len, uint32_t want)
{
	assert_int_equal(sb_crc32c(buf, len), want);
	assert_int_equal(sb_crc32c_extend(0, buf, len), want);
	assert_int_equal(sb_crc32c_extend_portable(0, buf, len), want);
}

static void test_rfc3720_vectors(void **state)
{
	(void)state;
	static struct vector v[5] = {
	    {.name = "32 bytes of 0x00", .len = 32, .crc = 0x8A9136AA},
	    {.name = "32 bytes of 0xFF", .len = 32, .crc = 0x62A8AB43},
	    {.name = "32 bytes ascending", .len = 32, .crc = 0x46DD794E},
	    {.name = "32 bytes descending", .len = 32, .crc = 0x113FDB5C},
	    {.name = "iSCSI read command PDU",
	     .data = {0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	              0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
	              0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
	              0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
	     .len = 48,
	     .crc = 0xD9963A56},
	};
	memset(v[1].data, 0xff, 32);
	for (int i = 0; i < 32; i++) {
		v[2].data[i] = (uint8_t)i;
		v[3].data[i] = (uint8_t)(31 - i);
	}
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		print_message("%s\n", v[i].name);
		assert_crc_everywhere(v[i].data, v[i].len, v[i].crc);
	}
}

static void test_check_value_of_123456789(void **state)
{
	(void)state;
	assert_crc_everywhere("123456789", 9, 0xE3069283);
}

static void test_empty_buffer_crc_is_zero_and_extend_is_identity(void **state)
{
	(void)state;
	uint8_t byte = 0x5a;
	assert_crc_everywhere(NULL, 0, 0);
	assert_crc_everywhere(&byte, 0, 0);
	assert_int_equal(sb_crc32c_extend(0xE3069283, NULL, 0), 0xE3069283);
	assert_int_equal(sb_crc32c_extend_portable(0xE3069283, NULL, 0), 0xE3069283);
}

static void test_impl_name_is_known_and_hardware_used_when_available(void **state)
{
	(void)state;
	const char *impl = sb_crc32c_impl();
	print_message("implementation: %s\n", impl);
	assert_true(strcmp(impl, "sse4.2") == 0 || strcmp(impl, "armv8") == 0 ||
	            strcmp(impl, "portable") == 0);
#if defined(__x86_64__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("sse4.2"))
		assert_string_equal(impl, "sse4.2");
#endif
}

/* Compares the chosen implementation with the portable one on buf[off..off+len),
 * both from a zero and from a non-zero starting CRC. */
static void assert_impls_agree(const uint8_t *buf, size_t off, size_t len, uint32_t seed_crc)
{
	uint32_t want = sb_crc32c_extend_portable(0, buf + off, len);
	uint32_t got = sb_crc32c(buf + off, len);
	if (got != want)
		fail_msg("len %zu off %zu: chosen %08x portable %08x", len, off, got, want);
	want = sb_crc32c_extend_portable(seed_crc, buf + off, len);
	got = sb_crc32c_extend(seed_crc, buf + off, len);
	if (got != want)
		fail_msg("len %zu off %zu extend: chosen %08x portable %08x", len, off, got, want);
}

static void test_hardware_matches_portable_at_random_lengths_and_offsets(void **state)
{
	(void)state;
	uint64_t seed = 0x5eed0c4c32c0ffeeull;
	size_t cap = RANDOM_LEN_MAX + RANDOM_OFFSET_MAX + 1;
	uint8_t *buf = malloc(cap);
	assert_non_null(buf);
	fill_random(buf, cap, &seed);

	/* Every short length, and the edges of the 3 x 256 B and 3 x 8 KiB rounds. */
	static const size_t edges[] = {767,   768,   769,   775,   776,   1535,          1536,
	                               1537,  24575, 24576, 24577, 24583, 25343,         25344,
	                               25345, 49151, 49152, 49153, 50688, RANDOM_LEN_MAX};
	for (size_t off = 0; off <= RANDOM_OFFSET_MAX; off++) {
		for (size_t len = 0; len <= 80; len++)
			assert_impls_agree(buf, off, len, (uint32_t)sbt_rand(&seed));
		for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
			assert_impls_agree(buf, off, edges[i], (uint32_t)sbt_rand(&seed));
	}
	for (int i = 0; i < 400; i++) {
		size_t len = (size_t)(sbt_rand(&seed) % (RANDOM_LEN_MAX + 1));
		size_t off = (size_t)(sbt_rand(&seed) % (RANDOM_OFFSET_MAX + 1));
		assert_impls_agree(buf, off, len, (uint32_t)sbt_rand(&seed));
	}
	free(buf);
}

static void test_extend_split_at_every_position_equals_one_shot(void **state)
{
	(void)state;
	uint64_t seed = 42;
	uint8_t buf[1000];
	fill_random(buf, sizeof(buf), &seed);
	uint32_t whole = sb_crc32c(buf, sizeof(buf));
	assert_int_equal(sb_crc32c_extend_portable(0, buf, sizeof(buf)), whole);

	for (size_t i = 0; i <= sizeof(buf); i++) {
		uint32_t head = sb_crc32c(buf, i);
		assert_int_equal(sb_crc32c_extend(head, buf + i, sizeof(buf) - i), whole);
		head = sb_crc32c_extend_portable(0, buf, i);
		assert_int_equal(sb_crc32c_extend_portable(head, buf + i, sizeof(buf) - i), whole);
	}
}

static void test_extend_in_pieces_across_large_buffer_equals_one_shot(void **state)
{
	(void)state;
	uint64_t seed = 7;
	size_t len = 3 * 8192 * 4 + 1000;
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	fill_random(buf, len, &seed);
	uint32_t whole = sb_crc32c(buf, len);
	assert_int_equal(sb_crc32c_extend_portable(0, buf, len), whole);

	for (int round = 0; round < 50; round++) {
		uint32_t crc = 0;
		size_t done = 0;
		while (done < len) {
			size_t piece = (size_t)(sbt_rand(&seed) % 30000);
			if (piece > len - done)
				piece = len - done;
			crc = sb_crc32c_extend(crc, buf + done, piece);
			done += piece;
		}
		assert_int_equal(crc, whole);
	}
	free(buf);
}

static void test_single_flipped_bit_changes_crc(void **state)
{
	(void)state;
	uint64_t seed = 99;
	uint8_t small[1000];
	fill_random(small, sizeof(small), &seed);
	uint32_t clean = sb_crc32c(small, sizeof(small));
	for (size_t bit = 0; bit < 8 * sizeof(small); bit++) {
		small[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		uint32_t dirty = sb_crc32c(small, sizeof(small));
		small[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		if (dirty == clean)
			fail_msg("flipping bit %zu left the CRC at %08x", bit, clean);
	}
	assert_int_equal(sb_crc32c(small, sizeof(small)), clean);

	/* A buffer that runs the three-stream rounds: flips in every stream. */
	size_t len = 3 * 8192 * 2 + 3 * 256 + 13;
	uint8_t *big = malloc(len);
	assert_non_null(big);
	fill_random(big, len, &seed);
	clean = sb_crc32c(big, len);
	for (int i = 0; i < 300; i++) {
		size_t bit = (size_t)(sbt_rand(&seed) % (8 * len));
		big[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		uint32_t dirty = sb_crc32c(big, len);
		assert_int_equal(sb_crc32c_extend_portable(0, big, len), dirty);
		big[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		if (dirty == clean)
			fail_msg("flipping bit %zu of %zu bytes left the CRC at %08x", bit, len,
			         clean);
	}
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rfc3720_vectors),
	    cmocka_unit_test(test_check_value_of_123456789),
	    cmocka_unit_test(test_empty_buffer_crc_is_zero_and_extend_is_identity),
	    cmocka_unit_test(test_impl_name_is_known_and_hardware_used_when_available),
	    cmocka_unit_test(test_hardware_matches_portable_at_random_lengths_and_offsets),
	    cmocka_unit_test(test_extend_split_at_every_position_equals_one_shot),
	    cmocka_unit_test(test_extend_in_pieces_across_large_buffer_equals_one_shot),
	    cmocka_unit_test(test_single_flipped_bit_changes_crc),
	};
	return cmocka_run_group_tests_name("crc32c", tests, NULL, NULL);
}
