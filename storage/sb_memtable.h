/* sb_memtable.h - the in-memory table of a partition's key store: a skip
 * list mapping key -> (offset, timestamp, flags, value, headers).
 *
 * Every keyed record the partition appends is put here; a record with the
 * tombstone flag (and an empty value) deletes its key. When the table is big
 * enough an SSTable flusher iterates it in key order and writes it out, then
 * frees it. The partition's log is the write-ahead log: nothing here is
 * durable, and after a crash the table is rebuilt by replaying the log from
 * the offset after the newest flushed SSTable's max offset. There is no
 * second WAL.
 *
 * Versions. A put never changes a published entry. A put of a key that is
 * already present adds a new version; versions sort by (key ascending,
 * offset descending), so the newest version of a key comes first. Offsets
 * come from the log and must strictly increase from put to put.
 *
 * Concurrency (LevelDB's skip list). One writer, any number of readers, no
 * locks:
 *   - put/delete: one thread at a time. The caller serialises writers (in
 *     StreamBus, the partition's append path is the only writer).
 *   - get, the iterator, count, bytes, payload_bytes, min/max_offset, stats:
 *     any thread, any number, concurrently with the writer. They never block
 *     and never see a half-built entry: a node is fully initialised before a
 *     release store links it in, and readers follow links with acquire loads.
 *   - validate and debug_corrupt: never concurrently with the writer.
 *   - free: once no other thread uses the table.
 *
 * Memory. Nodes, keys, values and headers live in an arena of malloc'd
 * blocks (SB_MEMTABLE_BLOCK_BYTES each, plus one dedicated block per record
 * bigger than a quarter block); sb_memtable_free() frees every block at once.
 * There is no per-put malloc for small entries. Index nodes (what a search
 * reads) are packed in blocks of their own, away from keys and values, so
 * a lookup touches few cache lines. The table never grows past the cap given
 * to sb_memtable_new(), itself at most SB_MEMTABLE_BYTES_MAX.
 */
#ifndef SB_STORAGE_MEMTABLE_H
#define SB_STORAGE_MEMTABLE_H

#include <stdint.h>
#include <string.h>

#include "sb_error.h"
#include "sb_limits.h"

/* ======================================================================
 * Shared with the SSTable code: one keyed entry and the key order.
 * ====================================================================== */

/* SB_KV_KEY_MAX (the longest key) is in sb_limits.h. */

/* Entry flags. SB_KV_TOMBSTONE: the key was deleted at this offset; the
 * value is empty. */
#define SB_KV_FLAGS_KNOWN 0x1u

/* storage/sb_sstable.h carries a copy of this struct and flag under the same
 * guard until it includes this header; the guard lets a file include both,
 * in either order. The two definitions must stay identical. */
#ifndef SB_KV_ENTRY_DEFINED
#define SB_KV_ENTRY_DEFINED
#define SB_KV_TOMBSTONE 1u
/* One version of one key. As an input (put) every pointer is borrowed for
 * the call and the bytes are copied. As an output (get, iterator) every
 * pointer points into the table's arena, is never NULL (a length of 0 still
 * gives a valid pointer) and stays valid, unchanged, until the table is
 * freed. */
struct sb_kv_entry {
	const uint8_t *key; /* 1..SB_KV_KEY_MAX bytes */
	uint32_t key_len;
	int64_t offset;       /* log offset of the record, >= 0 */
	int64_t timestamp_ms; /* record timestamp; any value (-1: none) */
	uint32_t flags;       /* SB_KV_* bits */
	const uint8_t *value; /* 0.. bytes; 0 for a tombstone */
	uint32_t value_len;
	const uint8_t *headers; /* the record's encoded headers, opaque, 0.. bytes */
	uint32_t headers_len;
};
#endif
_Static_assert(SB_KV_TOMBSTONE == 0x1u, "SB_KV_TOMBSTONE differs between headers");

/* The one key order of the key store: bytewise (memcmp, unsigned) over the
 * common prefix, then the shorter key first. Returns <0, 0 or >0. A length
 * of 0 allows a NULL pointer. */
static inline int sb_kv_key_cmp(const uint8_t *a, uint32_t a_len, const uint8_t *b, uint32_t b_len)
{
	uint32_t n = a_len < b_len ? a_len : b_len;
	int c = n ? memcmp(a, b, n) : 0;
	if (c)
		return c;
	return (a_len > b_len) - (a_len < b_len);
}

/* ======================================================================
 * The memtable.
 * ====================================================================== */

/* SB_MEMTABLE_BYTES_MAX / _MIN (the arena cap's bounds) are in sb_limits.h. */
/* Size of an ordinary arena block, header included. A block holds either
 * index nodes or records (see SB_MEMTABLE_NODE_BYTES); a record bigger than
 * a quarter of this gets a dedicated block of its own size. Near the cap
 * the last blocks are smaller, so that the cap can be reached. */
#define SB_MEMTABLE_BLOCK_BYTES (256ull << 10)
/* Bytes of each block's header (part of the block's size). */
#define SB_MEMTABLE_BLOCK_HEADER_BYTES 24ull
/* Tallest skip-list tower; with p = 1/4, 16 levels stay near-optimal up to
 * 4^16 entries, far more than SB_MEMTABLE_BYTES_MAX can hold. */
#define SB_MEMTABLE_HEIGHT_MAX 16
/* Arena bytes of one entry besides its key, value and headers: an index
 * node (24 bytes: cached key prefix, key length, flags, record pointer; plus
 * one pointer per level) and a record header (24 bytes: offset, timestamp,
 * lengths) that the key, value and headers follow. */
#define SB_MEMTABLE_NODE_BYTES(height) (48ull + 8ull * (uint64_t)(height))

struct sb_memtable;
struct sb_memtable_node;

/* A cursor over the table, in (key asc, offset desc) order. Caller-owned;
 * holds no resources (there is no fini). Fields are private. One thread
 * uses an iterator at a time; any number of iterators may run beside each
 * other and beside the writer.
 *
 * An iterator is a snapshot: sb_memtable_iter_init() records the newest
 * offset present, and the iterator yields only entries at or below it, even
 * while the writer keeps adding. To see newer entries, init again. */
struct sb_memtable_iter {
	const struct sb_memtable *mt;
	const struct sb_memtable_node *node; /* next node to consider; NULL: end */
	int64_t snapshot_offset;
	int latest_only;
};

/* Figures from one walk of the table (sb_memtable_stats). */
struct sb_memtable_stats {
	uint64_t entries; /* all versions, tombstones included */
	uint64_t tombstones;
	uint64_t distinct_keys;
	uint64_t key_bytes; /* sum of key_len over all entries */
	uint64_t value_bytes;
	uint64_t headers_bytes;
	uint64_t node_bytes; /* sum of SB_MEMTABLE_NODE_BYTES(height) */
	uint64_t nodes_by_height[SB_MEMTABLE_HEIGHT_MAX + 1]; /* [h]: nodes of height h */
	uint64_t arena_bytes;                                 /* sb_memtable_bytes() */
	uint64_t blocks;                                      /* arena blocks allocated */
	int height;                                           /* levels in use */
};

/* Creates an empty table whose arena may grow to bytes_max bytes (the sum
 * of its block sizes, see sb_memtable_bytes). No arena block is allocated
 * until the first put. On success *out owns the table; free it with
 * sb_memtable_free(). Returns 0, SB_EINVAL if bytes_max is outside
 * [SB_MEMTABLE_BYTES_MIN, SB_MEMTABLE_BYTES_MAX], or -ENOMEM. */
int sb_memtable_new(uint64_t bytes_max, struct sb_memtable **out) SB_MUST_CHECK;

/* Frees the table and every arena block at once. Every pointer obtained
 * from get or an iterator becomes invalid. Call only when no other thread
 * uses the table. mt may be NULL. */
void sb_memtable_free(struct sb_memtable *mt);

/* Adds the entry e (key, value and headers are copied; e is borrowed for the
 * call). A key already present gets a new version; get() then returns this
 * one. Writer only (callers serialise writers); readers may run meanwhile.
 * Returns:
 *   0            added and visible to readers;
 *   SB_EINVAL    key_len is 0, a NULL pointer comes with a non-zero length,
 *                flags has unknown bits, a tombstone has a value, offset is
 *                negative, or offset <= the previous put's offset;
 *   SB_ETOOBIG   key_len > SB_KV_KEY_MAX, or the entry does not fit under the
 *                table's cap (the caller should flush and start a new table);
 *   -ENOMEM      malloc of an arena block failed.
 * On any error the table is unchanged. */
int sb_memtable_put(struct sb_memtable *mt, const struct sb_kv_entry *e) SB_MUST_CHECK;

/* Records that key was deleted at offset: a put of a tombstone (flags
 * SB_KV_TOMBSTONE, empty value, no headers). Same thread rules and errors
 * as sb_memtable_put(). */
int sb_memtable_delete(struct sb_memtable *mt, const uint8_t *key, uint32_t key_len, int64_t offset,
                       int64_t timestamp_ms) SB_MUST_CHECK;

/* Looks key up and fills *out with its newest version. Returns 0 (found),
 * SB_ENOTFOUND (no version of the key is here), or SB_EINVAL (key_len 0 or
 * > SB_KV_KEY_MAX, or key NULL). A deleted key is FOUND: *out then has
 * flags & SB_KV_TOMBSTONE and an empty value, so that the caller stops
 * searching older tables; the caller turns it into "not found". *out points
 * into the arena, valid until sb_memtable_free(). Any thread, concurrently
 * with the writer: it sees every put that returned before the call began. */
int sb_memtable_get(const struct sb_memtable *mt, const uint8_t *key, uint32_t key_len,
                    struct sb_kv_entry *out) SB_MUST_CHECK;

/* Starts an iterator at the first entry, taking the snapshot (see struct
 * sb_memtable_iter). latest_only != 0 yields only the newest version (within
 * the snapshot) of each key, tombstones included: what the flusher writes.
 * latest_only == 0 yields every version. Any thread. */
void sb_memtable_iter_init(const struct sb_memtable *mt, struct sb_memtable_iter *it,
                           int latest_only);

/* Moves the iterator to the first entry whose key is >= key (for an exact
 * match, the key's newest version in the snapshot). key_len 0 (key may be
 * NULL) seeks to the start. Keeps the snapshot of iter_init. */
void sb_memtable_iter_seek(struct sb_memtable_iter *it, const uint8_t *key, uint32_t key_len);

/* Fills *out with the entry at the iterator and advances. Returns 0, or
 * SB_ENOTFOUND at the end (and again on every later call). *out points into
 * the arena, valid until sb_memtable_free(). */
int sb_memtable_iter_next(struct sb_memtable_iter *it, struct sb_kv_entry *out) SB_MUST_CHECK;

/* Entries in the table, every version and tombstone counted. Any thread. */
uint64_t sb_memtable_count(const struct sb_memtable *mt);

/* Arena bytes reserved: the exact sum of the sizes of the blocks allocated
 * with malloc (headers included; malloc's own overhead and the fixed-size
 * table struct are not). This is what the cap bounds. Any thread. */
uint64_t sb_memtable_bytes(const struct sb_memtable *mt);

/* Arena bytes used by entries: for each entry SB_MEMTABLE_NODE_BYTES(its
 * height) + key_len + value_len + headers_len (padding of the node and the
 * record to 8 bytes, and unused block tails, excluded). Any thread. */
uint64_t sb_memtable_payload_bytes(const struct sb_memtable *mt);

/* Smallest and largest offset of the entries in the table (the range the
 * flusher records in the SSTable), or -1 if the table is empty. Any
 * thread; max_offset is published after the entry is visible. */
int64_t sb_memtable_min_offset(const struct sb_memtable *mt);
int64_t sb_memtable_max_offset(const struct sb_memtable *mt);

/* Walks the table (O(n), no allocation) and fills *out. Any thread; run
 * concurrently with the writer it counts the entries up to the newest
 * offset at the start of the walk, while arena_bytes/blocks are read at the
 * end. For tests, diagnostics and flush sizing. */
void sb_memtable_stats(const struct sb_memtable *mt, struct sb_memtable_stats *out);

/* Checks every invariant of the structure: each level is sorted by (key
 * asc, offset desc) and is a sub-list of the level below, holding exactly
 * the nodes tall enough for it; heights, key lengths and flags are within
 * bounds; every node and record lies inside an arena block; the cached key
 * prefixes match the keys; the count, the byte counters and the offset
 * range agree with a recount. Returns 0, SB_ECORRUPT
 * (after logging one error line, event=memtable_corrupt, naming the failed
 * check as check=...), or -ENOMEM. O(n log blocks). Meant for debug builds
 * and tests. Not concurrently with the writer; readers may run. */
int sb_memtable_validate(const struct sb_memtable *mt) SB_MUST_CHECK;

/* Ways sb_memtable_debug_corrupt() can break a table. */
enum sb_memtable_corruption {
	/* Relink two adjacent height-1 nodes in reverse order (a->b->c->d
	 * becomes a->c->b->d): level 0 is out of order. */
	SB_MEMTABLE_CORRUPT_SWAP_ADJACENT = 1,
	/* Unlink a node of height >= 2 from level 0 only: level 1 is no longer
	 * a sub-list of level 0. */
	SB_MEMTABLE_CORRUPT_SKIP_IN_LEVEL0 = 2,
	/* The entry count one too high. */
	SB_MEMTABLE_CORRUPT_COUNT = 3,
	/* The payload byte counter one too high. */
	SB_MEMTABLE_CORRUPT_PAYLOAD_BYTES = 4,
	/* max_offset one below the newest entry's offset. */
	SB_MEMTABLE_CORRUPT_MAX_OFFSET = 5,
};

/* FOR TESTS OF THE VALIDATOR ONLY: damages mt as described by what, so that
 * a test can check that sb_memtable_validate() catches it. Afterwards the
 * table is fit only for sb_memtable_validate() and sb_memtable_free().
 * Returns 0, SB_ENOTFOUND if the table has no nodes to damage that way, or
 * SB_EINVAL for an unknown what. Never concurrently with any other call. */
int sb_memtable_debug_corrupt(struct sb_memtable *mt,
                              enum sb_memtable_corruption what) SB_MUST_CHECK;

#endif
