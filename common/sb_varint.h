/* sb_varint.h - LEB128 unsigned varints and zigzag signed varints, as used by
 * the record format (docs/FORMAT.md). Decoders never read past `end` and
 * reject encodings longer than the type allows. */
#ifndef SB_COMMON_VARINT_H
#define SB_COMMON_VARINT_H

#include <stddef.h>
#include <stdint.h>

#define SB_VARINT_MAX_BYTES 10

/* Writes v at p (which must have SB_VARINT_MAX_BYTES of room); returns the
 * number of bytes written. */
static inline size_t sb_uvarint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static inline size_t sb_uvarint_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static inline uint64_t sb_zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }
static inline int64_t sb_unzigzag(uint64_t v) { return (int64_t)(v >> 1) ^ -(int64_t)(v & 1); }

static inline size_t sb_varint_put(uint8_t *p, int64_t v) { return sb_uvarint_put(p, sb_zigzag(v)); }
static inline size_t sb_varint_size(int64_t v) { return sb_uvarint_size(sb_zigzag(v)); }

/* Reads an unsigned varint from *pp (not past end) into *v and advances *pp.
 * Returns 0, or -1 if truncated or longer than 10 bytes / overflowing. */
static inline int sb_uvarint_get(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
	const uint8_t *p = *pp;
	uint64_t r = 0;
	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (p >= end)
			return -1;
		uint8_t b = *p++;
		if (shift == 63 && b > 1)
			return -1;
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*pp = p;
			*v = r;
			return 0;
		}
	}
	return -1;
}

static inline int sb_varint_get(const uint8_t **pp, const uint8_t *end, int64_t *v)
{
	uint64_t u;
	if (sb_uvarint_get(pp, end, &u))
		return -1;
	*v = sb_unzigzag(u);
	return 0;
}

#endif
