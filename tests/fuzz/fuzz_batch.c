/* fuzz_batch.c - the record-batch decoder and validator (storage/sb_batch.h)
 * and the service encoder that turns stored batches into ConsumedRecords
 * (service/sb_svc_encode.h).
 *
 * Each input is tried twice: as given (the CRC almost never matches, so
 * this exercises the header checks) and with every batch's CRC rewritten
 * (so the record decoder behind the CRC is reached). For every batch that
 * verifies, the records are walked with sb_record_iter_next and every key,
 * value and header byte is read (ASan catches a view pointing outside the
 * input). Invariants checked:
 *   - sb_batch_validate accepts => the iterator yields exactly record_count
 *     records with offsets base..base+count-1 and no error; every header
 *     walks cleanly;
 *   - sb_batch_validate accepts => sb_enc_records encodes every record, and
 *     protobuf-c decodes the result as a FetchResponse whose keys, values,
 *     offsets and headers equal the iterator's. */
#include "fuzz_common.h"

#include "sb_batch.h"
#include "sb_svc_encode.h"
#include "streambus/v1/streambus.pb-c.h"

#include <stdlib.h>
#include <string.h>

static volatile uint8_t sink;

static void touch(const uint8_t *p, int32_t n)
{
	for (int32_t i = 0; i < n; i++)
		sink ^= p[i];
}

static int bytes_eq(const uint8_t *a, int32_t a_len, ProtobufCBinaryData b)
{
	size_t n = a_len < 0 ? 0 : (size_t)a_len;
	return n == b.len && (n == 0 || memcmp(a, b.data, n) == 0);
}

/* Checks the encoded records of one batch against its iterator. */
static void check_encoding(const uint8_t *buf, size_t len, const struct sb_batch_header *h)
{
	struct sb_enc e;
	uint32_t count = 0;
	int64_t next = 0;
	sb_enc_init(&e);
	int rc = sb_enc_records(&e, 1, buf, len, h->base_offset, INT64_MAX, UINT32_MAX, SIZE_MAX, &count, &next);
	FUZZ_CHECK(rc == 0, "sb_enc_records refused a batch sb_batch_validate accepted");
	FUZZ_CHECK(count == h->record_count, "sb_enc_records lost records");
	FUZZ_CHECK(next == sb_batch_next_offset(h), "sb_enc_records next offset");
	Streambus__V1__FetchResponse *m = streambus__v1__fetch_response__unpack(NULL, e.len, e.buf);
	FUZZ_CHECK(m != NULL, "protobuf-c cannot decode what sb_enc_records wrote");
	FUZZ_CHECK(m->n_records == count, "decoded record count");
	struct sb_record_iter it;
	struct sb_record_view r;
	sb_record_iter_init(&it, buf, h);
	for (size_t i = 0; i < m->n_records; i++) {
		const Streambus__V1__ConsumedRecord *c = m->records[i];
		FUZZ_CHECK(sb_record_iter_next(&it, &r) == 1, "iterator ended early");
		FUZZ_CHECK(c->offset == r.offset, "encoded offset");
		FUZZ_CHECK(c->timestamp_ms == r.timestamp_ms, "encoded timestamp");
		FUZZ_CHECK(bytes_eq(r.key, r.key_len, c->key), "encoded key");
		FUZZ_CHECK(bytes_eq(r.value, r.value_len, c->value), "encoded value");
		FUZZ_CHECK(c->n_headers == r.header_count, "encoded header count");
		const uint8_t *hp = r.headers;
		struct sb_header_view hv;
		for (size_t j = 0; j < c->n_headers; j++) {
			FUZZ_CHECK(sb_record_header_next(&hp, r.headers_end, &hv) == 1, "header walk");
			size_t kl = strlen(c->headers[j]->key);
			/* A key with a NUL byte is cut short by protobuf-c's C string. */
			FUZZ_CHECK(kl <= hv.key_len && memcmp(hv.key, c->headers[j]->key, kl) == 0, "encoded header key");
			FUZZ_CHECK(bytes_eq(hv.value, hv.value_len, c->headers[j]->value), "encoded header value");
		}
	}
	streambus__v1__fetch_response__free_unpacked(m, NULL);
	sb_enc_fini(&e);
}

/* Runs the decoders over buf[0..len) as back-to-back batches. */
static void run(const uint8_t *buf, size_t len)
{
	size_t at = 0;
	while (at < len) {
		struct sb_batch_header h, hv;
		const uint8_t *b = buf + at;
		size_t left = len - at;
		if (sb_batch_parse_header(b, left, &h) != 0)
			return;
		if (sb_batch_verify(b, left, &h) != 0)
			return;
		int valid = sb_batch_validate(b, left, &hv) == 0;
		struct sb_record_iter it;
		struct sb_record_view r;
		uint32_t n = 0;
		int rc;
		sb_record_iter_init(&it, b, &h);
		while ((rc = sb_record_iter_next(&it, &r)) == 1) {
			touch(r.key, r.key_len);
			touch(r.value, r.value_len);
			const uint8_t *hp = r.headers;
			struct sb_header_view hd;
			uint32_t nh = 0;
			int hrc;
			while ((hrc = sb_record_header_next(&hp, r.headers_end, &hd)) == 1) {
				touch(hd.key, (int32_t)hd.key_len);
				touch(hd.value, hd.value_len);
				nh++;
			}
			if (valid) {
				FUZZ_CHECK(hrc == 0 && nh == r.header_count, "headers of a validated batch");
				FUZZ_CHECK(r.offset == h.base_offset + (int64_t)n, "record offsets");
			}
			n++;
		}
		if (valid) {
			FUZZ_CHECK(rc == 0 && n == h.record_count, "records of a validated batch");
			check_encoding(b, (size_t)sb_batch_total_bytes(&h), &h);
		}
		at += (size_t)sb_batch_total_bytes(&h);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	sbf_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Copies so that ASan sees the exact bounds (libFuzzer's buffer is
	 * exactly size bytes too, but the fixed copy must be writable). */
	uint8_t *buf = malloc(size ? size : 1);
	FUZZ_CHECK(buf != NULL, "out of memory");
	memcpy(buf, data, size);
	run(buf, size);
	if (sbf_fix_batch_crcs(buf, size) > 0)
		run(buf, size);
	free(buf);
	return 0;
}
