/* sb_logmgr.c - topics and partitions over the data directory (see
 * sb_logmgr.h for the layout and the crash-safety of create and delete). */
#include "sb_logmgr.h"

#include "sb_ioloop.h"
#include "sb_limits.h"
#include "sb_logging.h"
#include "sb_path.h"
#include "sb_time.h"
#include "sb_vfs.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>

/* The log cleaner's checkpoint of one partition: its last round cleaned the
 * sealed segments below end, which then held bytes bytes. */
struct clean_mark {
	int64_t end;
	uint64_t bytes;
};

struct sb_topic {
	struct sb_logmgr *mgr;
	char *name;
	struct sb_topic_config cfg;
	struct sb_log **logs;
	struct sb_kvstore **kvs; /* NULL without key stores */
	struct clean_mark *cleaned; /* per partition: where the last cleaner round ended (kv worker's) */
	int refs; /* atomic */
	int deleted;
	char *deleted_dir; /* where its files went when deleted */
	struct sb_topic *next_reap;
	struct sb_topic_stats stats; /* atomic counters */
};

struct sb_logmgr {
	struct sb_vfs *vfs;
	struct sb_ioloop *loop;
	char data_dir[SB_PATH_MAX / 4], topics_dir[SB_PATH_MAX / 4];
	char creating_dir[SB_PATH_MAX / 4], deleting_dir[SB_PATH_MAX / 4];
	struct sb_topic_config defaults;
	int replicated;
	int has_kv;
	struct sb_kvstore_config kv;
	pthread_rwlock_t lock;      /* guards topics[] */
	pthread_mutex_t admin_lock; /* serialises create and delete */
	struct sb_topic **topics;   /* sorted by name */
	uint32_t ntopics, cap;
	uint64_t nonce;
	/* Reaper: frees deleted topics released on the loop thread. */
	pthread_mutex_t reap_lock;
	pthread_cond_t reap_cond;
	struct sb_topic *reap_head;
	int reap_stop, reaper_running;
	pthread_t reaper;
	/* Key-store worker (sb_kvstore_step on every partition). */
	pthread_mutex_t kv_lock;
	pthread_cond_t kv_cond;
	int kv_stop, kv_running;
	pthread_t kv_worker;
};

/* ---- topics ---- */

static void topic_destroy(struct sb_topic *t)
{
	struct sb_logmgr *mgr = t->mgr;
	for (int32_t p = 0; t->kvs && p < t->cfg.partitions; p++)
		sb_kvstore_close(t->kvs[p]); /* before its log: it reads the log */
	for (int32_t p = 0; t->logs && p < t->cfg.partitions; p++)
		sb_log_close(t->logs[p]);
	if (t->deleted && t->deleted_dir) {
		int rc = sb_vfs_remove_tree(mgr->vfs, t->deleted_dir);
		if (rc)
			SB_WARN("topic_remove_failed", "topic=%s dir=\"%s\" error=\"%s\"", t->name,
				t->deleted_dir, sb_strerror(rc));
		else
			SB_INFO("topic_removed", "topic=%s", t->name);
	}
	free(t->logs);
	free(t->kvs);
	free(t->cleaned);
	free(t->deleted_dir);
	free(t->name);
	free(t);
}

void sb_topic_release(struct sb_topic *t)
{
	if (!t || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	struct sb_logmgr *mgr = t->mgr;
	if (sb_ioloop_threaded(mgr->loop) && sb_ioloop_is_loop_thread(mgr->loop)) {
		/* Closing logs waits for the loop: never on the loop itself. */
		pthread_mutex_lock(&mgr->reap_lock);
		t->next_reap = mgr->reap_head;
		mgr->reap_head = t;
		pthread_cond_signal(&mgr->reap_cond);
		pthread_mutex_unlock(&mgr->reap_lock);
		return;
	}
	topic_destroy(t);
}

static void *reaper_main(void *arg)
{
	struct sb_logmgr *mgr = arg;
	pthread_mutex_lock(&mgr->reap_lock);
	for (;;) {
		while (!mgr->reap_head && !mgr->reap_stop)
			pthread_cond_wait(&mgr->reap_cond, &mgr->reap_lock);
		struct sb_topic *t = mgr->reap_head;
		if (!t)
			break;
		mgr->reap_head = t->next_reap;
		pthread_mutex_unlock(&mgr->reap_lock);
		topic_destroy(t);
		pthread_mutex_lock(&mgr->reap_lock);
	}
	pthread_mutex_unlock(&mgr->reap_lock);
	return NULL;
}

void sb_topic_count(struct sb_topic *t, int produced, int64_t records, int64_t bytes)
{
	int64_t *r = produced ? &t->stats.produced_records : &t->stats.consumed_records;
	int64_t *b = produced ? &t->stats.produced_bytes : &t->stats.consumed_bytes;
	__atomic_fetch_add(r, records, __ATOMIC_RELAXED);
	__atomic_fetch_add(b, bytes, __ATOMIC_RELAXED);
}

void sb_topic_stats(const struct sb_topic *t, struct sb_topic_stats *out)
{
	out->produced_records = __atomic_load_n(&t->stats.produced_records, __ATOMIC_RELAXED);
	out->produced_bytes = __atomic_load_n(&t->stats.produced_bytes, __ATOMIC_RELAXED);
	out->consumed_records = __atomic_load_n(&t->stats.consumed_records, __ATOMIC_RELAXED);
	out->consumed_bytes = __atomic_load_n(&t->stats.consumed_bytes, __ATOMIC_RELAXED);
}

const char *sb_topic_name(const struct sb_topic *t) { return t->name; }
const struct sb_topic_config *sb_topic_config(const struct sb_topic *t) { return &t->cfg; }
int32_t sb_topic_partitions(const struct sb_topic *t) { return t->cfg.partitions; }

int sb_topic_log(struct sb_topic *t, int32_t partition, struct sb_log **out)
{
	if (partition < 0 || partition >= t->cfg.partitions)
		return SB_ENOPARTITION;
	*out = t->logs[partition];
	return 0;
}

int sb_topic_kv(struct sb_topic *t, int32_t partition, struct sb_kvstore **out)
{
	if (partition < 0 || partition >= t->cfg.partitions)
		return SB_ENOPARTITION;
	if (!t->kvs)
		return SB_ENOTFOUND;
	*out = t->kvs[partition];
	return 0;
}

/* Opens every partition log of a topic whose directory is dir, and its key
 * store. */
static int topic_open_logs(struct sb_logmgr *mgr, struct sb_topic *t, const char *dir)
{
	char pdir[SB_PATH_MAX], lname[SB_TOPIC_NAME_MAX + 16];
	t->logs = calloc((size_t)t->cfg.partitions, sizeof *t->logs);
	if (!t->logs)
		return -ENOMEM;
	if (mgr->has_kv && !(t->kvs = calloc((size_t)t->cfg.partitions, sizeof *t->kvs))) {
		free(t->logs);
		t->logs = NULL;
		return -ENOMEM;
	}
	for (int32_t p = 0; p < t->cfg.partitions; p++) {
		int rc = sb_path_fmt(pdir, sizeof pdir, "%s/%d", dir, p);
		if (!rc)
			rc = sb_path_fmt(lname, sizeof lname, "%s/%d", t->name, p);
		if (!rc)
			rc = sb_vfs_mkdir_durable(mgr->vfs, pdir);
		struct sb_log_config lc = t->cfg.log;
		lc.hw_capped = mgr->replicated;
		if (!strcmp(t->cfg.cleanup_policy, "compact"))
			lc.retention_ms = lc.retention_bytes = -1; /* compaction alone: nothing expires */
		if (!rc)
			rc = sb_log_open(mgr->vfs, mgr->loop, pdir, lname, &lc, &t->logs[p]);
		if (!rc && t->kvs && (rc = sb_kvstore_open(mgr->vfs, t->logs[p], pdir, lname, &mgr->kv, &t->kvs[p])))
			sb_log_close(t->logs[p]);
		if (rc) {
			for (int32_t q = 0; q < p; q++) {
				if (t->kvs)
					sb_kvstore_close(t->kvs[q]);
				sb_log_close(t->logs[q]);
			}
			free(t->logs);
			free(t->kvs);
			t->logs = NULL;
			t->kvs = NULL;
			return rc;
		}
	}
	return 0;
}

static struct sb_topic *topic_new(struct sb_logmgr *mgr, const char *name, const struct sb_topic_config *cfg)
{
	struct sb_topic *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->name = strdup(name);
	if (!t->name) {
		free(t);
		return NULL;
	}
	t->mgr = mgr;
	t->cfg = *cfg;
	t->refs = 1; /* the manager's */
	return t;
}

/* Lock held: position of name in topics[] (or where it would go). */
static uint32_t topic_find(struct sb_logmgr *mgr, const char *name, int *found)
{
	uint32_t lo = 0, hi = mgr->ntopics;
	*found = 0;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp(mgr->topics[mid]->name, name);
		if (c == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Write lock held. */
static int topic_insert(struct sb_logmgr *mgr, struct sb_topic *t)
{
	int found;
	uint32_t at = topic_find(mgr, t->name, &found);
	if (found)
		return SB_EEXISTS;
	if (mgr->ntopics == mgr->cap) {
		uint32_t ncap = mgr->cap ? mgr->cap * 2 : 16;
		struct sb_topic **n = realloc(mgr->topics, ncap * sizeof *n);
		if (!n)
			return -ENOMEM;
		mgr->topics = n;
		mgr->cap = ncap;
	}
	memmove(mgr->topics + at + 1, mgr->topics + at, (mgr->ntopics - at) * sizeof *mgr->topics);
	mgr->topics[at] = t;
	mgr->ntopics++;
	return 0;
}

/* ---- opening ---- */

static int load_topic(struct sb_logmgr *mgr, const char *name)
{
	char dir[SB_PATH_MAX], path[SB_PATH_MAX];
	struct sb_topic_config cfg;
	struct sb_topic *t = NULL;
	void *text = NULL;
	size_t len = 0;
	int rc;

	sb_topic_config_default(&cfg);
	rc = sb_path_fmt(dir, sizeof dir, "%s/%s", mgr->topics_dir, name);
	if (!rc)
		rc = sb_path_fmt(path, sizeof path, "%s/topic.conf", dir);
	if (!rc)
		rc = sb_vfs_read_file(mgr->vfs, path, SB_CONFIG_FILE_BYTES_MAX, &text, &len);
	if (!rc)
		rc = sb_topic_config_parse(text, len, &cfg);
	free(text);
	if (rc) {
		SB_ERROR("topic_config_invalid", "topic=%s path=\"%s\" error=\"%s\"", name, path, sb_strerror(rc));
		return rc == SB_EBADCONFIG ? SB_ECORRUPT : rc;
	}
	t = topic_new(mgr, name, &cfg);
	if (!t)
		return -ENOMEM;
	rc = topic_open_logs(mgr, t, dir);
	if (!rc)
		rc = topic_insert(mgr, t);
	if (rc)
		topic_destroy(t);
	return rc;
}

static int load_entry(void *arg, const char *name, int is_dir)
{
	struct sb_logmgr *mgr = arg;
	if (!is_dir || !sb_topic_name_valid(name))
		return 0;
	return load_topic(mgr, name);
}

static int clear_entry(void *arg, const char *name, int is_dir)
{
	char **dirp = arg, path[SB_PATH_MAX];
	struct sb_logmgr *mgr = (struct sb_logmgr *)dirp[1];
	(void)is_dir;
	int rc = sb_path_fmt(path, sizeof path, "%s/%s", dirp[0], name);
	if (!rc)
		rc = sb_vfs_remove_tree(mgr->vfs, path);
	if (rc)
		SB_WARN("leftover_not_removed", "path=\"%s\" error=\"%s\"", path, sb_strerror(rc));
	return 0;
}

static int clear_dir(struct sb_logmgr *mgr, char *dir)
{
	char *args[2] = {dir, (char *)mgr};
	return mgr->vfs->ops->list_dir(mgr->vfs, dir, clear_entry, args);
}

static int open_dirs(struct sb_logmgr *mgr, const char *data_dir)
{
	snprintf(mgr->data_dir, sizeof mgr->data_dir, "%s", data_dir);
	snprintf(mgr->topics_dir, sizeof mgr->topics_dir, "%s/topics", data_dir);
	snprintf(mgr->creating_dir, sizeof mgr->creating_dir, "%s/creating", data_dir);
	snprintf(mgr->deleting_dir, sizeof mgr->deleting_dir, "%s/deleting", data_dir);
	int rc = sb_vfs_mkdir_durable(mgr->vfs, mgr->topics_dir);
	if (!rc)
		rc = sb_vfs_mkdir_durable(mgr->vfs, mgr->creating_dir);
	if (!rc)
		rc = sb_vfs_mkdir_durable(mgr->vfs, mgr->deleting_dir);
	if (!rc)
		rc = clear_dir(mgr, mgr->creating_dir);
	if (!rc)
		rc = clear_dir(mgr, mgr->deleting_dir);
	return rc;
}

/* The key-store worker: steps every partition's store, at once again while
 * there is work, else every SB_KV_WORKER_IDLE_MS; every
 * cleaner_interval_ms it also runs the log cleaner over compacted topics. */
#define SB_KV_WORKER_IDLE_MS 50
#define SB_KV_WORKER_NICE 10
#define SB_CLEAN_SEGMENTS_MAX 4096

int sb_topic_compacted(const struct sb_topic *t)
{
	return strstr(t->cfg.cleanup_policy, "compact") != NULL;
}

struct keep_ctx {
	struct sb_kvstore *kv;
	int64_t now_ms;
};

static int keep_record(void *arg, const struct sb_record_view *r)
{
	struct keep_ctx *k = arg;
	return sb_kvstore_keep(k->kv, r, k->now_ms);
}

/* One cleaner round over partition p of t: every sealed segment below the
 * readable end is rewritten without the records its key store shadows. A
 * round reads all of them, so it runs only when the sealed bytes past the
 * previous round's end (the dirty part) reach half of what that round left
 * (the clean part), as Kafka's min.cleanable.dirty.ratio of 0.5: the
 * cleaner's reading stays proportional to what is appended. */
static void clean_partition(struct sb_logmgr *mgr, struct sb_topic *t, int32_t p)
{
	int64_t *bases = malloc(SB_CLEAN_SEGMENTS_MAX * sizeof *bases);
	uint64_t *sizes = malloc(SB_CLEAN_SEGMENTS_MAX * sizeof *sizes), dirty = 0, clean = 0;
	uint32_t n = 0;
	struct keep_ctx k = {t->kvs[p], sb_wall_ms()};
	int rc = 0;
	(void)mgr;
	if (!t->cleaned)
		t->cleaned = calloc((size_t)t->cfg.partitions, sizeof *t->cleaned);
	if (!bases || !sizes || !t->cleaned)
		goto out;
	struct clean_mark *m = &t->cleaned[p];
	rc = sb_log_sealed_bases(t->logs[p], bases, sizes, SB_CLEAN_SEGMENTS_MAX, &n);
	for (uint32_t i = 0; i < n; i++)
		dirty += bases[i] >= m->end ? sizes[i] : 0;
	if (dirty == 0 || 2 * dirty < m->bytes)
		goto out; /* not dirty enough yet */
	/* The store first takes in everything readable, so that it knows the
	 * newest version of every key in these segments. */
	rc = sb_kvstore_step(t->kvs[p], k.now_ms);
	for (uint32_t i = 0; rc >= 0 && i < n; i++) {
		struct sb_clean_stats st;
		rc = sb_log_rewrite_sealed(t->logs[p], bases[i], keep_record, &k, &st);
		if (rc == 0)
			clean += st.records_dropped ? st.bytes_after : st.bytes_before;
		else if (rc == SB_ENOTFOUND)
			rc = 0; /* retention took it */
	}
	if (rc < 0) {
		SB_LOG_RATELIMITED(SB_LEVEL_WARN, 10000, "clean_failed", "topic=%s partition=%d error=\"%s\"", t->name, p,
				   sb_strerror(rc));
		goto out;
	}
	struct sb_log_info li;
	sb_log_info(t->logs[p], &li);
	m->end = (int64_t)li.active_base; /* every sealed segment below the readable end was cleaned */
	if (n)
		m->end = bases[n - 1] + 1; /* past the last one cleaned: the next sealed one is dirty */
	m->bytes = clean;
out:
	free(bases);
	free(sizes);
}

static void *kv_worker_main(void *arg)
{
	struct sb_logmgr *mgr = arg;
	struct sb_topic **ts = NULL;
	uint32_t cap = 0;
	int64_t last_clean = sb_mono_ms();
	/* Background work: when the CPU is short, appends, replication and
	 * reads go first (Linux nice values are per thread). Lookups apply what
	 * they need themselves, so a lagging worker costs only their latency. */
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), SB_KV_WORKER_NICE) != 0)
		SB_DEBUG("kv_worker_nice_failed", "errno=%d", errno);
	for (;;) {
		uint32_t n = 0;
		int busy = 0;
		int clean = mgr->kv.cleaner_interval_ms > 0 && sb_mono_ms() - last_clean >= mgr->kv.cleaner_interval_ms;
		if (clean)
			last_clean = sb_mono_ms();
		pthread_rwlock_rdlock(&mgr->lock);
		if (mgr->ntopics > cap) {
			struct sb_topic **g = realloc(ts, mgr->ntopics * sizeof *g);
			if (g) {
				ts = g;
				cap = mgr->ntopics;
			}
		}
		for (uint32_t i = 0; i < mgr->ntopics && i < cap; i++) {
			ts[n] = mgr->topics[i];
			__atomic_fetch_add(&ts[n++]->refs, 1, __ATOMIC_RELAXED);
		}
		pthread_rwlock_unlock(&mgr->lock);
		for (uint32_t i = 0; i < n; i++) {
			for (int32_t p = 0; ts[i]->kvs && p < ts[i]->cfg.partitions; p++) {
				busy |= sb_kvstore_step(ts[i]->kvs[p], sb_wall_ms()) > 0;
				if (clean && sb_topic_compacted(ts[i]) && !ts[i]->deleted)
					clean_partition(mgr, ts[i], p);
			}
			sb_topic_release(ts[i]);
		}
		pthread_mutex_lock(&mgr->kv_lock);
		if (!busy && !mgr->kv_stop) {
			struct timespec until = sb_deadline_in_ms(SB_KV_WORKER_IDLE_MS);
			pthread_cond_timedwait(&mgr->kv_cond, &mgr->kv_lock, &until);
		}
		int stop = mgr->kv_stop;
		pthread_mutex_unlock(&mgr->kv_lock);
		if (stop)
			break;
	}
	free(ts);
	return NULL;
}

int sb_logmgr_open(const struct sb_logmgr_options *opt, struct sb_logmgr **out)
{
	struct sb_logmgr *mgr = NULL;
	struct sb_aio *aio = opt->aio;
	int rc = sb_topic_config_check(&opt->defaults);

	if (rc)
		return rc;
	if (strlen(opt->data_dir) >= SB_PATH_MAX / 4 - 64)
		return SB_EBADCONFIG;
	mgr = calloc(1, sizeof *mgr);
	if (!mgr)
		return -ENOMEM;
	mgr->vfs = opt->vfs ? opt->vfs : sb_vfs_posix();
	mgr->defaults = opt->defaults;
	mgr->replicated = opt->replicated;
	if (opt->kv) {
		mgr->has_kv = 1;
		mgr->kv = *opt->kv;
	}
	pthread_mutex_init(&mgr->kv_lock, NULL);
	pthread_cond_init(&mgr->kv_cond, NULL);
	pthread_rwlock_init(&mgr->lock, NULL);
	pthread_mutex_init(&mgr->admin_lock, NULL);
	pthread_mutex_init(&mgr->reap_lock, NULL);
	pthread_cond_init(&mgr->reap_cond, NULL);
	if (!aio && (rc = sb_aio_open(opt->io_kind, &aio)) != 0)
		goto fail;
	rc = sb_ioloop_new(aio, 10, &mgr->loop);
	if (rc) {
		aio->ops->destroy(aio);
		goto fail;
	}
	if (opt->threaded) {
		rc = sb_ioloop_start(mgr->loop);
		if (!rc) {
			rc = -pthread_create(&mgr->reaper, NULL, reaper_main, mgr);
			mgr->reaper_running = rc == 0;
		}
		if (rc)
			goto fail;
	}
	rc = open_dirs(mgr, opt->data_dir);
	if (!rc)
		rc = mgr->vfs->ops->list_dir(mgr->vfs, mgr->topics_dir, load_entry, mgr);
	if (!rc && opt->threaded && mgr->has_kv) {
		rc = -pthread_create(&mgr->kv_worker, NULL, kv_worker_main, mgr);
		mgr->kv_running = rc == 0;
	}
	if (rc)
		goto fail;
	SB_INFO("storage_opened", "data_dir=\"%s\" topics=%u io=%s", opt->data_dir, mgr->ntopics,
		sb_logmgr_io_name(mgr));
	*out = mgr;
	return 0;
fail:
	SB_ERROR("storage_open_failed", "data_dir=\"%s\" error=\"%s\"", opt->data_dir, sb_strerror(rc));
	sb_logmgr_close(mgr);
	return rc;
}

/* Sets *stop under lock, wakes the thread waiting on cond and joins it. */
static void stop_thread(pthread_mutex_t *lock, pthread_cond_t *cond, int *stop, pthread_t th)
{
	pthread_mutex_lock(lock);
	*stop = 1;
	pthread_cond_signal(cond);
	pthread_mutex_unlock(lock);
	pthread_join(th, NULL);
}

void sb_logmgr_close(struct sb_logmgr *mgr)
{
	if (!mgr)
		return;
	if (mgr->kv_running)
		stop_thread(&mgr->kv_lock, &mgr->kv_cond, &mgr->kv_stop, mgr->kv_worker);
	for (uint32_t i = 0; i < mgr->ntopics; i++)
		sb_topic_release(mgr->topics[i]);
	mgr->ntopics = 0;
	if (mgr->reaper_running)
		stop_thread(&mgr->reap_lock, &mgr->reap_cond, &mgr->reap_stop, mgr->reaper);
	if (mgr->loop)
		sb_ioloop_free(mgr->loop);
	free(mgr->topics);
	pthread_rwlock_destroy(&mgr->lock);
	pthread_mutex_destroy(&mgr->admin_lock);
	pthread_mutex_destroy(&mgr->reap_lock);
	pthread_cond_destroy(&mgr->reap_cond);
	pthread_mutex_destroy(&mgr->kv_lock);
	pthread_cond_destroy(&mgr->kv_cond);
	free(mgr);
}

const char *sb_logmgr_io_name(struct sb_logmgr *mgr) { return sb_ioloop_aio(mgr->loop)->ops->name; }
struct sb_ioloop *sb_logmgr_loop(struct sb_logmgr *mgr) { return mgr->loop; }

/* ---- admin ---- */

/* Fills fields left 0/empty from the manager's defaults. */
static void merge_defaults(const struct sb_logmgr *mgr, const struct sb_topic_config *in,
			   struct sb_topic_config *out)
{
	const struct sb_topic_config *d = &mgr->defaults;
	*out = *in;
	if (!out->partitions)
		out->partitions = d->partitions;
	if (!out->replication_factor)
		out->replication_factor = d->replication_factor;
	if (!out->min_insync_replicas)
		out->min_insync_replicas = d->min_insync_replicas;
	if (!out->cleanup_policy[0])
		memcpy(out->cleanup_policy, d->cleanup_policy, sizeof out->cleanup_policy);
	if (!out->log.segment_bytes)
		out->log.segment_bytes = d->log.segment_bytes;
	if (!out->log.segment_ms)
		out->log.segment_ms = d->log.segment_ms;
	if (!out->log.index_interval_bytes)
		out->log.index_interval_bytes = d->log.index_interval_bytes;
	if (out->log.fsync_policy == SB_FSYNC_DEFAULT)
		out->log.fsync_policy = d->log.fsync_policy;
	if (!out->log.fsync_interval_ms)
		out->log.fsync_interval_ms = d->log.fsync_interval_ms;
	if (!out->log.retention_bytes)
		out->log.retention_bytes = d->log.retention_bytes;
	if (!out->log.retention_ms)
		out->log.retention_ms = d->log.retention_ms;
	if (!out->log.inflight_bytes_max)
		out->log.inflight_bytes_max = d->log.inflight_bytes_max;
}

/* Builds the topic under creating/ and renames it into topics/. */
static int create_files(struct sb_logmgr *mgr, const char *name, const struct sb_topic_config *cfg)
{
	char tmp[SB_PATH_MAX], dst[SB_PATH_MAX], pdir[SB_PATH_MAX], text[1024];
	int n = sb_topic_config_format(cfg, text, sizeof text);
	int rc = n < 0 ? n : 0;

	if (!rc)
		rc = sb_path_fmt(tmp, sizeof tmp, "%s/%s", mgr->creating_dir, name);
	if (!rc)
		rc = sb_path_fmt(dst, sizeof dst, "%s/%s", mgr->topics_dir, name);
	if (!rc) {
		int r = sb_vfs_remove_tree(mgr->vfs, tmp);
		(void)r; /* a leftover from an interrupted create, if any */
		rc = mgr->vfs->ops->mkdir(mgr->vfs, tmp, 0755);
	}
	for (int32_t p = 0; !rc && p < cfg->partitions; p++) {
		rc = sb_path_fmt(pdir, sizeof pdir, "%s/%d", tmp, p);
		if (!rc)
			rc = mgr->vfs->ops->mkdir(mgr->vfs, pdir, 0755);
	}
	if (!rc)
		rc = sb_vfs_write_file_durable(mgr->vfs, tmp, "topic.conf", text, (size_t)n);
	if (!rc)
		rc = mgr->vfs->ops->sync_dir(mgr->vfs, mgr->creating_dir);
	if (!rc)
		rc = mgr->vfs->ops->rename(mgr->vfs, tmp, dst);
	if (!rc)
		rc = mgr->vfs->ops->sync_dir(mgr->vfs, mgr->topics_dir);
	if (!rc)
		rc = mgr->vfs->ops->sync_dir(mgr->vfs, mgr->creating_dir);
	return rc;
}

int sb_logmgr_create_topic(struct sb_logmgr *mgr, const char *name, const struct sb_topic_config *in)
{
	char dir[SB_PATH_MAX];
	struct sb_topic_config cfg;
	struct sb_topic *t = NULL;
	int found, rc;

	if (!sb_topic_name_valid(name))
		return SB_EBADNAME;
	merge_defaults(mgr, in, &cfg);
	while (!cfg.id && getrandom(&cfg.id, sizeof cfg.id, 0) != sizeof cfg.id) {
		if (errno != EINTR) { /* no entropy source: the clocks still tell incarnations apart */
			cfg.id = (uint64_t)sb_wall_ms() << 20 ^ (uint64_t)sb_mono_ns();
			break;
		}
	}
	rc = sb_topic_config_check(&cfg);
	if (rc)
		return rc;
	pthread_mutex_lock(&mgr->admin_lock);
	pthread_rwlock_rdlock(&mgr->lock);
	topic_find(mgr, name, &found);
	uint32_t count = mgr->ntopics;
	pthread_rwlock_unlock(&mgr->lock);
	if (found)
		rc = SB_EEXISTS;
	else if (count >= SB_TOPICS_MAX)
		rc = SB_ETOOBIG;
	if (!rc)
		rc = create_files(mgr, name, &cfg);
	if (!rc && !(t = topic_new(mgr, name, &cfg)))
		rc = -ENOMEM;
	if (!rc)
		rc = sb_path_fmt(dir, sizeof dir, "%s/%s", mgr->topics_dir, name);
	if (!rc)
		rc = topic_open_logs(mgr, t, dir);
	if (!rc) {
		pthread_rwlock_wrlock(&mgr->lock);
		rc = topic_insert(mgr, t);
		pthread_rwlock_unlock(&mgr->lock);
	}
	if (rc && t)
		topic_destroy(t);
	pthread_mutex_unlock(&mgr->admin_lock);
	if (!rc)
		SB_INFO("topic_created", "topic=%s partitions=%d fsync=%s", name, cfg.partitions,
			sb_fsync_policy_name(cfg.log.fsync_policy));
	return rc;
}

int sb_logmgr_delete_topic(struct sb_logmgr *mgr, const char *name)
{
	char src[SB_PATH_MAX], dst[SB_PATH_MAX];
	struct sb_topic *t = NULL;
	int found, rc = 0;

	if (!sb_topic_name_valid(name))
		return SB_EBADNAME;
	pthread_mutex_lock(&mgr->admin_lock);
	pthread_rwlock_wrlock(&mgr->lock);
	uint32_t at = topic_find(mgr, name, &found);
	if (found) {
		t = mgr->topics[at];
		memmove(mgr->topics + at, mgr->topics + at + 1, (mgr->ntopics - at - 1) * sizeof *mgr->topics);
		mgr->ntopics--;
	}
	pthread_rwlock_unlock(&mgr->lock);
	if (!t) {
		pthread_mutex_unlock(&mgr->admin_lock);
		return SB_ENOTOPIC;
	}
	rc = sb_path_fmt(src, sizeof src, "%s/%s", mgr->topics_dir, name);
	if (!rc)
		rc = sb_path_fmt(dst, sizeof dst, "%s/%s.%" PRIu64, mgr->deleting_dir, name, ++mgr->nonce);
	if (!rc)
		rc = mgr->vfs->ops->rename(mgr->vfs, src, dst);
	if (!rc)
		rc = mgr->vfs->ops->sync_dir(mgr->vfs, mgr->topics_dir);
	if (!rc)
		rc = mgr->vfs->ops->sync_dir(mgr->vfs, mgr->deleting_dir);
	t->deleted = 1;
	t->deleted_dir = strdup(dst);
	pthread_mutex_unlock(&mgr->admin_lock);
	SB_INFO("topic_deleted", "topic=%s", name);
	sb_topic_release(t); /* files go when the last reader lets go */
	return rc;
}

int sb_logmgr_list_topics(struct sb_logmgr *mgr,
			  int (*cb)(void *arg, const char *name, const struct sb_topic_config *cfg), void *arg)
{
	int rc = 0;
	pthread_rwlock_rdlock(&mgr->lock);
	for (uint32_t i = 0; i < mgr->ntopics && !rc; i++)
		rc = cb(arg, mgr->topics[i]->name, &mgr->topics[i]->cfg);
	pthread_rwlock_unlock(&mgr->lock);
	return rc;
}

void sb_logmgr_health(struct sb_logmgr *mgr, struct sb_storage_health *out)
{
	memset(out, 0, sizeof *out);
	pthread_rwlock_rdlock(&mgr->lock);
	for (uint32_t i = 0; i < mgr->ntopics; i++) {
		struct sb_topic *t = mgr->topics[i];
		for (int32_t p = 0; p < t->cfg.partitions; p++) {
			struct sb_log_info info;
			sb_log_info(t->logs[p], &info);
			out->logs++;
			out->failed_logs += info.failed && !info.full;
			out->full_logs += info.full;
			if (info.io_wait_ms > out->io_wait_ms)
				out->io_wait_ms = info.io_wait_ms;
		}
	}
	pthread_rwlock_unlock(&mgr->lock);
}

int sb_logmgr_acquire(struct sb_logmgr *mgr, const char *name, struct sb_topic **out)
{
	int found;
	if (!sb_topic_name_valid(name))
		return SB_EBADNAME;
	pthread_rwlock_rdlock(&mgr->lock);
	uint32_t at = topic_find(mgr, name, &found);
	if (found) {
		*out = mgr->topics[at];
		__atomic_fetch_add(&(*out)->refs, 1, __ATOMIC_RELAXED);
	}
	pthread_rwlock_unlock(&mgr->lock);
	return found ? 0 : SB_ENOTOPIC;
}
