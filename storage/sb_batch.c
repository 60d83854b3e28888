/* sb_batch.c - building, checking and reading record batches (sb_batch.h;
 * byte layout in docs/FORMAT.md).
 *
 * The builder encodes each record straight into one growable buffer behind a
 * reserved 61-byte header and fills the header and CRC in finish. Readers
 * never trust a byte: every varint and every length is bounds-checked against
 * the end of its record, and a record must use exactly the bytes its length
 * prefix claims, so hostile input yields SB_ECORRUPT, never an out-of-bounds
 * read. The builder and the iterator run once per record on the hot path:
 * no allocation per record, and the common case is straight-line code.
 */
#include "sb_batch.h"

#include "sb_crc32c.h"
#include "sb_endian.h"
#include "sb_limits.h"
#include "sb_varint.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Smallest record: length, attributes, timestamp delta, offset delta, key
 * length, value length, header count, one byte each. */
#define SB_RECORD_BYTES_MIN 7u
/* First allocation of a builder (grown geometrically up to max_bytes). */
#define SB_BUILDER_INITIAL_BYTES 4096u

/* ---- Header ---- */

static void decode_header(const uint8_t *p, struct sb_batch_header *h)
{
	h->base_offset = (int64_t)sb_load64(p + SB_BATCH_OFF_BASE_OFFSET);
	h->batch_length = sb_load32(p + SB_BATCH_OFF_LENGTH);
	h->leader_epoch = (int32_t)sb_load32(p + SB_BATCH_OFF_EPOCH);
	h->magic = p[SB_BATCH_OFF_MAGIC];
	h->crc = sb_load32(p + SB_BATCH_OFF_CRC);
	h->attributes = sb_load16(p + SB_BATCH_OFF_ATTRIBUTES);
	h->last_offset_delta = sb_load32(p + SB_BATCH_OFF_LAST_DELTA);
	h->first_timestamp_ms = (int64_t)sb_load64(p + SB_BATCH_OFF_FIRST_TS);
	h->max_timestamp_ms = (int64_t)sb_load64(p + SB_BATCH_OFF_MAX_TS);
	h->producer_id = (int64_t)sb_load64(p + SB_BATCH_OFF_PRODUCER_ID);
	h->producer_epoch = (int16_t)sb_load16(p + SB_BATCH_OFF_PRODUCER_EPOCH);
	h->base_sequence = (int32_t)sb_load32(p + SB_BATCH_OFF_BASE_SEQ);
	h->record_count = sb_load32(p + SB_BATCH_OFF_COUNT);
}

int sb_batch_parse_header(const void *buf, size_t len, struct sb_batch_header *h)
{
	if (len < SB_BATCH_HEADER_BYTES)
		return -ENODATA;
	decode_header(buf, h);
	if (h->magic != SB_BATCH_MAGIC)
		return SB_ECORRUPT;
	uint64_t total = sb_batch_total_bytes(h);
	if (total < SB_BATCH_HEADER_BYTES)
		return SB_ECORRUPT;
	if (total > SB_BATCH_BYTES_MAX)
		return SB_ETOOBIG;
	if ((h->attributes & 0x7u) != 0) /* compression codec: none supported yet */
		return SB_ECORRUPT;
	if (h->record_count == 0 || h->record_count > SB_BATCH_RECORDS_MAX)
		return SB_ECORRUPT;
	if (h->last_offset_delta != h->record_count - 1)
		return SB_ECORRUPT;
	/* base_offset + record_count must not overflow (sb_batch_next_offset). */
	if (h->base_offset < 0 || h->base_offset > INT64_MAX - (int64_t)h->record_count)
		return SB_ECORRUPT;
	return 0;
}

int sb_batch_verify(const void *buf, size_t len, struct sb_batch_header *h)
{
	int rc = sb_batch_parse_header(buf, len, h);
	if (rc)
		return rc;
	uint64_t total = sb_batch_total_bytes(h);
	if (total > len)
		return -ENODATA;
	const uint8_t *p = buf;
	if (sb_crc32c(p + SB_BATCH_CRC_START, total - SB_BATCH_CRC_START) != h->crc)
		return SB_ECORRUPT;
	return 0;
}

int sb_batch_validate(const void *buf, size_t len, struct sb_batch_header *h)
{
	struct sb_record_iter it;
	struct sb_record_view r;
	int rc = sb_batch_verify(buf, len, h);
	if (rc)
		return rc;
	sb_record_iter_init(&it, buf, h);
	while ((rc = sb_record_iter_next(&it, &r)) == 1) {
	}
	if (rc < 0)
		return rc;
	/* The iterator stops after record_count records: anything left over
	 * means the count or a length is wrong. */
	if (it.p != it.end)
		return SB_ECORRUPT;
	return 0;
}

void sb_batch_set_base_offset(void *buf, int64_t base_offset)
{
	sb_store64((uint8_t *)buf + SB_BATCH_OFF_BASE_OFFSET, (uint64_t)base_offset);
}

void sb_batch_set_leader_epoch(void *buf, int32_t epoch)
{
	sb_store32((uint8_t *)buf + SB_BATCH_OFF_EPOCH, (uint32_t)epoch);
}

/* ---- Builder ---- */

int sb_batch_builder_init(struct sb_batch_builder *b, size_t max_bytes)
{
	memset(b, 0, sizeof(*b));
	if (max_bytes > SB_BATCH_BYTES_MAX)
		max_bytes = SB_BATCH_BYTES_MAX;
	size_t cap = max_bytes < SB_BUILDER_INITIAL_BYTES ? max_bytes : SB_BUILDER_INITIAL_BYTES;
	if (cap < SB_BATCH_HEADER_BYTES)
		cap = SB_BATCH_HEADER_BYTES;
	b->buf = malloc(cap);
	if (!b->buf)
		return -ENOMEM;
	b->cap = cap;
	b->max_bytes = max_bytes;
	b->len = SB_BATCH_HEADER_BYTES;
	return 0;
}

void sb_batch_builder_fini(struct sb_batch_builder *b)
{
	free(b->buf);
	memset(b, 0, sizeof(*b));
}

void sb_batch_builder_reset(struct sb_batch_builder *b)
{
	b->len = SB_BATCH_HEADER_BYTES;
	b->count = 0;
	b->keyed = 0;
	b->first_ts = 0;
	b->max_ts = 0;
}

size_t sb_batch_builder_size(const struct sb_batch_builder *b)
{
	return b->len;
}

/* Encoded bytes of a length-prefixed field: zigzag length (-1 = null) + data. */
static inline size_t nullable_size(const void *data, uint32_t len)
{
	return data ? sb_varint_size(len) + len : 1;
}

static inline uint8_t *put_bytes(uint8_t *p, const void *data, size_t len)
{
	if (len) /* memcpy from NULL is undefined even for 0 bytes */
		memcpy(p, data, len);
	return p + len;
}

static inline uint8_t *put_nullable(uint8_t *p, const void *data, uint32_t len)
{
	if (!data)
		return p + sb_varint_put(p, -1);
	p += sb_varint_put(p, len);
	return put_bytes(p, data, len);
}

/* Bytes of the record's fields after the length prefix. */
static size_t record_body_size(const struct sb_record_in *r, int64_t ts_delta,
                               uint32_t offset_delta)
{
	size_t n = 1 + sb_varint_size(ts_delta) + sb_uvarint_size(offset_delta);
	n += nullable_size(r->key, r->key_len) + nullable_size(r->value, r->value_len);
	n += sb_uvarint_size(r->header_count);
	for (uint32_t i = 0; i < r->header_count; i++) {
		const struct sb_header_in *hd = &r->headers[i];
		n += sb_uvarint_size(hd->key_len) + hd->key_len;
		n += nullable_size(hd->value, hd->value_len);
	}
	return n;
}

static uint8_t *put_record(uint8_t *p, const struct sb_record_in *r, size_t body, int64_t ts_delta,
                           uint32_t offset_delta)
{
	p += sb_uvarint_put(p, body);
	*p++ = r->attributes;
	p += sb_varint_put(p, ts_delta);
	p += sb_uvarint_put(p, offset_delta);
	p = put_nullable(p, r->key, r->key_len);
	p = put_nullable(p, r->value, r->value_len);
	p += sb_uvarint_put(p, r->header_count);
	for (uint32_t i = 0; i < r->header_count; i++) {
		const struct sb_header_in *hd = &r->headers[i];
		p += sb_uvarint_put(p, hd->key_len);
		p = put_bytes(p, hd->key, hd->key_len);
		p = put_nullable(p, hd->value, hd->value_len);
	}
	return p;
}

/* Makes room for need bytes in total, doubling up to max_bytes. */
static int builder_reserve(struct sb_batch_builder *b, size_t need)
{
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap;
	while (cap < need)
		cap = cap > b->max_bytes / 2 ? b->max_bytes : cap * 2;
	uint8_t *buf = realloc(b->buf, cap);
	if (!buf)
		return -ENOMEM;
	b->buf = buf;
	b->cap = cap;
	return 0;
}

int sb_batch_builder_add(struct sb_batch_builder *b, const struct sb_record_in *r)
{
	if (b->count >= SB_BATCH_RECORDS_MAX || r->header_count > SB_RECORD_HEADERS_MAX)
		return SB_ETOOBIG;
	int64_t first_ts = b->count ? b->first_ts : r->timestamp_ms;
	/* Wrapping subtraction: the reader adds it back with the same wrap, so
	 * any two int64 timestamps round-trip. */
	int64_t ts_delta = (int64_t)((uint64_t)r->timestamp_ms - (uint64_t)first_ts);
	size_t body = record_body_size(r, ts_delta, b->count);
	size_t rec = sb_uvarint_size(body) + body;
	if (rec > b->max_bytes || b->len > b->max_bytes - rec)
		return SB_ETOOBIG;
	int rc = builder_reserve(b, b->len + rec);
	if (rc)
		return rc;
	uint8_t *end = put_record(b->buf + b->len, r, body, ts_delta, b->count);
	b->len += rec;
	assert(end == b->buf + b->len); /* size and encoding agree */
	(void)end;                      /* unused under NDEBUG */
	if (b->count == 0 || r->timestamp_ms > b->max_ts)
		b->max_ts = r->timestamp_ms;
	b->first_ts = first_ts;
	b->count++;
	b->keyed += r->key && r->key_len > 0;
	return 0;
}

int sb_batch_builder_finish(struct sb_batch_builder *b, const void **out, size_t *out_len)
{
	if (b->count == 0)
		return SB_EINVAL;
	uint8_t *p = b->buf;
	sb_store64(p + SB_BATCH_OFF_BASE_OFFSET, 0);
	sb_store32(p + SB_BATCH_OFF_LENGTH, (uint32_t)(b->len - SB_BATCH_PREFIX_BYTES));
	sb_store32(p + SB_BATCH_OFF_EPOCH, 0);
	p[SB_BATCH_OFF_MAGIC] = SB_BATCH_MAGIC;
	sb_store16(p + SB_BATCH_OFF_ATTRIBUTES, b->keyed ? 0 : SB_BATCH_ATTR_NO_KEYS);
	sb_store32(p + SB_BATCH_OFF_LAST_DELTA, b->count - 1);
	sb_store64(p + SB_BATCH_OFF_FIRST_TS, (uint64_t)b->first_ts);
	sb_store64(p + SB_BATCH_OFF_MAX_TS, (uint64_t)b->max_ts);
	sb_store64(p + SB_BATCH_OFF_PRODUCER_ID, (uint64_t)-1);
	sb_store16(p + SB_BATCH_OFF_PRODUCER_EPOCH, (uint16_t)-1);
	sb_store32(p + SB_BATCH_OFF_BASE_SEQ, (uint32_t)-1);
	sb_store32(p + SB_BATCH_OFF_COUNT, b->count);
	sb_store32(p + SB_BATCH_OFF_CRC,
	           sb_crc32c(p + SB_BATCH_CRC_START, b->len - SB_BATCH_CRC_START));
	*out = p;
	*out_len = b->len;
	return 0;
}

/* ---- Reading ---- */

void sb_record_iter_init(struct sb_record_iter *it, const void *buf,
                         const struct sb_batch_header *h)
{
	const uint8_t *p = buf;
	uint64_t total = sb_batch_total_bytes(h);
	it->p = p + SB_BATCH_HEADER_BYTES;
	/* A header that was never parsed could claim fewer bytes than itself. */
	it->end = total < SB_BATCH_HEADER_BYTES ? it->p : p + total;
	it->base_offset = h->base_offset;
	it->first_ts = h->first_timestamp_ms;
	it->remaining = h->record_count;
	it->index = 0;
}

/* Reads a zigzag length (-1 = null) and that many bytes, all before end. */
static inline int get_nullable(const uint8_t **pp, const uint8_t *end, const uint8_t **data,
                               int32_t *len)
{
	int64_t n;
	if (sb_varint_get(pp, end, &n) || n < -1 || n > end - *pp || n > INT32_MAX)
		return -1;
	*len = (int32_t)n;
	*data = n < 0 ? NULL : *pp;
	*pp += n < 0 ? 0 : n;
	return 0;
}

int sb_record_header_next(const uint8_t **pp, const uint8_t *end, struct sb_header_view *h)
{
	const uint8_t *p = *pp;
	uint64_t key_len;
	if (p >= end)
		return 0;
	if (sb_uvarint_get(&p, end, &key_len) || key_len > (uint64_t)(end - p) ||
	    key_len > INT32_MAX)
		return SB_ECORRUPT;
	h->key = p;
	h->key_len = (uint32_t)key_len;
	p += key_len;
	if (get_nullable(&p, end, &h->value, &h->value_len))
		return SB_ECORRUPT;
	*pp = p;
	return 1;
}

/* The headers section must hold exactly count well-formed headers. */
static int check_headers(const uint8_t *p, const uint8_t *end, uint64_t count)
{
	struct sb_header_view h;
	for (uint64_t i = 0; i < count; i++) {
		if (sb_record_header_next(&p, end, &h) != 1)
			return SB_ECORRUPT;
	}
	return p == end ? 0 : SB_ECORRUPT;
}

int sb_record_iter_next(struct sb_record_iter *it, struct sb_record_view *r)
{
	const uint8_t *p = it->p;
	uint64_t len, offset_delta, header_count;
	int64_t ts_delta;
	if (it->remaining == 0)
		return 0;
	if (sb_uvarint_get(&p, it->end, &len) || len < SB_RECORD_BYTES_MIN - 1 ||
	    len > (uint64_t)(it->end - p))
		return SB_ECORRUPT;
	const uint8_t *rec_end = p + len;
	r->attributes = *p++;
	if (sb_varint_get(&p, rec_end, &ts_delta) || sb_uvarint_get(&p, rec_end, &offset_delta) ||
	    offset_delta != it->index)
		return SB_ECORRUPT;
	if (get_nullable(&p, rec_end, &r->key, &r->key_len) ||
	    get_nullable(&p, rec_end, &r->value, &r->value_len))
		return SB_ECORRUPT;
	if (sb_uvarint_get(&p, rec_end, &header_count) || header_count > SB_RECORD_HEADERS_MAX)
		return SB_ECORRUPT;
	if (header_count == 0 ? p != rec_end : check_headers(p, rec_end, header_count) != 0)
		return SB_ECORRUPT;
	r->offset = (int64_t)((uint64_t)it->base_offset + offset_delta);
	r->timestamp_ms = (int64_t)((uint64_t)it->first_ts + (uint64_t)ts_delta);
	r->header_count = (uint32_t)header_count;
	r->headers = p;
	r->headers_end = rec_end;
	it->p = rec_end;
	it->remaining--;
	it->index++;
	return 1;
}
