/* fuzz_common.c - see fuzz_common.h. */
#include "fuzz_common.h"

#include "sb_batch.h"
#include "sb_crc32c.h"
#include "sb_endian.h"
#include "sb_logging.h"
#include "sb_sstable_format.h"
#include "sb_varint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void sbf_fail(const char *file, int line, const char *cond, const char *msg)
{
	fprintf(stderr, "FUZZ INVARIANT FAILED at %s:%d: %s (%s)\n", file, line, cond, msg);
	abort();
}

void sbf_quiet(void)
{
	sb_logging_level = -1; /* below SB_LEVEL_ERROR: SB_LOG evaluates nothing */
}

static char tmp_path[PATH_MAX];

static void remove_tmp(void)
{
	if (tmp_path[0]) {
		sbf_clear_dir(tmp_path);
		rmdir(tmp_path);
	}
}

const char *sbf_tmpdir(void)
{
	if (tmp_path[0])
		return tmp_path;
	const char *root = getenv("SB_FUZZ_TMP");
	struct stat st;
	if (!root || !root[0])
		root = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
			       ? "/dev/shm" : "/tmp";
	snprintf(tmp_path, sizeof tmp_path, "%s/sb-fuzz-%d-XXXXXX", root, (int)getpid());
	FUZZ_CHECK(mkdtemp(tmp_path) != NULL, "cannot create the scratch directory");
	atexit(remove_tmp);
	return tmp_path;
}

static void clear_tree(const char *dir, int depth)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[PATH_MAX];
	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (unlink(path) != 0 && errno == EISDIR && depth > 0) {
			clear_tree(path, depth - 1);
			rmdir(path);
		}
	}
	closedir(d);
}

void sbf_clear_dir(const char *dir)
{
	clear_tree(dir, 2);
}

void sbf_write_file(const char *dir, const char *name, const void *data, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	FUZZ_CHECK(fd >= 0, "cannot create a scratch file");
	const uint8_t *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		FUZZ_CHECK(n > 0, "cannot write a scratch file");
		p += n;
		len -= (size_t)n;
	}
	close(fd);
}

uint8_t sbf_u8(struct sbf_in *in)
{
	return in->p < in->end ? *in->p++ : 0;
}

uint32_t sbf_u32(struct sbf_in *in)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v |= (uint32_t)sbf_u8(in) << (8 * i);
	return v;
}

uint64_t sbf_u64(struct sbf_in *in)
{
	uint64_t lo = sbf_u32(in);
	return lo | (uint64_t)sbf_u32(in) << 32;
}

size_t sbf_left(const struct sbf_in *in)
{
	return (size_t)(in->end - in->p);
}

size_t sbf_fix_batch_crcs(uint8_t *buf, size_t len)
{
	size_t at = 0;
	while (len - at >= SB_BATCH_HEADER_BYTES) {
		struct sb_batch_header h;
		if (sb_batch_parse_header(buf + at, len - at, &h) != 0)
			break;
		uint64_t total = sb_batch_total_bytes(&h);
		if (total > len - at)
			break;
		uint32_t crc = sb_crc32c(buf + at + SB_BATCH_CRC_START, (size_t)total - SB_BATCH_CRC_START);
		sb_store32(buf + at + SB_BATCH_OFF_CRC, crc);
		at += (size_t)total;
	}
	return at;
}

void sbf_fix_index_crc(uint8_t *buf, size_t len)
{
	if (len < 40)
		return;
	uint32_t crc = sb_crc32c(buf, 32);
	crc = sb_crc32c_extend(crc, buf + 40, len - 40);
	sb_store32(buf + 32, crc);
}

/* Stores the CRC of buf[pos, pos+n) right after it, if it fits. */
static int fix_section(uint8_t *buf, size_t len, uint64_t pos, uint64_t n)
{
	if (pos > len || n > len - pos || len - pos - n < SST_CRC_BYTES)
		return 0;
	sb_store32(buf + pos + n, sb_crc32c(buf + pos, (size_t)n));
	return 1;
}

void sbf_fix_sst_crcs(uint8_t *buf, size_t len)
{
	if (len < SB_SST_FOOTER_BYTES)
		return;
	uint8_t *ft = buf + len - SB_SST_FOOTER_BYTES;
	size_t body = len - SB_SST_FOOTER_BYTES;
	sb_store32(ft + FT_CRC, sb_crc32c(ft, FT_CRC));
	uint64_t index_pos = sb_load64(ft + FT_INDEX_POS), bloom_pos = sb_load64(ft + FT_BLOOM_POS);
	uint32_t index_len = sb_load32(ft + FT_INDEX_LEN), bloom_len = sb_load32(ft + FT_BLOOM_LEN);
	uint32_t blocks = sb_load32(ft + FT_BLOCKS);
	fix_section(buf, body, bloom_pos, bloom_len);
	if (!fix_section(buf, body, index_pos, index_len))
		return;
	/* Index section: uvarint first-key length, first key, then per block
	 * uvarint last-key length, last key, uvarint block length. */
	const uint8_t *p = buf + index_pos, *end = p + index_len;
	uint64_t v, at = 0;
	if (sb_uvarint_get(&p, end, &v) || v > (uint64_t)(end - p))
		return;
	p += v;
	for (uint32_t i = 0; i < blocks && p < end; i++) {
		if (sb_uvarint_get(&p, end, &v) || v > (uint64_t)(end - p))
			return;
		p += v;
		if (sb_uvarint_get(&p, end, &v))
			return;
		if (!fix_section(buf, (size_t)index_pos, at, v))
			return;
		at += v + SST_CRC_BYTES;
	}
}

void sbf_index_segment(struct sbf_segment *s)
{
	struct sb_batch_builder b;
	uint8_t val[300];
	int64_t off = 0;
	memset(s, 0, sizeof *s);
	memset(val, 'v', sizeof val);
	FUZZ_CHECK(sb_batch_builder_init(&b, 1u << 20) == 0, "builder");
	for (int i = 0; i < SBF_SEG_BATCHES; i++) {
		int n = 1 + i % 3;
		sb_batch_builder_reset(&b);
		for (int k = 0; k < n; k++) {
			struct sb_record_in r;
			char key[24];
			memset(&r, 0, sizeof r);
			int kl = snprintf(key, sizeof key, "k%d", (int)off + k);
			r.key = key;
			r.key_len = (uint32_t)kl;
			r.value = val;
			r.value_len = (uint32_t)(17 * i % 250);
			r.timestamp_ms = 1000 + 10 * (off + k) - (i % 7 == 3 ? 95 : 0);
			s->rec_ts[off + k] = r.timestamp_ms;
			FUZZ_CHECK(sb_batch_builder_add(&b, &r) == 0, "builder add");
		}
		const void *p;
		size_t len;
		FUZZ_CHECK(sb_batch_builder_finish(&b, &p, &len) == 0, "builder finish");
		s->bytes = realloc(s->bytes, s->len + len);
		FUZZ_CHECK(s->bytes != NULL, "out of memory");
		memcpy(s->bytes + s->len, p, len);
		sb_batch_set_base_offset(s->bytes + s->len, off);
		s->len += len;
		off += n;
	}
	s->next = off;
	sb_batch_builder_fini(&b);
}
