/* sb_index.c - sparse offset and time indexes of one segment (see sb_index.h).
 *
 * File format (both files, little-endian), 40-byte header then entries:
 *   0 u32 magic ("SBIX" offset index, "SBTX" time index)
 *   4 u32 version (1)
 *   8 i64 segment base offset
 *  16 u64 size of the segment file the index describes
 *  24 u32 entry count
 *  28 u32 index interval in bytes
 *  32 u32 CRC32C of bytes [0, 32) and of every entry
 *  36 u32 reserved (0)
 * offset entries: u32 relative offset, u32 position (8 bytes)
 * time entries:   i64 timestamp ms, u32 relative offset, u32 position (16 bytes)
 */
#include "sb_index.h"

#include "sb_crc32c.h"
#include "sb_endian.h"
#include "sb_limits.h"
#include "sb_vfs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INDEX_HEADER_BYTES 40u
#define INDEX_MAGIC_OFF 0x58494253u  /* "SBIX" */
#define INDEX_MAGIC_TIME 0x58544253u /* "SBTX" */
#define INDEX_VERSION 1u

void sb_index_init(struct sb_index *idx, uint32_t interval_bytes)
{
	memset(idx, 0, sizeof *idx);
	idx->interval = interval_bytes ? interval_bytes : 1;
	idx->max_timestamp_ms = INT64_MIN;
}

void sb_index_fini(struct sb_index *idx)
{
	free(idx->off);
	free(idx->time);
	memset(idx, 0, sizeof *idx);
}

void sb_index_reset(struct sb_index *idx)
{
	idx->n_off = 0;
	idx->n_time = 0;
	idx->last_entry_pos = 0;
	idx->max_timestamp_ms = INT64_MIN;
}

void sb_index_truncate(struct sb_index *idx, uint64_t pos)
{
	while (idx->n_off > 0 && idx->off[idx->n_off - 1].pos >= pos)
		idx->n_off--;
	while (idx->n_time > 0 && idx->time[idx->n_time - 1].pos >= pos)
		idx->n_time--;
	idx->last_entry_pos = idx->n_off ? idx->off[idx->n_off - 1].pos : 0;
}

static int grow(void **arr, uint32_t *cap, size_t elem)
{
	uint32_t ncap = *cap ? *cap * 2 : 64;
	if (ncap > SB_INDEX_ENTRIES_MAX)
		ncap = SB_INDEX_ENTRIES_MAX;
	if (ncap <= *cap)
		return SB_ETOOBIG;
	void *p = realloc(*arr, (size_t)ncap * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

int sb_index_add(struct sb_index *idx, int64_t base, const struct sb_batch_header *h, uint64_t pos)
{
	int64_t prev_max = idx->max_timestamp_ms;
	if (h->max_timestamp_ms > idx->max_timestamp_ms)
		idx->max_timestamp_ms = h->max_timestamp_ms;
	if (idx->n_off > 0 && pos - idx->last_entry_pos < idx->interval)
		return 0;
	if (idx->n_off == idx->cap_off) {
		int rc = grow((void **)&idx->off, &idx->cap_off, sizeof *idx->off);
		if (rc)
			return rc == SB_ETOOBIG ? 0 : rc; /* full: lookups scan further */
	}
	uint32_t rel = (uint32_t)(h->base_offset - base);
	idx->off[idx->n_off].rel_offset = rel;
	idx->off[idx->n_off].pos = (uint32_t)pos;
	idx->n_off++;
	idx->last_entry_pos = pos;
	if (idx->n_time > 0 && idx->max_timestamp_ms <= prev_max)
		return 0;
	if (idx->n_time == idx->cap_time) {
		int rc = grow((void **)&idx->time, &idx->cap_time, sizeof *idx->time);
		if (rc)
			return rc == SB_ETOOBIG ? 0 : rc;
	}
	idx->time[idx->n_time].timestamp_ms = idx->max_timestamp_ms;
	idx->time[idx->n_time].rel_offset = rel;
	idx->time[idx->n_time].pos = (uint32_t)pos;
	idx->n_time++;
	return 0;
}

uint64_t sb_index_lookup(const struct sb_index *idx, uint32_t rel_offset)
{
	/* Branch-light binary search for the last entry with rel <= target. */
	const struct sb_index_entry *e = idx->off;
	uint32_t n = idx->n_off;
	if (n == 0 || e[0].rel_offset > rel_offset)
		return 0;
	while (n > 1) {
		uint32_t half = n / 2;
		e = e[half].rel_offset <= rel_offset ? e + half : e;
		n -= half;
	}
	return e->pos;
}

uint64_t sb_index_lookup_time(const struct sb_index *idx, int64_t ts)
{
	uint32_t lo = 0, hi = idx->n_time; /* first entry with T >= ts */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (idx->time[mid].timestamp_ms < ts)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo == 0 ? 0 : idx->time[lo - 1].pos;
}

static void put_header(uint8_t *h, uint32_t magic, int64_t base, uint64_t seg_bytes, uint32_t count,
		       uint32_t interval)
{
	memset(h, 0, INDEX_HEADER_BYTES);
	sb_store32(h + 0, magic);
	sb_store32(h + 4, INDEX_VERSION);
	sb_store64(h + 8, (uint64_t)base);
	sb_store64(h + 16, seg_bytes);
	sb_store32(h + 24, count);
	sb_store32(h + 28, interval);
}

static int save_one(struct sb_vfs *vfs, const char *dir, const char *fname, uint32_t magic,
		    int64_t base, uint64_t seg_bytes, const struct sb_index *idx)
{
	int is_time = magic == INDEX_MAGIC_TIME;
	uint32_t n = is_time ? idx->n_time : idx->n_off;
	size_t esz = is_time ? 16 : 8;
	size_t len = INDEX_HEADER_BYTES + (size_t)n * esz;
	uint8_t *buf = malloc(len);
	int rc;
	if (!buf)
		return -ENOMEM;
	put_header(buf, magic, base, seg_bytes, n, idx->interval);
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *p = buf + INDEX_HEADER_BYTES + i * esz;
		if (is_time) {
			sb_store64(p, (uint64_t)idx->time[i].timestamp_ms);
			sb_store32(p + 8, idx->time[i].rel_offset);
			sb_store32(p + 12, idx->time[i].pos);
		} else {
			sb_store32(p, idx->off[i].rel_offset);
			sb_store32(p + 4, idx->off[i].pos);
		}
	}
	uint32_t crc = sb_crc32c(buf, 32);
	crc = sb_crc32c_extend(crc, buf + INDEX_HEADER_BYTES, len - INDEX_HEADER_BYTES);
	sb_store32(buf + 32, crc);
	rc = sb_vfs_write_file_durable(vfs, dir, fname, buf, len);
	free(buf);
	return rc;
}

int sb_index_save(struct sb_vfs *vfs, const char *dir, const char *name, int64_t base,
		  uint64_t segment_bytes, const struct sb_index *idx)
{
	char fname[64];
	int rc;
	snprintf(fname, sizeof fname, "%s.index", name);
	rc = save_one(vfs, dir, fname, INDEX_MAGIC_OFF, base, segment_bytes, idx);
	if (rc)
		return rc;
	snprintf(fname, sizeof fname, "%s.timeindex", name);
	return save_one(vfs, dir, fname, INDEX_MAGIC_TIME, base, segment_bytes, idx);
}

/* Reads and checks one index file; returns a malloc'd buffer of entries. */
static int load_one(struct sb_vfs *vfs, const char *dir, const char *fname, uint32_t magic,
		    int64_t base, uint64_t seg_bytes, uint8_t **entries, uint32_t *count)
{
	char path[SB_PATH_MAX];
	void *data = NULL;
	size_t len = 0;
	size_t esz = magic == INDEX_MAGIC_TIME ? 16 : 8;
	int rc;

	snprintf(path, sizeof path, "%s/%s", dir, fname);
	rc = sb_vfs_read_file(vfs, path, INDEX_HEADER_BYTES + (size_t)SB_INDEX_ENTRIES_MAX * 16, &data, &len);
	if (rc)
		return rc == -EFBIG ? SB_ECORRUPT : rc;
	uint8_t *h = data;
	rc = SB_ECORRUPT;
	if (len < INDEX_HEADER_BYTES || sb_load32(h) != magic || sb_load32(h + 4) != INDEX_VERSION ||
	    (int64_t)sb_load64(h + 8) != base || sb_load64(h + 16) != seg_bytes)
		goto out;
	uint32_t n = sb_load32(h + 24);
	if (n > SB_INDEX_ENTRIES_MAX || len != INDEX_HEADER_BYTES + (size_t)n * esz)
		goto out;
	uint32_t crc = sb_crc32c(h, 32);
	crc = sb_crc32c_extend(crc, h + INDEX_HEADER_BYTES, len - INDEX_HEADER_BYTES);
	if (crc != sb_load32(h + 32))
		goto out;
	*count = n;
	*entries = data;
	data = NULL;
	rc = 0;
out:
	free(data);
	return rc;
}

static int fill_offsets(struct sb_index *idx, const uint8_t *p, uint32_t n, uint64_t seg_bytes)
{
	idx->off = malloc((size_t)(n ? n : 1) * sizeof *idx->off);
	if (!idx->off)
		return -ENOMEM;
	idx->cap_off = n ? n : 1;
	for (uint32_t i = 0; i < n; i++, p += 8) {
		idx->off[i].rel_offset = sb_load32(p);
		idx->off[i].pos = sb_load32(p + 4);
		if (idx->off[i].pos >= seg_bytes ||
		    (i > 0 && (idx->off[i].rel_offset <= idx->off[i - 1].rel_offset ||
			       idx->off[i].pos <= idx->off[i - 1].pos)))
			return SB_ECORRUPT;
	}
	idx->n_off = n;
	idx->last_entry_pos = n ? idx->off[n - 1].pos : 0;
	return 0;
}

static int fill_times(struct sb_index *idx, const uint8_t *p, uint32_t n, uint64_t seg_bytes)
{
	idx->time = malloc((size_t)(n ? n : 1) * sizeof *idx->time);
	if (!idx->time)
		return -ENOMEM;
	idx->cap_time = n ? n : 1;
	for (uint32_t i = 0; i < n; i++, p += 16) {
		idx->time[i].timestamp_ms = (int64_t)sb_load64(p);
		idx->time[i].rel_offset = sb_load32(p + 8);
		idx->time[i].pos = sb_load32(p + 12);
		if (idx->time[i].pos >= seg_bytes ||
		    (i > 0 && idx->time[i].timestamp_ms <= idx->time[i - 1].timestamp_ms))
			return SB_ECORRUPT;
	}
	idx->n_time = n;
	idx->max_timestamp_ms = n ? idx->time[n - 1].timestamp_ms : INT64_MIN;
	return 0;
}

int sb_index_load(struct sb_vfs *vfs, const char *dir, const char *name, int64_t base,
		  uint64_t segment_bytes, struct sb_index *idx)
{
	char fname[64];
	uint8_t *offs = NULL, *times = NULL;
	uint32_t n_off = 0, n_time = 0;
	int rc;

	snprintf(fname, sizeof fname, "%s.index", name);
	rc = load_one(vfs, dir, fname, INDEX_MAGIC_OFF, base, segment_bytes, &offs, &n_off);
	if (rc)
		goto out;
	snprintf(fname, sizeof fname, "%s.timeindex", name);
	rc = load_one(vfs, dir, fname, INDEX_MAGIC_TIME, base, segment_bytes, &times, &n_time);
	if (rc)
		goto out;
	if (n_off == 0 && segment_bytes > 0) {
		rc = SB_ECORRUPT;
		goto out;
	}
	uint32_t interval = sb_load32(offs + 28);
	sb_index_fini(idx);
	sb_index_init(idx, interval);
	rc = fill_offsets(idx, offs + INDEX_HEADER_BYTES, n_off, segment_bytes);
	if (!rc)
		rc = fill_times(idx, times + INDEX_HEADER_BYTES, n_time, segment_bytes);
out:
	if (rc && idx->off) {
		uint32_t interval_keep = idx->interval;
		sb_index_fini(idx);
		sb_index_init(idx, interval_keep);
	}
	free(offs);
	free(times);
	return rc;
}
