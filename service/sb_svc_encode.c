/* sb_svc_encode.c - protobuf wire encoding of consumed records (see
 * sb_svc_encode.h). ConsumedRecord: 1 offset, 2 timestamp_ms, 3 key,
 * 4 value, 5 headers (Header: 1 key, 2 value), 6 tombstone. */
#include "sb_svc_encode.h"

#include "sb_batch.h"
#include "sb_varint.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define WT_VARINT 0u
#define WT_LEN 2u

void sb_enc_init(struct sb_enc *e) { memset(e, 0, sizeof *e); }
void sb_enc_fini(struct sb_enc *e)
{
	free(e->buf);
	memset(e, 0, sizeof *e);
}

static int reserve(struct sb_enc *e, size_t n)
{
	if (e->len + n <= e->cap)
		return 0;
	size_t cap = e->cap ? e->cap : 4096;
	while (cap < e->len + n)
		cap *= 2;
	uint8_t *b = realloc(e->buf, cap);
	if (!b)
		return -ENOMEM;
	e->buf = b;
	e->cap = cap;
	return 0;
}

static inline size_t key_size(uint32_t field) { return sb_uvarint_size((uint64_t)field << 3); }

static inline uint8_t *put_key(uint8_t *p, uint32_t field, uint32_t wt)
{
	return p + sb_uvarint_put(p, ((uint64_t)field << 3) | wt);
}

static inline uint8_t *put_bytes(uint8_t *p, uint32_t field, const void *d, size_t n)
{
	p = put_key(p, field, WT_LEN);
	p += sb_uvarint_put(p, n);
	if (n)
		memcpy(p, d, n);
	return p + n;
}

static inline size_t bytes_size(uint32_t field, size_t n) { return key_size(field) + sb_uvarint_size(n) + n; }

int sb_enc_varint_field(struct sb_enc *e, uint32_t field, uint64_t v)
{
	if (v == 0)
		return 0;
	if (reserve(e, 20))
		return -ENOMEM;
	uint8_t *p = put_key(e->buf + e->len, field, WT_VARINT);
	p += sb_uvarint_put(p, v);
	e->len = (size_t)(p - e->buf);
	return 0;
}

/* Size of one Header message body. */
static size_t header_body(const struct sb_header_view *h)
{
	return (h->key_len ? bytes_size(1, h->key_len) : 0) +
	       (h->value_len > 0 ? bytes_size(2, (size_t)h->value_len) : 0);
}

static int record_body(const struct sb_record_view *r, size_t *size)
{
	size_t n = 0;
	if (r->offset)
		n += 1 + sb_uvarint_size((uint64_t)r->offset);
	if (r->timestamp_ms)
		n += 1 + sb_uvarint_size((uint64_t)r->timestamp_ms);
	if (r->key_len > 0)
		n += bytes_size(3, (size_t)r->key_len);
	if (r->value_len > 0)
		n += bytes_size(4, (size_t)r->value_len);
	const uint8_t *hp = r->headers;
	struct sb_header_view h;
	int rc;
	while ((rc = sb_record_header_next(&hp, r->headers_end, &h)) == 1)
		n += bytes_size(5, header_body(&h));
	if (r->attributes & SB_RECORD_ATTR_TOMBSTONE)
		n += 2;
	if (rc < 0)
		return rc;
	*size = n;
	return 0;
}

static uint8_t *put_record(uint8_t *p, const struct sb_record_view *r)
{
	if (r->offset) {
		p = put_key(p, 1, WT_VARINT);
		p += sb_uvarint_put(p, (uint64_t)r->offset);
	}
	if (r->timestamp_ms) {
		p = put_key(p, 2, WT_VARINT);
		p += sb_uvarint_put(p, (uint64_t)r->timestamp_ms);
	}
	if (r->key_len > 0)
		p = put_bytes(p, 3, r->key, (size_t)r->key_len);
	if (r->value_len > 0)
		p = put_bytes(p, 4, r->value, (size_t)r->value_len);
	const uint8_t *hp = r->headers;
	struct sb_header_view h;
	while (sb_record_header_next(&hp, r->headers_end, &h) == 1) {
		p = put_key(p, 5, WT_LEN);
		p += sb_uvarint_put(p, header_body(&h));
		if (h.key_len)
			p = put_bytes(p, 1, h.key, h.key_len);
		if (h.value_len > 0)
			p = put_bytes(p, 2, h.value, (size_t)h.value_len);
	}
	if (r->attributes & SB_RECORD_ATTR_TOMBSTONE) {
		p = put_key(p, 6, WT_VARINT);
		*p++ = 1;
	}
	return p;
}

int sb_enc_record(struct sb_enc *e, uint32_t field, const struct sb_record_view *r)
{
	size_t body;
	if (record_body(r, &body))
		return SB_ECORRUPT;
	size_t total = key_size(field) + sb_uvarint_size(body) + body;
	if (reserve(e, total))
		return -ENOMEM;
	uint8_t *p = put_key(e->buf + e->len, field, WT_LEN);
	p += sb_uvarint_put(p, body);
	p = put_record(p, r);
	e->len = (size_t)(p - e->buf);
	return 0;
}

int sb_enc_bytes_field(struct sb_enc *e, uint32_t field, const void *data, size_t len)
{
	if (reserve(e, bytes_size(field, len)))
		return -ENOMEM;
	e->len = (size_t)(put_bytes(e->buf + e->len, field, data, len) - e->buf);
	return 0;
}

int sb_enc_records(struct sb_enc *e, uint32_t field, const uint8_t *data, size_t len, int64_t from,
		   int64_t stop, uint32_t max_records, size_t max_bytes, uint32_t *count, int64_t *next)
{
	size_t at = 0;
	*count = 0;
	*next = from;
	while (at < len) {
		struct sb_batch_header bh;
		struct sb_record_iter it;
		struct sb_record_view r;
		int rc = sb_batch_verify(data + at, len - at, &bh);
		if (rc)
			return SB_ECORRUPT;
		sb_record_iter_init(&it, data + at, &bh);
		while ((rc = sb_record_iter_next(&it, &r)) == 1) {
			size_t body;
			if (r.offset < *next)
				continue;
			if (r.offset >= stop || *count >= max_records)
				return 0;
			if (record_body(&r, &body))
				return SB_ECORRUPT;
			size_t total = key_size(field) + sb_uvarint_size(body) + body;
			if (*count > 0 && e->len + total > max_bytes)
				return 0;
			if ((rc = sb_enc_record(e, field, &r)) != 0)
				return rc;
			(*count)++;
			*next = r.offset + 1;
		}
		if (rc < 0)
			return SB_ECORRUPT;
		at += (size_t)sb_batch_total_bytes(&bh);
	}
	return 0;
}
