/* fuzz_index.c - the sparse offset index and time index (storage/sb_index.h).
 *
 * Byte 0 of the input picks a mode (bit 0):
 *
 * 0: in-memory. The rest is a sequence of batch descriptions (size, record
 *    count, max timestamp); they are added in file order with sb_index_add
 *    (interval from the input), then every offset and a set of timestamps
 *    are looked up and checked against a model of the batches:
 *      - sb_index_lookup(rel) is 0 or the position of a batch starting at
 *        or before rel;
 *      - sb_index_lookup_time(ts) is 0 or the position of a batch such that
 *        it and every batch before it have max_timestamp < ts;
 *    and the index survives sb_index_save + sb_index_load unchanged.
 *
 * 1: index files. A fixed, valid sealed segment (built once with the batch
 *    builder) is written with the fuzz bytes as its .index and .timeindex
 *    files (a u32 length splits them; byte 1 bit 0 rewrites the header
 *    fields that must match the segment, bit 1 rewrites the CRC), plus an
 *    empty active segment after it; the log is opened (the sealed segment
 *    trusts index files that pass their checks) and every offset is read
 *    and timestamps looked up. Reads must succeed or return SB_ECORRUPT
 *    with verified batches, and no record may be lost. With
 *    SBF_STRICT_INDEX=1 also: each read returns the batch holding the offset
 *    and time lookups the right offset (not true by design for a CRC-valid
 *    index that lies: the index is trusted once its checks pass). */
#include "fuzz_common.h"

#include "sb_aio.h"
#include "sb_batch.h"
#include "sb_endian.h"
#include "sb_index.h"
#include "sb_ioloop.h"
#include "sb_log.h"
#include "sb_segment.h"
#include "sb_vfs.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_MAX 4096

static struct sb_ioloop *loop;
static char dir[PATH_MAX];

/* The fixed sealed segment of mode 1 (sbf_index_segment). */
static struct sbf_segment seg;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sb_aio *aio = NULL;
	(void)argc;
	(void)argv;
	sbf_quiet();
	snprintf(dir, sizeof dir, "%s/log", sbf_tmpdir());
	FUZZ_CHECK(sb_aio_sync_new(sb_vfs_posix(), 0, &aio) == 0, "sb_aio_sync_new");
	FUZZ_CHECK(sb_ioloop_new(aio, 5, &loop) == 0, "sb_ioloop_new");
	sbf_index_segment(&seg);
	return 0;
}

/* ---- mode 0 ---- */

struct model {
	uint32_t rel[MODEL_MAX];
	uint64_t pos[MODEL_MAX];
	int64_t max_ts[MODEL_MAX];
	uint32_t n;
};

static int model_find_pos(const struct model *m, uint64_t pos)
{
	for (uint32_t i = 0; i < m->n; i++)
		if (m->pos[i] == pos)
			return (int)i;
	return -1;
}

static void fuzz_memory(struct sbf_in *in)
{
	static struct model m;
	struct sb_index idx, back;
	uint32_t interval = 1 + sbf_u8(in) * 16u;
	const int64_t base = 1000;
	int64_t off = base;
	uint64_t pos = 0;

	m.n = 0;
	sb_index_init(&idx, interval);
	while (sbf_left(in) >= 4 && m.n < MODEL_MAX) {
		struct sb_batch_header h;
		memset(&h, 0, sizeof h);
		uint32_t size = SB_BATCH_HEADER_BYTES + (sbf_u8(in) | (uint32_t)sbf_u8(in) << 8);
		h.record_count = 1 + sbf_u8(in) % 16;
		h.last_offset_delta = h.record_count - 1;
		h.base_offset = off;
		h.batch_length = size - SB_BATCH_PREFIX_BYTES;
		h.max_timestamp_ms = (int64_t)(int8_t)sbf_u8(in) * 1000;
		FUZZ_CHECK(sb_index_add(&idx, base, &h, pos) == 0, "sb_index_add");
		m.rel[m.n] = (uint32_t)(off - base);
		m.pos[m.n] = pos;
		m.max_ts[m.n] = h.max_timestamp_ms;
		m.n++;
		off += h.record_count;
		pos += size;
	}
	for (uint32_t rel = 0; rel <= (uint32_t)(off - base) + 1; rel++) {
		uint64_t p = sb_index_lookup(&idx, rel);
		if (m.n == 0) {
			FUZZ_CHECK(p == 0, "lookup in an empty index");
			continue;
		}
		int k = model_find_pos(&m, p);
		FUZZ_CHECK(k >= 0, "offset lookup returned a position that is not a batch start");
		FUZZ_CHECK(m.rel[k] <= rel, "offset lookup returned a batch after the offset");
	}
	for (int64_t ts = -130000; ts <= 130000; ts += 500) {
		uint64_t p = sb_index_lookup_time(&idx, ts);
		if (p == 0)
			continue;
		int k = model_find_pos(&m, p);
		FUZZ_CHECK(k >= 0, "time lookup returned a position that is not a batch start");
		for (int j = 0; j <= k; j++)
			FUZZ_CHECK(m.max_ts[j] < ts, "time lookup skipped a batch with a timestamp >= ts");
	}
	/* Save and load give the same index (an empty index describes an
	 * empty segment only, so it is not saved). */
	if (m.n == 0) {
		sb_index_fini(&idx);
		return;
	}
	char name[SB_SEGMENT_NAME_LEN + 1];
	sb_segment_name(base, name);
	FUZZ_CHECK(sb_index_save(sb_vfs_posix(), sbf_tmpdir(), name, base, pos, &idx) == 0, "sb_index_save");
	sb_index_init(&back, interval);
	FUZZ_CHECK(sb_index_load(sb_vfs_posix(), sbf_tmpdir(), name, base, pos, &back) == 0,
		   "sb_index_load refused what sb_index_save wrote");
	FUZZ_CHECK(back.n_off == idx.n_off && back.n_time == idx.n_time, "entry counts after load");
	FUZZ_CHECK(idx.n_off == 0 || memcmp(back.off, idx.off, idx.n_off * sizeof *idx.off) == 0, "offset entries after load");
	for (uint32_t i = 0; i < idx.n_time; i++)
		FUZZ_CHECK(back.time[i].timestamp_ms == idx.time[i].timestamp_ms && back.time[i].pos == idx.time[i].pos &&
			   back.time[i].rel_offset == idx.time[i].rel_offset, "time entries after load");
	sb_index_fini(&back);
	sb_index_fini(&idx);
}

/* ---- mode 1 ---- */

static void write_index(const char *name, const uint8_t *p, size_t len, uint32_t magic, size_t esz, uint8_t fix)
{
	uint8_t *buf = malloc(len > 40 ? len : 40);
	FUZZ_CHECK(buf != NULL, "out of memory");
	memcpy(buf, p, len);
	if (fix & 1) {
		if (len < 40) {
			memset(buf + len, 0, 40 - len);
			len = 40;
		}
		sb_store32(buf, magic);
		sb_store32(buf + 4, 1);
		sb_store64(buf + 8, 0);
		sb_store64(buf + 16, seg.len);
		sb_store32(buf + 24, (uint32_t)((len - 40) / esz));
		len = 40 + (len - 40) / esz * esz;
	}
	if (fix & 2)
		sbf_fix_index_crc(buf, len);
	sbf_write_file(dir, name, buf, len);
	free(buf);
}

static void fuzz_files(struct sbf_in *in)
{
	uint8_t fix = sbf_u8(in);
	size_t want = sbf_u32(in), len1 = want < sbf_left(in) ? want : sbf_left(in);
	char name[64], seg0[SB_SEGMENT_NAME_LEN + 1], seg1[SB_SEGMENT_NAME_LEN + 1];
	struct sb_log_config cfg;
	struct sb_log *log = NULL;
	int strict = getenv("SBF_STRICT_INDEX") != NULL;

	sbf_clear_dir(sbf_tmpdir());
	FUZZ_CHECK(sb_vfs_mkdir_durable(sb_vfs_posix(), dir) == 0, "mkdir");
	sb_segment_name(0, seg0);
	sb_segment_name(seg.next, seg1);
	snprintf(name, sizeof name, "%s.log", seg0);
	sbf_write_file(dir, name, seg.bytes, seg.len);
	snprintf(name, sizeof name, "%s.log", seg1);
	sbf_write_file(dir, name, "", 0);
	snprintf(name, sizeof name, "%s.index", seg0);
	write_index(name, in->p, len1, 0x58494253u, 8, fix);
	in->p += len1;
	snprintf(name, sizeof name, "%s.timeindex", seg0);
	write_index(name, in->p, sbf_left(in), 0x58544253u, 16, fix);

	sb_log_config_default(&cfg);
	cfg.retention_bytes = -1;
	cfg.retention_ms = -1;
	cfg.index_interval_bytes = 64;
	cfg.fsync_policy = SB_FSYNC_NEVER;
	if (sb_log_open(sb_vfs_posix(), loop, dir, "fuzz/0", &cfg, &log) != 0)
		return;
	struct sb_log_info li;
	sb_log_info(log, &li);
	FUZZ_CHECK(li.log_start == 0 && li.stable_end == seg.next, "a valid segment lost records to a bad index");
	for (int64_t off = 0; off < seg.next; off++) {
		struct sb_log_read rd;
		memset(&rd, 0, sizeof rd);
		int rc = sb_log_read(log, off, 1, &rd);
		FUZZ_CHECK(rc == 0 || rc == SB_ECORRUPT, "read error");
		if (rc == 0) {
			struct sb_batch_header h;
			FUZZ_CHECK(rd.len > 0 && sb_batch_verify(rd.data, rd.len, &h) == 0, "read returned no valid batch");
			if (strict)
				FUZZ_CHECK(h.base_offset <= off && off < sb_batch_next_offset(&h),
					   "read returned a batch that does not hold the offset asked for");
		}
		free(rd.buf);
	}
	for (int64_t ts = 795; ts <= 1000 + 10 * seg.next + 20; ts += 97) {
		int64_t got = -1, want_off = seg.next;
		for (int64_t o = 0; o < seg.next; o++)
			if (seg.rec_ts[o] >= ts) {
				want_off = o;
				break;
			}
		int rc = sb_log_offset_for_time(log, ts, &got);
		FUZZ_CHECK(rc == 0 || rc == SB_ENOTFOUND || rc == SB_ECORRUPT, "time lookup error");
		/* Only with SBF_STRICT_INDEX=1: index files are trusted once their
		 * header, size, order and CRC check out, so a CRC-valid index that
		 * lies (a buggy writer, tampering) gives a wrong answer here by
		 * design; the fuzzer finds such files quickly. */
		if ((rc == 0 || rc == SB_ENOTFOUND) && strict)
			FUZZ_CHECK(got == want_off, "time lookup returned the wrong offset");
	}
	sb_log_close(log);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sbf_in in = {data, data + size};
	if (sbf_u8(&in) & 1)
		fuzz_files(&in);
	else
		fuzz_memory(&in);
	return 0;
}
