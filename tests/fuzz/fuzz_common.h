/* fuzz_common.h - helpers shared by the libFuzzer targets in tests/fuzz/:
 * a scratch directory per process, whole-file writes, CRC repair (so the
 * fuzzer gets past checksums and reaches the parsers behind them) and a
 * byte reader over the fuzz input.
 *
 * Test code only: failures of the harness itself (cannot create the scratch
 * directory, cannot write a file) abort, because a harness that silently
 * stops exercising the code under test is worse than one that stops. */
#ifndef SB_TESTS_FUZZ_COMMON_H
#define SB_TESTS_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Aborts with msg if cond is false: for invariants of the code under test
 * (a libFuzzer crash report) and for harness failures. */
#define FUZZ_CHECK(cond, msg)                                                                      \
	do {                                                                                       \
		if (!(cond))                                                                       \
			sbf_fail(__FILE__, __LINE__, #cond, (msg));                                \
	} while (0)
void sbf_fail(const char *file, int line, const char *cond, const char *msg) __attribute__((noreturn));

/* Silences the project's log lines (recovery warns about every corrupt
 * byte it meets; at thousands of inputs a second that is noise). */
void sbf_quiet(void);

/* A fresh directory for this process, created on first use under
 * $SB_FUZZ_TMP, /dev/shm or /tmp, and removed at exit. The path is static. */
const char *sbf_tmpdir(void);
/* Empties dir (files only, and one level of sub-directories). */
void sbf_clear_dir(const char *dir);
/* Writes data to dir/name, replacing it (no fsync: scratch data). */
void sbf_write_file(const char *dir, const char *name, const void *data, size_t len);

/* Sequential reader over the fuzz input; reads past the end give zeros. */
struct sbf_in {
	const uint8_t *p, *end;
};
uint8_t sbf_u8(struct sbf_in *in);
uint32_t sbf_u32(struct sbf_in *in);
uint64_t sbf_u64(struct sbf_in *in);
size_t sbf_left(const struct sbf_in *in);

/* Walks buf[0..len) as back-to-back record batches and rewrites the CRC of
 * every batch whose header parses and whose bytes lie within len; stops at
 * the first one that does not. Returns the number of bytes covered. */
size_t sbf_fix_batch_crcs(uint8_t *buf, size_t len);

/* Rewrites the CRC (bytes 32..35) of an index or time-index file image
 * (40-byte header, then entries) of len bytes. No-op if len < 40. */
void sbf_fix_index_crc(uint8_t *buf, size_t len);

/* Rewrites the CRCs of an SSTable image as far as its footer and sections
 * can be located: footer, index section, bloom section, and each data block
 * listed by the index section. */
void sbf_fix_sst_crcs(uint8_t *buf, size_t len);

/* The sealed segment fuzz_index opens with fuzzed index files (and the
 * seed generator indexes): SBF_SEG_BATCHES batches of 1-3 records, base 0,
 * timestamps mostly growing with a few steps back; rec_ts[o] is the
 * timestamp of the record at offset o. Built with the batch builder. */
#define SBF_SEG_BATCHES 48
struct sbf_segment {
	uint8_t *bytes;
	size_t len;
	int64_t next;
	int64_t rec_ts[SBF_SEG_BATCHES * 3];
};
void sbf_index_segment(struct sbf_segment *s);

#endif
