/* sb_sstable_write.c - SSTable writer and leftover temp-file removal
 * (sb_sstable.h; the layout is in sb_sstable_format.h, the file format is
 * docs/SSTABLE.md).
 */
#include "sb_sstable_format.h"

#include "sb_bloom.h"
#include "sb_crc32c.h"
#include "sb_endian.h"
#include "sb_path.h"
#include "sb_varint.h"
#include "sb_vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SST_FILE_MODE 0644u

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

int sb_sst__grow_bytes(uint8_t **p, size_t *cap, size_t need)
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

int sb_sst__resolve_opts(const struct sb_sst_opts *in, struct sb_sst_opts *o)
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
	if ((rc = sb_sst__resolve_opts(opts, &w->o)) ||
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
	if (sb_sst__grow_bytes(&w->idx, &w->idx_cap, w->idx_len + SB_VARINT_MAX_BYTES + len))
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
	if (sb_sst__grow_bytes(&w->blk, &w->blk_cap, need))
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
	if (w->entries > 0 &&
	    sb_sst__key_cmp(e->key, e->key_len, w->last_key, w->last_key_len) <= 0)
		return SB_EINVAL;
	return 0;
}

/* Reserves room for one more entry of e's size in the block (and a restart
 * slot); nothing else changes, so a failure leaves the writer as it was. */
static int reserve_entry(struct sb_sst_writer *w, const struct sb_kv_entry *e, int restart)
{
	size_t need = w->blk_len + SST_ENTRY_HEAD_BYTES_MAX + (size_t)e->key_len + e->value_len +
	              e->headers_len;
	if (sb_sst__grow_bytes(&w->blk, &w->blk_cap, need))
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

int sb_sst__writer_finish(struct sb_sst_writer *w, int64_t covered_min, int64_t covered_max,
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
	return sb_sst__writer_finish(w, covered_min_offset, covered_max_offset, NULL);
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
