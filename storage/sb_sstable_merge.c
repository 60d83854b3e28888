/* sb_sstable_merge.c - SSTable merge (compaction) and its rate limiter
 * (sb_sstable.h): k-way heap merge of open tables into a new one.
 */
#include "sb_sstable_format.h"

#include "sb_time.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Rate bound: the bucket holds this many bytes (the burst allowed). */
#define SST_RATE_BURST_BYTES (64u << 10)

/* ======================================================================
 * Merge
 * ====================================================================== */

struct head {
	struct sb_kv_entry e;
	uint32_t src;
};

/* Heap order: key ascending, then offset descending, then newest table. */
static int head_less(const struct head *a, const struct head *b)
{
	int c = sb_sst__key_cmp(a->e.key, a->e.key_len, b->e.key, b->e.key_len);
	if (c)
		return c < 0;
	if (a->e.offset != b->e.offset)
		return a->e.offset > b->e.offset;
	return a->src < b->src;
}

static void sift_down(struct head *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < n && head_less(&h[l], &h[m]))
			m = l;
		if (l + 1 < n && head_less(&h[l + 1], &h[m]))
			m = l + 1;
		if (m == i)
			return;
		struct head tmp = h[i];
		h[i] = h[m];
		h[m] = tmp;
		i = m;
	}
}

/* Replaces the heap's top with the next entry of its source (or removes it
 * at that source's end). */
static int advance_top(struct sb_sst_iter **its, struct head *h, size_t *n)
{
	int rc = sb_sst_iter_next(its[h[0].src], &h[0].e);
	if (rc < 0)
		return rc;
	if (rc == 0)
		h[0] = h[--*n];
	sift_down(h, *n, 0);
	return 0;
}

struct rate {
	uint64_t bytes_per_s;
	int64_t start_ns;
	uint64_t checked_bytes;
};

/* Sleeps until `bytes` fits under rate * elapsed + burst. */
static void rate_wait(struct rate *r, uint64_t bytes, uint64_t *slept_ns)
{
	if (!r->bytes_per_s || bytes - r->checked_bytes < SST_RATE_BURST_BYTES)
		return;
	r->checked_bytes = bytes;
	double elapsed_s = (double)(sb_mono_ns() - r->start_ns) / 1e9;
	double allowed = (double)r->bytes_per_s * elapsed_s + SST_RATE_BURST_BYTES;
	if ((double)bytes <= allowed)
		return;
	double wait_s = ((double)bytes - allowed) / (double)r->bytes_per_s;
	struct timespec ts = {(time_t)wait_s, (long)((wait_s - (double)(time_t)wait_s) * 1e9)};
	int64_t t0 = sb_mono_ns();
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	*slept_ns += (uint64_t)(sb_mono_ns() - t0);
}

/* One merge in progress: an iterator and a heap head per input. */
struct merge {
	struct sb_sst_iter **its;
	struct head *heap;
	size_t n, nh;
	uint8_t *last; /* the key just decided (SB_SST_KEY_BYTES_MAX of room) */
	struct sb_sst_merge_stats st;
};

static uint64_t merge_bytes_read(const struct merge *m)
{
	uint64_t sum = 0;
	for (size_t i = 0; m->its && i < m->n; i++)
		sum += m->its[i] ? sb_sst_iter_bytes_read(m->its[i]) : 0;
	return sum;
}

/* Opens an iterator per input and heaps their first entries. */
static int merge_start(struct merge *m, struct sb_sst *const *inputs, size_t n)
{
	int rc;
	m->n = n;
	m->its = calloc(n, sizeof *m->its);
	m->heap = calloc(n, sizeof *m->heap);
	m->last = malloc(SB_SST_KEY_BYTES_MAX);
	if (!m->its || !m->heap || !m->last)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if ((rc = sb_sst_iter_new(inputs[i], &m->its[i])))
			return rc;
		m->heap[m->nh].src = (uint32_t)i;
		if ((rc = sb_sst_iter_next(m->its[i], &m->heap[m->nh].e)) < 0)
			return rc;
		m->nh += (size_t)rc;
	}
	for (size_t i = m->nh / 2; i-- > 0;)
		sift_down(m->heap, m->nh, i);
	return 0;
}

static void merge_free(struct merge *m)
{
	for (size_t i = 0; m->its && i < m->n; i++)
		sb_sst_iter_free(m->its[i]);
	free(m->its);
	free(m->heap);
	free(m->last);
}

/* Moves every key through the heap into w: its winning version (the heap's
 * top), unless that is a tombstone older than cutoff (drop_tombstones);
 * every other version of the key is dropped. */
static int merge_run(struct merge *m, struct sb_sst_writer *w, const struct sb_sst_opts *o,
                     int64_t cutoff)
{
	struct rate rate = {o->rate_bytes_per_s, sb_mono_ns(), 0};
	int rc;
	while (m->nh > 0) {
		const struct sb_kv_entry *e = &m->heap[0].e;
		uint32_t last_len = e->key_len;
		memcpy(m->last, e->key, last_len);
		m->st.entries_in++;
		if (o->drop_tombstones && (e->flags & SB_KV_TOMBSTONE) &&
		    e->timestamp_ms < cutoff) {
			m->st.tombstones_dropped++;
		} else {
			if ((rc = sb_sst_writer_add(w, e)))
				return rc;
			m->st.entries_out++;
		}
		if ((rc = advance_top(m->its, m->heap, &m->nh)))
			return rc;
		while (m->nh > 0 && sb_sst__key_cmp(m->heap[0].e.key, m->heap[0].e.key_len, m->last,
		                                    last_len) == 0) {
			m->st.entries_in++;
			m->st.shadowed_dropped++;
			if ((rc = advance_top(m->its, m->heap, &m->nh)))
				return rc;
		}
		rate_wait(&rate, merge_bytes_read(m) + sb_sst_writer_bytes_written(w),
		          &m->st.sleep_ns);
	}
	return 0;
}

int sb_sst_merge(struct sb_vfs *vfs, const char *dir, struct sb_sst *const *inputs, size_t n,
                 const char *out_name, const struct sb_sst_opts *opts, int64_t now_ms,
                 int64_t delete_retention_ms, struct sb_sst_merge_stats *stats)
{
	struct merge m = {0};
	struct sb_sst_writer *w = NULL;
	struct sb_sst_opts o;
	int64_t lo = INT64_MAX, hi = INT64_MIN, cutoff;
	int rc = SB_EINVAL;

	if (!inputs || n == 0 || n > SB_SST_MERGE_INPUTS_MAX || delete_retention_ms < 0 ||
	    sb_sst__resolve_opts(opts, &o) != 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (!inputs[i])
			goto out;
		int64_t imin = sb_sst_covered_min_offset(inputs[i]);
		int64_t imax = sb_sst_covered_max_offset(inputs[i]);
		lo = imin < lo ? imin : lo;
		hi = imax > hi ? imax : hi;
	}
	/* Tombstones older than this are dropped (saturating: never overflows). */
	cutoff =
	    now_ms < INT64_MIN + delete_retention_ms ? INT64_MIN : now_ms - delete_retention_ms;
	if ((rc = merge_start(&m, inputs, n)) ||
	    (rc = sb_sst_writer_open(vfs, dir, out_name, &o, &w)) ||
	    (rc = merge_run(&m, w, &o, cutoff)))
		goto out;
	rc = sb_sst__writer_finish(w, lo, hi, &m.st.bytes_written);
	w = NULL;
out:
	m.st.bytes_read = merge_bytes_read(&m);
	if (w) {
		m.st.bytes_written = sb_sst_writer_bytes_written(w);
		sb_sst_writer_abort(w);
	}
	merge_free(&m);
	if (stats)
		*stats = m.st;
	return rc;
}
