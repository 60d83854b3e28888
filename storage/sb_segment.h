/* sb_segment.h - one segment file of a partition log: <base>.log, where
 * <base> is the offset of its first record as 20 zero-padded digits, with
 * its in-memory indexes. Internal to storage/ (the log owns segments and
 * serialises every change to them under its lock).
 *
 * Lifetime: a segment is reference-counted. The log holds one reference while
 * the segment is in its list; a reader takes one for the duration of a read.
 * Retention removes the segment from the list and unlinks its files at once;
 * the fd is closed and the memory freed when the last reference is dropped,
 * so a concurrent reader never sees a closed fd.
 */
#ifndef SB_STORAGE_SEGMENT_H
#define SB_STORAGE_SEGMENT_H

#include <stdint.h>

#include "sb_batch.h"
#include "sb_error.h"
#include "sb_index.h"

struct sb_vfs;

#define SB_SEGMENT_NAME_LEN 20
#define SB_SEGMENT_NO_CORRUPTION UINT64_MAX

struct sb_segment {
	struct sb_vfs *vfs;
	int fd;
	int sealed;
	int refs; /* atomic */
	int64_t base_offset;
	int64_t next_offset;      /* offset after the last complete batch */
	uint64_t size;            /* bytes of complete, valid batches */
	uint64_t corrupt_pos;     /* first invalid byte of a sealed segment, or NO_CORRUPTION */
	int32_t last_epoch;       /* epoch of the last batch (-1 if empty) */
	int64_t created_ms;       /* wall clock when it became active (for segment_ms) */
	struct sb_index idx;
	char dir[];               /* partition directory; name derives from base_offset */
};

/* "<20 digits>" for base into out (>= 21 bytes). */
void sb_segment_name(int64_t base, char *out);
/* Parses "<20 digits>.log"; returns 1 and *base, or 0 if name is not one. */
int sb_segment_parse_name(const char *name, int64_t *base);
/* Full path "<dir>/<20 digits><suffix>" into out (SB_PATH_MAX). */
void sb_segment_path(const char *dir, int64_t base, const char *suffix, char *out);

/* Allocates a segment object (refs = 1, fd = -1, empty). -ENOMEM. */
int sb_segment_alloc(struct sb_vfs *vfs, const char *dir, int64_t base, uint32_t index_interval,
		     struct sb_segment **out) SB_MUST_CHECK;
void sb_segment_ref(struct sb_segment *seg);
/* Drops a reference; the last one closes the fd and frees the segment. */
void sb_segment_unref(struct sb_segment *seg);

/* Creates the file durably (O_CREAT|O_EXCL, datasync, sync_dir) and leaves
 * it open read-write. RELIABILITY.md rule 6. */
int sb_segment_create(struct sb_segment *seg) SB_MUST_CHECK;

/* Result of scanning a segment file. */
struct sb_scan_result {
	uint64_t valid_bytes;   /* end of the last valid batch */
	uint64_t file_bytes;    /* size of the file */
	int64_t next_offset;    /* offset after the last valid batch */
	int32_t last_epoch;
	int stop_reason;        /* 0 = clean end; else why scanning stopped (SB_ECORRUPT, -ENODATA...) */
};

/* Opens the existing file (read-write if writable) and scans it from the
 * start: each batch must parse, fit, pass its CRC, start at or after the
 * expected offset (the segment base, then the previous batch's end: equal
 * except in a segment the log cleaner rewrote), and carry an epoch >= the
 * previous one (and >= min_epoch). Rebuilds seg->idx along the way and sets
 * size/next_offset/last_epoch to the valid prefix. An invalid batch stops
 * the scan (it is not an error of this function): res says where and why.
 * Returns 0 or -errno for I/O errors. */
int sb_segment_open_scan(struct sb_segment *seg, int writable, int32_t min_epoch,
			 struct sb_scan_result *res) SB_MUST_CHECK;

/* Opens a sealed segment read-only, trusting its index files if they match
 * the file size (then next_offset/last_epoch come from the last batch,
 * read and verified); otherwise scans it as above and rewrites the index
 * files. Any invalid data sets corrupt_pos. Returns 0 or -errno. */
int sb_segment_open_sealed(struct sb_segment *seg, int32_t min_epoch) SB_MUST_CHECK;

/* Seals an active segment: datasync, index files written durably. The fd
 * stays open for reads. Returns 0 or -errno. */
int sb_segment_seal(struct sb_segment *seg) SB_MUST_CHECK;

/* Deletes the segment's files (log, index, timeindex); the fd stays valid
 * until the last reference goes. Returns 0 or the first -errno. */
int sb_segment_remove_files(struct sb_segment *seg) SB_MUST_CHECK;
/* Deletes a sealed segment's index files durably (missing ones are fine),
 * before its file is written again as the active segment. 0 or -errno. */
int sb_segment_remove_index_files(struct sb_segment *seg) SB_MUST_CHECK;

/* Reads whole batches from the segment starting with the batch that contains
 * offset, scanning from start_pos (a batch boundary at or before it) and not
 * reading at or past byte `limit`. first_read sizes the first pread (the
 * caller knows from the index where the batch ends; a wrong guess costs only
 * more preads). Returns in *buf (malloc'd, caller frees)
 * *data_off..*data_off+*len: batches whose total is <= max_bytes, but always
 * at least the first one. Every returned batch's CRC is checked.
 * Returns 0 (with *len == 0 if offset is at or past the data before limit),
 * SB_ECORRUPT (invalid stored bytes), or -errno. *next receives the offset
 * after the last returned batch. */
int sb_segment_read(struct sb_segment *seg, int64_t offset, uint64_t start_pos, uint64_t limit,
		    uint64_t max_bytes, uint64_t first_read, uint8_t **buf, uint64_t *data_off,
		    uint64_t *len, int64_t *next) SB_MUST_CHECK;

/* Cuts an active segment back to the batch boundary at offset (which must
 * be one: SB_EINVAL otherwise), rebuilding its index, and fdatasyncs it.
 * size, next_offset and last_epoch follow. 0, SB_EINVAL, -errno (the
 * segment's state is then undefined: fail the log). */
int sb_segment_truncate(struct sb_segment *seg, int64_t offset) SB_MUST_CHECK;

/* Cuts an active segment back to pos, where the batch ending at offset ends
 * (the caller's acknowledged end: both are known), dropping whatever was
 * written after it, without rescanning the segment: the index loses its
 * entries from pos on, and the batch headers after the last remaining entry
 * are read to confirm that offset ends at pos and to learn the last epoch.
 * The file is truncated and fdatasynced; size, next_offset and last_epoch
 * follow. 0, SB_ECORRUPT (offset does not end at pos), -errno. */
int sb_segment_cut(struct sb_segment *seg, int64_t offset, uint64_t pos) SB_MUST_CHECK;

#endif
