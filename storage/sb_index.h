/* sb_index.h - a segment's sparse offset index and time index.
 *
 * Offset index: one entry (relative offset, file position) for the first
 * batch of the segment and then for the first batch starting at least
 * `interval` bytes after the previous entry. A lookup is a binary search that
 * returns the position of the last indexed batch at or before an offset; the
 * reader scans forward from there at most about `interval` bytes.
 *
 * Time index: at the same points, an entry (T, relative offset) whenever the
 * largest timestamp seen so far, T, has grown: every batch up to and
 * including that one has max_timestamp <= T.
 *
 * Indexes are derived data: kept in memory, written to <base>.index and
 * <base>.timeindex when a segment is sealed, checked on load (header, CRC,
 * the segment size they describe) and rebuilt from the log whenever they are
 * missing or do not match. Not thread-safe: the owning log locks.
 */
#ifndef SB_STORAGE_INDEX_H
#define SB_STORAGE_INDEX_H

#include <stdint.h>

#include "sb_batch.h"
#include "sb_error.h"

struct sb_vfs;

struct sb_index_entry {
	uint32_t rel_offset;
	uint32_t pos;
};

struct sb_time_entry {
	int64_t timestamp_ms;
	uint32_t rel_offset;
	uint32_t pos;
};

struct sb_index {
	struct sb_index_entry *off;
	uint32_t n_off, cap_off;
	struct sb_time_entry *time;
	uint32_t n_time, cap_time;
	uint32_t interval;
	uint64_t last_entry_pos; /* position of the last offset entry */
	int64_t max_timestamp_ms; /* largest batch max timestamp added */
};

void sb_index_init(struct sb_index *idx, uint32_t interval_bytes);
void sb_index_fini(struct sb_index *idx);
/* Forgets all entries (keeps the arrays). */
void sb_index_reset(struct sb_index *idx);

/* Forgets the entries at file position pos or later (the bytes there were
 * cut off). The largest timestamp seen is kept: it stays an upper bound, so
 * later time entries remain correct (only more conservative). */
void sb_index_truncate(struct sb_index *idx, uint64_t pos);

/* Records the batch h that starts at file position pos in the segment whose
 * base offset is base. Batches must be added in file order. Returns 0 or
 * -ENOMEM (the index is unchanged; lookups stay correct, only slower). */
int sb_index_add(struct sb_index *idx, int64_t base, const struct sb_batch_header *h, uint64_t pos) SB_MUST_CHECK;

/* File position of the last indexed batch whose relative offset is <=
 * rel_offset (0 if there is none). O(log n). */
uint64_t sb_index_lookup(const struct sb_index *idx, uint32_t rel_offset);

/* Position from which to scan for the first record with timestamp >= ts:
 * the position of the last time entry with T < ts (its batch and all before
 * it are older), or 0. */
uint64_t sb_index_lookup_time(const struct sb_index *idx, int64_t ts);

/* Writes <dir>/<name>.index and <name>.timeindex durably (name is the
 * segment's 20-digit base) describing a segment of segment_bytes bytes. */
int sb_index_save(struct sb_vfs *vfs, const char *dir, const char *name, int64_t base,
		  uint64_t segment_bytes, const struct sb_index *idx) SB_MUST_CHECK;

/* Loads both files into idx (which must be freshly initialised). Returns 0,
 * -ENOENT if a file is missing, or SB_ECORRUPT if either does not match
 * (bad magic, CRC, base, segment size, unsorted entries); idx is then reset. */
int sb_index_load(struct sb_vfs *vfs, const char *dir, const char *name, int64_t base,
		  uint64_t segment_bytes, struct sb_index *idx) SB_MUST_CHECK;

#endif
