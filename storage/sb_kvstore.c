/* sb_kvstore.c - a partition's key store (see sb_kvstore.h): applying the
 * log, freezing and flushing memtables, lookups, size-tiered merges,
 * rebuilds.
 *
 * State. What lookups read is a version: the active memtable, the frozen one
 * (being flushed, or NULL) and the tables newest first, each behind a
 * reference count, so that a lookup holds what it reads while the worker
 * installs the next version. The active memtable is written by one applier
 * at a time (apply_lock: the worker, or a lookup catching up); its readers
 * need no lock (sb_memtable.h). Merges and rebuilds run only on the worker
 * (sb_kvstore_step); flushes run there too, or on an applier that finds
 * both memtables full (flush_lock keeps one flush or install at a time).
 */
#include "sb_kvstore.h"

#include "sb_batch.h"
#include "sb_limits.h"
#include "sb_log.h"
#include "sb_logging.h"
#include "sb_memtable.h"
#include "sb_path.h"
#include "sb_sstable.h"
#include "sb_time.h"
#include "sb_vfs.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_BYTES (1u << 20) /* log bytes read per sb_log_read while applying */
#define NAME_LEN 46           /* "<20>-<20>.sst" */

struct mt_ref {
	int refs; /* atomic */
	struct sb_memtable *mt;
	int64_t min, max; /* offsets covered once frozen: [min, max] */
};

struct sst_ref {
	int refs; /* atomic */
	struct sb_sst *t;
	int64_t min, max;
	uint64_t bytes;
};

struct version {
	int refs; /* atomic */
	struct mt_ref *active, *frozen;
	uint32_t n;
	struct sst_ref *tables[]; /* newest first */
};

struct sb_kvstore {
	struct sb_vfs *vfs;
	struct sb_log *log;
	char *name;
	char dir[SB_PATH_MAX - 64]; /* room for "/<table name>" */
	struct sb_kvstore_config cfg;

	pthread_mutex_t apply_lock; /* one applier at a time; the fields below it */
	struct sb_memtable *active; /* the current version's active memtable */
	int64_t applied;            /* next log offset to apply (read unlocked: atomic) */
	int64_t mt_first;           /* first offset the active memtable covers */
	uint64_t read_total;        /* log bytes read by applies */
	uint64_t log_bytes_at_freeze; /* the log's size at the last freeze (replay bound) */
	uint32_t log_rewinds;       /* sb_log_info.rewinds when last applied */

	pthread_mutex_t flush_lock; /* one flush or merge install at a time */
	pthread_mutex_t vlock;      /* cur */
	struct version *cur;

	int need_rebuild;           /* atomic: a table failed its checks */
	struct sb_kvstore_stats st; /* counters (vlock) */
};

void sb_kvstore_config_default(struct sb_kvstore_config *cfg)
{
	cfg->memtable_bytes = 16u << 20;
	cfg->replay_bytes_max = 256u << 20;
	cfg->delete_retention_ms = 24ll * 3600 * 1000;
	cfg->compaction_rate_bytes = 64u << 20;
	cfg->cleaner_interval_ms = 15000;
}

/* ---- references ---- */

static void mt_unref(struct mt_ref *m)
{
	if (m && __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		sb_memtable_free(m->mt);
		free(m);
	}
}

static void sst_unref(struct sst_ref *s)
{
	if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		sb_sst_close(s->t);
		free(s);
	}
}

static void version_unref(struct version *v)
{
	if (!v || __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	mt_unref(v->active);
	mt_unref(v->frozen);
	for (uint32_t i = 0; i < v->n; i++)
		sst_unref(v->tables[i]);
	free(v);
}

/* A new version with the given parts (each gains a reference), or NULL. */
static struct version *version_new(struct mt_ref *active, struct mt_ref *frozen, struct sst_ref *const *tables,
				   uint32_t n)
{
	struct version *v = malloc(sizeof *v + n * sizeof v->tables[0]);
	if (!v)
		return NULL;
	v->refs = 1;
	v->active = active;
	v->frozen = frozen;
	v->n = n;
	if (active)
		__atomic_add_fetch(&active->refs, 1, __ATOMIC_RELAXED);
	if (frozen)
		__atomic_add_fetch(&frozen->refs, 1, __ATOMIC_RELAXED);
	for (uint32_t i = 0; i < n; i++) {
		v->tables[i] = tables[i];
		__atomic_add_fetch(&tables[i]->refs, 1, __ATOMIC_RELAXED);
	}
	return v;
}

/* Installs v (vlock held), dropping the old version. */
static void install_locked(struct sb_kvstore *kv, struct version *v)
{
	struct version *old = kv->cur;
	kv->cur = v;
	version_unref(old);
}

static struct version *current(struct sb_kvstore *kv)
{
	pthread_mutex_lock(&kv->vlock);
	struct version *v = kv->cur;
	__atomic_add_fetch(&v->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&kv->vlock);
	return v;
}

static int mt_new(struct sb_kvstore *kv, struct mt_ref **out)
{
	struct mt_ref *m = calloc(1, sizeof *m);
	if (!m)
		return -ENOMEM;
	int rc = sb_memtable_new(2 * kv->cfg.memtable_bytes, &m->mt);
	if (rc) {
		free(m);
		return rc;
	}
	m->refs = 1;
	m->min = m->max = -1;
	*out = m;
	return 0;
}

/* ---- tables on disk ---- */

static void table_name(int64_t min, int64_t max, char out[NAME_LEN])
{
	snprintf(out, NAME_LEN, "%020" PRId64 "-%020" PRId64 SB_SST_SUFFIX, max, min);
}

static int parse_table_name(const char *name, int64_t *min, int64_t *max)
{
	char tail[8];
	long long a, b;
	if (strlen(name) != 41 + strlen(SB_SST_SUFFIX) || sscanf(name, "%20lld-%20lld%7s", &a, &b, tail) != 3 ||
	    strcmp(tail, SB_SST_SUFFIX) || a < b || b < 0)
		return 0;
	*max = a;
	*min = b;
	return 1;
}

static int open_table(struct sb_kvstore *kv, const char *file, int64_t min, int64_t max, struct sst_ref **out)
{
	char path[SB_PATH_MAX];
	struct sst_ref *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	if (snprintf(path, sizeof path, "%s/%s", kv->dir, file) >= (int)sizeof path) {
		free(s);
		return SB_ETOOBIG;
	}
	int rc = sb_sst_open(kv->vfs, path, &s->t);
	if (rc) {
		free(s);
		return rc;
	}
	s->refs = 1;
	s->min = min;
	s->max = max;
	s->bytes = sb_sst_file_bytes(s->t);
	*out = s;
	return 0;
}

static int remove_table(struct sb_kvstore *kv, int64_t min, int64_t max)
{
	char name[NAME_LEN], path[SB_PATH_MAX];
	table_name(min, max, name);
	snprintf(path, sizeof path, "%s/%s", kv->dir, name);
	int rc = kv->vfs->ops->unlink(kv->vfs, path);
	return rc == -ENOENT ? 0 : rc;
}

struct listing {
	int64_t (*r)[2];
	uint32_t n, cap;
	int rc;
};

static int list_cb(void *arg, const char *name, int is_dir)
{
	struct listing *l = arg;
	int64_t min, max;
	if (is_dir || !parse_table_name(name, &min, &max))
		return 0;
	if (l->n == l->cap) {
		uint32_t ncap = l->cap ? 2 * l->cap : 16;
		if (ncap > 4 * SB_KV_TABLES_MAX)
			return SB_ETOOBIG;
		void *p = realloc(l->r, ncap * sizeof *l->r);
		if (!p)
			return -ENOMEM;
		l->r = p;
		l->cap = ncap;
	}
	l->r[l->n][0] = min;
	l->r[l->n][1] = max;
	l->n++;
	return 0;
}

/* Newest first; of two with the same end, the wider first (a merge's
 * output before its newest input). */
static int by_max_desc(const void *a, const void *b)
{
	const int64_t *x = a, *y = b;
	if (x[1] != y[1])
		return (x[1] < y[1]) - (x[1] > y[1]);
	return (x[0] > y[0]) - (x[0] < y[0]);
}

/* Deletes every table (a rebuild). 0 or -errno. */
static int remove_all_tables(struct sb_kvstore *kv)
{
	struct listing l = {0};
	int rc = kv->vfs->ops->list_dir(kv->vfs, kv->dir, list_cb, &l);
	for (uint32_t i = 0; !rc && i < l.n; i++)
		rc = remove_table(kv, l.r[i][0], l.r[i][1]);
	if (!rc && l.n)
		rc = kv->vfs->ops->sync_dir(kv->vfs, kv->dir);
	free(l.r);
	return rc;
}

/* Opens the tables in kv->dir newest first into tables and n. A table whose
 * range lies inside a newer, wider one is an input an interrupted merge
 * left behind: deleted. Returns 0, SB_ECORRUPT (a table failed its checks
 * or ranges overlap: rebuild), -errno. */
static int load_tables(struct sb_kvstore *kv, struct sst_ref ***tables, uint32_t *n)
{
	struct listing l = {0};
	struct sst_ref **t = NULL;
	uint32_t k = 0, removed = 0;
	int rc = sb_sst_remove_temps(kv->vfs, kv->dir);
	if (rc >= 0)
		rc = kv->vfs->ops->list_dir(kv->vfs, kv->dir, list_cb, &l);
	if (rc < 0)
		goto out;
	rc = 0;
	if (l.n)
		qsort(l.r, l.n, sizeof *l.r, by_max_desc);
	t = calloc(l.n ? l.n : 1, sizeof *t);
	if (!t) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < l.n && !rc; i++) {
		int64_t min = l.r[i][0], max = l.r[i][1];
		if (k > 0 && t[k - 1]->min <= min && max <= t[k - 1]->max) {
			rc = remove_table(kv, min, max); /* inside the newer table: a merge's input */
			removed++;
			continue;
		}
		if (k > 0 && max >= t[k - 1]->min) {
			rc = SB_ECORRUPT; /* overlapping ranges: not something we write */
			break;
		}
		char name[NAME_LEN];
		table_name(min, max, name);
		rc = open_table(kv, name, min, max, &t[k]);
		if (!rc)
			k++;
	}
	if (!rc && removed)
		rc = kv->vfs->ops->sync_dir(kv->vfs, kv->dir);
out:
	free(l.r);
	if (rc) {
		for (uint32_t i = 0; i < k; i++)
			sst_unref(t[i]);
		free(t);
		return rc;
	}
	*tables = t;
	*n = k;
	return 0;
}

/* ---- applying the log ---- */

static int flush_frozen(struct sb_kvstore *kv);

static int has_frozen(struct sb_kvstore *kv)
{
	pthread_mutex_lock(&kv->vlock);
	int yes = kv->cur->frozen != NULL;
	pthread_mutex_unlock(&kv->vlock);
	return yes;
}

/* apply_lock held. Moves the active memtable, which covers [mt_first, end),
 * to the frozen slot and starts a new one. If a frozen memtable is still
 * there, flushes it first (on this thread). */
static int freeze(struct sb_kvstore *kv, int64_t end)
{
	struct mt_ref *fresh;
	int rc;
	if (end <= kv->mt_first)
		return 0; /* nothing new is covered */
	while (has_frozen(kv))
		if ((rc = flush_frozen(kv)) != 0)
			return rc;
	if ((rc = mt_new(kv, &fresh)) != 0)
		return rc;
	pthread_mutex_lock(&kv->vlock);
	struct version *v = version_new(fresh, kv->cur->active, kv->cur->tables, kv->cur->n);
	if (v) {
		kv->cur->active->min = kv->mt_first;
		kv->cur->active->max = end - 1;
		install_locked(kv, v);
		kv->active = fresh->mt;
	}
	pthread_mutex_unlock(&kv->vlock);
	mt_unref(fresh);
	if (!v)
		return -ENOMEM;
	struct sb_log_info li;
	sb_log_info(kv->log, &li);
	kv->mt_first = end;
	kv->log_bytes_at_freeze = li.size_bytes;
	return 0;
}

/* apply_lock held. Puts one record; a full memtable is frozen first. */
static int apply_record(struct sb_kvstore *kv, const struct sb_record_view *r)
{
	struct sb_kv_entry e = {0};
	if (r->key_len <= 0 || (uint32_t)r->key_len > SB_KV_KEY_MAX)
		return 0; /* not indexed */
	e.key = r->key;
	e.key_len = (uint32_t)r->key_len;
	e.offset = r->offset;
	e.timestamp_ms = r->timestamp_ms;
	if (r->attributes & SB_RECORD_ATTR_TOMBSTONE) {
		e.flags = SB_KV_TOMBSTONE;
	} else {
		e.value = r->value_len > 0 ? r->value : NULL;
		e.value_len = r->value_len > 0 ? (uint32_t)r->value_len : 0;
		e.headers = r->headers;
		e.headers_len = (uint32_t)(r->headers_end - r->headers);
	}
	for (int tries = 0;; tries++) {
		int rc = sb_memtable_put(kv->active, &e);
		if (rc != SB_ETOOBIG || tries > 0 || sb_memtable_count(kv->active) == 0) {
			if (rc == SB_ETOOBIG || rc == SB_EINVAL) {
				SB_LOG_RATELIMITED(SB_LEVEL_WARN, 10000, "kv_record_skipped",
						   "kv=%s offset=%" PRId64 " error=\"%s\"", kv->name, r->offset,
						   sb_strerror(rc));
				return 0;
			}
			return rc;
		}
		/* The active memtable is full: what it holds covers the log up
		 * to this record (exclusive). */
		if ((rc = freeze(kv, r->offset)) != 0)
			return rc;
	}
}

/* apply_lock held. Applies the batches data[0..len). */
static int apply_batches(struct sb_kvstore *kv, const uint8_t *data, size_t len)
{
	for (size_t at = 0; at < len;) {
		struct sb_batch_header h;
		struct sb_record_iter it;
		struct sb_record_view r;
		int rc = sb_batch_parse_header(data + at, len - at, &h);
		if (rc)
			return rc;
		if (h.attributes & SB_BATCH_ATTR_NO_KEYS) {
			at += sb_batch_total_bytes(&h);
			continue;
		}
		sb_record_iter_init(&it, data + at, &h);
		while ((rc = sb_record_iter_next(&it, &r)) == 1)
			if ((rc = apply_record(kv, &r)) != 0)
				return rc;
		if (rc)
			return rc;
		at += sb_batch_total_bytes(&h);
	}
	return 0;
}

/* apply_lock held. Applies the log up to its readable end as of now. */
static int apply_log(struct sb_kvstore *kv)
{
	struct sb_log_info li;
	sb_log_info(kv->log, &li);
	if (li.rewinds != kv->log_rewinds || li.high_watermark < kv->applied) {
		__atomic_store_n(&kv->need_rebuild, 1, __ATOMIC_RELAXED); /* the log moved back under us */
		return 0;
	}
	int64_t target = li.high_watermark;
	/* Batches from keyed_end on hold no key: read up to it, then skip. */
	int64_t stop = li.keyed_end < target ? li.keyed_end : target;
	while (kv->applied < stop) {
		struct sb_log_read rd;
		int rc = sb_log_read(kv->log, kv->applied, READ_BYTES, &rd);
		if (rc == SB_ERANGE_LOW) { /* retention went past us: those records are gone */
			__atomic_store_n(&kv->applied, rd.log_start, __ATOMIC_RELEASE);
			continue;
		}
		if (rc)
			return rc;
		if (rd.len == 0) {
			if (rd.next_offset <= kv->applied)
				break;
			__atomic_store_n(&kv->applied, rd.next_offset, __ATOMIC_RELEASE); /* a gap */
			continue;
		}
		rc = apply_batches(kv, rd.data, rd.len);
		free(rd.buf);
		if (rc)
			return rc;
		kv->read_total += rd.len;
		__atomic_store_n(&kv->applied, rd.next_offset, __ATOMIC_RELEASE);
	}
	if (kv->applied < target && kv->applied >= stop)
		__atomic_store_n(&kv->applied, target, __ATOMIC_RELEASE);
	return 0;
}

/* ---- flush, merge, rebuild (worker) ---- */

/* Writes the frozen memtable to a table and installs it. */
static int flush_frozen(struct sb_kvstore *kv)
{
	pthread_mutex_lock(&kv->flush_lock);
	struct version *v = current(kv);
	struct mt_ref *m = v->frozen;
	struct sb_sst_writer *w = NULL;
	struct sst_ref *s = NULL;
	char name[NAME_LEN];
	int rc = 0;
	if (!m)
		goto out;
	table_name(m->min, m->max, name);
	rc = sb_sst_writer_open(kv->vfs, kv->dir, name, NULL, &w);
	struct sb_memtable_iter it;
	struct sb_kv_entry e;
	sb_memtable_iter_init(m->mt, &it, 1);
	while (!rc && sb_memtable_iter_next(&it, &e) == 0)
		rc = sb_sst_writer_add(w, &e);
	if (rc) {
		sb_sst_writer_abort(w);
		goto out;
	}
	if ((rc = sb_sst_writer_finish(w, m->min, m->max)) != 0 || (rc = open_table(kv, name, m->min, m->max, &s)))
		goto out;
	pthread_mutex_lock(&kv->vlock);
	struct sst_ref **t = malloc((kv->cur->n + 1) * sizeof *t);
	struct version *nv = NULL;
	if (t) {
		t[0] = s;
		memcpy(t + 1, kv->cur->tables, kv->cur->n * sizeof *t);
		nv = version_new(kv->cur->active, NULL, t, kv->cur->n + 1);
		free(t);
	}
	if (nv) {
		install_locked(kv, nv);
		kv->st.flushes++;
	}
	pthread_mutex_unlock(&kv->vlock);
	if (!nv)
		rc = -ENOMEM;
out:
	pthread_mutex_unlock(&kv->flush_lock);
	sst_unref(s);
	version_unref(v);
	if (rc)
		SB_LOG_RATELIMITED(SB_LEVEL_WARN, 10000, "kv_flush_failed", "kv=%s error=\"%s\"", kv->name,
				   sb_strerror(rc));
	return rc;
}

/* The merge due in v, if any: tables [0, *k) (the newest k). */
static int merge_due(const struct version *v, uint32_t *k)
{
	uint64_t acc = v->n ? v->tables[0]->bytes : 0;
	uint32_t run = v->n ? 1 : 0;
	while (run < v->n && v->tables[run]->bytes <= 2 * acc) {
		acc += v->tables[run]->bytes;
		run++;
	}
	if (run >= SB_KV_COMPACT_MIN_TABLES) {
		*k = run;
		return 1;
	}
	if (v->n >= SB_KV_TABLES_MAX) {
		*k = SB_KV_TABLES_MAX / 2;
		return 1;
	}
	return 0;
}

static int merge(struct sb_kvstore *kv, int64_t now_ms)
{
	struct version *v = current(kv);
	struct sst_ref *s = NULL;
	struct sb_sst *in[SB_KV_TABLES_MAX * 4];
	struct sb_sst_merge_stats ms = {0};
	uint32_t k;
	int rc = 0;
	if (!merge_due(v, &k) || k > sizeof in / sizeof in[0])
		goto out;
	for (uint32_t i = 0; i < k; i++)
		in[i] = v->tables[i]->t;
	int64_t min = v->tables[k - 1]->min, max = v->tables[0]->max;
	char name[NAME_LEN];
	table_name(min, max, name);
	struct sb_sst_opts o = {0};
	o.drop_tombstones = k == v->n; /* the output is the bottom-most table */
	o.rate_bytes_per_s = kv->cfg.compaction_rate_bytes;
	rc = sb_sst_merge(kv->vfs, kv->dir, in, k, name, &o, now_ms, kv->cfg.delete_retention_ms, &ms);
	if (!rc)
		rc = open_table(kv, name, min, max, &s);
	if (rc)
		goto out;
	pthread_mutex_lock(&kv->flush_lock);
	pthread_mutex_lock(&kv->vlock);
	/* Flushes may have put newer tables before the inputs, which only
	 * merges (this thread) remove: they are still together, at j. */
	struct version *c = kv->cur;
	uint32_t j = 0;
	while (j < c->n && c->tables[j] != v->tables[0])
		j++;
	struct sst_ref **t = j + k <= c->n ? malloc((c->n - k + 1) * sizeof *t) : NULL;
	struct version *nv = NULL;
	if (t) {
		memcpy(t, c->tables, j * sizeof *t);
		t[j] = s;
		memcpy(t + j + 1, c->tables + j + k, (c->n - j - k) * sizeof *t);
		nv = version_new(c->active, c->frozen, t, c->n - k + 1);
		free(t);
	}
	if (nv) {
		install_locked(kv, nv);
		kv->st.compactions++;
		kv->st.compaction_bytes_read += ms.bytes_read;
		kv->st.compaction_bytes_written += ms.bytes_written;
	}
	pthread_mutex_unlock(&kv->vlock);
	pthread_mutex_unlock(&kv->flush_lock);
	if (!nv) {
		rc = -ENOMEM;
		goto out;
	}
	/* Readers holding the inputs keep their fds; the files go now. */
	for (uint32_t i = 0; i < k && !rc; i++)
		rc = remove_table(kv, v->tables[i]->min, v->tables[i]->max);
	if (!rc)
		rc = kv->vfs->ops->sync_dir(kv->vfs, kv->dir);
	SB_DEBUG("kv_merged", "kv=%s tables=%u entries_in=%" PRIu64 " entries_out=%" PRIu64 " bytes_read=%" PRIu64
		 " bytes_written=%" PRIu64, kv->name, k, ms.entries_in, ms.entries_out, ms.bytes_read, ms.bytes_written);
	rc = rc ? rc : 1;
out:
	sst_unref(s);
	version_unref(v);
	if (rc < 0)
		SB_LOG_RATELIMITED(SB_LEVEL_WARN, 10000, "kv_merge_failed", "kv=%s error=\"%s\"", kv->name,
				   sb_strerror(rc));
	return rc;
}

/* Worker: forgets every table and memtable and starts over from the log's
 * start (the next applies replay it). */
static int rebuild(struct sb_kvstore *kv)
{
	struct mt_ref *fresh;
	struct sb_log_info li;
	int rc = mt_new(kv, &fresh);
	if (rc)
		return rc;
	pthread_mutex_lock(&kv->apply_lock);
	pthread_mutex_lock(&kv->vlock);
	struct version *v = version_new(fresh, NULL, NULL, 0);
	if (v) {
		install_locked(kv, v);
		kv->active = fresh->mt;
		kv->st.rebuilds++;
	}
	pthread_mutex_unlock(&kv->vlock);
	mt_unref(fresh);
	if (!v) {
		pthread_mutex_unlock(&kv->apply_lock);
		return -ENOMEM;
	}
	rc = remove_all_tables(kv);
	sb_log_info(kv->log, &li);
	kv->log_rewinds = li.rewinds;
	__atomic_store_n(&kv->applied, li.log_start, __ATOMIC_RELEASE);
	kv->mt_first = li.log_start;
	kv->log_bytes_at_freeze = li.size_bytes;
	__atomic_store_n(&kv->need_rebuild, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&kv->apply_lock);
	SB_WARN("kv_rebuild", "kv=%s from=%" PRId64 " error=\"%s\"", kv->name, li.log_start, sb_strerror(rc));
	return rc;
}

int sb_kvstore_step(struct sb_kvstore *kv, int64_t now_ms)
{
	int rc = 0, busy = 0;
	if (__atomic_load_n(&kv->need_rebuild, __ATOMIC_RELAXED)) {
		if ((rc = rebuild(kv)) != 0)
			return rc;
		busy = 1;
	}
	if (has_frozen(kv)) {
		if ((rc = flush_frozen(kv)) != 0)
			return rc;
		busy = 1;
	}
	pthread_mutex_lock(&kv->apply_lock);
	uint64_t read_before = kv->read_total;
	struct sb_log_info li;
	rc = apply_log(kv);
	/* Much read: more may be waiting (a small catch-up waits for the next
	 * round: lookups apply what they need themselves). */
	busy |= kv->read_total >= read_before + 4 * READ_BYTES;
	/* The replay after a crash reads the log from the newest table on:
	 * bound it by the bytes the log grew since the last freeze (read or
	 * skipped as keyless; retention may shrink the log meanwhile). */
	sb_log_info(kv->log, &li);
	if (li.size_bytes < kv->log_bytes_at_freeze)
		kv->log_bytes_at_freeze = li.size_bytes;
	if (!rc && (sb_memtable_bytes(kv->active) >= kv->cfg.memtable_bytes ||
		    li.size_bytes - kv->log_bytes_at_freeze >= kv->cfg.replay_bytes_max))
		rc = freeze(kv, kv->applied);
	pthread_mutex_unlock(&kv->apply_lock);
	if (rc)
		return rc;
	if (has_frozen(kv)) {
		if ((rc = flush_frozen(kv)) != 0)
			return rc;
		busy = 1;
	}
	if ((rc = merge(kv, now_ms)) < 0)
		return rc;
	return busy || rc;
}

/* ---- lookups ---- */

static int copy_out(const struct sb_kv_entry *e, struct sb_kv_result *r)
{
	memset(r, 0, sizeof *r);
	if (e->flags & SB_KV_TOMBSTONE)
		return 0;
	r->found = 1;
	r->offset = e->offset;
	r->timestamp_ms = e->timestamp_ms;
	if (e->value_len && !(r->value = malloc(e->value_len)))
		return -ENOMEM;
	if (e->headers_len && !(r->headers = malloc(e->headers_len))) {
		sb_kv_result_free(r);
		return -ENOMEM;
	}
	if (e->value_len)
		memcpy(r->value, e->value, e->value_len);
	if (e->headers_len)
		memcpy(r->headers, e->headers, e->headers_len);
	r->value_len = e->value_len;
	r->headers_len = e->headers_len;
	return 0;
}

void sb_kv_result_free(struct sb_kv_result *r)
{
	free(r->value);
	free(r->headers);
	memset(r, 0, sizeof *r);
}

/* A lookup's SSTable read buffer, one per thread and kept (a fresh one would
 * allocate a 64 KiB key buffer and a block buffer on every lookup); freed
 * when the thread exits. */
static pthread_key_t buf_key;
static pthread_once_t buf_once = PTHREAD_ONCE_INIT;

static void buf_free(void *p)
{
	sb_sst_buf_free(p);
	free(p);
}

static void buf_key_init(void)
{
	if (pthread_key_create(&buf_key, buf_free) != 0)
		abort(); /* only with PTHREAD_KEYS_MAX keys in use: a bug */
}

static struct sb_sst_buf *thread_buf(void)
{
	pthread_once(&buf_once, buf_key_init);
	struct sb_sst_buf *b = pthread_getspecific(buf_key);
	if (!b && (b = calloc(1, sizeof *b)) != NULL && pthread_setspecific(buf_key, b) != 0) {
		free(b);
		b = NULL;
	}
	return b;
}

/* The newest version of key in what the store holds now (no apply): r
 * filled as sb_kvstore_get does, plus the tombstone's offset and time in
 * tomb_offset and tomb_ts when the newest version is one (else -1). */
static int search(struct sb_kvstore *kv, const uint8_t *key, uint32_t key_len, struct sb_kv_result *r,
		  int64_t *tomb_offset, int64_t *tomb_ts)
{
	struct sb_kv_entry e;
	struct sb_sst_buf *buf = NULL;
	struct version *v = current(kv);
	int rc = sb_memtable_get(v->active->mt, key, key_len, &e);
	if (rc == SB_ENOTFOUND && v->frozen)
		rc = sb_memtable_get(v->frozen->mt, key, key_len, &e);
	if (rc == SB_ENOTFOUND && v->n && !(buf = thread_buf()))
		rc = -ENOMEM;
	for (uint32_t i = 0; rc == SB_ENOTFOUND && i < v->n; i++)
		rc = sb_sst_get(v->tables[i]->t, key, key_len, &e, buf);
	*tomb_offset = *tomb_ts = -1;
	if (rc == 0 && (e.flags & SB_KV_TOMBSTONE)) {
		*tomb_offset = e.offset;
		*tomb_ts = e.timestamp_ms;
	}
	if (rc == 0)
		rc = copy_out(&e, r);
	else if (rc == SB_ENOTFOUND)
		rc = 0;
	if (rc == SB_ECORRUPT && !__atomic_exchange_n(&kv->need_rebuild, 1, __ATOMIC_RELAXED))
		SB_ERROR("kv_table_corrupt", "kv=%s action=rebuild", kv->name);
	version_unref(v);
	return rc;
}

int sb_kvstore_get(struct sb_kvstore *kv, const uint8_t *key, uint32_t key_len, struct sb_kv_result *r)
{
	struct sb_log_info li;
	int64_t tomb, ts;
	int rc = 0;
	memset(r, 0, sizeof *r);
	if (!key || key_len == 0 || key_len > SB_KV_KEY_MAX)
		return SB_EINVAL;
	sb_log_info(kv->log, &li);
	if (__atomic_load_n(&kv->applied, __ATOMIC_ACQUIRE) < li.high_watermark) {
		pthread_mutex_lock(&kv->apply_lock);
		rc = apply_log(kv);
		pthread_mutex_unlock(&kv->apply_lock);
		if (rc)
			return rc;
	}
	return search(kv, key, key_len, r, &tomb, &ts);
}

int sb_kvstore_keep(struct sb_kvstore *kv, const struct sb_record_view *rec, int64_t now_ms)
{
	struct sb_kv_result r;
	int64_t tomb, ts;
	if (rec->key_len <= 0 || (uint32_t)rec->key_len > SB_KV_KEY_MAX)
		return 1; /* not indexed: nothing says it is shadowed */
	if (search(kv, rec->key, (uint32_t)rec->key_len, &r, &tomb, &ts) != 0)
		return 1; /* in doubt, keep */
	int keep = 1;
	if (r.found && r.offset > rec->offset)
		keep = 0; /* a newer version of the key */
	else if (tomb > rec->offset)
		keep = 0; /* deleted since */
	else if (tomb == rec->offset && ts < now_ms - kv->cfg.delete_retention_ms)
		keep = 0; /* the key's tombstone itself, past delete_retention_ms */
	sb_kv_result_free(&r);
	return keep;
}

void sb_kvstore_stats(struct sb_kvstore *kv, struct sb_kvstore_stats *out)
{
	struct version *v = current(kv);
	pthread_mutex_lock(&kv->vlock);
	*out = kv->st;
	pthread_mutex_unlock(&kv->vlock);
	out->applied_end = __atomic_load_n(&kv->applied, __ATOMIC_ACQUIRE);
	out->memtable_bytes = sb_memtable_bytes(v->active->mt) + (v->frozen ? sb_memtable_bytes(v->frozen->mt) : 0);
	out->memtable_entries = sb_memtable_count(v->active->mt) + (v->frozen ? sb_memtable_count(v->frozen->mt) : 0);
	out->tables = v->n;
	out->table_bytes = 0;
	for (uint32_t i = 0; i < v->n; i++)
		out->table_bytes += v->tables[i]->bytes;
	version_unref(v);
}

/* ---- open and close ---- */

int sb_kvstore_open(struct sb_vfs *vfs, struct sb_log *log, const char *log_dir, const char *name,
		    const struct sb_kvstore_config *cfg, struct sb_kvstore **out)
{
	struct sb_kvstore *kv;
	struct sst_ref **tables = NULL;
	struct mt_ref *active = NULL;
	struct sb_log_info li;
	uint32_t n = 0;
	int rc;
	if (cfg->memtable_bytes < SB_MEMTABLE_BYTES_MIN || cfg->memtable_bytes > SB_MEMTABLE_BYTES_MAX / 2 ||
	    cfg->delete_retention_ms < 0 || cfg->replay_bytes_max == 0)
		return SB_EINVAL;
	if (!(kv = calloc(1, sizeof *kv)) || !(kv->name = strdup(name))) {
		free(kv);
		return -ENOMEM;
	}
	kv->vfs = vfs;
	kv->log = log;
	kv->cfg = *cfg;
	pthread_mutex_init(&kv->apply_lock, NULL);
	pthread_mutex_init(&kv->vlock, NULL);
	pthread_mutex_init(&kv->flush_lock, NULL);
	if (snprintf(kv->dir, sizeof kv->dir, "%s/%s", log_dir, SB_KV_DIR) >= (int)sizeof kv->dir) {
		rc = SB_ETOOBIG;
		goto fail;
	}
	if ((rc = sb_vfs_mkdir_durable(vfs, kv->dir)) != 0)
		goto fail;
	rc = load_tables(kv, &tables, &n);
	sb_log_info(log, &li);
	kv->log_rewinds = li.rewinds;
	if (!rc && n > 0 && tables[0]->max >= li.high_watermark) {
		rc = SB_ECORRUPT; /* the tables index records the log no longer holds */
		for (uint32_t i = 0; i < n; i++)
			sst_unref(tables[i]);
		free(tables);
		tables = NULL;
		n = 0;
	}
	if (rc == SB_ECORRUPT) {
		SB_ERROR("kv_table_corrupt", "kv=%s dir=\"%s\" action=rebuild", name, kv->dir);
		rc = remove_all_tables(kv);
		kv->st.rebuilds++;
	}
	if (rc || (rc = mt_new(kv, &active)) != 0)
		goto fail;
	kv->cur = version_new(active, NULL, tables, n);
	kv->active = active->mt;
	mt_unref(active);
	for (uint32_t i = 0; i < n; i++)
		sst_unref(tables[i]); /* the version holds them */
	free(tables);
	tables = NULL;
	if (!kv->cur) {
		rc = -ENOMEM;
		goto fail;
	}
	int64_t start = n ? kv->cur->tables[0]->max + 1 : li.log_start;
	start = start < li.log_start ? li.log_start : start;
	__atomic_store_n(&kv->applied, start, __ATOMIC_RELEASE);
	kv->mt_first = start;
	kv->log_bytes_at_freeze = 0; /* the first step moves the replay start up if the log is large */
	int64_t from = kv->applied;
	pthread_mutex_lock(&kv->apply_lock);
	rc = apply_log(kv);
	pthread_mutex_unlock(&kv->apply_lock);
	if (rc)
		goto fail;
	SB_INFO("kv_opened", "kv=%s tables=%u replayed_from=%" PRId64 " to=%" PRId64 " entries=%" PRIu64, name, n, from,
		kv->applied, sb_memtable_count(kv->active));
	*out = kv;
	return 0;
fail:
	for (uint32_t i = 0; tables && i < n; i++)
		sst_unref(tables[i]);
	free(tables);
	SB_ERROR("kv_open_failed", "kv=%s error=\"%s\"", name, sb_strerror(rc));
	sb_kvstore_close(kv);
	return rc;
}

void sb_kvstore_close(struct sb_kvstore *kv)
{
	if (!kv)
		return;
	if (kv->cur) {
		pthread_mutex_lock(&kv->apply_lock);
		int rc = freeze(kv, kv->applied); /* a restart then replays nothing */
		pthread_mutex_unlock(&kv->apply_lock);
		if (!rc && has_frozen(kv))
			rc = flush_frozen(kv);
		(void)rc; /* best effort: the log replays what is not in a table */
	}
	version_unref(kv->cur);
	pthread_mutex_destroy(&kv->flush_lock);
	pthread_mutex_destroy(&kv->vlock);
	pthread_mutex_destroy(&kv->apply_lock);
	free(kv->name);
	free(kv);
}
