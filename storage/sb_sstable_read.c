/* sb_sstable_read.c - SSTable reader: open, close, point lookup, accessors,
 * the iterator and data-block decoding (sb_sstable.h; the layout is in
 * sb_sstable_format.h, the file format is docs/SSTABLE.md).
 */
#include "sb_sstable_format.h"

#include "sb_bloom.h"
#include "sb_crc32c.h"
#include "sb_endian.h"
#include "sb_logging.h"
#include "sb_varint.h"
#include "sb_vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

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
	/* The data blocks, bytes [0, f.index_pos) of the file, mapped read-only
	 * (see map_blocks); NULL when the vfs cannot map: lookups then pread. */
	const uint8_t *map;
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

/* Maps the data blocks for point lookups, when the vfs can: a lookup then
 * copies its block out of the mapping (page cache) instead of making a
 * pread system call, which is most of a lookup's cost (docs/SSTABLE.md,
 * "Block reads"). Only the blocks: the index and the bloom filter are
 * already in memory, checked. A table that cannot be mapped (no mmap op,
 * or the address space is short: a 32-bit build, vm.max_map_count) is
 * read with pread instead, so a failure here is not an error.
 * SIGBUS: touching a page of the mapping past the file's end raises it. A
 * table is never written, truncated or extended once renamed into place
 * (the writer writes <name>.tmp; replacing or removing the name leaves the
 * open file intact), so the mapping stays inside the file. A media error
 * under a page that is not in page cache raises SIGBUS too, where pread
 * would return -EIO (sb_sstable.h). */
static void map_blocks(struct sb_sst *t)
{
	const struct sb_vfs_ops *ops = t->vfs->ops;
	const void *p = NULL;
	int rc;
	if (!ops->mmap || !ops->munmap || t->f.index_pos == 0)
		return;
	if ((rc = ops->mmap(t->vfs, t->fd, t->f.index_pos, &p))) {
		SB_LOG_RATELIMITED(SB_LEVEL_INFO, 1000, "sst_map_failed",
		                   "path=\"%s\" bytes=%llu err=\"%s\" fallback=pread", t->path,
		                   (unsigned long long)t->f.index_pos, sb_strerror(rc));
		return;
	}
	t->map = p;
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
		if (i == 0 ? sb_sst__key_cmp(t->first_key, t->first_key_len, key, key_len) > 0
		           : sb_sst__key_cmp(prev, prev_len, key, key_len) >= 0)
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
	map_blocks(t);
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
	if (t->map)
		(void)t->vfs->ops->munmap(t->vfs, t->map, t->f.index_pos);
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
			c = sb_sst__key_cmp(t->index + t->blocks[mid].key_off,
			                    t->blocks[mid].key_len, key, key_len);
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
	    sb_sst__key_cmp(p, (uint32_t)h.unshared, c->key + h.shared,
	                    c->key_len - (uint32_t)h.shared) <= 0)
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
		if (sb_sst__key_cmp(p, (uint32_t)h.unshared, key, key_len) < 0)
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
		if (sb_sst__key_cmp(c->key, c->key_len, key, key_len) >= 0)
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

/* Reads block b and its CRC (block_len(t, b) + 4 bytes) into dst: a copy
 * out of the mapping, or one pread. The copy is what the caller checks and
 * decodes: the CRC is computed over exactly the bytes that are then parsed
 * and returned, and the entry's pointers stay valid for as long as buf
 * (sb_sstable.h), whatever happens to the table afterwards. Copying costs
 * little: the CRC has to bring the block into cache anyway, and then runs
 * on the copy. Returns 0, SB_ECORRUPT (the file ends early), or -errno. */
static int read_block(const struct sb_sst *t, uint32_t b, uint8_t *dst)
{
	size_t len = (size_t)block_len(t, b) + SST_CRC_BYTES;
	if (t->map) { /* inside the mapping: parse_index summed the blocks to f.index_pos */
		memcpy(dst, t->map + t->blocks[b].pos, len);
		return 0;
	}
	int rc = sb_vfs_read_all(t->vfs, t->fd, dst, len, t->blocks[b].pos);
	return rc == -ENODATA ? SB_ECORRUPT : rc;
}

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
	if (sb_sst__grow_bytes(&buf->block, &buf->block_cap, (size_t)len + SST_CRC_BYTES))
		return -ENOMEM;
	if (!buf->key && !(buf->key = malloc(SB_SST_KEY_BYTES_MAX)))
		return -ENOMEM;
	rc = read_block(t, b, buf->block);
	if (!rc && sb_load32(buf->block + len) != sb_crc32c(buf->block, len))
		rc = SB_ECORRUPT;
	if (!rc && !(rc = blk_init(&c, buf->block, len, buf->key, 0))) {
		rc = blk_seek(&c, key, key_len);
		if (rc == 0) /* the index promised a key >= this one in the block */
			rc = SB_ECORRUPT;
		else if (rc == 1)
			rc = sb_sst__key_cmp(c.key, c.key_len, key, key_len)
			         ? SB_ENOTFOUND
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
	if (sb_sst__grow_bytes(&it->win, &it->win_cap, len))
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
		if (sb_sst__key_cmp(it->c.key, it->c.key_len, key, SB_SST_KEY_BYTES_MAX) == 0)
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
	if (sb_sst__key_cmp(it->c.key, it->c.key_len, it->t->index + r->key_off, r->key_len) != 0)
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
		if (sb_sst__key_cmp(it->c.key, it->c.key_len, t->index + r->key_off, r->key_len) <=
		    0)
			return iter_fail(it, SB_ECORRUPT);
	}
	it->first_entry = 0;
	if ((rc = blk_entry(t, &it->c, out)))
		return iter_fail(it, rc);
	return 1;
}
