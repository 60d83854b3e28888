/* sb_sstable.h - the SSTables of a partition's key store: immutable sorted
 * files of (key -> offset, timestamp, flags, value, headers), one version per
 * key, written once by a memtable flush or a compaction and then only read.
 *
 * A table is: data blocks of ~4 KiB (prefix-compressed keys, restart points,
 * each block followed by its CRC32C), a block index (last key of each block,
 * block length) with its CRC32C, a bloom filter (sb_bloom.h) with its CRC32C
 * and a fixed 128-byte footer (counts, the offset range the table covers,
 * section positions, CRC32C). docs/SSTABLE.md gives the format byte by byte.
 *
 * Durability: the writer writes <final_name>.tmp, fdatasyncs it, renames it
 * to <final_name> and fsyncs the directory (the durable-write recipe of
 * STYLE.md). After a crash a table exists whole under its final name or not
 * at all; leftover temp files are removed by sb_sst_remove_temps().
 *
 * Corruption: every length read from a file is bounds-checked and every
 * section is CRC-checked before use; a mismatch returns SB_ECORRUPT (and logs
 * one rate-limited `sst_corrupt` line naming the file), never a wrong entry
 * and never an out-of-bounds read. SSTables are derived data: the owner
 * rebuilds a corrupt one from the log.
 *
 * Key order everywhere: bytewise unsigned over the common prefix, then the
 * shorter key first (memcmp order; the memtable's sb_kv_key_cmp).
 *
 * Reads: when the vfs can map files (sb_vfs_ops.mmap, the POSIX vfs), an
 * open table keeps its data blocks mapped read-only and a point lookup
 * copies its block out of the mapping: no system call. Otherwise (the
 * simulated file system, or a mapping that failed) a lookup preads its
 * block. Iterators always pread, in large sequential windows. Either way a
 * block is copied into the caller's memory and its CRC is checked on that
 * copy before any of its bytes is decoded.
 * The one difference between the two paths is I/O errors: pread returns
 * -EIO, while a mapped page that cannot be read (a media error under a page
 * not in page cache) raises SIGBUS, as would a table truncated while open.
 * Tables are never written or truncated once renamed into place, so only a
 * failing disk (or someone truncating a live table by hand) can cause it.
 *
 * Threads: a writer and an iterator belong to one thread at a time. An open
 * table (struct sb_sst) is immutable: sb_sst_get, sb_sst_may_contain, the
 * accessors and any number of iterators may be used from any threads at
 * once, each get with its own struct sb_sst_buf (reads never change the
 * table: a copy out of its mapping, or pread). sb_sst_close once no other
 * thread uses the table.
 *
 * All I/O goes through struct sb_vfs (storage/sb_vfs.h).
 */
#ifndef SB_STORAGE_SSTABLE_H
#define SB_STORAGE_SSTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "sb_error.h"
#include "sb_limits.h"

struct sb_vfs;

#ifndef SB_KV_ENTRY_DEFINED
#define SB_KV_ENTRY_DEFINED
#define SB_KV_TOMBSTONE 1u
struct sb_kv_entry {
	const uint8_t *key;
	uint32_t key_len;
	int64_t offset;
	int64_t timestamp_ms;
	uint32_t flags;
	const uint8_t *value;
	uint32_t value_len;
	const uint8_t *headers;
	uint32_t headers_len;
};
#endif

/* ---- Format limits (checked when writing and again when reading). The key
 * limit follows sb_limits.h's SB_KV_KEY_MAX; the rest bound this file format
 * and stay with it. ---- */

/* One key. Keys are compared on every lookup and one key per block is held
 * in memory by the block index; 64 KiB keeps a key well inside a block and
 * matches the memtable's SB_KV_KEY_MAX. */
#define SB_SST_KEY_BYTES_MAX SB_KV_KEY_MAX
/* One value, one headers blob, and the three of an entry together: an entry
 * comes from one record, and a record never exceeds a batch. */
#define SB_SST_VALUE_BYTES_MAX SB_BATCH_BYTES_MAX
#define SB_SST_HEADERS_BYTES_MAX SB_BATCH_BYTES_MAX
#define SB_SST_ENTRY_BYTES_MAX SB_BATCH_BYTES_MAX
/* Target size of a data block: a block is closed once it reaches the target.
 * 4 KiB (one page) by default: a lookup reads and CRC-checks one block. */
#define SB_SST_BLOCK_TARGET_BYTES_MIN 256u
#define SB_SST_BLOCK_TARGET_BYTES_DEFAULT 4096u
#define SB_SST_BLOCK_TARGET_BYTES_MAX (1u << 20)
/* Largest data block on disk: the target, plus the entry that crossed it (at
 * most SB_SST_ENTRY_BYTES_MAX and 66 bytes of varints), plus the restart
 * array. Bounds the buffer a single lookup can force a reader to allocate. */
#define SB_SST_BLOCK_BYTES_MAX (SB_SST_ENTRY_BYTES_MAX + (2u << 20))
/* Entries of one table: the bloom builder keeps 8 bytes per key until the
 * table is finished (see SB_BLOOM_KEYS_MAX). */
#define SB_SST_ENTRIES_MAX (1u << 26)
/* Blocks of one table (= block index entries), and the bytes of the index,
 * which is held in memory while the table is open: 4 Mi blocks of 4 KiB
 * cover 16 GiB of entries; 64 MiB of index is 4 Mi entries of ~12-byte keys. */
#define SB_SST_INDEX_ENTRIES_MAX (4u << 20)
#define SB_SST_INDEX_BYTES_MAX (64u << 20)
/* Tables one merge reads at once (one iterator and read-ahead buffer each). */
#define SB_SST_MERGE_INPUTS_MAX 64u
/* Writer's output buffer: bytes are written to the file in chunks this big. */
#define SB_SST_WRITE_BUFFER_BYTES_MIN (4u << 10)
#define SB_SST_WRITE_BUFFER_BYTES_DEFAULT (256u << 10)
#define SB_SST_WRITE_BUFFER_BYTES_MAX (16u << 20)
/* Iterators read whole blocks ahead in windows of about this many bytes (one
 * window holds at least one block). */
#define SB_SST_READAHEAD_BYTES (256u << 10)
/* Entries between restart points in a data block. */
#define SB_SST_RESTART_INTERVAL 16u
/* The fixed footer at the end of every table. */
#define SB_SST_FOOTER_BYTES 128u

/* A table's file name must end in this; its temp file is <name>.tmp, so
 * sb_sst_remove_temps can tell SSTable temps from other files' temps. */
#define SB_SST_SUFFIX ".sst"
#define SB_SST_TEMP_SUFFIX ".tmp"

/* Writer and merge options. A zeroed struct (or NULL) gives the defaults;
 * non-zero fields outside their bounds make open/merge fail with SB_EINVAL. */
struct sb_sst_opts {
	uint32_t block_bytes;        /* data block target; 0 = 4096 */
	uint32_t bloom_bits_per_key; /* 0 = 10 (~1 % false positives) */
	uint32_t write_buffer_bytes; /* 0 = 256 KiB */
	/* Merge only. */
	int drop_tombstones;       /* the output is the bottom-most table */
	uint64_t rate_bytes_per_s; /* read + write bytes per second; 0 = unlimited */
};

struct sb_sst_writer;
struct sb_sst;
struct sb_sst_iter;

/* ==== Writer ==== */

/* Starts a table: creates (or truncates) dir/<final_name>.tmp. final_name is
 * a plain file name (no '/') ending in SB_SST_SUFFIX. The writer keeps its own
 * copies of dir and final_name.
 * Returns 0 and *out, or: SB_EINVAL (bad name or opts), SB_ETOOBIG (path
 * longer than SB_PATH_MAX), -ENOMEM, or the vfs open error (-errno).
 * On success the caller must end the writer with exactly one of
 * sb_sst_writer_finish or sb_sst_writer_abort. */
int sb_sst_writer_open(struct sb_vfs *vfs, const char *dir, const char *final_name,
                       const struct sb_sst_opts *opts, struct sb_sst_writer **out) SB_MUST_CHECK;

/* Appends one entry; every pointer in e is borrowed for the call (the bytes
 * are copied). Keys must come in strictly increasing key order (one version
 * per key); e->offset must be >= 0; key may be NULL only if key_len is 0,
 * likewise value and headers.
 * Returns 0, or:
 *   SB_EINVAL  key not greater than the previous one, offset < 0, NULL data;
 *   SB_ETOOBIG key, value, headers or their sum over the SB_SST_* limits, or
 *              the table already holds SB_SST_ENTRIES_MAX entries;
 *   (the writer is unchanged after these two and may go on)
 *   -errno, -ENOMEM, SB_ETOOBIG (index full) from writing a full block: the
 *              writer is then failed; every later add and finish return the
 *              same error, and the caller must abort.
 */
int sb_sst_writer_add(struct sb_sst_writer *w, const struct sb_kv_entry *e) SB_MUST_CHECK;

/* Writes the rest of the table (last block, index, bloom filter, footer),
 * fdatasyncs it, renames it to dir/<final_name> (replacing any file of that
 * name) and fsyncs dir. The table covers log offsets
 * [covered_min_offset, covered_max_offset]: 0 <= min <= max, and every
 * entry's offset must lie inside (the range may be wider: records shadowed
 * or deleted before the flush are covered but have no entry).
 * Always consumes w (freed whether it succeeds or fails). Returns 0, or:
 *   SB_EINVAL  bad range (or an entry outside it);
 *   the writer's sticky error; -errno from a write, datasync, close, rename
 *   or the directory fsync; -ENOMEM.
 * On failure before the rename the temp file is removed (best effort) and
 * no file of the final name was created or replaced. If only the directory
 * fsync failed, dir/<final_name> is complete and valid but its directory
 * entry may not survive a crash: treat it as an I/O failure (fail-stop). */
int sb_sst_writer_finish(struct sb_sst_writer *w, int64_t covered_min_offset,
                         int64_t covered_max_offset) SB_MUST_CHECK;

/* Frees w and removes its temp file (best effort). w may be NULL. */
void sb_sst_writer_abort(struct sb_sst_writer *w);

/* Entries added so far, and bytes handed to the file so far (buffered bytes
 * not included). */
uint64_t sb_sst_writer_entries(const struct sb_sst_writer *w);
uint64_t sb_sst_writer_bytes_written(const struct sb_sst_writer *w);

/* Removes every dir/<*.sst.tmp> (temp files of writers that never finished,
 * e.g. after a crash) and fsyncs dir if it removed any. Call at start-up,
 * before any writer of dir is open. Returns the number removed, or -errno
 * (listing, unlink, directory fsync) / -ENOMEM. */
int sb_sst_remove_temps(struct sb_vfs *vfs, const char *dir) SB_MUST_CHECK;

/* ==== Reader ==== */

/* Opens the table at path: reads and checks the footer, the block index and
 * the bloom filter (CRC32C, lengths, layout, key order), and keeps the index
 * and filter in memory (the data blocks stay on disk, mapped read-only if
 * the vfs can map; a mapping that fails is not an error: lookups then
 * pread). Returns 0 and *out, or: SB_ECORRUPT (any mismatch, including a
 * truncated file), -ENOENT and other vfs errors, -ENOMEM. Free with
 * sb_sst_close. */
int sb_sst_open(struct sb_vfs *vfs, const char *path, struct sb_sst **out) SB_MUST_CHECK;

/* Unmaps the data blocks, closes the fd and frees t (t may be NULL). No get
 * or iterator may be in use on t; entries that gets returned stay valid
 * (they live in the caller's struct sb_sst_buf). */
void sb_sst_close(struct sb_sst *t);

/* A caller-owned, reusable read buffer for sb_sst_get: grows to the largest
 * block read (at most SB_SST_BLOCK_BYTES_MAX + 4) plus one key buffer of
 * SB_SST_KEY_BYTES_MAX. Zero-initialise it (or use SB_SST_BUF_INIT); free
 * with sb_sst_buf_free. One buffer per thread. */
struct sb_sst_buf {
	uint8_t *block;
	size_t block_cap;
	uint8_t *key;
};
#define SB_SST_BUF_INIT                                                                            \
	{                                                                                          \
		NULL, 0, NULL                                                                      \
	}
/* Frees the buffer's memory and zeroes it (it may be reused). */
void sb_sst_buf_free(struct sb_sst_buf *buf);

/* 0 if the bloom filter says key is certainly absent, 1 if it may be
 * present. No I/O. Lookups call it themselves; it lets a caller skip a table
 * cheaply. Keys longer than SB_SST_KEY_BYTES_MAX are never present. */
int sb_sst_may_contain(const struct sb_sst *t, const uint8_t *key, uint32_t key_len);

/* Point lookup: bloom filter, binary search of the index, one block copied
 * into buf (from the table's mapping, or with one pread) and CRC-checked
 * there, search within it.
 * Returns 0 with *out set (a tombstone is found, with SB_KV_TOMBSTONE set in
 * out->flags: the caller must stop looking in older tables), or:
 *   SB_ENOTFOUND  not in the table (also for keys over the key limit);
 *   SB_ECORRUPT   the block fails its CRC or structure checks;
 *   -errno        the pread failed (pread path only: on the mapped path an
 *                 unreadable page raises SIGBUS, see "Reads" above);
 *   -ENOMEM       buf could not grow.
 * out's pointers point into buf and stay valid until buf's next use or
 * sb_sst_buf_free; they are never NULL. Any thread, concurrently. */
int sb_sst_get(const struct sb_sst *t, const uint8_t *key, uint32_t key_len,
               struct sb_kv_entry *out, struct sb_sst_buf *buf) SB_MUST_CHECK;

/* Accessors (no I/O, any thread). */
uint64_t sb_sst_entry_count(const struct sb_sst *t);
uint64_t sb_sst_tombstone_count(const struct sb_sst *t);
int64_t sb_sst_covered_min_offset(const struct sb_sst *t);
int64_t sb_sst_covered_max_offset(const struct sb_sst *t);
uint64_t sb_sst_file_bytes(const struct sb_sst *t);
uint64_t sb_sst_bloom_bits(const struct sb_sst *t);
/* Path given to sb_sst_open (a copy owned by t). */
const char *sb_sst_path(const struct sb_sst *t);
/* The smallest and largest key in the table (both empty for an empty
 * table), so range reads can skip it. The pointers point into t and stay
 * valid until sb_sst_close. */
void sb_sst_key_range(const struct sb_sst *t, const uint8_t **min_key, uint32_t *min_len,
                      const uint8_t **max_key, uint32_t *max_len);

/* ==== Iterator ==== */

/* An ordered cursor over one table. It reads blocks sequentially in windows
 * of ~SB_SST_READAHEAD_BYTES and checks every block's CRC. Starts before the
 * first entry. Returns 0, -ENOMEM. The table must outlive the iterator. */
int sb_sst_iter_new(const struct sb_sst *t, struct sb_sst_iter **out) SB_MUST_CHECK;
void sb_sst_iter_free(struct sb_sst_iter *it);

/* Positions the iterator so that the next sb_sst_iter_next returns the first
 * entry whose key is >= key (none: the iterator is at its end). Returns 0,
 * SB_ECORRUPT, -errno or -ENOMEM (the iterator is then failed: every later
 * call returns the same error). */
int sb_sst_iter_seek(struct sb_sst_iter *it, const uint8_t *key, uint32_t key_len) SB_MUST_CHECK;
/* Positions the iterator before the first entry (cannot fail). */
void sb_sst_iter_seek_first(struct sb_sst_iter *it);

/* Returns 1 with the next entry in *out, 0 at the end, or SB_ECORRUPT /
 * -errno / -ENOMEM (sticky, as above). out's pointers point into the
 * iterator and stay valid until its next seek, next or free. */
int sb_sst_iter_next(struct sb_sst_iter *it, struct sb_kv_entry *out) SB_MUST_CHECK;

/* Bytes the iterator has read from the file so far. */
uint64_t sb_sst_iter_bytes_read(const struct sb_sst_iter *it);

/* ==== Merge (compaction) ==== */

struct sb_sst_merge_stats {
	uint64_t bytes_read;         /* from the input files */
	uint64_t bytes_written;      /* the output file, every byte */
	uint64_t entries_in;         /* entries read from all inputs */
	uint64_t entries_out;        /* entries written */
	uint64_t shadowed_dropped;   /* older versions of a key that was written */
	uint64_t tombstones_dropped; /* expired tombstones (drop_tombstones only) */
	uint64_t sleep_ns;           /* time spent waiting for the rate bound */
};

/* Merges inputs[0..n) (1 <= n <= SB_SST_MERGE_INPUTS_MAX, ordered newest
 * first) into one new table dir/<out_name>, written like any table (temp
 * file, fdatasync, rename, directory fsync) with opts' block, bloom and
 * buffer settings:
 *   - for each key only one version is kept: the one with the highest
 *     offset; equal offsets go to the newest table (lowest index);
 *   - with opts->drop_tombstones (the output is the bottom-most table), a
 *     winning tombstone with timestamp_ms < now_ms - delete_retention_ms is
 *     dropped (and with it every older version of its key); otherwise every
 *     winning tombstone is kept;
 *   - the output covers [min of the inputs' covered_min, max of their
 *     covered_max];
 *   - opts->rate_bytes_per_s > 0 bounds read + written bytes per second by
 *     sleeping (a token bucket of ~64 KiB).
 * The output is written even when no entry survives (an empty table still
 * records the covered range). The inputs are only read, through iterators
 * of their own: other threads may go on using them; they are not removed
 * (the caller swaps tables once the merge has succeeded). Runs on the
 * calling thread and blocks for the whole merge. delete_retention_ms must be
 * >= 0. stats may be NULL; it is filled on success and failure alike.
 * Returns 0, or SB_EINVAL (n, opts, retention, out_name), SB_ECORRUPT (an
 * input failed its checks: reported), or any writer error (see
 * sb_sst_writer_finish). On failure no output file is left, except, as for
 * the writer, when only the final directory fsync failed. */
int sb_sst_merge(struct sb_vfs *vfs, const char *dir, struct sb_sst *const *inputs, size_t n,
                 const char *out_name, const struct sb_sst_opts *opts, int64_t now_ms,
                 int64_t delete_retention_ms, struct sb_sst_merge_stats *stats) SB_MUST_CHECK;

#endif
