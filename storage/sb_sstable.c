/* sb_sstable.c - SSTable writer, reader, iterator and merge (sb_sstable.h;
 * the file format is docs/SSTABLE.md).
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
#include "sb_sstable.h"

#include "sb_bloom.h"
#include "sb_crc32c.h"
#include "sb_endian.h"
#include "sb_logging.h"
#include "sb_path.h"
#include "sb_time.h"
#include "sb_varint.h"
#include "sb_vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SST_MAGIC 0x54534253u /* "SBST" */
#define SST_VERSION 1u
#define SST_FILE_MODE 0644u
#define SST_CRC_BYTES 4u
/* Smallest data block: one entry of 7 one-byte varints, one restart, count. */
#define SST_BLOCK_BYTES_MIN 15u
/* Varint bytes of one entry's head at most: 3 uvarint32 + 2 varint64 + 2. */
#define SST_ENTRY_HEAD_BYTES_MAX (5u * 5u + 2u * SB_VARINT_MAX_BYTES)
/* Rate bound: the bucket holds this many bytes (the burst allowed). */
#define SST_RATE_BURST_BYTES (64u << 10)
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

/* Invariants of our own making (never of bytes read from disk): a failure is
 * a bug, and writing on would store a table that does not match its footer. */
#define SST_CHECK(cond)                                                                            \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: sstable invariant failed: %s\n", __FILE__,         \
			        __LINE__, #cond);                                                  \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

struct footer {
	uint64_t entries, tombstones;
	int64_t covered_min, covered_max;
	int64_t min_ts, max_ts;
	uint64_t index_pos, bloom_pos;
	uint32_t index_len, blocks, bloom_len, block_target;
};

/* Key order: bytewise over the common prefix, then the shorter key first. */
static int key_cmp(const uint8_t *a, uint32_t a_len, const uint8_t *b, uint32_t b_len)
{
	uint32_t n = a_len < b_len ? a_len : b_len;
	int c = n ? memcmp(a, b, n) : 0;
	if (c)
		return c;
	return (a_len > b_len) - (a_len < b_len);
}

/* First 8 key bytes as a big-endian integer, zero-padded: comparing two
 * prefixes orders keys whenever the prefixes differ (a shorter key padded
 * with zeros sorts before any longer key that extends it). */
static inline uint64_t key_prefix(const uint8_t *k, uint32_t len)
{
	uint8_t b[8] = {0};
	uint64_t v;
	if (len)
		memcpy(b, k, len < 8 ? len : 8);
	memcpy(&v, b, 8);
	return be64toh(v);
}

static void report_corrupt(const char *path, const char *what, uint64_t pos)
{
	SB_LOG_RATELIMITED(SB_LEVEL_ERROR, 1000, "sst_corrupt", "path=\"%s\" what=%s pos=%llu",
	                   path, what, (unsigned long long)pos);
}

static int grow_bytes(uint8_t **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : 4096;
	while (ncap < need)
		ncap *= 2;
	uint8_t *q = realloc(*p, ncap);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = ncap;
	return 0;
}

static int resolve_opts(const struct sb_sst_opts *in, struct sb_sst_opts *o)
{
	static const struct sb_sst_opts zero;
	*o = in ? *in : zero;
	if (!o->block_bytes)
		o->block_bytes = SB_SST_BLOCK_TARGET_BYTES_DEFAULT;
	if (!o->bloom_bits_per_key)
		o->bloom_bits_per_key = SB_BLOOM_BITS_PER_KEY_DEFAULT;
	if (!o->write_buffer_bytes)
		o->write_buffer_bytes = SB_SST_WRITE_BUFFER_BYTES_DEFAULT;
	if (o->block_bytes < SB_SST_BLOCK_TARGET_BYTES_MIN ||
	    o->block_bytes > SB_SST_BLOCK_TARGET_BYTES_MAX ||
	    o->bloom_bits_per_key < SB_BLOOM_BITS_PER_KEY_MIN ||
	    o->bloom_bits_per_key > SB_BLOOM_BITS_PER_KEY_MAX ||
	    o->write_buffer_bytes < SB_SST_WRITE_BUFFER_BYTES_MIN ||
	    o->write_buffer_bytes > SB_SST_WRITE_BUFFER_BYTES_MAX)
		return SB_EINVAL;
	return 0;
}

static int valid_name(const char *name)
{
	size_t n = strlen(name), s = strlen(SB_SST_SUFFIX);
	return n > s && n <= 255 - strlen(SB_SST_TEMP_SUFFIX) && !strchr(name, '/') &&
	       strcmp(name + n - s, SB_SST_SUFFIX) == 0;
}

/* ======================================================================
 * Writer
 * ====================================================================== */

struct sb_sst_writer {
	struct sb_vfs *vfs;
	int fd;
	int err; /* sticky: set by a failure that left the file or state behind */
	char *dir, *tmp_path, *final_path;
	struct sb_sst_opts o;
	/* Output buffer: out[0..out_len) goes to file position file_pos. */
	uint8_t *out;
	size_t out_len, out_cap;
	uint64_t file_pos;
	/* The block being built. */
	uint8_t *blk;
	size_t blk_len, blk_cap;
	uint32_t *restarts;
	uint32_t n_restarts, restarts_cap;
	uint32_t blk_entries;
	uint64_t prev_off, prev_ts;
	/* Index section so far. */
	uint8_t *idx;
	size_t idx_len, idx_cap;
	uint32_t blocks;
	/* Last key added (SB_SST_KEY_BYTES_MAX of room). */
	uint8_t *last_key;
	uint32_t last_key_len;
	uint64_t entries, tombstones;
	int64_t min_off, max_off, min_ts, max_ts;
	struct sb_bloom_builder bloom;
};

static void writer_free(struct sb_sst_writer *w)
{
	free(w->dir);
	free(w->tmp_path);
	free(w->final_path);
	free(w->out);
	free(w->blk);
	free(w->restarts);
	free(w->idx);
	free(w->last_key);
	sb_bloom_builder_fini(&w->bloom);
	free(w);
}

int sb_sst_writer_open(struct sb_vfs *vfs, const char *dir, const char *final_name,
                       const struct sb_sst_opts *opts, struct sb_sst_writer **out)
{
	struct sb_sst_writer *w = NULL;
	int rc;

	if (!vfs || !dir || !final_name || !out || !valid_name(final_name))
		return SB_EINVAL;
	if (!(w = calloc(1, sizeof *w)))
		return -ENOMEM;
	w->vfs = vfs;
	w->fd = -1;
	w->min_off = INT64_MAX;
	w->max_off = INT64_MIN;
	w->min_ts = INT64_MAX;
	w->max_ts = INT64_MIN;
	if ((rc = resolve_opts(opts, &w->o)) ||
	    (rc = sb_bloom_builder_init(&w->bloom, w->o.bloom_bits_per_key)))
		goto fail;
	w->dir = strdup(dir);
	w->tmp_path = malloc(SB_PATH_MAX);
	w->final_path = malloc(SB_PATH_MAX);
	w->out = malloc(w->o.write_buffer_bytes);
	w->last_key = malloc(SB_SST_KEY_BYTES_MAX);
	if (!w->dir || !w->tmp_path || !w->final_path || !w->out || !w->last_key) {
		rc = -ENOMEM;
		goto fail;
	}
	w->out_cap = w->o.write_buffer_bytes;
	if ((rc = sb_path_fmt(w->final_path, SB_PATH_MAX, "%s/%s", dir, final_name)) ||
	    (rc = sb_path_fmt(w->tmp_path, SB_PATH_MAX, "%s/%s%s", dir, final_name,
	                      SB_SST_TEMP_SUFFIX)))
		goto fail;
	w->fd = vfs->ops->open(vfs, w->tmp_path, O_CREAT | O_TRUNC | O_WRONLY, SST_FILE_MODE);
	if (w->fd < 0) {
		rc = w->fd;
		w->fd = -1;
		goto fail;
	}
	*out = w;
	return 0;
fail:
	writer_free(w);
	return rc;
}

/* Copies len bytes towards the file, through the output buffer. */
static int emit(struct sb_sst_writer *w, const void *data, size_t len)
{
	int rc;
	if (w->out_len + len <= w->out_cap) {
		memcpy(w->out + w->out_len, data, len);
		w->out_len += len;
		return 0;
	}
	if (w->out_len) {
		if ((rc = sb_vfs_write_all(w->vfs, w->fd, w->out, w->out_len, w->file_pos)))
			return rc;
		w->file_pos += w->out_len;
		w->out_len = 0;
	}
	if (len >= w->out_cap) { /* a big block: straight to the file */
		if ((rc = sb_vfs_write_all(w->vfs, w->fd, data, len, w->file_pos)))
			return rc;
		w->file_pos += len;
		return 0;
	}
	memcpy(w->out, data, len);
	w->out_len = len;
	return 0;
}

static int emit_with_crc(struct sb_sst_writer *w, const void *data, size_t len)
{
	uint8_t crc[SST_CRC_BYTES];
	sb_store32(crc, sb_crc32c(data, len));
	int rc = emit(w, data, len);
	return rc ? rc : emit(w, crc, sizeof crc);
}

/* Appends uvarint(len) and bytes to the index section. */
static int index_put(struct sb_sst_writer *w, const uint8_t *key, uint32_t len)
{
	if (grow_bytes(&w->idx, &w->idx_cap, w->idx_len + SB_VARINT_MAX_BYTES + len))
		return -ENOMEM;
	w->idx_len += sb_uvarint_put(w->idx + w->idx_len, len);
	if (len)
		memcpy(w->idx + w->idx_len, key, len);
	w->idx_len += len;
	return 0;
}

/* Closes the block being built: restart array, CRC, index entry, output. */
static int flush_block(struct sb_sst_writer *w)
{
	uint8_t num[SB_VARINT_MAX_BYTES];
	size_t need = w->blk_len + 4u * ((size_t)w->n_restarts + 1);
	int rc;

	SST_CHECK(w->blk_entries > 0 && w->n_restarts > 0);
	if (grow_bytes(&w->blk, &w->blk_cap, need))
		return -ENOMEM;
	for (uint32_t i = 0; i < w->n_restarts; i++, w->blk_len += 4)
		sb_store32(w->blk + w->blk_len, w->restarts[i]);
	sb_store32(w->blk + w->blk_len, w->n_restarts);
	w->blk_len += 4;
	SST_CHECK(w->blk_len >= SST_BLOCK_BYTES_MIN && w->blk_len <= SB_SST_BLOCK_BYTES_MAX);
	size_t nlen = sb_uvarint_put(num, w->blk_len);
	if (w->blocks >= SB_SST_INDEX_ENTRIES_MAX ||
	    w->idx_len + SB_VARINT_MAX_BYTES + w->last_key_len + nlen > SB_SST_INDEX_BYTES_MAX)
		return SB_ETOOBIG;
	if ((rc = index_put(w, w->last_key, w->last_key_len)))
		return rc;
	memcpy(w->idx + w->idx_len, num, nlen); /* index_put reserved the room */
	w->idx_len += nlen;
	w->blocks++;
	if ((rc = emit_with_crc(w, w->blk, w->blk_len)))
		return rc;
	w->blk_len = 0;
	w->n_restarts = 0;
	w->blk_entries = 0;
	return 0;
}

static uint32_t common_prefix(const uint8_t *a, uint32_t a_len, const uint8_t *b, uint32_t b_len)
{
	uint32_t n = a_len < b_len ? a_len : b_len, i = 0;
	while (i + 8 <= n && sb_load64(a + i) == sb_load64(b + i))
		i += 8;
	while (i < n && a[i] == b[i])
		i++;
	return i;
}

static int check_entry(const struct sb_sst_writer *w, const struct sb_kv_entry *e)
{
	if ((!e->key && e->key_len) || (!e->value && e->value_len) ||
	    (!e->headers && e->headers_len) || e->offset < 0)
		return SB_EINVAL;
	if (e->key_len > SB_SST_KEY_BYTES_MAX || e->value_len > SB_SST_VALUE_BYTES_MAX ||
	    e->headers_len > SB_SST_HEADERS_BYTES_MAX ||
	    (uint64_t)e->key_len + e->value_len + e->headers_len > SB_SST_ENTRY_BYTES_MAX ||
	    w->entries >= SB_SST_ENTRIES_MAX)
		return SB_ETOOBIG;
	if (w->entries > 0 && key_cmp(e->key, e->key_len, w->last_key, w->last_key_len) <= 0)
		return SB_EINVAL;
	return 0;
}

/* Reserves room for one more entry of e's size in the block (and a restart
 * slot); nothing else changes, so a failure leaves the writer as it was. */
static int reserve_entry(struct sb_sst_writer *w, const struct sb_kv_entry *e, int restart)
{
	size_t need = w->blk_len + SST_ENTRY_HEAD_BYTES_MAX + (size_t)e->key_len + e->value_len +
	              e->headers_len;
	if (grow_bytes(&w->blk, &w->blk_cap, need))
		return -ENOMEM;
	if (restart && w->n_restarts == w->restarts_cap) {
		uint32_t cap = w->restarts_cap ? w->restarts_cap * 2 : 64;
		uint32_t *r = realloc(w->restarts, (size_t)cap * sizeof *r);
		if (!r)
			return -ENOMEM;
		w->restarts = r;
		w->restarts_cap = cap;
	}
	return 0;
}

/* Encodes e at the end of the block (room reserved) and makes it the last
 * key. A restart entry stores its whole key and absolute offset/timestamp. */
static void put_entry(struct sb_sst_writer *w, const struct sb_kv_entry *e, int restart)
{
	uint32_t shared =
	    restart ? 0 : common_prefix(w->last_key, w->last_key_len, e->key, e->key_len);
	uint64_t base_off = restart ? 0 : w->prev_off, base_ts = restart ? 0 : w->prev_ts;
	uint8_t *p = w->blk + w->blk_len;
	if (restart)
		w->restarts[w->n_restarts++] = (uint32_t)w->blk_len;
	p += sb_uvarint_put(p, shared);
	p += sb_uvarint_put(p, e->key_len - shared);
	p += sb_uvarint_put(p, e->flags);
	p += sb_uvarint_put(p, sb_zigzag((int64_t)((uint64_t)e->offset - base_off)));
	p += sb_uvarint_put(p, sb_zigzag((int64_t)((uint64_t)e->timestamp_ms - base_ts)));
	p += sb_uvarint_put(p, e->value_len);
	p += sb_uvarint_put(p, e->headers_len);
	if (e->key_len > shared)
		memcpy(p, e->key + shared, e->key_len - shared);
	p += e->key_len - shared;
	if (e->value_len)
		memcpy(p, e->value, e->value_len);
	p += e->value_len;
	if (e->headers_len)
		memcpy(p, e->headers, e->headers_len);
	p += e->headers_len;
	w->blk_len = (size_t)(p - w->blk);
	SST_CHECK(w->blk_len <= w->blk_cap);
	if (e->key_len > shared)
		memcpy(w->last_key + shared, e->key + shared, e->key_len - shared);
	w->last_key_len = e->key_len;
	w->prev_off = (uint64_t)e->offset;
	w->prev_ts = (uint64_t)e->timestamp_ms;
}

int sb_sst_writer_add(struct sb_sst_writer *w, const struct sb_kv_entry *e)
{
	int restart = w->blk_entries % SB_SST_RESTART_INTERVAL == 0, rc;
	if (w->err)
		return w->err;
	/* Everything that can fail without leaving state behind comes first. */
	if ((rc = check_entry(w, e)) || (rc = reserve_entry(w, e, restart)))
		return rc;
	if (w->entries == 0 && (rc = index_put(w, e->key, e->key_len))) /* the first key */
		return rc;
	if ((rc = sb_bloom_builder_add(&w->bloom, e->key, e->key_len))) {
		if (w->entries == 0)
			w->idx_len = 0;
		return rc;
	}
	put_entry(w, e, restart);
	w->blk_entries++;
	w->entries++;
	w->tombstones += (e->flags & SB_KV_TOMBSTONE) != 0;
	w->min_off = e->offset < w->min_off ? e->offset : w->min_off;
	w->max_off = e->offset > w->max_off ? e->offset : w->max_off;
	w->min_ts = e->timestamp_ms < w->min_ts ? e->timestamp_ms : w->min_ts;
	w->max_ts = e->timestamp_ms > w->max_ts ? e->timestamp_ms : w->max_ts;
	if (w->blk_len + 4u * ((size_t)w->n_restarts + 1) >= w->o.block_bytes &&
	    (rc = flush_block(w)))
		w->err = rc;
	return rc;
}

uint64_t sb_sst_writer_entries(const struct sb_sst_writer *w)
{
	return w->entries;
}

uint64_t sb_sst_writer_bytes_written(const struct sb_sst_writer *w)
{
	return w->file_pos;
}

static void footer_encode(uint8_t *b, const struct footer *f)
{
	memset(b, 0, SB_SST_FOOTER_BYTES);
	sb_store32(b + FT_MAGIC, SST_MAGIC);
	sb_store32(b + FT_VERSION, SST_VERSION);
	sb_store64(b + FT_ENTRIES, f->entries);
	sb_store64(b + FT_TOMBSTONES, f->tombstones);
	sb_store64(b + FT_COVERED_MIN, (uint64_t)f->covered_min);
	sb_store64(b + FT_COVERED_MAX, (uint64_t)f->covered_max);
	sb_store64(b + FT_MIN_TS, (uint64_t)f->min_ts);
	sb_store64(b + FT_MAX_TS, (uint64_t)f->max_ts);
	sb_store64(b + FT_INDEX_POS, f->index_pos);
	sb_store32(b + FT_INDEX_LEN, f->index_len);
	sb_store32(b + FT_BLOCKS, f->blocks);
	sb_store64(b + FT_BLOOM_POS, f->bloom_pos);
	sb_store32(b + FT_BLOOM_LEN, f->bloom_len);
	sb_store32(b + FT_BLOCK_TARGET, f->block_target);
	sb_store32(b + FT_CRC, sb_crc32c(b, FT_CRC));
}

/* Writes the index, bloom and footer sections. */
static int write_tail(struct sb_sst_writer *w, int64_t covered_min, int64_t covered_max)
{
	struct footer f = {0};
	uint8_t foot[SB_SST_FOOTER_BYTES];
	uint8_t *bloom = NULL;
	int rc;

	if (w->blk_entries && (rc = flush_block(w)))
		return rc;
	if (w->entries == 0 && (rc = index_put(w, NULL, 0)))
		return rc;
	f.index_pos = w->file_pos + w->out_len;
	f.index_len = (uint32_t)w->idx_len;
	if ((rc = emit_with_crc(w, w->idx, w->idx_len)))
		return rc;
	size_t bloom_len = sb_bloom_builder_bytes(&w->bloom);
	if (!(bloom = malloc(bloom_len)))
		return -ENOMEM;
	sb_bloom_builder_write(&w->bloom, bloom);
	f.bloom_pos = w->file_pos + w->out_len;
	f.bloom_len = (uint32_t)bloom_len;
	rc = emit_with_crc(w, bloom, bloom_len);
	free(bloom);
	if (rc)
		return rc;
	f.entries = w->entries;
	f.tombstones = w->tombstones;
	f.covered_min = covered_min;
	f.covered_max = covered_max;
	f.min_ts = w->min_ts;
	f.max_ts = w->max_ts;
	f.blocks = w->blocks;
	f.block_target = w->o.block_bytes;
	SST_CHECK(f.bloom_pos == f.index_pos + f.index_len + SST_CRC_BYTES);
	SST_CHECK((w->entries == 0) == (w->blocks == 0));
	footer_encode(foot, &f);
	if ((rc = emit(w, foot, sizeof foot)))
		return rc;
	if (w->out_len) {
		if ((rc = sb_vfs_write_all(w->vfs, w->fd, w->out, w->out_len, w->file_pos)))
			return rc;
		w->file_pos += w->out_len;
		w->out_len = 0;
	}
	SST_CHECK(w->file_pos == f.bloom_pos + f.bloom_len + SST_CRC_BYTES + SB_SST_FOOTER_BYTES);
	return 0;
}

static int writer_finish(struct sb_sst_writer *w, int64_t covered_min, int64_t covered_max,
                         uint64_t *file_bytes)
{
	struct sb_vfs *vfs = w->vfs;
	int tmp_exists = 1, rc;

	if ((rc = w->err))
		goto out;
	if (covered_min < 0 || covered_min > covered_max ||
	    (w->entries && (w->min_off < covered_min || w->max_off > covered_max))) {
		rc = SB_EINVAL;
		goto out;
	}
	if ((rc = write_tail(w, covered_min, covered_max)))
		goto out;
	if ((rc = vfs->ops->datasync(vfs, w->fd)))
		goto out;
	rc = vfs->ops->close(vfs, w->fd);
	w->fd = -1;
	if (rc)
		goto out;
	if ((rc = vfs->ops->rename(vfs, w->tmp_path, w->final_path)))
		goto out;
	tmp_exists = 0;
	/* The table is complete and synced under its final name; only its
	 * directory entry may still be volatile if this fails. */
	rc = vfs->ops->sync_dir(vfs, w->dir);
out:
	if (file_bytes)
		*file_bytes = w->file_pos;
	if (w->fd >= 0)
		(void)vfs->ops->close(vfs, w->fd);
	w->fd = -1;
	if (tmp_exists)
		(void)vfs->ops->unlink(vfs, w->tmp_path);
	writer_free(w);
	return rc;
}

int sb_sst_writer_finish(struct sb_sst_writer *w, int64_t covered_min_offset,
                         int64_t covered_max_offset)
{
	return writer_finish(w, covered_min_offset, covered_max_offset, NULL);
}

void sb_sst_writer_abort(struct sb_sst_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		(void)w->vfs->ops->close(w->vfs, w->fd);
	(void)w->vfs->ops->unlink(w->vfs, w->tmp_path);
	writer_free(w);
}

/* ---- leftover temp files ---- */

struct temp_list {
	char **names;
	size_t n, cap;
	int oom;
};

static int collect_temp(void *arg, const char *name, int is_dir)
{
	static const char suffix[] = SB_SST_SUFFIX SB_SST_TEMP_SUFFIX;
	struct temp_list *l = arg;
	size_t len = strlen(name), s = sizeof suffix - 1;
	if (is_dir || len <= s || strcmp(name + len - s, suffix) != 0)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **names = realloc(l->names, cap * sizeof *names);
		if (!names)
			return -ENOMEM;
		l->names = names;
		l->cap = cap;
	}
	if (!(l->names[l->n] = strdup(name)))
		return -ENOMEM;
	l->n++;
	return 0;
}

int sb_sst_remove_temps(struct sb_vfs *vfs, const char *dir)
{
	struct temp_list l = {0};
	char *path = malloc(SB_PATH_MAX);
	int rc, removed = 0;

	if (!path)
		return -ENOMEM;
	/* Collect first: no vfs call from inside a list_dir callback. */
	if ((rc = vfs->ops->list_dir(vfs, dir, collect_temp, &l)))
		goto out;
	for (size_t i = 0; i < l.n; i++) {
		if ((rc = sb_path_fmt(path, SB_PATH_MAX, "%s/%s", dir, l.names[i])))
			goto out;
		rc = vfs->ops->unlink(vfs, path);
		if (rc && rc != -ENOENT)
			goto out;
		removed += rc == 0;
	}
	rc = removed ? vfs->ops->sync_dir(vfs, dir) : 0;
out:
	for (size_t i = 0; i < l.n; i++)
		free(l.names[i]);
	free(l.names);
	free(path);
	return rc ? rc : removed;
}

/* ======================================================================
 * Reader
 * ====================================================================== */

struct blockref {
	uint64_t pos;     /* file position of the block */
	uint32_t key_off; /* its last key, in t->index */
	uint32_t key_len;
};

struct sb_sst {
	struct sb_vfs *vfs;
	int fd;
	char *path;
	uint64_t file_bytes;
	struct footer f;
	uint8_t *index; /* the verified index section */
	uint8_t *bloom; /* the verified bloom section */
	struct sb_bloom_view bv;
	struct blockref *blocks; /* f.blocks + 1; the last holds the end position */
	uint64_t *prefix;        /* key_prefix() of each block's last key */
	const uint8_t *first_key;
	uint32_t first_key_len;
};

static int footer_decode(const uint8_t *b, uint64_t file_bytes, struct footer *f)
{
	if (sb_load32(b + FT_MAGIC) != SST_MAGIC || sb_load32(b + FT_VERSION) != SST_VERSION ||
	    sb_load32(b + FT_CRC) != sb_crc32c(b, FT_CRC))
		return SB_ECORRUPT;
	for (unsigned i = FT_RESERVED; i < FT_CRC; i++)
		if (b[i])
			return SB_ECORRUPT;
	f->entries = sb_load64(b + FT_ENTRIES);
	f->tombstones = sb_load64(b + FT_TOMBSTONES);
	f->covered_min = (int64_t)sb_load64(b + FT_COVERED_MIN);
	f->covered_max = (int64_t)sb_load64(b + FT_COVERED_MAX);
	f->min_ts = (int64_t)sb_load64(b + FT_MIN_TS);
	f->max_ts = (int64_t)sb_load64(b + FT_MAX_TS);
	f->index_pos = sb_load64(b + FT_INDEX_POS);
	f->index_len = sb_load32(b + FT_INDEX_LEN);
	f->blocks = sb_load32(b + FT_BLOCKS);
	f->bloom_pos = sb_load64(b + FT_BLOOM_POS);
	f->bloom_len = sb_load32(b + FT_BLOOM_LEN);
	f->block_target = sb_load32(b + FT_BLOCK_TARGET);
	/* Every number bounded before any arithmetic on it. */
	if (f->entries > SB_SST_ENTRIES_MAX || f->tombstones > f->entries ||
	    f->blocks > SB_SST_INDEX_ENTRIES_MAX || f->blocks > f->entries ||
	    (f->entries == 0) != (f->blocks == 0) || f->covered_min < 0 ||
	    f->covered_min > f->covered_max || f->index_len < 1 ||
	    f->index_len > SB_SST_INDEX_BYTES_MAX || f->bloom_len < SB_BLOOM_HEADER_BYTES ||
	    f->bloom_len > SB_BLOOM_HEADER_BYTES + SB_BLOOM_BYTES_MAX ||
	    f->block_target < SB_SST_BLOCK_TARGET_BYTES_MIN ||
	    f->block_target > SB_SST_BLOCK_TARGET_BYTES_MAX || f->index_pos > file_bytes)
		return SB_ECORRUPT;
	/* The sections are back to back and end exactly at the footer. */
	if (f->bloom_pos != f->index_pos + f->index_len + SST_CRC_BYTES ||
	    f->bloom_pos + f->bloom_len + SST_CRC_BYTES + SB_SST_FOOTER_BYTES != file_bytes)
		return SB_ECORRUPT;
	return 0;
}

/* Reads a section and its trailing CRC into a new buffer; checks the CRC. */
static int read_section(struct sb_sst *t, uint64_t pos, uint32_t len, uint8_t **out)
{
	uint8_t *b = malloc((size_t)len + SST_CRC_BYTES);
	int rc;
	if (!b)
		return -ENOMEM;
	rc = sb_vfs_read_all(t->vfs, t->fd, b, (size_t)len + SST_CRC_BYTES, pos);
	if (rc == -ENODATA || (!rc && sb_load32(b + len) != sb_crc32c(b, len)))
		rc = SB_ECORRUPT;
	if (rc) {
		free(b);
		return rc;
	}
	*out = b;
	return 0;
}

/* Reads uvarint-length-prefixed bytes at *pp (not past end). */
static int get_bytes(const uint8_t **pp, const uint8_t *end, uint64_t max, const uint8_t **bytes,
                     uint32_t *len)
{
	uint64_t n;
	if (sb_uvarint_get(pp, end, &n) || n > max || n > (uint64_t)(end - *pp))
		return SB_ECORRUPT;
	*bytes = *pp;
	*len = (uint32_t)n;
	*pp += n;
	return 0;
}

static int parse_index(struct sb_sst *t)
{
	const uint8_t *p = t->index, *end = t->index + t->f.index_len, *key, *prev = NULL;
	uint32_t n = t->f.blocks, key_len, prev_len = 0;
	uint64_t pos = 0, blen;

	t->blocks = malloc(((size_t)n + 1) * sizeof *t->blocks);
	t->prefix = malloc(((size_t)n + 1) * sizeof *t->prefix);
	if (!t->blocks || !t->prefix)
		return -ENOMEM;
	if (get_bytes(&p, end, SB_SST_KEY_BYTES_MAX, &t->first_key, &t->first_key_len))
		return SB_ECORRUPT;
	for (uint32_t i = 0; i < n; i++) {
		if (get_bytes(&p, end, SB_SST_KEY_BYTES_MAX, &key, &key_len) ||
		    sb_uvarint_get(&p, end, &blen) || blen < SST_BLOCK_BYTES_MIN ||
		    blen > SB_SST_BLOCK_BYTES_MAX || pos + blen + SST_CRC_BYTES > t->f.index_pos)
			return SB_ECORRUPT;
		if (i == 0 ? key_cmp(t->first_key, t->first_key_len, key, key_len) > 0
		           : key_cmp(prev, prev_len, key, key_len) >= 0)
			return SB_ECORRUPT; /* last keys strictly increase */
		t->blocks[i].pos = pos;
		t->blocks[i].key_off = (uint32_t)(key - t->index);
		t->blocks[i].key_len = key_len;
		t->prefix[i] = key_prefix(key, key_len);
		pos += blen + SST_CRC_BYTES;
		prev = key;
		prev_len = key_len;
	}
	if (p != end || pos != t->f.index_pos || (n == 0 && t->first_key_len != 0))
		return SB_ECORRUPT;
	t->blocks[n].pos = pos;
	t->blocks[n].key_off = 0;
	t->blocks[n].key_len = 0;
	return 0;
}

int sb_sst_open(struct sb_vfs *vfs, const char *path, struct sb_sst **out)
{
	uint8_t foot[SB_SST_FOOTER_BYTES];
	struct sb_sst *t = calloc(1, sizeof *t);
	const char *what = "footer";
	uint64_t where = 0; /* file position of the section being checked */
	int rc;

	if (!t)
		return -ENOMEM;
	t->vfs = vfs;
	t->fd = -1;
	if (!(t->path = strdup(path))) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((t->fd = vfs->ops->open(vfs, path, O_RDONLY, 0)) < 0) {
		rc = t->fd;
		t->fd = -1;
		goto fail;
	}
	if ((rc = vfs->ops->fsize(vfs, t->fd, &t->file_bytes)))
		goto fail;
	rc = SB_ECORRUPT;
	if (t->file_bytes < SB_SST_FOOTER_BYTES)
		goto fail;
	where = t->file_bytes - SB_SST_FOOTER_BYTES;
	rc = sb_vfs_read_all(vfs, t->fd, foot, sizeof foot, where);
	if (rc == -ENODATA)
		rc = SB_ECORRUPT;
	if (rc || (rc = footer_decode(foot, t->file_bytes, &t->f)))
		goto fail;
	what = "index";
	where = t->f.index_pos;
	if ((rc = read_section(t, t->f.index_pos, t->f.index_len, &t->index)) ||
	    (rc = parse_index(t)))
		goto fail;
	what = "bloom";
	where = t->f.bloom_pos;
	if ((rc = read_section(t, t->f.bloom_pos, t->f.bloom_len, &t->bloom)) ||
	    (rc = sb_bloom_view_init(&t->bv, t->bloom, t->f.bloom_len)))
		goto fail;
	*out = t;
	return 0;
fail:
	if (rc == SB_ECORRUPT)
		report_corrupt(path, what, where);
	sb_sst_close(t);
	return rc;
}

void sb_sst_close(struct sb_sst *t)
{
	if (!t)
		return;
	if (t->fd >= 0)
		(void)t->vfs->ops->close(t->vfs, t->fd); /* read-only: nothing to lose */
	free(t->path);
	free(t->index);
	free(t->bloom);
	free(t->blocks);
	free(t->prefix);
	free(t);
}

uint64_t sb_sst_entry_count(const struct sb_sst *t)
{
	return t->f.entries;
}
uint64_t sb_sst_tombstone_count(const struct sb_sst *t)
{
	return t->f.tombstones;
}
int64_t sb_sst_covered_min_offset(const struct sb_sst *t)
{
	return t->f.covered_min;
}
int64_t sb_sst_covered_max_offset(const struct sb_sst *t)
{
	return t->f.covered_max;
}
uint64_t sb_sst_file_bytes(const struct sb_sst *t)
{
	return t->file_bytes;
}
uint64_t sb_sst_bloom_bits(const struct sb_sst *t)
{
	return sb_bloom_bits(&t->bv);
}
const char *sb_sst_path(const struct sb_sst *t)
{
	return t->path;
}

void sb_sst_key_range(const struct sb_sst *t, const uint8_t **min_key, uint32_t *min_len,
                      const uint8_t **max_key, uint32_t *max_len)
{
	const struct blockref *last = &t->blocks[t->f.blocks ? t->f.blocks - 1 : 0];
	*min_key = t->first_key;
	*min_len = t->first_key_len;
	*max_key = t->f.blocks ? t->index + last->key_off : t->first_key;
	*max_len = t->f.blocks ? last->key_len : 0;
}

int sb_sst_may_contain(const struct sb_sst *t, const uint8_t *key, uint32_t key_len)
{
	if (key_len > SB_SST_KEY_BYTES_MAX)
		return 0;
	return sb_bloom_may_contain(&t->bv, key, key_len);
}

/* Index of the first block whose last key is >= key; f.blocks if none. */
static uint32_t find_block(const struct sb_sst *t, const uint8_t *key, uint32_t key_len)
{
	uint64_t kp = key_prefix(key, key_len);
	uint32_t lo = 0, hi = t->f.blocks;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c;
		if (t->prefix[mid] != kp)
			c = t->prefix[mid] < kp ? -1 : 1;
		else
			c = key_cmp(t->index + t->blocks[mid].key_off, t->blocks[mid].key_len, key,
			            key_len);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static inline uint32_t block_len(const struct sb_sst *t, uint32_t b)
{
	return (uint32_t)(t->blocks[b + 1].pos - t->blocks[b].pos - SST_CRC_BYTES);
}

/* ---- one data block: a cursor over its entries ---- */

struct blk {
	const uint8_t *base, *data_end, *restarts, *p;
	uint32_t n_restarts, next_restart;
	int check_order; /* iterators: every key must exceed the previous one */
	int have_key;
	uint8_t *key; /* SB_SST_KEY_BYTES_MAX of room */
	uint32_t key_len;
	uint64_t off, ts;
	uint32_t flags;
	const uint8_t *value, *headers;
	uint32_t value_len, headers_len;
};

/* Checks the block trailer; the cursor starts before the first entry.
 * check_order: verify that keys strictly increase (iterators, whose callers
 * such as merge depend on the order). A point lookup skips that check: its
 * answer is exact whenever the block's CRC holds, and its bounds checks
 * never depend on the order. */
static int blk_init(struct blk *c, const uint8_t *base, uint32_t len, uint8_t *keybuf,
                    int check_order)
{
	if (len < SST_BLOCK_BYTES_MIN)
		return SB_ECORRUPT;
	uint32_t n = sb_load32(base + len - 4);
	if (n == 0 || n >= (len - 4) / 4) /* at least one byte of entries */
		return SB_ECORRUPT;
	c->base = base;
	c->data_end = base + len - 4 - 4 * (size_t)n;
	c->restarts = c->data_end;
	c->n_restarts = n;
	if (sb_load32(c->restarts) != 0)
		return SB_ECORRUPT;
	c->p = base;
	c->next_restart = 0;
	c->check_order = check_order;
	c->have_key = 0;
	c->key = keybuf;
	c->key_len = 0;
	c->off = c->ts = 0;
	return 0;
}

struct ehead {
	uint64_t shared, unshared, flags, value_len, headers_len;
	int64_t d_off, d_ts;
};

/* Decodes an entry's head at *pp and checks every length against the limits
 * and the bytes left before data_end. */
static int decode_head(const uint8_t **pp, const uint8_t *end, struct ehead *h)
{
	if (sb_uvarint_get(pp, end, &h->shared) || sb_uvarint_get(pp, end, &h->unshared) ||
	    sb_uvarint_get(pp, end, &h->flags) || sb_varint_get(pp, end, &h->d_off) ||
	    sb_varint_get(pp, end, &h->d_ts) || sb_uvarint_get(pp, end, &h->value_len) ||
	    sb_uvarint_get(pp, end, &h->headers_len))
		return SB_ECORRUPT;
	if (h->shared > SB_SST_KEY_BYTES_MAX || h->unshared > SB_SST_KEY_BYTES_MAX - h->shared ||
	    h->flags > UINT32_MAX || h->value_len > SB_SST_VALUE_BYTES_MAX ||
	    h->headers_len > SB_SST_HEADERS_BYTES_MAX ||
	    h->shared + h->unshared + h->value_len + h->headers_len > SB_SST_ENTRY_BYTES_MAX ||
	    h->unshared + h->value_len + h->headers_len > (uint64_t)(end - *pp))
		return SB_ECORRUPT;
	return 0;
}

/* Decodes the next entry. Returns 1, 0 at the end of the block, or
 * SB_ECORRUPT (bad lengths, a skipped restart point, keys out of order). */
static int blk_next(struct blk *c)
{
	struct ehead h;
	int restart = 0;

	if (c->p >= c->data_end)
		return 0;
	uint64_t pos = (uint64_t)(c->p - c->base);
	if (c->next_restart < c->n_restarts) {
		uint32_t r = sb_load32(c->restarts + 4 * (size_t)c->next_restart);
		if (pos > r)
			return SB_ECORRUPT;
		if (pos == r) {
			restart = 1;
			c->next_restart++;
		}
	}
	const uint8_t *p = c->p;
	if (decode_head(&p, c->data_end, &h) || h.shared > c->key_len || (restart && h.shared))
		return SB_ECORRUPT;
	/* Strictly after the previous key: compare the new suffix with the old
	 * key's bytes past the shared prefix before overwriting them. */
	if (c->check_order && c->have_key &&
	    key_cmp(p, (uint32_t)h.unshared, c->key + h.shared, c->key_len - (uint32_t)h.shared) <=
	        0)
		return SB_ECORRUPT;
	if (h.unshared)
		memcpy(c->key + h.shared, p, h.unshared);
	c->key_len = (uint32_t)(h.shared + h.unshared);
	c->have_key = 1;
	c->off = (restart ? 0 : c->off) + (uint64_t)h.d_off;
	c->ts = (restart ? 0 : c->ts) + (uint64_t)h.d_ts;
	c->flags = (uint32_t)h.flags;
	c->value = p + h.unshared;
	c->value_len = (uint32_t)h.value_len;
	c->headers = c->value + h.value_len;
	c->headers_len = (uint32_t)h.headers_len;
	c->p = c->headers + h.headers_len;
	return 1;
}

/* Positions the cursor on the first entry with key >= target (decoded, as
 * after blk_next). Returns 1, 0 if every key is smaller, or SB_ECORRUPT. */
static int blk_seek(struct blk *c, const uint8_t *key, uint32_t key_len)
{
	uint32_t lo = 0, hi = c->n_restarts - 1;
	uint64_t limit = (uint64_t)(c->data_end - c->base);
	int rc;

	/* Binary search: the last restart point whose key is < target. */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo + 1) / 2;
		uint32_t r = sb_load32(c->restarts + 4 * (size_t)mid);
		const uint8_t *p = c->base + r;
		struct ehead h;
		if (r >= limit || decode_head(&p, c->data_end, &h) || h.shared)
			return SB_ECORRUPT;
		if (key_cmp(p, (uint32_t)h.unshared, key, key_len) < 0)
			lo = mid;
		else
			hi = mid - 1;
	}
	uint32_t r = sb_load32(c->restarts + 4 * (size_t)lo);
	if (r >= limit)
		return SB_ECORRUPT;
	c->p = c->base + r;
	c->next_restart = lo;
	c->have_key = 0;
	c->key_len = 0;
	while ((rc = blk_next(c)) == 1)
		if (key_cmp(c->key, c->key_len, key, key_len) >= 0)
			return 1;
	return rc;
}

static int blk_entry(const struct sb_sst *t, const struct blk *c, struct sb_kv_entry *e)
{
	int64_t off = (int64_t)c->off;
	if (off < t->f.covered_min || off > t->f.covered_max)
		return SB_ECORRUPT;
	e->key = c->key;
	e->key_len = c->key_len;
	e->offset = off;
	e->timestamp_ms = (int64_t)c->ts;
	e->flags = c->flags;
	e->value = c->value;
	e->value_len = c->value_len;
	e->headers = c->headers;
	e->headers_len = c->headers_len;
	return 0;
}

/* ---- point lookup ---- */

void sb_sst_buf_free(struct sb_sst_buf *buf)
{
	free(buf->block);
	free(buf->key);
	buf->block = NULL;
	buf->key = NULL;
	buf->block_cap = 0;
}

int sb_sst_get(const struct sb_sst *t, const uint8_t *key, uint32_t key_len,
               struct sb_kv_entry *out, struct sb_sst_buf *buf)
{
	struct blk c;
	int rc;

	if (key_len > SB_SST_KEY_BYTES_MAX || (!key && key_len))
		return SB_ENOTFOUND;
	if (!sb_bloom_may_contain(&t->bv, key, key_len))
		return SB_ENOTFOUND;
	uint32_t b = find_block(t, key, key_len);
	if (b >= t->f.blocks)
		return SB_ENOTFOUND;
	uint32_t len = block_len(t, b);
	if (grow_bytes(&buf->block, &buf->block_cap, (size_t)len + SST_CRC_BYTES))
		return -ENOMEM;
	if (!buf->key && !(buf->key = malloc(SB_SST_KEY_BYTES_MAX)))
		return -ENOMEM;
	rc = sb_vfs_read_all(t->vfs, t->fd, buf->block, (size_t)len + SST_CRC_BYTES,
	                     t->blocks[b].pos);
	if (rc == -ENODATA || (!rc && sb_load32(buf->block + len) != sb_crc32c(buf->block, len)))
		rc = SB_ECORRUPT;
	if (!rc && !(rc = blk_init(&c, buf->block, len, buf->key, 0))) {
		rc = blk_seek(&c, key, key_len);
		if (rc == 0) /* the index promised a key >= this one in the block */
			rc = SB_ECORRUPT;
		else if (rc == 1)
			rc = key_cmp(c.key, c.key_len, key, key_len) ? SB_ENOTFOUND
			                                             : blk_entry(t, &c, out);
	}
	if (rc == SB_ECORRUPT)
		report_corrupt(t->path, "block", t->blocks[b].pos);
	return rc;
}

/* ======================================================================
 * Iterator
 * ====================================================================== */

struct sb_sst_iter {
	const struct sb_sst *t;
	uint8_t *win; /* blocks [win_first, win_end) with their CRCs */
	size_t win_cap;
	uint32_t win_first, win_end;
	uint32_t block;  /* current block; f.blocks at the end */
	int in_block;    /* c is open on `block` */
	int first_entry; /* the next entry is the block's first */
	int pending;     /* c holds an entry that next() has not returned */
	int err;
	struct blk c;
	uint8_t *key;
	uint64_t bytes_read;
};

int sb_sst_iter_new(const struct sb_sst *t, struct sb_sst_iter **out)
{
	struct sb_sst_iter *it = calloc(1, sizeof *it);
	if (!it || !(it->key = malloc(SB_SST_KEY_BYTES_MAX))) {
		free(it);
		return -ENOMEM;
	}
	it->t = t;
	*out = it;
	return 0;
}

void sb_sst_iter_free(struct sb_sst_iter *it)
{
	if (!it)
		return;
	free(it->win);
	free(it->key);
	free(it);
}

uint64_t sb_sst_iter_bytes_read(const struct sb_sst_iter *it)
{
	return it->bytes_read;
}

/* Reads blocks [b, j) into the window: as many whole blocks as fit in
 * SB_SST_READAHEAD_BYTES, at least one. */
static int load_window(struct sb_sst_iter *it, uint32_t b)
{
	const struct sb_sst *t = it->t;
	uint32_t j = b + 1;
	while (j < t->f.blocks && t->blocks[j + 1].pos - t->blocks[b].pos <= SB_SST_READAHEAD_BYTES)
		j++;
	size_t len = (size_t)(t->blocks[j].pos - t->blocks[b].pos);
	if (grow_bytes(&it->win, &it->win_cap, len))
		return -ENOMEM;
	int rc = sb_vfs_read_all(t->vfs, t->fd, it->win, len, t->blocks[b].pos);
	if (rc)
		return rc == -ENODATA ? SB_ECORRUPT : rc;
	it->bytes_read += len;
	it->win_first = b;
	it->win_end = j;
	return 0;
}

/* Opens the cursor on block b (CRC-checked). */
static int enter_block(struct sb_sst_iter *it, uint32_t b)
{
	const struct sb_sst *t = it->t;
	int rc;
	if (b < it->win_first || b >= it->win_end || !it->win)
		if ((rc = load_window(it, b)))
			return rc;
	const uint8_t *blk = it->win + (t->blocks[b].pos - t->blocks[it->win_first].pos);
	uint32_t len = block_len(t, b);
	if (sb_load32(blk + len) != sb_crc32c(blk, len))
		return SB_ECORRUPT;
	if ((rc = blk_init(&it->c, blk, len, it->key, 1)))
		return rc;
	it->block = b;
	it->in_block = 1;
	it->first_entry = 1;
	return 0;
}

static int iter_fail(struct sb_sst_iter *it, int rc)
{
	if (rc == SB_ECORRUPT) {
		uint32_t b = it->block < it->t->f.blocks ? it->block : it->t->f.blocks;
		report_corrupt(it->t->path, "block", it->t->blocks[b].pos);
	}
	it->err = rc;
	return rc;
}

void sb_sst_iter_seek_first(struct sb_sst_iter *it)
{
	it->block = 0;
	it->in_block = 0;
	it->pending = 0;
}

int sb_sst_iter_seek(struct sb_sst_iter *it, const uint8_t *key, uint32_t key_len)
{
	int rc;
	if (it->err)
		return it->err;
	it->pending = 0;
	it->in_block = 0;
	if (key_len > SB_SST_KEY_BYTES_MAX) {
		/* No stored key is this long: the first stored key >= key is the
		 * first one > its SB_SST_KEY_BYTES_MAX-byte prefix. */
		if ((rc = sb_sst_iter_seek(it, key, SB_SST_KEY_BYTES_MAX)) || !it->pending)
			return rc;
		if (key_cmp(it->c.key, it->c.key_len, key, SB_SST_KEY_BYTES_MAX) == 0)
			it->pending = 0; /* next() decodes the entry after it */
		return 0;
	}
	it->block = find_block(it->t, key, key_len);
	if (it->block >= it->t->f.blocks)
		return 0;
	if ((rc = enter_block(it, it->block)))
		return iter_fail(it, rc);
	rc = blk_seek(&it->c, key, key_len);
	if (rc <= 0) /* 0: the index promised a key >= this one in the block */
		return iter_fail(it, SB_ECORRUPT);
	it->first_entry = 0;
	it->pending = 1;
	return 0;
}

/* Checks that block `block`, just finished, ended on its index key. */
static int check_block_end(const struct sb_sst_iter *it)
{
	const struct blockref *r = &it->t->blocks[it->block];
	if (key_cmp(it->c.key, it->c.key_len, it->t->index + r->key_off, r->key_len) != 0)
		return SB_ECORRUPT;
	return 0;
}

int sb_sst_iter_next(struct sb_sst_iter *it, struct sb_kv_entry *out)
{
	const struct sb_sst *t = it->t;
	int rc;
	if (it->err)
		return it->err;
	if (it->pending) {
		it->pending = 0;
		if ((rc = blk_entry(t, &it->c, out)))
			return iter_fail(it, rc);
		return 1;
	}
	for (;;) {
		if (!it->in_block) {
			if (it->block >= t->f.blocks)
				return 0;
			if ((rc = enter_block(it, it->block)))
				return iter_fail(it, rc);
		}
		rc = blk_next(&it->c);
		if (rc < 0)
			return iter_fail(it, rc);
		if (rc == 1)
			break;
		if ((rc = check_block_end(it)))
			return iter_fail(it, rc);
		it->block++;
		it->in_block = 0;
	}
	if (it->first_entry && it->block > 0) { /* after the previous block's last key */
		const struct blockref *r = &t->blocks[it->block - 1];
		if (key_cmp(it->c.key, it->c.key_len, t->index + r->key_off, r->key_len) <= 0)
			return iter_fail(it, SB_ECORRUPT);
	}
	it->first_entry = 0;
	if ((rc = blk_entry(t, &it->c, out)))
		return iter_fail(it, rc);
	return 1;
}

/* ======================================================================
 * Merge
 * ====================================================================== */

struct head {
	struct sb_kv_entry e;
	uint32_t src;
};

/* Heap order: key ascending, then offset descending, then newest table. */
static int head_less(const struct head *a, const struct head *b)
{
	int c = key_cmp(a->e.key, a->e.key_len, b->e.key, b->e.key_len);
	if (c)
		return c < 0;
	if (a->e.offset != b->e.offset)
		return a->e.offset > b->e.offset;
	return a->src < b->src;
}

static void sift_down(struct head *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < n && head_less(&h[l], &h[m]))
			m = l;
		if (l + 1 < n && head_less(&h[l + 1], &h[m]))
			m = l + 1;
		if (m == i)
			return;
		struct head tmp = h[i];
		h[i] = h[m];
		h[m] = tmp;
		i = m;
	}
}

/* Replaces the heap's top with the next entry of its source (or removes it
 * at that source's end). */
static int advance_top(struct sb_sst_iter **its, struct head *h, size_t *n)
{
	int rc = sb_sst_iter_next(its[h[0].src], &h[0].e);
	if (rc < 0)
		return rc;
	if (rc == 0)
		h[0] = h[--*n];
	sift_down(h, *n, 0);
	return 0;
}

struct rate {
	uint64_t bytes_per_s;
	int64_t start_ns;
	uint64_t checked_bytes;
};

/* Sleeps until `bytes` fits under rate * elapsed + burst. */
static void rate_wait(struct rate *r, uint64_t bytes, uint64_t *slept_ns)
{
	if (!r->bytes_per_s || bytes - r->checked_bytes < SST_RATE_BURST_BYTES)
		return;
	r->checked_bytes = bytes;
	double elapsed_s = (double)(sb_mono_ns() - r->start_ns) / 1e9;
	double allowed = (double)r->bytes_per_s * elapsed_s + SST_RATE_BURST_BYTES;
	if ((double)bytes <= allowed)
		return;
	double wait_s = ((double)bytes - allowed) / (double)r->bytes_per_s;
	struct timespec ts = {(time_t)wait_s, (long)((wait_s - (double)(time_t)wait_s) * 1e9)};
	int64_t t0 = sb_mono_ns();
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	*slept_ns += (uint64_t)(sb_mono_ns() - t0);
}

/* One merge in progress: an iterator and a heap head per input. */
struct merge {
	struct sb_sst_iter **its;
	struct head *heap;
	size_t n, nh;
	uint8_t *last; /* the key just decided (SB_SST_KEY_BYTES_MAX of room) */
	struct sb_sst_merge_stats st;
};

static uint64_t merge_bytes_read(const struct merge *m)
{
	uint64_t sum = 0;
	for (size_t i = 0; m->its && i < m->n; i++)
		sum += m->its[i] ? m->its[i]->bytes_read : 0;
	return sum;
}

/* Opens an iterator per input and heaps their first entries. */
static int merge_start(struct merge *m, struct sb_sst *const *inputs, size_t n)
{
	int rc;
	m->n = n;
	m->its = calloc(n, sizeof *m->its);
	m->heap = calloc(n, sizeof *m->heap);
	m->last = malloc(SB_SST_KEY_BYTES_MAX);
	if (!m->its || !m->heap || !m->last)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if ((rc = sb_sst_iter_new(inputs[i], &m->its[i])))
			return rc;
		m->heap[m->nh].src = (uint32_t)i;
		if ((rc = sb_sst_iter_next(m->its[i], &m->heap[m->nh].e)) < 0)
			return rc;
		m->nh += (size_t)rc;
	}
	for (size_t i = m->nh / 2; i-- > 0;)
		sift_down(m->heap, m->nh, i);
	return 0;
}

static void merge_free(struct merge *m)
{
	for (size_t i = 0; m->its && i < m->n; i++)
		sb_sst_iter_free(m->its[i]);
	free(m->its);
	free(m->heap);
	free(m->last);
}

/* Moves every key through the heap into w: its winning version (the heap's
 * top), unless that is a tombstone older than cutoff (drop_tombstones);
 * every other version of the key is dropped. */
static int merge_run(struct merge *m, struct sb_sst_writer *w, const struct sb_sst_opts *o,
                     int64_t cutoff)
{
	struct rate rate = {o->rate_bytes_per_s, sb_mono_ns(), 0};
	int rc;
	while (m->nh > 0) {
		const struct sb_kv_entry *e = &m->heap[0].e;
		uint32_t last_len = e->key_len;
		memcpy(m->last, e->key, last_len);
		m->st.entries_in++;
		if (o->drop_tombstones && (e->flags & SB_KV_TOMBSTONE) &&
		    e->timestamp_ms < cutoff) {
			m->st.tombstones_dropped++;
		} else {
			if ((rc = sb_sst_writer_add(w, e)))
				return rc;
			m->st.entries_out++;
		}
		if ((rc = advance_top(m->its, m->heap, &m->nh)))
			return rc;
		while (m->nh > 0 &&
		       key_cmp(m->heap[0].e.key, m->heap[0].e.key_len, m->last, last_len) == 0) {
			m->st.entries_in++;
			m->st.shadowed_dropped++;
			if ((rc = advance_top(m->its, m->heap, &m->nh)))
				return rc;
		}
		rate_wait(&rate, merge_bytes_read(m) + sb_sst_writer_bytes_written(w),
		          &m->st.sleep_ns);
	}
	return 0;
}

int sb_sst_merge(struct sb_vfs *vfs, const char *dir, struct sb_sst *const *inputs, size_t n,
                 const char *out_name, const struct sb_sst_opts *opts, int64_t now_ms,
                 int64_t delete_retention_ms, struct sb_sst_merge_stats *stats)
{
	struct merge m = {0};
	struct sb_sst_writer *w = NULL;
	struct sb_sst_opts o;
	int64_t lo = INT64_MAX, hi = INT64_MIN, cutoff;
	int rc = SB_EINVAL;

	if (!inputs || n == 0 || n > SB_SST_MERGE_INPUTS_MAX || delete_retention_ms < 0 ||
	    resolve_opts(opts, &o) != 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (!inputs[i])
			goto out;
		lo = inputs[i]->f.covered_min < lo ? inputs[i]->f.covered_min : lo;
		hi = inputs[i]->f.covered_max > hi ? inputs[i]->f.covered_max : hi;
	}
	/* Tombstones older than this are dropped (saturating: never overflows). */
	cutoff =
	    now_ms < INT64_MIN + delete_retention_ms ? INT64_MIN : now_ms - delete_retention_ms;
	if ((rc = merge_start(&m, inputs, n)) ||
	    (rc = sb_sst_writer_open(vfs, dir, out_name, &o, &w)) ||
	    (rc = merge_run(&m, w, &o, cutoff)))
		goto out;
	rc = writer_finish(w, lo, hi, &m.st.bytes_written);
	w = NULL;
out:
	m.st.bytes_read = merge_bytes_read(&m);
	if (w) {
		m.st.bytes_written = sb_sst_writer_bytes_written(w);
		sb_sst_writer_abort(w);
	}
	merge_free(&m);
	if (stats)
		*stats = m.st;
	return rc;
}
