/* sb_memtable.c - the skip-list memtable and its arena (see sb_memtable.h).
 *
 * Each entry is two arena allocations (8-byte aligned):
 *
 *   node   (index blocks): key_prefix, key_len, height, flags, record
 *                          pointer, next[height]           24 + 8*height B
 *   record (data blocks):  offset, timestamp, value_len, headers_len,
 *                          key | value | headers            24 B + bytes
 *
 * A search reads only nodes: a next pointer and the node's first 8 key
 * bytes, kept as a big-endian integer (key_prefix), settle almost every
 * comparison; the record is read on a prefix tie and for the entry found.
 * Nodes are packed together, away from the values, so the lines a search
 * walks through are few and dense: 3 in 4 nodes take 32 bytes. On a table
 * larger than the caches this is what a lookup costs.
 *
 * Publication (LevelDB's recipe): the writer fills the record and the node,
 * sets the node's own next pointers with relaxed stores, then links it level
 * by level from the bottom with release stores. Readers load next pointers
 * with acquire, so a node they reach, and its record, are fully initialised.
 * Level 0 is linked first: once a node is in level 0 every search finds it,
 * upper levels only speed the search. max_offset is stored (release) after
 * the links, which makes it a snapshot marker: every entry at or below it
 * is in level 0.
 */
#include "sb_memtable.h"

#include "sb_logging.h"

#include <assert.h>
#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* What the search reads. */
struct sb_memtable_node {
	uint64_t key_prefix; /* see key_prefix() */
	uint32_t key_len;
	uint8_t height; /* 1..SB_MEMTABLE_HEIGHT_MAX; the head has the maximum */
	uint8_t reserved;
	uint16_t flags;
	const struct mt_record *rec;               /* NULL only in the head */
	_Atomic(struct sb_memtable_node *) next[]; /* [height] */
};

/* The rest of the entry. */
struct mt_record {
	int64_t offset;
	int64_t timestamp_ms;
	uint32_t value_len;
	uint32_t headers_len;
	uint8_t bytes[]; /* key | value | headers */
};
_Static_assert(sizeof(struct sb_memtable_node) + sizeof(struct mt_record) ==
                   SB_MEMTABLE_NODE_BYTES(0),
               "SB_MEMTABLE_NODE_BYTES disagrees with the node layout");
_Static_assert(SB_KV_FLAGS_KNOWN <= UINT16_MAX, "flags are stored in 16 bits");
_Static_assert(SB_MEMTABLE_HEIGHT_MAX <= 16, "mt_random_height draws 15 pairs of bits at most");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "key_prefix assumes little-endian");

struct mt_block {
	struct mt_block *next; /* all blocks, newest first */
	uint64_t bytes;        /* malloc'd size, this header included */
	uint64_t used;         /* bytes of data[] handed out */
	uint8_t data[];
};
_Static_assert(sizeof(struct mt_block) == SB_MEMTABLE_BLOCK_HEADER_BYTES,
               "SB_MEMTABLE_BLOCK_HEADER_BYTES disagrees with the block layout");

/* Records needing more than this get a dedicated block. */
#define MT_DEDICATED_BYTES_MIN (SB_MEMTABLE_BLOCK_BYTES / 4)

struct sb_memtable {
	/* Read by every search; written only when the table grows taller. */
	alignas(64) _Atomic int height; /* levels in use, 1..SB_MEMTABLE_HEIGHT_MAX */
	struct sb_memtable_node *head;  /* tower of SB_MEMTABLE_HEIGHT_MAX, no key */

	/* Written by the writer on every put, read by anyone. On their own
	 * cache line so that puts do not evict the line searches start from. */
	alignas(64) _Atomic uint64_t count;
	_Atomic uint64_t payload_bytes;
	_Atomic uint64_t arena_bytes;
	_Atomic uint64_t blocks;
	_Atomic int64_t min_offset; /* -1 while empty */
	_Atomic int64_t max_offset; /* -1 while empty; stored last (release) */

	/* Writer only (and validate, which never runs beside the writer). */
	uint64_t bytes_max;
	uint64_t rng;                /* xorshift64 state for tower heights */
	struct mt_block *block_list; /* every block, newest first */
	struct mt_block *cur_index;  /* the block nodes come from */
	struct mt_block *cur_data;   /* the block records come from */
};

static inline uint64_t round8(uint64_t n)
{
	return (n + 7) & ~7ull;
}

static inline uint64_t node_size(int height)
{
	return sizeof(struct sb_memtable_node) + 8ull * (uint64_t)height;
}

static inline uint64_t record_size(uint32_t key_len, uint32_t value_len, uint32_t headers_len)
{
	return sizeof(struct mt_record) + (uint64_t)key_len + value_len + headers_len;
}

static inline const uint8_t *node_key(const struct sb_memtable_node *n)
{
	return n->rec->bytes;
}

static inline int64_t node_offset(const struct sb_memtable_node *n)
{
	return n->rec->offset;
}

/* Payload bytes of the entry n heads (see sb_memtable_payload_bytes). */
static inline uint64_t entry_bytes(const struct sb_memtable_node *n)
{
	return node_size(n->height) +
	       record_size(n->key_len, n->rec->value_len, n->rec->headers_len);
}

/* The first 8 bytes of a key as a big-endian integer, zero-padded. Integer
 * order of prefixes agrees with sb_kv_key_cmp whenever the prefixes differ:
 * the first differing byte is either a real byte of both keys, or a padding
 * zero of the shorter key against a non-zero byte of a longer key that
 * extends it. Equal prefixes decide nothing ("a" vs "a\0"). */
static inline uint64_t key_prefix(const uint8_t *key, uint32_t key_len)
{
	uint64_t x = 0;
	if (key_len >= 8)
		memcpy(&x, key, 8);
	else if (key_len > 0)
		memcpy(&x, key, key_len);
	return __builtin_bswap64(x);
}

/* A key being searched for, with its prefix computed once. */
struct mt_target {
	const uint8_t *key;
	uint32_t key_len;
	uint64_t prefix;
};

static inline struct mt_target target_of(const uint8_t *key, uint32_t key_len)
{
	return (struct mt_target){key, key_len, key_prefix(key, key_len)};
}

static inline const struct sb_memtable_node *next_acq(const struct sb_memtable_node *n, int level)
{
	return atomic_load_explicit(&n->next[level], memory_order_acquire);
}

/* Is n's key < the target's? Usually settled by the prefixes alone. */
static inline bool node_key_less(const struct sb_memtable_node *n, const struct mt_target *t)
{
	if (n->key_prefix != t->prefix)
		return n->key_prefix < t->prefix;
	return sb_kv_key_cmp(node_key(n), n->key_len, t->key, t->key_len) < 0;
}

static inline bool node_key_equal(const struct sb_memtable_node *n, const uint8_t *key,
                                  uint32_t key_len, uint64_t prefix)
{
	return n->key_prefix == prefix && n->key_len == key_len &&
	       memcmp(node_key(n), key, key_len) == 0;
}

/* The table order: key ascending, then offset descending. */
static int node_cmp(const struct sb_memtable_node *a, const struct sb_memtable_node *b)
{
	int c = sb_kv_key_cmp(node_key(a), a->key_len, node_key(b), b->key_len);
	if (c)
		return c;
	int64_t x = node_offset(a), y = node_offset(b);
	return (x < y) - (x > y);
}

static void node_to_entry(const struct sb_memtable_node *n, struct sb_kv_entry *out)
{
	const struct mt_record *r = n->rec;
	out->key = r->bytes;
	out->key_len = n->key_len;
	out->offset = r->offset;
	out->timestamp_ms = r->timestamp_ms;
	out->flags = n->flags;
	out->value = r->bytes + n->key_len;
	out->value_len = r->value_len;
	out->headers = out->value + r->value_len;
	out->headers_len = r->headers_len;
}

/* ---- lifecycle and counters ---- */

int sb_memtable_new(uint64_t bytes_max, struct sb_memtable **out)
{
	*out = NULL;
	if (bytes_max < SB_MEMTABLE_BYTES_MIN || bytes_max > SB_MEMTABLE_BYTES_MAX)
		return SB_EINVAL;
	/* The head node sits right after the struct, in the same allocation
	 * (sizeof is a multiple of 64, so the head is 8-byte aligned). */
	size_t size = sizeof(struct sb_memtable) + node_size(SB_MEMTABLE_HEIGHT_MAX);
	size = (size + 63) & ~(size_t)63;
	struct sb_memtable *mt = aligned_alloc(64, size);
	if (!mt)
		return -ENOMEM;
	memset(mt, 0, size);
	mt->head = (struct sb_memtable_node *)(mt + 1);
	mt->head->height = SB_MEMTABLE_HEIGHT_MAX;
	for (int i = 0; i < SB_MEMTABLE_HEIGHT_MAX; i++)
		atomic_init(&mt->head->next[i], NULL);
	atomic_init(&mt->height, 1);
	atomic_init(&mt->count, 0);
	atomic_init(&mt->payload_bytes, 0);
	atomic_init(&mt->arena_bytes, 0);
	atomic_init(&mt->blocks, 0);
	atomic_init(&mt->min_offset, -1);
	atomic_init(&mt->max_offset, -1);
	mt->bytes_max = bytes_max;
	mt->rng = 0x9E3779B97F4A7C15ull;
	*out = mt;
	return 0;
}

void sb_memtable_free(struct sb_memtable *mt)
{
	if (!mt)
		return;
	struct mt_block *b = mt->block_list;
	while (b) {
		struct mt_block *next = b->next;
		free(b);
		b = next;
	}
	free(mt);
}

uint64_t sb_memtable_count(const struct sb_memtable *mt)
{
	return atomic_load_explicit(&mt->count, memory_order_relaxed);
}

uint64_t sb_memtable_bytes(const struct sb_memtable *mt)
{
	return atomic_load_explicit(&mt->arena_bytes, memory_order_relaxed);
}

uint64_t sb_memtable_payload_bytes(const struct sb_memtable *mt)
{
	return atomic_load_explicit(&mt->payload_bytes, memory_order_relaxed);
}

int64_t sb_memtable_min_offset(const struct sb_memtable *mt)
{
	/* Acquire pairs with the writer's release of max_offset, which follows
	 * the store of min_offset: seeing max >= 0 implies seeing min. */
	if (atomic_load_explicit(&mt->max_offset, memory_order_acquire) < 0)
		return -1;
	return atomic_load_explicit(&mt->min_offset, memory_order_relaxed);
}

int64_t sb_memtable_max_offset(const struct sb_memtable *mt)
{
	return atomic_load_explicit(&mt->max_offset, memory_order_acquire);
}

/* ---- writer: arena, heights, linking ---- */

static inline bool block_fits(const struct mt_block *b, uint64_t need)
{
	return b && b->bytes - SB_MEMTABLE_BLOCK_HEADER_BYTES - b->used >= need;
}

static inline void *block_take(struct mt_block *b, uint64_t need)
{
	void *p = b->data + b->used;
	b->used += need;
	return p;
}

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static void mt_block_push(struct sb_memtable *mt, struct mt_block *b, uint64_t size)
{
	b->bytes = size;
	b->used = 0;
	b->next = mt->block_list;
	mt->block_list = b;
	uint64_t arena = atomic_load_explicit(&mt->arena_bytes, memory_order_relaxed);
	uint64_t blocks = atomic_load_explicit(&mt->blocks, memory_order_relaxed);
	atomic_store_explicit(&mt->arena_bytes, arena + size, memory_order_relaxed);
	atomic_store_explicit(&mt->blocks, blocks + 1, memory_order_relaxed);
}

/* Hands out round8 of node_bytes from an index block and of rec_bytes from
 * a data block (or a dedicated one): both, or neither and an error. When
 * the cap is near, the last blocks are smaller so that it can be reached. */
static int mt_alloc_entry(struct sb_memtable *mt, uint64_t node_bytes, uint64_t rec_bytes,
                          void **node, void **rec)
{
	const uint64_t hdr = SB_MEMTABLE_BLOCK_HEADER_BYTES;
	uint64_t node_need = round8(node_bytes), rec_need = round8(rec_bytes);
	uint64_t room =
	    mt->bytes_max - atomic_load_explicit(&mt->arena_bytes, memory_order_relaxed);
	bool dedicated = rec_need > MT_DEDICATED_BYTES_MIN;
	bool new_index = !block_fits(mt->cur_index, node_need);
	uint64_t index_min = new_index ? hdr + node_need : 0;
	uint64_t rec_block = 0, index_block = 0; /* sizes of new blocks; 0: none */

	if (dedicated || !block_fits(mt->cur_data, rec_need)) {
		if (dedicated)
			rec_block = hdr + rec_need;
		else if (room >= index_min)
			rec_block = min_u64(SB_MEMTABLE_BLOCK_BYTES, room - index_min);
		if (rec_block < hdr + rec_need || rec_block > room)
			return SB_ETOOBIG;
	}
	if (new_index) {
		index_block = min_u64(SB_MEMTABLE_BLOCK_BYTES, room - rec_block);
		if (index_block < index_min)
			return SB_ETOOBIG;
	}

	struct mt_block *rb = NULL, *ib = NULL;
	if (rec_block && !(rb = malloc(rec_block)))
		return -ENOMEM;
	if (index_block && !(ib = malloc(index_block))) {
		free(rb);
		return -ENOMEM;
	}
	if (rb) {
		mt_block_push(mt, rb, rec_block);
		if (!dedicated)
			mt->cur_data = rb; /* the old block's tail is abandoned */
	}
	if (ib) {
		mt_block_push(mt, ib, index_block);
		mt->cur_index = ib;
	}
	*node = block_take(mt->cur_index, node_need);
	*rec = block_take(dedicated ? rb : mt->cur_data, rec_need);
	return 0;
}

/* A height with P(h) = (1/4)^(h-1) * 3/4, capped at SB_MEMTABLE_HEIGHT_MAX. */
static int mt_random_height(struct sb_memtable *mt)
{
	uint64_t x = mt->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	mt->rng = x;
	uint32_t r = (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32); /* xorshift64*: high bits */
	int h = 1;
	while (h < SB_MEMTABLE_HEIGHT_MAX && (r & 3) == 0) {
		h++;
		r >>= 2;
	}
	return h;
}

/* Links the filled node x in. x's offset is above every offset present, so
 * it goes before every existing version of its key: the insertion point is
 * the first node whose key is >= x's key. */
static void mt_link(struct sb_memtable *mt, struct sb_memtable_node *x)
{
	struct sb_memtable_node *prev[SB_MEMTABLE_HEIGHT_MAX];
	struct sb_memtable_node *p = mt->head, *bound = NULL;
	const struct mt_target t = {node_key(x), x->key_len, x->key_prefix};
	int height = atomic_load_explicit(&mt->height, memory_order_relaxed);

	/* Only this thread writes links, so relaxed loads see the latest. */
	for (int level = height - 1; level >= 0; level--) {
		for (;;) {
			struct sb_memtable_node *next =
			    atomic_load_explicit(&p->next[level], memory_order_relaxed);
			/* bound: already known to be >= key from the level above. */
			if (next == bound || !next || !node_key_less(next, &t)) {
				bound = next;
				break;
			}
			p = next;
		}
		prev[level] = p;
	}
	assert(!bound || node_cmp(x, bound) < 0);
	if (x->height > height) {
		for (int level = height; level < x->height; level++)
			prev[level] = mt->head;
		/* A reader that sees the new height before the links below finds
		 * NULL in the head at those levels and simply descends. */
		atomic_store_explicit(&mt->height, x->height, memory_order_relaxed);
	}
	for (int level = 0; level < x->height; level++) {
		struct sb_memtable_node *succ =
		    atomic_load_explicit(&prev[level]->next[level], memory_order_relaxed);
		atomic_store_explicit(&x->next[level], succ, memory_order_relaxed);
		atomic_store_explicit(&prev[level]->next[level], x, memory_order_release);
	}
}

static int mt_check_entry(const struct sb_memtable *mt, const struct sb_kv_entry *e)
{
	if (e->key_len == 0 || !e->key)
		return SB_EINVAL;
	if (e->key_len > SB_KV_KEY_MAX)
		return SB_ETOOBIG;
	if ((e->value_len && !e->value) || (e->headers_len && !e->headers))
		return SB_EINVAL;
	if ((e->flags & ~SB_KV_FLAGS_KNOWN) || ((e->flags & SB_KV_TOMBSTONE) && e->value_len))
		return SB_EINVAL;
	/* The log's offsets increase; a repeat or a step back is a caller bug. */
	if (e->offset < 0 ||
	    e->offset <= atomic_load_explicit(&mt->max_offset, memory_order_relaxed))
		return SB_EINVAL;
	return 0;
}

int sb_memtable_put(struct sb_memtable *mt, const struct sb_kv_entry *e)
{
	int rc = mt_check_entry(mt, e);
	if (rc)
		return rc;
	int height = mt_random_height(mt);
	uint64_t rec_bytes = record_size(e->key_len, e->value_len, e->headers_len);
	void *node_mem, *rec_mem;
	rc = mt_alloc_entry(mt, node_size(height), rec_bytes, &node_mem, &rec_mem);
	if (rc)
		return rc;

	struct mt_record *r = rec_mem;
	r->offset = e->offset;
	r->timestamp_ms = e->timestamp_ms;
	r->value_len = e->value_len;
	r->headers_len = e->headers_len;
	uint8_t *p = r->bytes;
	memcpy(p, e->key, e->key_len);
	p += e->key_len;
	if (e->value_len)
		memcpy(p, e->value, e->value_len);
	p += e->value_len;
	if (e->headers_len)
		memcpy(p, e->headers, e->headers_len);

	struct sb_memtable_node *x = node_mem;
	x->key_prefix = key_prefix(e->key, e->key_len);
	x->key_len = e->key_len;
	x->height = (uint8_t)height;
	x->reserved = 0;
	x->flags = (uint16_t)e->flags;
	x->rec = r;
	mt_link(mt, x);

	uint64_t count = atomic_load_explicit(&mt->count, memory_order_relaxed);
	uint64_t payload = atomic_load_explicit(&mt->payload_bytes, memory_order_relaxed);
	if (count == 0)
		atomic_store_explicit(&mt->min_offset, e->offset, memory_order_relaxed);
	atomic_store_explicit(&mt->count, count + 1, memory_order_relaxed);
	atomic_store_explicit(&mt->payload_bytes, payload + node_size(height) + rec_bytes,
	                      memory_order_relaxed);
	atomic_store_explicit(&mt->max_offset, e->offset, memory_order_release);
	return 0;
}

int sb_memtable_delete(struct sb_memtable *mt, const uint8_t *key, uint32_t key_len, int64_t offset,
                       int64_t timestamp_ms)
{
	struct sb_kv_entry e = {
	    .key = key,
	    .key_len = key_len,
	    .offset = offset,
	    .timestamp_ms = timestamp_ms,
	    .flags = SB_KV_TOMBSTONE,
	};
	return sb_memtable_put(mt, &e);
}

/* ---- readers ---- */

/* The first node whose key is >= the target's, or NULL. Lock-free. */
static const struct sb_memtable_node *mt_seek_ge(const struct sb_memtable *mt,
                                                 const struct mt_target *t)
{
	const struct sb_memtable_node *x = mt->head, *bound = NULL;
	int level = atomic_load_explicit(&mt->height, memory_order_relaxed) - 1;
	for (;;) {
		const struct sb_memtable_node *next = next_acq(x, level);
		if (next != bound && next) {
			/* Start fetching the node after next while next's key is
			 * compared: on a big table both are cache misses. */
			__builtin_prefetch(
			    atomic_load_explicit(&next->next[level], memory_order_relaxed));
			if (node_key_less(next, t)) {
				x = next;
				continue;
			}
		}
		if (level == 0)
			return next;
		bound = next;
		level--;
	}
}

int sb_memtable_get(const struct sb_memtable *mt, const uint8_t *key, uint32_t key_len,
                    struct sb_kv_entry *out)
{
	if (!key || key_len == 0 || key_len > SB_KV_KEY_MAX)
		return SB_EINVAL;
	const struct mt_target t = target_of(key, key_len);
	const struct sb_memtable_node *n = mt_seek_ge(mt, &t);
	if (!n || !node_key_equal(n, key, key_len, t.prefix))
		return SB_ENOTFOUND;
	node_to_entry(n, out);
	return 0;
}

void sb_memtable_iter_init(const struct sb_memtable *mt, struct sb_memtable_iter *it,
                           int latest_only)
{
	it->mt = mt;
	/* Snapshot first, then the list: every entry at or below the snapshot
	 * was in level 0 before max_offset was published. */
	it->snapshot_offset = atomic_load_explicit(&mt->max_offset, memory_order_acquire);
	it->node = next_acq(mt->head, 0);
	it->latest_only = latest_only != 0;
}

void sb_memtable_iter_seek(struct sb_memtable_iter *it, const uint8_t *key, uint32_t key_len)
{
	assert(key || key_len == 0);
	if (key_len == 0) {
		it->node = next_acq(it->mt->head, 0);
	} else {
		const struct mt_target t = target_of(key, key_len);
		it->node = mt_seek_ge(it->mt, &t);
	}
}

int sb_memtable_iter_next(struct sb_memtable_iter *it, struct sb_kv_entry *out)
{
	const struct sb_memtable_node *x = it->node;
	/* Versions newer than the snapshot come first within their key. */
	while (x && node_offset(x) > it->snapshot_offset)
		x = next_acq(x, 0);
	if (!x) {
		it->node = NULL;
		return SB_ENOTFOUND;
	}
	const struct sb_memtable_node *n = next_acq(x, 0);
	if (it->latest_only) {
		/* Older versions of x's key follow it directly. */
		while (n && node_key_equal(n, node_key(x), x->key_len, x->key_prefix))
			n = next_acq(n, 0);
	}
	it->node = n;
	if (n) /* overlap the next step's cache misses with the caller's work */
		__builtin_prefetch(n->rec);
	node_to_entry(x, out);
	return 0;
}

void sb_memtable_stats(const struct sb_memtable *mt, struct sb_memtable_stats *out)
{
	memset(out, 0, sizeof *out);
	int64_t snapshot = atomic_load_explicit(&mt->max_offset, memory_order_acquire);
	const struct sb_memtable_node *prev = NULL;
	for (const struct sb_memtable_node *x = next_acq(mt->head, 0); x; x = next_acq(x, 0)) {
		const struct mt_record *r = x->rec;
		if (r->offset > snapshot)
			continue;
		out->entries++;
		out->tombstones += (x->flags & SB_KV_TOMBSTONE) != 0;
		if (!prev || !node_key_equal(prev, node_key(x), x->key_len, x->key_prefix))
			out->distinct_keys++;
		out->key_bytes += x->key_len;
		out->value_bytes += r->value_len;
		out->headers_bytes += r->headers_len;
		out->node_bytes += SB_MEMTABLE_NODE_BYTES(x->height);
		if (x->height >= 1 && x->height <= SB_MEMTABLE_HEIGHT_MAX)
			out->nodes_by_height[x->height]++;
		prev = x;
	}
	out->arena_bytes = atomic_load_explicit(&mt->arena_bytes, memory_order_relaxed);
	out->blocks = atomic_load_explicit(&mt->blocks, memory_order_relaxed);
	out->height = atomic_load_explicit(&mt->height, memory_order_relaxed);
}

/* ---- validation ---- */

struct mt_range {
	uintptr_t lo, hi; /* a block's handed-out data: [lo, hi) */
};

static int range_cmp(const void *a, const void *b)
{
	uintptr_t x = ((const struct mt_range *)a)->lo, y = ((const struct mt_range *)b)->lo;
	return (x > y) - (x < y);
}

/* Is [p, p + bytes) 8-byte aligned and inside one block's handed-out data? */
static bool in_arena(const struct mt_range *r, size_t n, const void *p, uint64_t bytes)
{
	uintptr_t a = (uintptr_t)p;
	size_t lo = 0, hi = n;
	if (a % 8)
		return false;
	while (lo < hi) { /* last range with r.lo <= a */
		size_t mid = lo + (hi - lo) / 2;
		if (r[mid].lo <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && a < r[lo - 1].hi && bytes <= r[lo - 1].hi - a;
}

static int corrupt(const char *check, int level, long long offset, const char *detail)
{
	SB_ERROR("memtable_corrupt", "check=%s level=%d offset=%lld detail=\"%s\"", check, level,
	         offset, detail);
	return SB_ECORRUPT;
}

/* One level-0 node: inside the arena and well-formed. prev_off names the
 * node before it in messages, as x is not trusted yet. */
static int validate_node(const struct sb_memtable *mt, const struct mt_range *r, size_t nr,
                         const struct sb_memtable_node *x, long long prev_off)
{
	int height = atomic_load_explicit(&mt->height, memory_order_relaxed);
	int64_t min = atomic_load_explicit(&mt->min_offset, memory_order_relaxed);
	int64_t max = atomic_load_explicit(&mt->max_offset, memory_order_relaxed);
	if (!in_arena(r, nr, x, node_size(0)))
		return corrupt("pointer", 0, prev_off,
		               "next pointer of this node leaves the arena");
	if (x->height < 1 || x->height > height)
		return corrupt("height", 0, prev_off, "next node's height is outside [1, levels]");
	if (!in_arena(r, nr, x, node_size(x->height)))
		return corrupt("pointer", 0, prev_off, "next node runs past its block");
	const struct mt_record *rec = x->rec;
	if (!in_arena(r, nr, rec, sizeof *rec) ||
	    !in_arena(r, nr, rec, record_size(x->key_len, rec->value_len, rec->headers_len)))
		return corrupt("pointer", 0, prev_off, "next node's record leaves the arena");
	long long off = rec->offset;
	if (x->key_len < 1 || x->key_len > SB_KV_KEY_MAX)
		return corrupt("key", 0, off, "key length outside [1, SB_KV_KEY_MAX]");
	if (x->key_prefix != key_prefix(node_key(x), x->key_len))
		return corrupt("key", 0, off, "cached key prefix differs from the key");
	if ((x->flags & ~SB_KV_FLAGS_KNOWN) || ((x->flags & SB_KV_TOMBSTONE) && rec->value_len))
		return corrupt("flags", 0, off, "unknown flags or a tombstone with a value");
	if (off < min || off > max)
		return corrupt("offset_range", 0, off, "offset outside [min_offset, max_offset]");
	return 0;
}

/* Level 0: every node valid, strictly in order. Adds up what the counters
 * should say. */
static int validate_level0(const struct sb_memtable *mt, const struct mt_range *r, size_t nr,
                           uint64_t *nodes, uint64_t *payload, uint64_t *padded)
{
	const struct sb_memtable_node *prev = NULL;
	for (const struct sb_memtable_node *x = next_acq(mt->head, 0); x; x = next_acq(x, 0)) {
		int rc = validate_node(mt, r, nr, x, prev ? (long long)node_offset(prev) : -1);
		if (rc)
			return rc;
		if (prev && node_cmp(prev, x) >= 0)
			return corrupt("order", 0, node_offset(x),
			               "not after its predecessor (key asc, offset desc)");
		(*nodes)++;
		*payload += entry_bytes(x);
		*padded += round8(node_size(x->height)) +
		           round8(record_size(x->key_len, x->rec->value_len, x->rec->headers_len));
		prev = x;
	}
	return 0;
}

/* Level l (>= 1) must be exactly the nodes of level l-1 taller than l, in
 * the same order. Level l-1 is already checked, so a node of level l is
 * compared by address only until it has been found there. */
static int validate_upper(const struct sb_memtable *mt, int level)
{
	const struct sb_memtable_node *lower = next_acq(mt->head, level - 1);
	for (const struct sb_memtable_node *x = next_acq(mt->head, level); x;
	     x = next_acq(x, level)) {
		while (lower && lower != x) {
			if (lower->height > level)
				return corrupt(
				    "sublist", level, node_offset(lower),
				    "node tall enough for this level is missing from it");
			lower = next_acq(lower, level - 1);
		}
		if (!lower)
			return corrupt("sublist", level, -1,
			               "node at this level is not in the level below, in order");
		if (x->height <= level)
			return corrupt("height", level, node_offset(x),
			               "node linked above its height");
		lower = next_acq(lower, level - 1);
	}
	for (; lower; lower = next_acq(lower, level - 1))
		if (lower->height > level)
			return corrupt("sublist", level, node_offset(lower),
			               "node tall enough for this level is missing from it");
	return 0;
}

/* Checks each level, then the counters against the recount. */
static int validate_structure(const struct sb_memtable *mt, const struct mt_range *r, size_t nr)
{
	int height = atomic_load_explicit(&mt->height, memory_order_relaxed);
	if (height < 1 || height > SB_MEMTABLE_HEIGHT_MAX)
		return corrupt("height", -1, -1,
		               "levels in use outside [1, SB_MEMTABLE_HEIGHT_MAX]");
	for (int l = height; l < SB_MEMTABLE_HEIGHT_MAX; l++)
		if (next_acq(mt->head, l))
			return corrupt("height", l, -1,
			               "head links a level above the levels in use");

	uint64_t nodes = 0, payload = 0, padded = 0, used = 0;
	for (size_t i = 0; i < nr; i++)
		used += r[i].hi - r[i].lo;
	int rc = validate_level0(mt, r, nr, &nodes, &payload, &padded);
	for (int l = 1; rc == 0 && l < height; l++)
		rc = validate_upper(mt, l);
	if (rc)
		return rc;

	if (nodes != atomic_load_explicit(&mt->count, memory_order_relaxed))
		return corrupt("count", 0, -1, "count differs from the nodes in level 0");
	if (payload != atomic_load_explicit(&mt->payload_bytes, memory_order_relaxed))
		return corrupt("bytes", 0, -1,
		               "payload_bytes differs from a recount of the entries");
	if (padded != used)
		return corrupt("bytes", 0, -1,
		               "arena bytes handed out differ from the entries' sizes");
	/* Offsets only grow: the first entry put is the smallest. */
	int64_t min = atomic_load_explicit(&mt->min_offset, memory_order_relaxed);
	int64_t max = atomic_load_explicit(&mt->max_offset, memory_order_relaxed);
	if (nodes == 0 ? (min != -1 || max != -1) : (min < 0 || min > max))
		return corrupt("offset_range", -1, max, "min_offset/max_offset inconsistent");
	return 0;
}

int sb_memtable_validate(const struct sb_memtable *mt)
{
	uint64_t nblocks = 0, arena = 0;
	for (const struct mt_block *b = mt->block_list; b; b = b->next) {
		if (b->bytes < SB_MEMTABLE_BLOCK_HEADER_BYTES ||
		    b->used > b->bytes - SB_MEMTABLE_BLOCK_HEADER_BYTES)
			return corrupt("bytes", -1, -1, "arena block uses more than its size");
		nblocks++;
		arena += b->bytes;
	}
	if (nblocks != atomic_load_explicit(&mt->blocks, memory_order_relaxed))
		return corrupt("bytes", -1, -1, "block count differs from the block list");
	if (arena != atomic_load_explicit(&mt->arena_bytes, memory_order_relaxed))
		return corrupt("bytes", -1, -1, "arena_bytes differs from the sum of block sizes");
	if (arena > mt->bytes_max)
		return corrupt("bytes", -1, -1, "arena exceeds the table's cap");

	struct mt_range *r = malloc((nblocks ? nblocks : 1) * sizeof *r);
	if (!r)
		return -ENOMEM;
	size_t nr = 0;
	for (const struct mt_block *b = mt->block_list; b; b = b->next, nr++) {
		r[nr].lo = (uintptr_t)b->data;
		r[nr].hi = (uintptr_t)b->data + b->used;
	}
	qsort(r, nr, sizeof *r, range_cmp);
	int rc = validate_structure(mt, r, nr);
	free(r);
	return rc;
}

/* ---- test support ---- */

int sb_memtable_debug_corrupt(struct sb_memtable *mt, enum sb_memtable_corruption what)
{
	struct sb_memtable_node *p = mt->head, *b, *c;
	switch (what) {
	case SB_MEMTABLE_CORRUPT_SWAP_ADJACENT:
		for (; (b = atomic_load(&p->next[0])) && (c = atomic_load(&b->next[0])); p = b) {
			if (b->height == 1 && c->height == 1) {
				atomic_store(&b->next[0], atomic_load(&c->next[0]));
				atomic_store(&c->next[0], b);
				atomic_store(&p->next[0], c);
				return 0;
			}
		}
		return SB_ENOTFOUND;
	case SB_MEMTABLE_CORRUPT_SKIP_IN_LEVEL0:
		for (; (b = atomic_load(&p->next[0])); p = b) {
			if (b->height >= 2) {
				atomic_store(&p->next[0], atomic_load(&b->next[0]));
				return 0;
			}
		}
		return SB_ENOTFOUND;
	case SB_MEMTABLE_CORRUPT_COUNT:
		atomic_fetch_add(&mt->count, 1);
		return 0;
	case SB_MEMTABLE_CORRUPT_PAYLOAD_BYTES:
		atomic_fetch_add(&mt->payload_bytes, 1);
		return 0;
	case SB_MEMTABLE_CORRUPT_MAX_OFFSET:
		if (atomic_load(&mt->count) == 0)
			return SB_ENOTFOUND;
		atomic_fetch_sub(&mt->max_offset, 1);
		return 0;
	}
	return SB_EINVAL;
}
