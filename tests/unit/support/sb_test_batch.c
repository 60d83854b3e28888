#include "sb_test_batch.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill_value(uint8_t *v, uint32_t len, uint64_t id)
{
	uint64_t x = id * 0x9E3779B97F4A7C15ull + 1;
	for (uint32_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		v[i] = (uint8_t)x;
	}
}

uint8_t *sbt_batch(uint64_t first, uint32_t n, uint32_t value_len, int64_t ts0, size_t *len)
{
	struct sb_batch_builder b;
	uint8_t *value = malloc(value_len ? value_len : 1);
	char key[32];
	const void *out;
	size_t out_len;
	uint8_t *copy = NULL;

	if (!value || sb_batch_builder_init(&b, 64u << 20) != 0)
		abort();
	for (uint32_t i = 0; i < n; i++) {
		uint64_t id = first + i;
		struct sb_record_in r = {0};
		int klen = snprintf(key, sizeof key, "k%" PRIu64, id);
		fill_value(value, value_len, id);
		r.key = key;
		r.key_len = (uint32_t)klen;
		r.value = value;
		r.value_len = value_len;
		r.timestamp_ms = ts0 + (int64_t)id;
		if (sb_batch_builder_add(&b, &r) != 0)
			abort();
	}
	if (sb_batch_builder_finish(&b, &out, &out_len) != 0)
		abort();
	copy = malloc(out_len);
	memcpy(copy, out, out_len);
	*len = out_len;
	sb_batch_builder_fini(&b);
	free(value);
	return copy;
}

int64_t sbt_check_batches(const uint8_t *data, size_t len, uint32_t value_len, int64_t ts0,
			  int64_t expect_first)
{
	uint8_t *want = malloc(value_len ? value_len : 1);
	char key[32];
	int64_t expect = expect_first, count = 0;
	size_t at = 0;
	while (at < len) {
		struct sb_batch_header h;
		struct sb_record_iter it;
		struct sb_record_view r;
		int rc = sb_batch_verify(data + at, len - at, &h);
		if (rc) {
			fprintf(stderr, "batch at %zu: %s\n", at, sb_strerror(rc));
			goto bad;
		}
		sb_record_iter_init(&it, data + at, &h);
		while ((rc = sb_record_iter_next(&it, &r)) == 1) {
			if (expect >= 0 && r.offset < expect)
				continue; /* a batch may start before the requested offset */
			if (expect >= 0 && r.offset != expect) {
				fprintf(stderr, "offset %" PRId64 ", expected %" PRId64 "\n", r.offset, expect);
				goto bad;
			}
			int klen = snprintf(key, sizeof key, "k%" PRId64, r.offset);
			fill_value(want, value_len, (uint64_t)r.offset);
			if (r.key_len != klen || memcmp(r.key, key, (size_t)klen) != 0 ||
			    r.value_len != (int32_t)value_len || memcmp(r.value, want, value_len) != 0 ||
			    r.timestamp_ms != ts0 + r.offset) {
				fprintf(stderr, "record %" PRId64 " differs\n", r.offset);
				goto bad;
			}
			expect = r.offset + 1;
			count++;
		}
		if (rc < 0)
			goto bad;
		at += (size_t)sb_batch_total_bytes(&h);
	}
	free(want);
	return count;
bad:
	free(want);
	return -1;
}
