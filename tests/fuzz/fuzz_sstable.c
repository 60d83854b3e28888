/* fuzz_sstable.c - the SSTable reader (storage/sb_sstable.h): open a table
 * whose file holds the fuzz bytes, iterate it, seek and look keys up.
 *
 * Byte 0 of the input is a set of flags, the rest is the file:
 *   bit 0  rewrite every CRC that can be located (footer, index section,
 *          bloom section, each data block the index lists), so the fuzzer
 *          reaches the parsers behind the checksums.
 * With the table open: the accessors, a full iteration (every key, value
 * and header byte is read), a point lookup and a seek for each key met (up
 * to 64) and for a few fixed keys, and bloom checks. The reader must never
 * crash or read out of bounds, and its errors must be SB_ECORRUPT (or
 * SB_ENOTFOUND for lookups): the scratch file gives no I/O errors. */
#include "fuzz_common.h"

#include "sb_sstable.h"
#include "sb_vfs.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS_MAX 64

static char path[PATH_MAX];
static volatile uint8_t sink;

static void touch(const uint8_t *p, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		sink ^= p[i];
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	sbf_quiet();
	snprintf(path, sizeof path, "%s/fuzz.sst", sbf_tmpdir());
	return 0;
}

static void lookup(const struct sb_sst *t, struct sb_sst_iter *seek_it, struct sb_sst_buf *buf, const uint8_t *key,
		   uint32_t key_len)
{
	struct sb_kv_entry e;
	(void)sb_sst_may_contain(t, key, key_len);
	int rc = sb_sst_get(t, key, key_len, &e, buf);
	FUZZ_CHECK(rc == 0 || rc == SB_ENOTFOUND || rc == SB_ECORRUPT, "sb_sst_get error");
	if (rc == 0) {
		touch(e.key, e.key_len);
		touch(e.value, e.value_len);
		touch(e.headers, e.headers_len);
	}
	rc = sb_sst_iter_seek(seek_it, key, key_len);
	FUZZ_CHECK(rc == 0 || rc == SB_ECORRUPT, "sb_sst_iter_seek error");
	if (rc == 0) {
		rc = sb_sst_iter_next(seek_it, &e);
		FUZZ_CHECK(rc >= 0 || rc == SB_ECORRUPT, "sb_sst_iter_next after seek");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sbf_in in = {data, data + size};
	uint8_t flags = sbf_u8(&in);
	size_t len = sbf_left(&in);
	uint8_t *file = malloc(len ? len : 1);
	struct sb_sst *t = NULL;
	struct sb_sst_iter *it = NULL, *seek_it = NULL;
	struct sb_sst_buf buf = SB_SST_BUF_INIT;
	uint8_t *keys[KEYS_MAX];
	uint32_t key_lens[KEYS_MAX], nkeys = 0;
	struct sb_kv_entry e;
	int rc;

	FUZZ_CHECK(file != NULL, "out of memory");
	memcpy(file, in.p, len);
	if (flags & 1)
		sbf_fix_sst_crcs(file, len);
	sbf_write_file(sbf_tmpdir(), "fuzz.sst", file, len);
	free(file);

	rc = sb_sst_open(sb_vfs_posix(), path, &t);
	FUZZ_CHECK(rc == 0 || rc == SB_ECORRUPT || rc == -ENOMEM, "sb_sst_open error other than SB_ECORRUPT");
	if (rc)
		return 0;
	(void)sb_sst_entry_count(t);
	(void)sb_sst_tombstone_count(t);
	(void)sb_sst_covered_min_offset(t);
	(void)sb_sst_covered_max_offset(t);
	(void)sb_sst_file_bytes(t);
	(void)sb_sst_bloom_bits(t);
	const uint8_t *kmin, *kmax;
	uint32_t lmin, lmax;
	sb_sst_key_range(t, &kmin, &lmin, &kmax, &lmax);
	touch(kmin, lmin);
	touch(kmax, lmax);

	FUZZ_CHECK(sb_sst_iter_new(t, &it) == 0 && sb_sst_iter_new(t, &seek_it) == 0, "iterators");
	sb_sst_iter_seek_first(it);
	while ((rc = sb_sst_iter_next(it, &e)) == 1) {
		touch(e.key, e.key_len);
		touch(e.value, e.value_len);
		touch(e.headers, e.headers_len);
		if (nkeys < KEYS_MAX) {
			keys[nkeys] = malloc(e.key_len ? e.key_len : 1);
			FUZZ_CHECK(keys[nkeys] != NULL, "out of memory");
			memcpy(keys[nkeys], e.key, e.key_len);
			key_lens[nkeys++] = e.key_len;
		}
	}
	FUZZ_CHECK(rc == 0 || rc == SB_ECORRUPT, "sb_sst_iter_next error other than SB_ECORRUPT");
	(void)sb_sst_iter_bytes_read(it);

	for (uint32_t i = 0; i < nkeys; i++)
		lookup(t, seek_it, &buf, keys[i], key_lens[i]);
	lookup(t, seek_it, &buf, (const uint8_t *)"", 0);
	lookup(t, seek_it, &buf, (const uint8_t *)"k", 1);
	lookup(t, seek_it, &buf, (const uint8_t *)"\xff\xff\xff\xff", 4);
	lookup(t, seek_it, &buf, kmin, lmin);
	lookup(t, seek_it, &buf, kmax, lmax);

	for (uint32_t i = 0; i < nkeys; i++)
		free(keys[i]);
	sb_sst_iter_free(it);
	sb_sst_iter_free(seek_it);
	sb_sst_buf_free(&buf);
	sb_sst_close(t);
	return 0;
}
