/* test_svc_wire.c - the produce hot path's wire decoder and the consume
 * path's wire encoder agree with protobuf-c (the reference implementation)
 * and survive hostile bytes. */
#include "sb_test.h"

#include "sb_batch.h"
#include "sb_svc_encode.h"
#include "sb_svc_wire.h"
#include "sb_utf8.h"
#include "streambus/v1/streambus.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	uint8_t *b = malloc(*len ? *len : 1);
	protobuf_c_message_pack(m, b);
	return b;
}

/* A request with n records: key "k<i>" (none for i % 3 == 0), value of i
 * bytes, i % 4 headers, timestamp i (0 for i == 0). */
static uint8_t *make_request(int n, int32_t partition, size_t *len)
{
	Streambus__V1__ProduceRequest r = STREAMBUS__V1__PRODUCE_REQUEST__INIT;
	Streambus__V1__Record *recs = calloc((size_t)n, sizeof *recs), **rp = calloc((size_t)n, sizeof *rp);
	Streambus__V1__Header hs[4], *hp[4];
	static char keys[64][16];
	static uint8_t val[256];
	for (int h = 0; h < 4; h++) {
		streambus__v1__header__init(&hs[h]);
		hs[h].key = h % 2 ? "hk" : "";
		hs[h].value.data = val;
		hs[h].value.len = (size_t)h;
		hp[h] = &hs[h];
	}
	for (int i = 0; i < n; i++) {
		streambus__v1__record__init(&recs[i]);
		snprintf(keys[i % 64], 16, "k%d", i);
		if (i % 3) {
			recs[i].key.data = (uint8_t *)keys[i % 64];
			recs[i].key.len = strlen(keys[i % 64]);
		}
		memset(val, 'a' + i % 26, sizeof val);
		recs[i].value.data = val;
		recs[i].value.len = (size_t)(i % 256);
		recs[i].n_headers = (size_t)(i % 4);
		recs[i].headers = hp;
		recs[i].timestamp_ms = i;
		rp[i] = &recs[i];
	}
	r.request_id = 77;
	r.topic = "orders";
	r.partition = partition;
	r.n_records = (size_t)n;
	r.records = rp;
	r.acks = STREAMBUS__V1__ACKS__ACKS_ALL;
	uint8_t *b = pack(&r.base, len);
	free(recs);
	free(rp);
	return b;
}

static void test_wire_decoder_matches_protobuf_c(void **state)
{
	size_t len;
	(void)state;
	uint8_t *buf = make_request(50, -1, &len);
	struct sb_wire_produce w;
	assert_int_equal(sb_wire_produce_parse(buf, len, &w), 0);
	assert_int_equal(w.request_id, 77);
	assert_int_equal(w.partition, -1);
	assert_int_equal(w.acks, 2);
	assert_int_equal(w.n_records, 50);
	assert_int_equal(w.topic_len, 6);
	assert_memory_equal(w.topic, "orders", 6);
	assert_null(w.first_key); /* record 0 has no key */
	struct sb_batch_builder b;
	assert_int_equal(sb_batch_builder_init(&b, 1 << 20), 0);
	assert_int_equal(sb_wire_produce_records(&w, &b, 999, 64), 0);
	const void *out;
	size_t out_len;
	assert_int_equal(sb_batch_builder_finish(&b, &out, &out_len), 0);
	struct sb_batch_header h;
	assert_int_equal(sb_batch_validate(out, out_len, &h), 0);
	struct sb_record_iter it;
	struct sb_record_view r;
	sb_record_iter_init(&it, out, &h);
	for (int i = 0; i < 50; i++) {
		assert_int_equal(sb_record_iter_next(&it, &r), 1);
		assert_int_equal(r.timestamp_ms, i ? i : 999);
		assert_int_equal(r.value_len, i % 256);
		assert_int_equal(r.header_count, (uint32_t)(i % 4));
		if (i % 3) {
			char k[16];
			snprintf(k, sizeof k, "k%d", i);
			assert_int_equal(r.key_len, (int32_t)strlen(k));
			assert_memory_equal(r.key, k, strlen(k));
		} else {
			assert_int_equal(r.key_len, -1);
		}
	}
	sb_batch_builder_fini(&b);
	free(buf);
}

static void test_wire_decoder_rejects_or_survives_hostile_bytes(void **state)
{
	uint64_t seed = 42;
	size_t len;
	(void)state;
	uint8_t *good = make_request(20, 3, &len);
	struct sb_batch_builder b;
	assert_int_equal(sb_batch_builder_init(&b, 1 << 20), 0);
	int accepted = 0, rejected = 0;
	for (int round = 0; round < 20000; round++) {
		size_t n = round % 2 ? len : sbt_rand(&seed) % (len + 1); /* truncations */
		uint8_t *m = malloc(n ? n : 1);
		memcpy(m, good, n);
		for (int k = round % 2 ? 1 + (int)(sbt_rand(&seed) % 4) : 0; k > 0 && n; k--)
			m[sbt_rand(&seed) % n] ^= (uint8_t)(1 + sbt_rand(&seed) % 255);
		struct sb_wire_produce w;
		if (sb_wire_produce_parse(m, n, &w) == 0) {
			sb_batch_builder_reset(&b);
			int rc = sb_wire_produce_records(&w, &b, 1, 64);
			assert_true(rc == 0 || rc == SB_EINVAL || rc == SB_ETOOBIG);
			accepted++;
		} else {
			rejected++;
		}
		free(m);
	}
	assert_true(accepted > 1000 && rejected > 1000);
	/* Wrong wire type for a known field, and a truncated length. */
	const uint8_t bad1[] = {0x12, 0x05, 'a'};       /* topic says 5 bytes, has 1 */
	const uint8_t bad2[] = {0x0a, 0x01, 'x'};       /* request_id as bytes */
	const uint8_t unknown[] = {0x48, 0x01, 0x12, 0x01, 't'}; /* field 9 varint: skipped */
	struct sb_wire_produce w;
	assert_int_equal(sb_wire_produce_parse(bad1, sizeof bad1, &w), SB_EINVAL);
	assert_int_equal(sb_wire_produce_parse(bad2, sizeof bad2, &w), SB_EINVAL);
	assert_int_equal(sb_wire_produce_parse(unknown, sizeof unknown, &w), 0);
	assert_int_equal(w.topic_len, 1);
	sb_batch_builder_fini(&b);
	free(good);
}

/* proto3 strings must be UTF-8 and, for C, free of NUL bytes. */
static void test_strings_must_be_utf8(void **state)
{
	struct sb_wire_produce w;
	(void)state;
	assert_true(sb_utf8_valid((const uint8_t *)"orders.\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 16));
	assert_false(sb_utf8_valid((const uint8_t *)"a\0b", 3));
	assert_false(sb_utf8_valid((const uint8_t *)"\xff", 1));
	assert_false(sb_utf8_valid((const uint8_t *)"\xc0\xaf", 2));         /* overlong '/' */
	assert_false(sb_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));     /* a surrogate */
	assert_false(sb_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
	assert_false(sb_utf8_valid((const uint8_t *)"\xe2\x82", 2));         /* cut short */
	/* request_id 7, topic "a\0b", one record: the name is refused, the id kept. */
	const uint8_t nul_topic[] = {0x08, 0x07, 0x12, 0x03, 'a', 0, 'b', 0x22, 0x02, 0x12, 0x00};
	assert_int_equal(sb_wire_produce_parse(nul_topic, sizeof nul_topic, &w), SB_EBADNAME);
	assert_int_equal(w.request_id, 7);
	/* A header key that is not UTF-8 (topic "u8", header {key "\xff", value "x"}). */
	const uint8_t bad_key[] = {0x12, 0x02, 'u', '8', 0x22, 0x08, 0x1a, 0x06, 0x0a, 0x01, 0xff, 0x12, 0x01, 'x'};
	assert_int_equal(sb_wire_produce_parse(bad_key, sizeof bad_key, &w), SB_EINVAL);
	char msg[] = "topic \"\xe2\x82\" \xff ok";
	sb_utf8_sanitize(msg);
	assert_string_equal(msg, "topic \"??\" ? ok");
}

static void test_record_encoder_is_read_back_by_protobuf_c(void **state)
{
	struct sb_batch_builder b;
	struct sb_header_in hs[2] = {{"a", 1, "xyz", 3}, {"b", 1, NULL, 0}};
	const void *batch;
	size_t blen;
	(void)state;
	assert_int_equal(sb_batch_builder_init(&b, 1 << 20), 0);
	for (int i = 0; i < 30; i++) {
		struct sb_record_in r = {0};
		char v[64];
		snprintf(v, sizeof v, "value-%d", i);
		r.key = i % 2 ? "key" : NULL;
		r.key_len = i % 2 ? 3 : 0;
		r.value = v;
		r.value_len = (uint32_t)strlen(v);
		r.headers = hs;
		r.header_count = (uint32_t)(i % 3);
		r.timestamp_ms = 1700000000000ll + i;
		assert_int_equal(sb_batch_builder_add(&b, &r), 0);
	}
	assert_int_equal(sb_batch_builder_finish(&b, &batch, &blen), 0);
	uint8_t *copy = malloc(blen);
	memcpy(copy, batch, blen);
	sb_batch_set_base_offset(copy, 100);
	struct sb_enc e;
	uint32_t n;
	int64_t next;
	sb_enc_init(&e);
	assert_int_equal(sb_enc_varint_field(&e, 1, 7), 0);
	/* From offset 105, at most 10 records. */
	assert_int_equal(sb_enc_records(&e, 2, copy, blen, 105, INT64_MAX, 10, 1 << 20, &n, &next), 0);
	assert_int_equal(n, 10);
	assert_int_equal(next, 115);
	assert_int_equal(sb_enc_varint_field(&e, 4, (uint64_t)next), 0);
	Streambus__V1__ConsumeResponse *resp = streambus__v1__consume_response__unpack(NULL, e.len, e.buf);
	assert_non_null(resp);
	assert_int_equal(resp->partition, 7);
	assert_int_equal(resp->n_records, 10);
	assert_int_equal(resp->next_offset, 115);
	for (size_t k = 0; k < resp->n_records; k++) {
		Streambus__V1__ConsumedRecord *r = resp->records[k];
		int i = 5 + (int)k;
		char v[64];
		snprintf(v, sizeof v, "value-%d", i);
		assert_int_equal(r->offset, 100 + i);
		assert_int_equal(r->timestamp_ms, 1700000000000ll + i);
		assert_int_equal(r->value.len, strlen(v));
		assert_memory_equal(r->value.data, v, strlen(v));
		assert_int_equal(r->key.len, i % 2 ? 3 : 0);
		assert_int_equal(r->n_headers, (size_t)(i % 3));
		if (r->n_headers > 0) {
			assert_string_equal(r->headers[0]->key, "a");
			assert_int_equal(r->headers[0]->value.len, 3);
		}
	}
	streambus__v1__consume_response__free_unpacked(resp, NULL);
	/* A byte budget stops early but always yields one record. */
	sb_enc_fini(&e);
	sb_enc_init(&e);
	assert_int_equal(sb_enc_records(&e, 2, copy, blen, 100, INT64_MAX, 1000, 1, &n, &next), 0);
	assert_int_equal(n, 1);
	/* stop is exclusive. */
	sb_enc_fini(&e);
	sb_enc_init(&e);
	assert_int_equal(sb_enc_records(&e, 2, copy, blen, 100, 103, 1000, 1 << 20, &n, &next), 0);
	assert_int_equal(n, 3);
	assert_int_equal(next, 103);
	sb_enc_fini(&e);
	free(copy);
	sb_batch_builder_fini(&b);
}

/* Record.tombstone: decoded into the record attribute (a key and no value
 * required), and encoded back as ConsumedRecord.tombstone. */
static int tombstone_request(const char *key, const char *value, uint8_t *attr)
{
	Streambus__V1__ProduceRequest q = STREAMBUS__V1__PRODUCE_REQUEST__INIT;
	Streambus__V1__Record rec = STREAMBUS__V1__RECORD__INIT, *rp = &rec;
	struct sb_wire_produce w;
	struct sb_batch_builder b;
	size_t len;
	rec.key.data = (uint8_t *)key;
	rec.key.len = key ? strlen(key) : 0;
	rec.value.data = (uint8_t *)value;
	rec.value.len = value ? strlen(value) : 0;
	rec.tombstone = 1;
	q.topic = "t";
	q.n_records = 1;
	q.records = &rp;
	uint8_t *buf = pack(&q.base, &len);
	int rc = sb_wire_produce_parse(buf, len, &w); /* checks every record's structure */
	if (rc) {
		free(buf);
		return rc;
	}
	assert_int_equal(sb_batch_builder_init(&b, 1 << 20), 0);
	rc = sb_wire_produce_records(&w, &b, 5, 64);
	if (!rc) {
		const void *out;
		size_t out_len;
		struct sb_batch_header h;
		struct sb_record_iter it;
		struct sb_record_view r;
		struct sb_enc e;
		uint32_t n;
		int64_t next;
		assert_int_equal(sb_batch_builder_finish(&b, &out, &out_len), 0);
		assert_int_equal(sb_batch_validate(out, out_len, &h), 0);
		sb_record_iter_init(&it, out, &h);
		assert_int_equal(sb_record_iter_next(&it, &r), 1);
		*attr = r.attributes;
		sb_enc_init(&e);
		assert_int_equal(sb_enc_records(&e, 1, out, out_len, 0, INT64_MAX, 10, 1 << 20, &n, &next), 0);
		Streambus__V1__FetchResponse *f = streambus__v1__fetch_response__unpack(NULL, e.len, e.buf);
		assert_non_null(f);
		assert_int_equal(f->n_records, 1);
		assert_true(f->records[0]->tombstone);
		assert_int_equal(f->records[0]->value.len, 0);
		streambus__v1__fetch_response__free_unpacked(f, NULL);
		sb_enc_fini(&e);
	}
	sb_batch_builder_fini(&b);
	free(buf);
	return rc;
}

static void test_tombstones_round_trip_and_are_checked(void **state)
{
	uint8_t attr = 0;
	(void)state;
	assert_int_equal(tombstone_request("k", NULL, &attr), 0);
	assert_int_equal(attr, SB_RECORD_ATTR_TOMBSTONE);
	assert_int_equal(tombstone_request(NULL, NULL, &attr), SB_EINVAL); /* no key */
	assert_int_equal(tombstone_request("k", "v", &attr), SB_EINVAL);  /* a value */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wire_decoder_matches_protobuf_c),
		cmocka_unit_test(test_wire_decoder_rejects_or_survives_hostile_bytes),
		cmocka_unit_test(test_strings_must_be_utf8),
		cmocka_unit_test(test_record_encoder_is_read_back_by_protobuf_c),
		cmocka_unit_test(test_tombstones_round_trip_and_are_checked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
