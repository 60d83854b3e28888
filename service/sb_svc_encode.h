/* sb_svc_encode.h - writes ConsumeResponse / FetchResponse record lists in
 * protobuf wire format straight from stored batches: no intermediate
 * message objects, keys and values copied once into the outgoing buffer. */
#ifndef SB_SERVICE_ENCODE_H
#define SB_SERVICE_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "sb_batch.h"
#include "sb_error.h"

struct sb_enc {
	uint8_t *buf;
	size_t len, cap;
};

void sb_enc_init(struct sb_enc *e);
void sb_enc_fini(struct sb_enc *e);
/* Appends a varint field (skipped when v == 0, as proto3 does). 0 or -ENOMEM. */
int sb_enc_varint_field(struct sb_enc *e, uint32_t field, uint64_t v) SB_MUST_CHECK;

/* Appends the records of the batches data[0..len) whose offsets are in
 * [from, stop) as repeated ConsumedRecord field `field`, stopping before
 * max_records or before the buffer passes max_bytes (but always at least one
 * record). *count gets the records written and *next the offset after the
 * last one written (from if none). Returns 0, SB_ECORRUPT or -ENOMEM. */
int sb_enc_records(struct sb_enc *e, uint32_t field, const uint8_t *data, size_t len, int64_t from,
		   int64_t stop, uint32_t max_records, size_t max_bytes, uint32_t *count, int64_t *next) SB_MUST_CHECK;

/* Appends one record as a ConsumedRecord message in field `field` (1
 * offset, 2 timestamp_ms, 3 key, 4 value, 5 headers, 6 tombstone).
 * 0, SB_ECORRUPT (malformed headers) or -ENOMEM. */
int sb_enc_record(struct sb_enc *e, uint32_t field, const struct sb_record_view *r) SB_MUST_CHECK;
/* Appends a bytes (or embedded message) field, also when empty. 0 or -ENOMEM. */
int sb_enc_bytes_field(struct sb_enc *e, uint32_t field, const void *data, size_t len) SB_MUST_CHECK;

#endif
