/* fuzz_recovery.c - segment recovery: sb_log_open on a directory whose
 * segment files hold the fuzz bytes, then reads over everything recovered.
 *
 * Input: byte 0 is a set of flags, the rest is split into segment files:
 *   bits 0-1  number of segment files - 1 (the last one is the active
 *             segment, which recovery scans and truncates; the others are
 *             sealed, opened through their index files, which are missing
 *             here and so rebuilt by a scan)
 *   bit 2     rewrite the CRC of every batch that parses (reach the record
 *             and offset checks behind the CRC)
 *   bit 3     base offsets (file names) come from the input, 8 bytes each;
 *             otherwise each file is named after the base offset of its
 *             first batch (what a real log looks like)
 * Every segment but the last is prefixed by a u32 length.
 *
 * Checked: sb_log_open never crashes or reads out of bounds; when it
 * succeeds, every read from the log start returns batches that verify and
 * contain the offset asked for, up to the acknowledged end; time lookups
 * and the sealed-segment check run; and opening the log a second time
 * (recovery is idempotent) gives the same range.
 *
 * One scratch directory per process (tmpfs when available), emptied before
 * every input. */
#include "fuzz_common.h"

#include "sb_aio.h"
#include "sb_batch.h"
#include "sb_ioloop.h"
#include "sb_log.h"
#include "sb_segment.h"
#include "sb_vfs.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEGMENTS_MAX 4
#define READS_MAX 4096

static struct sb_ioloop *loop;
static char dir[PATH_MAX];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sb_aio *aio = NULL;
	(void)argc;
	(void)argv;
	sbf_quiet();
	snprintf(dir, sizeof dir, "%s/log", sbf_tmpdir());
	/* The inline sync engine: deterministic, no threads. */
	FUZZ_CHECK(sb_aio_sync_new(sb_vfs_posix(), 0, &aio) == 0, "sb_aio_sync_new");
	FUZZ_CHECK(sb_ioloop_new(aio, 5, &loop) == 0, "sb_ioloop_new");
	return 0;
}

static void config(struct sb_log_config *cfg)
{
	sb_log_config_default(cfg);
	cfg->retention_bytes = -1;
	cfg->retention_ms = -1;
	cfg->index_interval_bytes = 64; /* several index entries per small segment */
	cfg->segment_bytes = 4096;
	cfg->fsync_policy = SB_FSYNC_NEVER;
}

/* Reads the whole log from its start; checks what comes back. */
static void read_all(struct sb_log *log, const struct sb_log_info *li)
{
	int64_t off = li->log_start;
	for (int i = 0; i < READS_MAX && off < li->stable_end; i++) {
		struct sb_log_read rd;
		memset(&rd, 0, sizeof rd);
		int rc = sb_log_read(log, off, 1u << 16, &rd);
		if (rc) {
			free(rd.buf);
			FUZZ_CHECK(rc != SB_ERANGE_LOW && rc != SB_ERANGE_HIGH, "read inside [log_start, stable_end) out of range");
			return; /* SB_ECORRUPT: fenced-off corruption, reported */
		}
		if (getenv("SBF_DEBUG"))
			fprintf(stderr, "read off=%lld rc=%d len=%zu next=%lld log=[%lld,%lld) segments=%u\n",
				(long long)off, rc, rd.len, (long long)rd.next_offset, (long long)li->log_start,
				(long long)li->stable_end, li->segments);
		if (rd.len == 0 && rd.next_offset > off) {
			/* An offset in a gap between segments (offsets lost before a
			 * recovery) reads as nothing with next_offset after the gap
			 * (sb_log.h); readers go on from there. */
			off = rd.next_offset;
			free(rd.buf);
			continue;
		}
		FUZZ_CHECK(rd.len > 0, "empty read below the acknowledged end");
		size_t at = 0;
		int first = 1;
		while (at < rd.len) {
			struct sb_batch_header h;
			FUZZ_CHECK(sb_batch_verify(rd.data + at, rd.len - at, &h) == 0, "read returned a batch that does not verify");
			/* The first batch holds the offset read, or starts after it
			 * when the offset lies in a gap between segments (sb_log.h). */
			if (first)
				FUZZ_CHECK(off < sb_batch_next_offset(&h), "first batch ends before the offset read");
			first = 0;
			at += (size_t)sb_batch_total_bytes(&h);
		}
		FUZZ_CHECK(rd.next_offset > off, "read made no progress");
		off = rd.next_offset;
		free(rd.buf);
	}
}

/* full: also the time lookups and the sealed-segment check (each of those
 * reads with a 4 MiB buffer: the slow part of this target, so only once per
 * input). */
static void exercise(struct sb_log *log, struct sb_log_info *li, int full)
{
	static const int64_t times[] = {INT64_MIN, 1700000000050, INT64_MAX};
	int64_t bad = 0, off;
	sb_log_info(log, li);
	FUZZ_CHECK(li->log_start <= li->stable_end, "log_start after stable_end");
	read_all(log, li);
	if (!full)
		return;
	for (size_t i = 0; i < sizeof times / sizeof times[0]; i++)
		(void)sb_log_offset_for_time(log, times[i], &off);
	FUZZ_CHECK(sb_log_verify_sealed(log, &bad) == 0, "verify_sealed I/O error on a scratch file");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sbf_in in = {data, data + size};
	uint8_t flags = sbf_u8(&in);
	int nseg = 1 + (flags & 3);
	int64_t bases[SEGMENTS_MAX];
	char name[SB_SEGMENT_NAME_LEN + 8], segname[SB_SEGMENT_NAME_LEN + 1];
	struct sb_log_config cfg;
	struct sb_log *log = NULL;

	sbf_clear_dir(sbf_tmpdir());
	FUZZ_CHECK(sb_vfs_mkdir_durable(sb_vfs_posix(), dir) == 0, "mkdir");
	for (int i = 0; i < nseg; i++)
		bases[i] = flags & 8 ? (int64_t)(sbf_u64(&in) & ((1ull << 62) - 1)) : -1;
	for (int i = 0; i < nseg; i++) {
		size_t len = sbf_left(&in);
		if (i + 1 < nseg) {
			size_t want = sbf_u32(&in);
			len = want < sbf_left(&in) ? want : sbf_left(&in);
		}
		uint8_t *seg = malloc(len ? len : 1);
		FUZZ_CHECK(seg != NULL, "out of memory");
		memcpy(seg, in.p, len);
		in.p += len;
		if (flags & 4)
			sbf_fix_batch_crcs(seg, len);
		if (bases[i] < 0) {
			struct sb_batch_header h;
			if (sb_batch_parse_header(seg, len, &h) == 0)
				bases[i] = h.base_offset;
			else
				bases[i] = i == 0 ? 0 : bases[i - 1] + 1;
		}
		sb_segment_name(bases[i], segname);
		snprintf(name, sizeof name, "%s.log", segname);
		sbf_write_file(dir, name, seg, len);
		free(seg);
	}

	config(&cfg);
	if (sb_log_open(sb_vfs_posix(), loop, dir, "fuzz/0", &cfg, &log) != 0)
		return 0; /* refused (overlapping segments, ...): fine, as long as it did not crash */
	struct sb_log_info a, b;
	exercise(log, &a, 1);
	sb_log_close(log);

	/* Recovery is idempotent: a second open finds what the first left. */
	log = NULL;
	FUZZ_CHECK(sb_log_open(sb_vfs_posix(), loop, dir, "fuzz/0", &cfg, &log) == 0, "second open of a recovered log failed");
	exercise(log, &b, 0);
	FUZZ_CHECK(a.log_start == b.log_start && a.stable_end == b.stable_end, "second recovery changed the log range");
	sb_log_close(log);
	return 0;
}
