/* sb_sstable_format.h - private definitions shared by the SSTable pieces:
 * sb_sstable_write.c (writer, temp cleanup), sb_sstable_read.c (open, get,
 * accessors, iterator, block decoding) and sb_sstable_merge.c (merge).
 * Not part of the storage API: only those files include it; everyone else
 * uses sb_sstable.h. The file format is docs/SSTABLE.md.
 *
 * File layout (little-endian), no file header:
 *   data block 0, u32 CRC32C of block 0, ..., data block N-1, its CRC,
 *   index section, u32 CRC32C of it,
 *   bloom section (sb_bloom.h serialized filter), u32 CRC32C of it,
 *   footer (SB_SST_FOOTER_BYTES, CRC32C in its last 4 bytes).
 * Data block: entries, then u32 restart offsets, then u32 restart count.
 * Entry: uvarint shared, uvarint unshared, uvarint flags, varint offset
 * delta, varint timestamp delta, uvarint value length, uvarint headers
 * length, key suffix, value, headers. At a restart point shared is 0 and the
 * deltas are from 0; elsewhere they are from the previous entry.
 * Index section: uvarint first-key length, first key, then per block:
 * uvarint last-key length, last key, uvarint block length (CRC excluded);
 * blocks are contiguous from byte 0, so positions are implied.
 */
#ifndef SB_STORAGE_SSTABLE_FORMAT_H
#define SB_STORAGE_SSTABLE_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sb_error.h"
#include "sb_sstable.h"
#include "sb_varint.h"

#define SST_MAGIC 0x54534253u /* "SBST" */
#define SST_VERSION 1u
#define SST_CRC_BYTES 4u
/* Smallest data block: one entry of 7 one-byte varints, one restart, count. */
#define SST_BLOCK_BYTES_MIN 15u
/* Varint bytes of one entry's head at most: 3 uvarint32 + 2 varint64 + 2. */
#define SST_ENTRY_HEAD_BYTES_MAX (5u * 5u + 2u * SB_VARINT_MAX_BYTES)
/* Footer field positions. */
#define FT_MAGIC 0
#define FT_VERSION 4
#define FT_ENTRIES 8
#define FT_TOMBSTONES 16
#define FT_COVERED_MIN 24
#define FT_COVERED_MAX 32
#define FT_MIN_TS 40
#define FT_MAX_TS 48
#define FT_INDEX_POS 56
#define FT_INDEX_LEN 64
#define FT_BLOCKS 68
#define FT_BLOOM_POS 72
#define FT_BLOOM_LEN 80
#define FT_BLOCK_TARGET 84
#define FT_RESERVED 88 /* zeros up to FT_CRC */
#define FT_CRC 124

struct footer {
	uint64_t entries, tombstones;
	int64_t covered_min, covered_max;
	int64_t min_ts, max_ts;
	uint64_t index_pos, bloom_pos;
	uint32_t index_len, blocks, bloom_len, block_target;
};

/* Key order: bytewise over the common prefix, then the shorter key first. */
static inline int sb_sst__key_cmp(const uint8_t *a, uint32_t a_len, const uint8_t *b,
                                  uint32_t b_len)
{
	uint32_t n = a_len < b_len ? a_len : b_len;
	int c = n ? memcmp(a, b, n) : 0;
	if (c)
		return c;
	return (a_len > b_len) - (a_len < b_len);
}

/* Grows *p (capacity *cap) to hold at least need bytes, doubling from
 * 4096; on -ENOMEM *p and *cap are unchanged. (sb_sstable_write.c) */
int sb_sst__grow_bytes(uint8_t **p, size_t *cap, size_t need) SB_MUST_CHECK;

/* Copies *in (all defaults if in is NULL) to *o, fills in the defaults of
 * zero fields and checks the bounds: 0 or SB_EINVAL. (sb_sstable_write.c) */
int sb_sst__resolve_opts(const struct sb_sst_opts *in, struct sb_sst_opts *o) SB_MUST_CHECK;

/* sb_sst_writer_finish that also reports the bytes written to *file_bytes
 * (if not NULL), whatever the result; frees w. (sb_sstable_write.c) */
int sb_sst__writer_finish(struct sb_sst_writer *w, int64_t covered_min, int64_t covered_max,
                          uint64_t *file_bytes) SB_MUST_CHECK;

#endif /* SB_STORAGE_SSTABLE_FORMAT_H */
