/* sb_svc_wire.c - ProduceRequest wire decoding (see sb_svc_wire.h).
 * ProduceRequest: 1 request_id (varint), 2 topic (bytes), 3 partition
 * (int32 varint), 4 records (message), 5 acks (enum varint).
 * Record: 1 key, 2 value, 3 headers (Header: 1 key, 2 value), 4 timestamp_ms,
 * 5 tombstone (bool). */
#include "sb_svc_wire.h"

#include "sb_limits.h"
#include "sb_utf8.h"

#include "sb_varint.h"

#include <errno.h>
#include <string.h>

#define MAX_HEADERS_STACK SB_RECORD_HEADERS_MAX /* 1024 x 32 B on the stack */

struct field {
	uint32_t num, wt;
	uint64_t v;           /* varint value */
	const uint8_t *p;     /* length-delimited payload */
	size_t n;
};

/* Reads the next field at *pp; 1 = got one, 0 = end, SB_EINVAL = malformed. */
static int next_field(const uint8_t **pp, const uint8_t *end, struct field *f)
{
	uint64_t key;
	memset(f, 0, sizeof *f);
	if (*pp == end)
		return 0;
	if (sb_uvarint_get(pp, end, &key) || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
		return SB_EINVAL;
	f->num = (uint32_t)(key >> 3);
	f->wt = (uint32_t)(key & 7);
	switch (f->wt) {
	case 0:
		return sb_uvarint_get(pp, end, &f->v) ? SB_EINVAL : 1;
	case 1:
		if (end - *pp < 8)
			return SB_EINVAL;
		*pp += 8;
		return 1;
	case 5:
		if (end - *pp < 4)
			return SB_EINVAL;
		*pp += 4;
		return 1;
	case 2:
		if (sb_uvarint_get(pp, end, &f->v) || f->v > (uint64_t)(end - *pp))
			return SB_EINVAL;
		f->p = *pp;
		f->n = (size_t)f->v;
		*pp += f->n;
		return 1;
	default:
		return SB_EINVAL; /* groups are not used by proto3 */
	}
}

/* Walks one Record message; fills r (headers into hdrs[]). */
static int parse_record(const uint8_t *p, size_t n, struct sb_record_in *r, struct sb_header_in *hdrs,
			uint32_t max_headers, uint32_t *too_many)
{
	const uint8_t *end = p + n;
	struct field f;
	int rc;
	memset(r, 0, sizeof *r);
	r->value = "";
	r->headers = hdrs;
	while ((rc = next_field(&p, end, &f)) == 1) {
		if (f.num == 1 && f.wt == 2) {
			r->key = f.n ? f.p : NULL;
			r->key_len = (uint32_t)f.n;
		} else if (f.num == 2 && f.wt == 2) {
			r->value = f.p;
			r->value_len = (uint32_t)f.n;
		} else if (f.num == 4 && f.wt == 0) {
			r->timestamp_ms = (int64_t)f.v;
		} else if (f.num == 5 && f.wt == 0) {
			r->attributes = f.v ? SB_RECORD_ATTR_TOMBSTONE : 0;
		} else if (f.num == 3 && f.wt == 2) {
			const uint8_t *hp = f.p, *he = f.p + f.n;
			struct field g;
			struct sb_header_in h = {.value = ""};
			while ((rc = next_field(&hp, he, &g)) == 1) {
				if (g.num == 1 && g.wt == 2) {
					h.key = g.p;
					h.key_len = (uint32_t)g.n;
				} else if (g.num == 2 && g.wt == 2) {
					h.value = g.p;
					h.value_len = (uint32_t)g.n;
				} else if ((g.num == 1 || g.num == 2)) {
					return SB_EINVAL; /* known field, wrong wire type */
				}
			}
			if (rc < 0)
				return rc;
			/* Header.key is a proto3 string: other clients cannot decode
			 * a record whose key is not UTF-8. */
			if (h.key_len && !sb_utf8_valid(h.key, h.key_len))
				return SB_EINVAL;
			if (r->header_count >= max_headers)
				*too_many = 1;
			else
				hdrs[r->header_count++] = h;
		} else if (f.num >= 1 && f.num <= 5) {
			return SB_EINVAL;
		}
	}
	/* A tombstone deletes its key: it needs one, and carries no value. */
	if (rc == 0 && (r->attributes & SB_RECORD_ATTR_TOMBSTONE) && (r->key_len == 0 || r->value_len > 0))
		return SB_EINVAL;
	return rc;
}

int sb_wire_produce_parse(const uint8_t *buf, size_t len, struct sb_wire_produce *out)
{
	const uint8_t *p = buf, *end = buf + len;
	struct field f;
	int rc;
	memset(out, 0, sizeof *out);
	out->buf = buf;
	out->len = len;
	out->topic = "";
	while ((rc = next_field(&p, end, &f)) == 1) {
		switch (f.num) {
		case 1:
			if (f.wt != 0)
				return SB_EINVAL;
			out->request_id = f.v;
			break;
		case 2:
			if (f.wt != 2)
				return SB_EINVAL;
			out->topic = (const char *)f.p;
			out->topic_len = f.n;
			if (!sb_utf8_valid(f.p, f.n)) /* also refuses NUL bytes */
				return SB_EBADNAME;
			break;
		case 3:
			if (f.wt != 0)
				return SB_EINVAL;
			out->partition = (int32_t)(uint32_t)f.v; /* int32: low 32 bits */
			break;
		case 4: {
			struct sb_record_in r;
			struct sb_header_in hdrs[1];
			uint32_t many = 0;
			if (f.wt != 2)
				return SB_EINVAL;
			/* Structure check only; headers are re-read when encoding. */
			rc = parse_record(f.p, f.n, &r, hdrs, 0, &many);
			if (rc)
				return SB_EINVAL;
			if (out->n_records++ == 0) {
				out->first_key = r.key;
				out->first_key_len = r.key_len;
			}
			break;
		}
		case 5:
			if (f.wt != 0)
				return SB_EINVAL;
			out->acks = (int32_t)(uint32_t)f.v;
			break;
		default:
			break; /* unknown field: skipped */
		}
	}
	return rc < 0 ? SB_EINVAL : 0;
}

int sb_wire_produce_records(const struct sb_wire_produce *req, struct sb_batch_builder *b, int64_t now_ms,
			    uint32_t max_headers)
{
	const uint8_t *p = req->buf, *end = req->buf + req->len;
	struct sb_header_in hdrs[MAX_HEADERS_STACK];
	struct field f;
	int rc;
	if (max_headers > MAX_HEADERS_STACK)
		max_headers = MAX_HEADERS_STACK;
	while ((rc = next_field(&p, end, &f)) == 1) {
		if (f.num != 4)
			continue;
		struct sb_record_in r;
		uint32_t too_many = 0;
		rc = parse_record(f.p, f.n, &r, hdrs, max_headers, &too_many);
		if (rc)
			return SB_EINVAL;
		if (too_many)
			return SB_ETOOBIG;
		if (!r.timestamp_ms)
			r.timestamp_ms = now_ms;
		rc = sb_batch_builder_add(b, &r);
		if (rc)
			return rc;
	}
	return rc < 0 ? SB_EINVAL : 0;
}
