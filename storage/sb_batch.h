/* sb_batch.h - the record batch: the unit StreamBus writes, stores, serves
 * and replicates, byte for byte (no re-encoding on the read path).
 * docs/FORMAT.md describes the layout byte by byte.
 *
 * Header (61 bytes, little-endian):
 *   0  i64 base_offset        assigned by the leader on append
 *   8  u32 batch_length       bytes that follow this field (total - 12)
 *  12  i32 leader_epoch       epoch of the leader that appended it
 *  16  u8  magic              format version, SB_BATCH_MAGIC
 *  17  u32 crc                CRC32C of bytes [21, 12 + batch_length)
 *  21  u16 attributes         bits 0-2: compression codec (0 = none)
 *  23  u32 last_offset_delta  record_count - 1
 *  27  i64 first_timestamp_ms
 *  35  i64 max_timestamp_ms
 *  43  i64 producer_id        -1 = none
 *  51  i16 producer_epoch     -1 = none
 *  53  i32 base_sequence      -1 = none
 *  57  u32 record_count
 *  61  records
 * base_offset, batch_length, leader_epoch and magic sit before the CRC so the
 * leader can assign offsets and epochs without recomputing it.
 *
 * Record (all varints; "zz" = zigzag signed):
 *   uvarint length (of the rest of the record), u8 attributes (bit 0 =
 *   tombstone), zz timestamp_delta (from first_timestamp_ms), uvarint
 *   offset_delta, zz key_length (-1 = null), key, zz value_length (-1 = null),
 *   value, uvarint header_count, then per header: uvarint key_length, key,
 *   zz value_length (-1 = null), value.
 */
#ifndef SB_STORAGE_BATCH_H
#define SB_STORAGE_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "sb_error.h"

#define SB_BATCH_HEADER_BYTES 61u
#define SB_BATCH_LENGTH_OFFSET 8u  /* bytes before batch_length included in total */
#define SB_BATCH_PREFIX_BYTES 12u  /* base_offset + batch_length */
#define SB_BATCH_CRC_START 21u     /* first byte covered by the CRC */
#define SB_BATCH_MAGIC 1u

#define SB_BATCH_OFF_BASE_OFFSET 0u
#define SB_BATCH_OFF_LENGTH 8u
#define SB_BATCH_OFF_EPOCH 12u
#define SB_BATCH_OFF_MAGIC 16u
#define SB_BATCH_OFF_CRC 17u
#define SB_BATCH_OFF_ATTRIBUTES 21u
#define SB_BATCH_OFF_LAST_DELTA 23u
#define SB_BATCH_OFF_FIRST_TS 27u
#define SB_BATCH_OFF_MAX_TS 35u
#define SB_BATCH_OFF_PRODUCER_ID 43u
#define SB_BATCH_OFF_PRODUCER_EPOCH 51u
#define SB_BATCH_OFF_BASE_SEQ 53u
#define SB_BATCH_OFF_COUNT 57u

#define SB_RECORD_ATTR_TOMBSTONE 0x01u
/* Batch attribute bit 3: no record of the batch has a key (set by the
 * builder), so the key store skips the batch without reading its records.
 * Absent (older batches), a batch may hold keys. */
#define SB_BATCH_ATTR_NO_KEYS 0x0008u

struct sb_batch_header {
	int64_t base_offset;
	uint32_t batch_length;
	int32_t leader_epoch;
	uint8_t magic;
	uint32_t crc;
	uint16_t attributes;
	uint32_t last_offset_delta;
	int64_t first_timestamp_ms;
	int64_t max_timestamp_ms;
	int64_t producer_id;
	int16_t producer_epoch;
	int32_t base_sequence;
	uint32_t record_count;
};

/* Total bytes of a batch whose header is h. */
static inline uint64_t sb_batch_total_bytes(const struct sb_batch_header *h)
{
	return (uint64_t)SB_BATCH_PREFIX_BYTES + h->batch_length;
}
/* Offset one past the batch's last record. */
static inline int64_t sb_batch_next_offset(const struct sb_batch_header *h)
{
	return h->base_offset + (int64_t)h->last_offset_delta + 1;
}

/* Decodes the header at buf (len bytes available, len >= 61) and checks its
 * structure: magic, SB_BATCH_HEADER_BYTES <= total <= SB_BATCH_BYTES_MAX,
 * 1 <= record_count <= SB_BATCH_RECORDS_MAX, last_offset_delta ==
 * record_count - 1, base_offset >= 0, codec 0. Does not read past the header
 * and does not check the CRC (the batch body may not be in buf yet).
 * Returns 0, SB_ECORRUPT (structure invalid) or SB_ETOOBIG (length over the
 * limit). -ENODATA if len < 61. */
int sb_batch_parse_header(const void *buf, size_t len, struct sb_batch_header *h) SB_MUST_CHECK;

/* Parses the header, requires the whole batch within len, and checks the
 * CRC. Returns 0, SB_ECORRUPT, SB_ETOOBIG, or -ENODATA (batch longer than
 * len: a truncated batch). */
int sb_batch_verify(const void *buf, size_t len, struct sb_batch_header *h) SB_MUST_CHECK;

/* sb_batch_verify plus a full decode of every record: lengths, counts,
 * offset deltas 0..count-1 in order, header counts within limits. For bytes
 * from outside (replication, fuzzers). 0 or SB_ECORRUPT/SB_ETOOBIG/-ENODATA. */
int sb_batch_validate(const void *buf, size_t len, struct sb_batch_header *h) SB_MUST_CHECK;

/* Rewrite the fields outside the CRC (no CRC update needed). */
void sb_batch_set_base_offset(void *buf, int64_t base_offset);
void sb_batch_set_leader_epoch(void *buf, int32_t epoch);

/* ---- Building batches ---- */

struct sb_header_in {
	const void *key;
	uint32_t key_len;
	const void *value; /* NULL with value_len 0 = null value */
	uint32_t value_len;
};

struct sb_record_in {
	const void *key; /* NULL = null key */
	uint32_t key_len;
	const void *value; /* NULL = null value */
	uint32_t value_len;
	const struct sb_header_in *headers;
	uint32_t header_count;
	int64_t timestamp_ms;
	uint8_t attributes; /* SB_RECORD_ATTR_* */
};

/* A builder owns a growable buffer (up to max_bytes). Not thread-safe. */
struct sb_batch_builder {
	uint8_t *buf;
	size_t len, cap, max_bytes;
	uint32_t count;
	uint32_t keyed; /* records with a key */
	int64_t first_ts, max_ts;
};

/* max_bytes: the largest batch this builder may produce (<= SB_BATCH_BYTES_MAX).
 * Returns 0 or -ENOMEM. */
int sb_batch_builder_init(struct sb_batch_builder *b, size_t max_bytes) SB_MUST_CHECK;
void sb_batch_builder_fini(struct sb_batch_builder *b);
/* Forgets the records; keeps the buffer. */
void sb_batch_builder_reset(struct sb_batch_builder *b);
/* Adds one record. The first record's timestamp becomes first_timestamp_ms;
 * later ones are stored as deltas. Returns 0, SB_ETOOBIG (the batch would
 * exceed max_bytes or SB_BATCH_RECORDS_MAX; the builder is unchanged) or
 * -ENOMEM. */
int sb_batch_builder_add(struct sb_batch_builder *b, const struct sb_record_in *r) SB_MUST_CHECK;
/* Bytes the batch would have if finished now. */
size_t sb_batch_builder_size(const struct sb_batch_builder *b);
/* Writes the header (base_offset 0, epoch 0, producer fields -1) and CRC.
 * *out points into the builder's buffer, valid until the next add/reset/fini.
 * Returns 0, or SB_EINVAL if the builder holds no record. */
int sb_batch_builder_finish(struct sb_batch_builder *b, const void **out, size_t *out_len) SB_MUST_CHECK;

/* ---- Reading records ---- */

struct sb_record_view {
	int64_t offset;
	int64_t timestamp_ms;
	uint8_t attributes;
	const uint8_t *key; /* NULL if null */
	int32_t key_len;    /* -1 if null */
	const uint8_t *value;
	int32_t value_len;
	uint32_t header_count;
	const uint8_t *headers; /* encoded headers; walk with sb_record_header_next */
	const uint8_t *headers_end;
};

struct sb_record_iter {
	const uint8_t *p, *end;
	int64_t base_offset, first_ts;
	uint32_t remaining, index;
};

/* Starts iterating the records of a batch whose header is h (already parsed
 * or verified) at buf. */
void sb_record_iter_init(struct sb_record_iter *it, const void *buf, const struct sb_batch_header *h);
/* Returns 1 and fills *r, 0 at the end, SB_ECORRUPT on a malformed record.
 * r's pointers point into the batch. */
int sb_record_iter_next(struct sb_record_iter *it, struct sb_record_view *r) SB_MUST_CHECK;

struct sb_header_view {
	const uint8_t *key;
	uint32_t key_len;
	const uint8_t *value; /* NULL if null */
	int32_t value_len;    /* -1 if null */
};
/* Walks a record's headers: *pp starts at r->headers. Returns 1 with *h
 * filled, 0 at headers_end, SB_ECORRUPT if malformed. */
int sb_record_header_next(const uint8_t **pp, const uint8_t *end, struct sb_header_view *h) SB_MUST_CHECK;

#endif
