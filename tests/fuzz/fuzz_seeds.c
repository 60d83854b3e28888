/* fuzz_seeds.c - writes seed corpora for the fuzz targets, made by the
 * project's own encoders (batch builder, index writer, SSTable writer,
 * protobuf-c packers), so every target starts from valid inputs.
 *
 * Usage: sb_fuzz_seeds OUTDIR   (writes OUTDIR/<target>/seed-*; OUTDIR and
 * the target folders must exist or are created). */
#include "fuzz_common.h"

#include "sb_batch.h"
#include "sb_endian.h"
#include "sb_index.h"
#include "sb_sstable.h"
#include "sb_vfs.h"
#include "streambus/v1/streambus.pb-c.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *out_root;

/* A growable byte buffer. */
struct bytes {
	uint8_t *p;
	size_t len;
};

static void put(struct bytes *b, const void *p, size_t n)
{
	b->p = realloc(b->p, b->len + n + 1);
	FUZZ_CHECK(b->p != NULL, "out of memory");
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void put_u8(struct bytes *b, uint8_t v) { put(b, &v, 1); }

static void put_u32(struct bytes *b, uint32_t v)
{
	uint8_t x[4];
	sb_store32(x, v);
	put(b, x, 4);
}

static void seed(const char *target, const char *name, const void *p, size_t n)
{
	char d[PATH_MAX], f[64];
	snprintf(d, sizeof d, "%s/%s", out_root, target);
	mkdir(d, 0755);
	snprintf(f, sizeof f, "seed-%s", name);
	sbf_write_file(d, f, p, n);
}

/* Appends n batches (offsets from *off, k records each, with keys, values,
 * headers, nulls and tombstones in turn) to out. */
static void batches(struct bytes *out, int64_t *off, int n, int k, int32_t epoch)
{
	struct sb_batch_builder b;
	FUZZ_CHECK(sb_batch_builder_init(&b, SB_BATCH_BYTES_MAX) == 0, "builder");
	for (int i = 0; i < n; i++) {
		sb_batch_builder_reset(&b);
		for (int j = 0; j < k; j++) {
			struct sb_header_in h[2] = {{"trace", 5, "abc", 3}, {"null", 4, NULL, 0}};
			struct sb_record_in r;
			char key[32], val[64];
			memset(&r, 0, sizeof r);
			int kl = snprintf(key, sizeof key, "key-%d", (int)(*off + j));
			int vl = snprintf(val, sizeof val, "value-%d-%d", i, j);
			r.key = (j % 4 == 1) ? NULL : key;
			r.key_len = r.key ? (uint32_t)kl : 0;
			r.value = (j % 5 == 2) ? NULL : val;
			r.value_len = r.value ? (uint32_t)vl : 0;
			r.headers = h;
			r.header_count = (uint32_t)(j % 3);
			r.timestamp_ms = 1700000000000 + *off * 10 + j;
			r.attributes = (j % 5 == 2) ? SB_RECORD_ATTR_TOMBSTONE : 0;
			FUZZ_CHECK(sb_batch_builder_add(&b, &r) == 0, "builder add");
		}
		const void *p;
		size_t len;
		FUZZ_CHECK(sb_batch_builder_finish(&b, &p, &len) == 0, "builder finish");
		size_t at = out->len;
		put(out, p, len);
		sb_batch_set_base_offset(out->p + at, *off);
		sb_batch_set_leader_epoch(out->p + at, epoch);
		*off += k;
	}
	sb_batch_builder_fini(&b);
}

static void seeds_batch(void)
{
	static const int shapes[][2] = {{1, 1}, {1, 7}, {3, 2}, {2, 16}};
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
		struct bytes b = {0};
		int64_t off = 5;
		char name[16];
		batches(&b, &off, shapes[i][0], shapes[i][1], 1);
		snprintf(name, sizeof name, "%zu", i);
		seed("fuzz_batch", name, b.p, b.len);
		free(b.p);
	}
}

static void seeds_recovery(void)
{
	struct bytes b = {0};
	int64_t off = 0;
	struct bytes s0 = {0}, s1 = {0}, s2 = {0};

	/* One active segment of whole batches. */
	batches(&s0, &off, 6, 3, 1);
	put_u8(&b, 0);
	put(&b, s0.p, s0.len);
	seed("fuzz_recovery", "active", b.p, b.len);
	/* The same with a torn tail (half a batch). */
	batches(&s0, &off, 1, 4, 2);
	b.len = 0;
	put_u8(&b, 0);
	put(&b, s0.p, s0.len - 30);
	seed("fuzz_recovery", "torn", b.p, b.len);
	/* Two sealed segments and an active one, epochs growing. */
	off = 0;
	s0.len = 0;
	batches(&s0, &off, 4, 2, 1);
	batches(&s1, &off, 5, 1, 2);
	batches(&s2, &off, 3, 3, 3);
	b.len = 0;
	put_u8(&b, 2);
	put_u32(&b, (uint32_t)s0.len);
	put(&b, s0.p, s0.len);
	put_u32(&b, (uint32_t)s1.len);
	put(&b, s1.p, s1.len);
	put(&b, s2.p, s2.len);
	seed("fuzz_recovery", "three", b.p, b.len);
	b.p[0] = 2 | 4; /* the same, CRCs rewritten by the harness */
	seed("fuzz_recovery", "three-fixcrc", b.p, b.len);
	/* A corrupt byte inside a sealed segment's batch (CRC left alone). */
	b.p[0] = 1;
	b.len = 1;
	put_u32(&b, (uint32_t)s0.len);
	put(&b, s0.p, s0.len);
	put(&b, s1.p, s1.len);
	b.p[1 + 4 + 70] ^= 0x5a;
	seed("fuzz_recovery", "sealed-corrupt", b.p, b.len);
	free(b.p);
	free(s0.p);
	free(s1.p);
	free(s2.p);
}

static void pack_seed(const char *name, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *p = malloc(n ? n : 1);
	FUZZ_CHECK(p != NULL, "out of memory");
	protobuf_c_message_pack(m, p);
	seed("fuzz_request", name, p, n);
	free(p);
}

static void seeds_request(void)
{
	Streambus__V1__Header h1 = STREAMBUS__V1__HEADER__INIT, h2 = STREAMBUS__V1__HEADER__INIT;
	Streambus__V1__Header *hs[2] = {&h1, &h2};
	Streambus__V1__Record r1 = STREAMBUS__V1__RECORD__INIT, r2 = STREAMBUS__V1__RECORD__INIT,
			      r3 = STREAMBUS__V1__RECORD__INIT;
	Streambus__V1__Record *rs[3] = {&r1, &r2, &r3};
	Streambus__V1__ProduceRequest pr = STREAMBUS__V1__PRODUCE_REQUEST__INIT;
	h1.key = "trace-id";
	h1.value.data = (uint8_t *)"0af7651916cd43dd";
	h1.value.len = 16;
	h2.key = "empty";
	r1.key.data = (uint8_t *)"user-42";
	r1.key.len = 7;
	r1.value.data = (uint8_t *)"{\"clicks\":3}";
	r1.value.len = 12;
	r1.timestamp_ms = 1700000000123;
	r1.headers = hs;
	r1.n_headers = 2;
	r2.value.data = (uint8_t *)"no key";
	r2.value.len = 6;
	r3.key.data = (uint8_t *)"k";
	r3.key.len = 1;
	pr.request_id = 77;
	pr.topic = "orders";
	pr.partition = -1;
	pr.records = rs;
	pr.n_records = 3;
	pr.acks = STREAMBUS__V1__ACKS__ACKS_ALL;
	pack_seed("produce", &pr.base);
	pr.n_records = 1;
	pr.partition = 3;
	pr.acks = STREAMBUS__V1__ACKS__ACKS_NONE;
	pack_seed("produce-one", &pr.base);

	Streambus__V1__ConsumeRequest cr = STREAMBUS__V1__CONSUME_REQUEST__INIT;
	cr.topic = "orders";
	cr.partition = 2;
	cr.start = STREAMBUS__V1__START_POSITION__START_OFFSET;
	cr.start_offset = 1000;
	cr.stop = STREAMBUS__V1__STOP_POSITION__STOP_AT_OFFSET;
	cr.stop_offset = 2000;
	cr.max_records = 100;
	cr.max_bytes = 65536;
	cr.group = "g1";
	pack_seed("consume", &cr.base);
	cr.start = STREAMBUS__V1__START_POSITION__START_TIMESTAMP;
	cr.start_timestamp_ms = 1700000000000;
	cr.stop = STREAMBUS__V1__STOP_POSITION__STOP_NEVER;
	pack_seed("consume-time", &cr.base);

	Streambus__V1__FetchRequest fr = STREAMBUS__V1__FETCH_REQUEST__INIT;
	fr.topic = "orders";
	fr.partition = 1;
	fr.offset = 42;
	fr.max_records = 10;
	fr.max_bytes = 4096;
	pack_seed("fetch", &fr.base);

	Streambus__V1__TopicConfig tc = STREAMBUS__V1__TOPIC_CONFIG__INIT;
	Streambus__V1__CreateTopicRequest ct = STREAMBUS__V1__CREATE_TOPIC_REQUEST__INIT;
	tc.retention_bytes = -1;
	tc.retention_ms = 86400000;
	tc.segment_bytes = 1 << 20;
	tc.fsync_policy = "interval";
	tc.fsync_interval_ms = 50;
	tc.cleanup_policy = "compact,delete";
	tc.min_insync_replicas = 1;
	tc.segment_ms = 3600000;
	ct.name = "orders.v2";
	ct.partitions = 4;
	ct.replication_factor = 1;
	ct.config = &tc;
	pack_seed("create", &ct.base);
	ct.config = NULL;
	pack_seed("create-defaults", &ct.base);

	Streambus__V1__DeleteTopicRequest dt = STREAMBUS__V1__DELETE_TOPIC_REQUEST__INIT;
	dt.name = "orders";
	pack_seed("delete", &dt.base);
	Streambus__V1__PromoteRequest pm = STREAMBUS__V1__PROMOTE_REQUEST__INIT;
	pm.node_id = 2;
	pm.unclean = 1;
	pack_seed("promote", &pm.base);
	Streambus__V1__AnnounceRequest an = STREAMBUS__V1__ANNOUNCE_REQUEST__INIT;
	an.epoch = 7;
	an.leader_id = 1;
	an.node_id = 3;
	pack_seed("announce", &an.base);
}

static void read_whole(const char *path, struct bytes *out)
{
	void *p = NULL;
	size_t n = 0;
	FUZZ_CHECK(sb_vfs_read_file(sb_vfs_posix(), path, 64u << 20, &p, &n) == 0, "read back");
	put(out, p, n);
	free(p);
}

static void seeds_index(void)
{
	struct bytes b = {0}, ix = {0}, tx = {0};
	struct sbf_segment seg;
	struct sb_index idx;
	char name[32], path[PATH_MAX];

	/* Mode 0: interval byte, then (size lo, size hi, records, ts) tuples. */
	put_u8(&b, 0);
	put_u8(&b, 4);
	for (int i = 0; i < 40; i++) {
		uint8_t t[4] = {(uint8_t)(i * 37), (uint8_t)(i % 3), (uint8_t)(1 + i % 5), (uint8_t)(i * 3 - (i % 6 == 2 ? 20 : 0))};
		put(&b, t, 4);
	}
	seed("fuzz_index", "memory", b.p, b.len);

	/* Mode 1: the index files sb_index_save writes for the fixed segment. */
	sbf_index_segment(&seg);
	sb_index_init(&idx, 64);
	for (size_t at = 0; at < seg.len;) {
		struct sb_batch_header h;
		FUZZ_CHECK(sb_batch_verify(seg.bytes + at, seg.len - at, &h) == 0, "segment");
		FUZZ_CHECK(sb_index_add(&idx, 0, &h, at) == 0, "index add");
		at += (size_t)sb_batch_total_bytes(&h);
	}
	sbf_clear_dir(sbf_tmpdir());
	FUZZ_CHECK(sb_index_save(sb_vfs_posix(), sbf_tmpdir(), "00000000000000000000", 0, seg.len, &idx) == 0, "save");
	snprintf(path, sizeof path, "%s/00000000000000000000.index", sbf_tmpdir());
	read_whole(path, &ix);
	snprintf(path, sizeof path, "%s/00000000000000000000.timeindex", sbf_tmpdir());
	read_whole(path, &tx);
	for (int fix = 0; fix < 4; fix++) {
		b.len = 0;
		put_u8(&b, 1);
		put_u8(&b, (uint8_t)fix);
		put_u32(&b, (uint32_t)ix.len);
		put(&b, ix.p, ix.len);
		put(&b, tx.p, tx.len);
		snprintf(name, sizeof name, "files-%d", fix);
		seed("fuzz_index", name, b.p, b.len);
	}
	sb_index_fini(&idx);
	free(seg.bytes);
	free(b.p);
	free(ix.p);
	free(tx.p);
}

/* Writes a table of n entries (block target block_bytes) and stores it as
 * two seeds: as is, and flagged for CRC repair. */
static void sst_seed(const char *name, int n, uint32_t block_bytes)
{
	struct sb_sst_opts o;
	struct sb_sst_writer *w = NULL;
	struct bytes b = {0};
	char path[PATH_MAX], sname[64];
	memset(&o, 0, sizeof o);
	o.block_bytes = block_bytes;
	sbf_clear_dir(sbf_tmpdir());
	FUZZ_CHECK(sb_sst_writer_open(sb_vfs_posix(), sbf_tmpdir(), "t.sst", &o, &w) == 0, "sst open");
	for (int i = 0; i < n; i++) {
		struct sb_kv_entry e;
		char key[32], val[64];
		uint8_t hdr[8] = {1, 5, 't', 'r', 'a', 'c', 'e', 0};
		memset(&e, 0, sizeof e);
		int kl = snprintf(key, sizeof key, "key-%05d", i * 3);
		int vl = snprintf(val, sizeof val, "value-%d", i);
		e.key = (const uint8_t *)key;
		e.key_len = (uint32_t)kl;
		e.offset = 100 + i;
		e.timestamp_ms = 1700000000000 + i;
		e.flags = i % 7 == 3 ? SB_KV_TOMBSTONE : 0;
		e.value = (const uint8_t *)val;
		e.value_len = e.flags ? 0 : (uint32_t)vl;
		e.headers = hdr;
		e.headers_len = i % 2 ? sizeof hdr : 0;
		FUZZ_CHECK(sb_sst_writer_add(w, &e) == 0, "sst add");
	}
	FUZZ_CHECK(sb_sst_writer_finish(w, 100, 100 + n) == 0, "sst finish");
	snprintf(path, sizeof path, "%s/t.sst", sbf_tmpdir());
	put_u8(&b, 0);
	read_whole(path, &b);
	snprintf(sname, sizeof sname, "%s", name);
	seed("fuzz_sstable", sname, b.p, b.len);
	b.p[0] = 1;
	snprintf(sname, sizeof sname, "%s-fixcrc", name);
	seed("fuzz_sstable", sname, b.p, b.len);
	free(b.p);
}

static void seeds_sstable(void)
{
	sst_seed("empty", 0, 0);
	sst_seed("one", 1, 0);
	sst_seed("blocks", 60, 256);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
		return 2;
	}
	sbf_quiet();
	out_root = argv[1];
	mkdir(out_root, 0755);
	seeds_batch();
	seeds_recovery();
	seeds_request();
	seeds_index();
	seeds_sstable();
	return 0;
}
