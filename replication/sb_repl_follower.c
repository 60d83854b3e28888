/* sb_repl_follower.c - a follower's thread: keeps one Follow stream open to
 * the leader, mirrors its topic list, appends the leader's batches byte for
 * byte (sb_log_append_replica, rolling segments where the leader rolled),
 * caps its own readers at the leader's high watermark, and acknowledges its
 * durable end as appends complete. A broken stream is reopened with
 * back-off; the hello then says where this node stands again.
 *
 * Threads: everything runs on this thread except the append callbacks (I/O
 * loop), which publish the durable end and wake this thread through
 * sbc_call_wake. Parts are only freed when no append is in flight. */
#include "sb_repl_internal.h"

#include "client.h"
#include "sb_batch.h"
#include "sb_crc32c.h"
#include "sb_mutant.h"
#include "sb_path.h"
#include "sb_vfs.h"
#include "sb_logging.h"
#include "sb_logmgr.h"
#include "sb_time.h"
#include "streambus/v1/streambus.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FOLLOW_METHOD "/streambus.v1.Replication/Follow"
#define CONNECT_TIMEOUT_S 5.0

struct fol_part {
	char topic[SB_TOPIC_NAME_MAX + 1];
	int32_t partition;
	struct sb_topic *t;
	struct sb_log *log;
	int64_t acked; /* atomic: durable end (append callbacks) */
	int64_t sent;  /* acked as last sent to the leader */
	int64_t leader_end; /* the leader's acknowledged end, as last seen */
	/* A whole segment being received (stage_base >= 0). */
	int64_t stage_base;
	uint64_t stage_have;
	uint32_t stage_crc;
	int stage_fd;
};

struct sb_repl_follower {
	struct sb_repl *r;
	int stop;                 /* atomic */
	int verified;             /* the start-up check of sealed segments ran */
	struct fol_part **parts;  /* sorted by (topic, partition) */
	uint32_t nparts;
	int inflight;             /* atomic: replica appends not yet called back */
	pthread_mutex_t wake_lock;
	struct sbc_call *k;       /* the live call, for wakes and stop */
	int64_t last_sent_ms;     /* follow thread: the last FollowRequest went out then */
};

struct app {
	struct sb_repl_follower *f;
	struct fol_part *p;
	int64_t end;
};

/* ---- local partitions ---- */

static int cmp_part(const void *a, const void *b)
{
	const struct fol_part *x = *(const struct fol_part *const *)a, *y = *(const struct fol_part *const *)b;
	int c = strcmp(x->topic, y->topic);
	return c ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

static struct fol_part *find_part(struct sb_repl_follower *f, const char *topic, int32_t partition)
{
	struct fol_part key, *kp = &key;
	if (strlen(topic) > SB_TOPIC_NAME_MAX || !f->nparts)
		return NULL;
	snprintf(key.topic, sizeof key.topic, "%s", topic);
	key.partition = partition;
	struct fol_part **hit = bsearch(&kp, f->parts, f->nparts, sizeof *f->parts, cmp_part);
	return hit ? *hit : NULL;
}

static void stage_close(struct fol_part *p)
{
	struct sb_vfs *vfs = sb_vfs_posix();
	if (p->stage_fd >= 0)
		vfs->ops->close(vfs, p->stage_fd);
	p->stage_fd = -1;
	p->stage_base = -1;
}

static void free_parts(struct fol_part **v, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		stage_close(v[i]); /* a staged prefix stays on disk for the next hello */
		sb_topic_release(v[i]->t);
		free(v[i]);
	}
	free(v);
}

struct namelist {
	char **v;
	uint32_t n, cap;
};

static int add_name(void *arg, const char *name, const struct sb_topic_config *cfg)
{
	struct namelist *l = arg;
	(void)cfg;
	if (l->n == l->cap) {
		uint32_t cap = l->cap ? l->cap * 2 : 32;
		char **v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	return (l->v[l->n++] = strdup(name)) ? 0 : -ENOMEM;
}

static void free_names(struct namelist *l)
{
	for (uint32_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

/* Rebuilds the partition table from the topics on disk, keeping each
 * survivor's progress. Only with no append in flight. 0 or -ENOMEM. */
static int refresh_parts(struct sb_repl_follower *f)
{
	struct namelist nl = {0};
	struct fol_part **v = NULL;
	uint32_t n = 0, cap = 0;
	int rc = sb_logmgr_list_topics(f->r->mgr, add_name, &nl);
	for (uint32_t i = 0; i < nl.n && !rc; i++) {
		for (int32_t p = 0;; p++) {
			struct sb_topic *t;
			struct fol_part *fp;
			if (sb_logmgr_acquire(f->r->mgr, nl.v[i], &t))
				break;
			if (p >= sb_topic_partitions(t)) {
				sb_topic_release(t);
				break;
			}
			if (n == cap) {
				struct fol_part **nv = realloc(v, (cap ? cap * 2 : 64) * sizeof *nv);
				if (!nv) {
					sb_topic_release(t);
					rc = -ENOMEM;
					break;
				}
				v = nv;
				cap = cap ? cap * 2 : 64;
			}
			if (!(fp = calloc(1, sizeof *fp)) || sb_topic_log(t, p, &fp->log)) {
				free(fp);
				sb_topic_release(t);
				rc = fp ? 0 : -ENOMEM;
				break;
			}
			fp->t = t;
			sb_log_set_follower(fp->log, 1);
			fp->stage_fd = -1;
			fp->stage_base = -1;
			snprintf(fp->topic, sizeof fp->topic, "%s", nl.v[i]);
			fp->partition = p;
			struct sb_log_info li;
			sb_log_info(fp->log, &li);
			fp->acked = fp->sent = li.stable_end;
			struct fol_part *old = find_part(f, fp->topic, p);
			if (old) {
				fp->acked = old->acked;
				fp->sent = old->sent;
				fp->leader_end = old->leader_end;
			} else {
				fp->sent = -1; /* new here: the leader hears where it stands */
			}
			v[n++] = fp;
		}
	}
	free_names(&nl);
	if (rc) {
		free_parts(v, n);
		return rc;
	}
	free_parts(f->parts, f->nparts);
	f->parts = v; /* names come sorted from the manager, partitions in order */
	f->nparts = n;
	return 0;
}

static void wait_appends(struct sb_repl_follower *f)
{
	while (__atomic_load_n(&f->inflight, __ATOMIC_ACQUIRE) > 0)
		usleep(200);
}

/* Creates the leader's topics that are missing here, deletes the ones the
 * leader no longer has, then rebuilds the partition table. */
static int apply_topics(struct sb_repl_follower *f, const Streambus__V1__FollowResponse *m)
{
	struct namelist local = {0};
	int rc;
	wait_appends(f);
	free_parts(f->parts, f->nparts); /* drop our references before deleting */
	f->parts = NULL;
	f->nparts = 0;
	rc = sb_logmgr_list_topics(f->r->mgr, add_name, &local);
	for (size_t i = 0; i < m->n_topics && !rc; i++) {
		const Streambus__V1__ReplicaTopic *t = m->topics[i];
		struct sb_topic *have;
		struct sb_topic_config cfg;
		sb_topic_config_default(&cfg);
		rc = sb_topic_config_parse(t->config, strlen(t->config), &cfg);
		if (rc)
			break;
		if (sb_logmgr_acquire(f->r->mgr, t->name, &have) == 0) {
			uint64_t id = sb_topic_config(have)->id;
			sb_topic_release(have);
			if (id == cfg.id)
				continue;
			/* Same name, another incarnation: the leader deleted and
			 * re-created it while we were not looking. */
			rc = sb_logmgr_delete_topic(f->r->mgr, t->name);
			SB_INFO("replica_topic_deleted", "topic=%s reason=recreated local_id=%016" PRIx64
				" leader_id=%016" PRIx64 " result=\"%s\"", t->name, id, cfg.id, rc ? sb_strerror(rc) : "ok");
			if (rc)
				break;
		}
		rc = sb_logmgr_create_topic(f->r->mgr, t->name, &cfg);
		SB_INFO("replica_topic_created", "topic=%s id=%016" PRIx64 " result=\"%s\"", t->name, cfg.id,
			rc ? sb_strerror(rc) : "ok");
	}
	for (uint32_t i = 0; i < local.n && !rc; i++) {
		int keep = 0;
		for (size_t k = 0; k < m->n_topics && !keep; k++)
			keep = strcmp(local.v[i], m->topics[k]->name) == 0;
		if (keep)
			continue;
		rc = sb_logmgr_delete_topic(f->r->mgr, local.v[i]);
		SB_INFO("replica_topic_deleted", "topic=%s result=\"%s\"", local.v[i], rc ? sb_strerror(rc) : "ok");
		if (rc == SB_ENOTOPIC)
			rc = 0;
	}
	free_names(&local);
	int rc2 = refresh_parts(f);
	return rc ? rc : rc2;
}

/* ---- appends ---- */

static void on_appended(void *arg, int64_t base, int result)
{
	struct app *a = arg;
	struct sb_repl_follower *f = a->f;
	(void)base;
	if (result == 0)
		__atomic_store_n(&a->p->acked, a->end, __ATOMIC_RELEASE); /* FIFO per log: only grows */
	else
		SB_ERROR("replica_append_failed", "topic=%s partition=%d end=%" PRId64 " error=\"%s\"", a->p->topic,
			 a->p->partition, a->end, sb_strerror(result));
	pthread_mutex_lock(&f->wake_lock);
	if (f->k)
		sbc_call_wake(f->k);
	pthread_mutex_unlock(&f->wake_lock);
	free(a);
	__atomic_sub_fetch(&f->inflight, 1, __ATOMIC_ACQ_REL);
}

/* End offset of whole batches data[0..len), or -1 if they do not parse. */
static int64_t batches_end(const uint8_t *data, size_t len)
{
	int64_t end = -1;
	for (size_t at = 0; at < len;) {
		struct sb_batch_header h;
		if (sb_batch_parse_header(data + at, len - at, &h))
			return -1;
		end = sb_batch_next_offset(&h);
		at += (size_t)sb_batch_total_bytes(&h);
	}
	return end;
}

/* Reads the staged prefix of p's segment at base (a resumed copy): its size
 * and CRC. Leaves the file open for more. 0, or -errno (then nothing is
 * staged and the file is removed). */
static int stage_reopen(struct fol_part *p, int64_t base)
{
	struct sb_vfs *vfs = sb_vfs_posix();
	char file[SB_PATH_MAX];
	uint8_t *buf = malloc(1u << 20);
	uint64_t size = 0;
	int rc = buf ? 0 : -ENOMEM;
	sb_log_replica_path(p->log, base, NULL, file);
	int fd = rc ? -ENOMEM : vfs->ops->open(vfs, file, O_RDWR, 0);
	if (fd < 0) {
		free(buf);
		return fd;
	}
	rc = vfs->ops->fsize(vfs, fd, &size);
	p->stage_crc = 0;
	for (uint64_t at = 0; !rc && at < size;) {
		size_t n = size - at < (1u << 20) ? (size_t)(size - at) : (1u << 20);
		rc = sb_vfs_read_all(vfs, fd, buf, n, at);
		if (!rc)
			p->stage_crc = sb_crc32c_extend(p->stage_crc, buf, n);
		at += n;
	}
	free(buf);
	if (rc || size == 0) {
		vfs->ops->close(vfs, fd);
		(void)vfs->ops->unlink(vfs, file);
		return rc ? rc : -ENOENT;
	}
	p->stage_fd = fd;
	p->stage_base = base;
	p->stage_have = size;
	return 0;
}

/* One chunk of a whole segment: staged in <partition>/replica/, checked and
 * installed when complete (sb_log_install_segment). */
static int take_chunk(struct sb_repl_follower *f, struct fol_part *p, const Streambus__V1__SegmentChunk *c)
{
	struct sb_vfs *vfs = sb_vfs_posix();
	char dir[SB_PATH_MAX], file[SB_PATH_MAX];
	int rc = 0;
	sb_log_replica_path(p->log, c->base_offset, dir, file);
	if (c->position == 0) {
		stage_close(p);
		rc = sb_vfs_mkdir_durable(vfs, dir);
		int fd = rc ? rc : vfs->ops->open(vfs, file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			return fd;
		p->stage_fd = fd;
		p->stage_base = c->base_offset;
		p->stage_have = 0;
		p->stage_crc = 0;
	} else if (p->stage_base < 0 && stage_reopen(p, c->base_offset) == 0 &&
		   p->stage_have == (uint64_t)c->position) {
		/* resumed: the partition table was rebuilt since the hello */
	} else if (p->stage_base != c->base_offset || p->stage_have != (uint64_t)c->position) {
		SB_WARN("replica_chunk_out_of_place", "topic=%s partition=%d base=%" PRId64 " position=%" PRId64
			" staged_base=%" PRId64 " staged=%" PRIu64, p->topic, p->partition, c->base_offset, c->position,
			p->stage_base, p->stage_have);
		return SB_EINVAL; /* the next hello says what is staged */
	}
	if (c->file_size < 0 || c->file_size > (int64_t)SB_SEGMENT_BYTES_MAX ||
	    p->stage_have + c->data.len > (uint64_t)c->file_size)
		return SB_EINVAL; /* never stage more than the file the leader announced */
	rc = sb_vfs_write_all(vfs, p->stage_fd, c->data.data, c->data.len, p->stage_have);
	if (rc)
		return rc;
	p->stage_have += c->data.len;
	p->stage_crc = sb_crc32c_extend(p->stage_crc, c->data.data, c->data.len);
	if (p->stage_have < (uint64_t)c->file_size)
		return 0;
	rc = vfs->ops->datasync(vfs, p->stage_fd);
	stage_close(p);
	if (rc)
		return rc;
	if (p->stage_crc != c->crc32c) {
		(void)vfs->ops->unlink(vfs, file);
		SB_ERROR("replica_segment_checksum", "topic=%s partition=%d base=%" PRId64 " hint=\"fetched again\"",
			 p->topic, p->partition, c->base_offset);
		return SB_ECORRUPT;
	}
	wait_appends(f);
	rc = sb_log_install_segment(p->log, c->base_offset);
	if (rc)
		return rc;
	__atomic_store_n(&p->acked, c->next_offset, __ATOMIC_RELEASE);
	return 0;
}

/* Appends one ReplicaData. 0, or an error that ends the session. */
static int take_data(struct sb_repl_follower *f, const Streambus__V1__ReplicaData *d)
{
	struct fol_part *p = find_part(f, d->topic, d->partition);
	struct sb_log_info li;
	int rc = 0;
	if (!p) {
		SB_LOG_RATELIMITED(SB_LEVEL_WARN, 1000, "replica_unknown_partition", "topic=%s partition=%d",
				   d->topic, d->partition);
		return 0;
	}
	if (d->segment) {
		rc = take_chunk(f, p, d->segment);
		if (rc)
			return rc;
	} else if (d->batches.len) {
		int64_t end = batches_end(d->batches.data, d->batches.len);
		if (end < 0)
			return SB_EBADBATCH;
		sb_log_info(p->log, &li);
		/* Roll where the leader rolled, so segment files match: once what
		 * belongs to the previous segment is written (a roll seals at the
		 * written end). */
		if ((int64_t)li.active_base < d->segment_base && li.next_offset == d->segment_base &&
		    li.next_offset > (int64_t)li.active_base) {
			wait_appends(f);
			rc = sb_log_roll(p->log);
			if (rc)
				return rc;
		}
		struct app *a = malloc(sizeof *a);
		if (!a)
			return -ENOMEM;
		*a = (struct app){f, p, end};
		__atomic_add_fetch(&f->inflight, 1, __ATOMIC_ACQ_REL);
		while ((rc = sb_log_append_replica(p->log, d->batches.data, d->batches.len, on_appended, a)) == SB_EBUSY &&
		       !__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE))
			usleep(500); /* the log's in-flight bound: let the disk catch up */
		if (!rc && sb_mutant(SB_MUTANT_FOLLOWER_EARLY_ACK))
			__atomic_store_n(&p->acked, end, __ATOMIC_RELEASE); /* the bug: not durable yet */
		if (rc) {
			__atomic_sub_fetch(&f->inflight, 1, __ATOMIC_ACQ_REL);
			free(a);
			SB_ERROR("replica_append_refused", "topic=%s partition=%d error=\"%s\"", p->topic, p->partition,
				 sb_strerror(rc));
			return rc;
		}
	}
	sb_log_set_hw_cap(p->log, d->high_watermark);
	p->leader_end = d->log_end_offset;
	return 0;
}

/* Cuts a partition back to where the leader says the logs part. */
static int take_truncation(struct sb_repl_follower *f, const Streambus__V1__ReplicaTruncation *t)
{
	struct fol_part *p = find_part(f, t->topic, t->partition);
	if (!p)
		return 0;
	wait_appends(f);
	int rc = sb_log_truncate(p->log, t->offset);
	SB_WARN("replica_truncated", "topic=%s partition=%d to=%" PRId64 " result=\"%s\"", p->topic,
		p->partition, t->offset, rc ? sb_strerror(rc) : "ok");
	if (!rc)
		p->acked = p->sent = t->offset;
	return rc;
}

/* Records behind the leader's end, over every partition (as last seen). */
static int64_t lag(const struct sb_repl_follower *f)
{
	int64_t n = 0;
	for (uint32_t i = 0; i < f->nparts; i++) {
		int64_t d = f->parts[i]->leader_end - __atomic_load_n(&f->parts[i]->acked, __ATOMIC_ACQUIRE);
		n += d > 0 ? d : 0;
	}
	return n;
}

/* ---- the session ---- */

/* Sends what changed (everything with hello); with keepalive, an empty
 * message when nothing did, so the leader's echo — and with it this node's
 * in-sync lease — stays fresh. */
static int send_state(struct sb_repl_follower *f, struct sbc_call *k, int hello, int keepalive)
{
	Streambus__V1__FollowRequest q = STREAMBUS__V1__FOLLOW_REQUEST__INIT;
	Streambus__V1__ReplicaPartitionState *st = calloc(f->nparts ? f->nparts : 1, sizeof *st);
	Streambus__V1__ReplicaPartitionState **sp = calloc(f->nparts ? f->nparts : 1, sizeof *sp);
	int rc = 0;
	if (!st || !sp) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < f->nparts; i++) {
		struct fol_part *p = f->parts[i];
		int64_t acked = __atomic_load_n(&p->acked, __ATOMIC_ACQUIRE);
		struct sb_log_info li;
		if (!hello && acked == p->sent)
			continue;
		streambus__v1__replica_partition_state__init(&st[q.n_partitions]);
		st[q.n_partitions].topic = p->topic;
		st[q.n_partitions].partition = p->partition;
		st[q.n_partitions].end_offset = acked;
		st[q.n_partitions].topic_id = sb_topic_config(p->t)->id;
		if (hello) {
			sb_log_info(p->log, &li);
			st[q.n_partitions].last_epoch = li.last_epoch;
			st[q.n_partitions].log_start_offset = li.log_start;
			st[q.n_partitions].staged_base = -1;
			stage_close(p);
			if (stage_reopen(p, li.stable_end) == 0) { /* resume a segment cut short */
				st[q.n_partitions].staged_base = p->stage_base;
				st[q.n_partitions].staged_bytes = (int64_t)p->stage_have;
			}
		}
		sp[q.n_partitions] = &st[q.n_partitions];
		q.n_partitions++;
		p->sent = acked;
	}
	if (!hello && !keepalive && q.n_partitions == 0)
		goto out;
	q.sent_ms = sb_mono_ms();
	f->last_sent_ms = q.sent_ms;
	q.node_id = f->r->node_id;
	q.epoch = sb_repl_epoch(f->r);
	q.hello = hello;
	q.partitions = sp;
	rc = sbc_call_send(k, &q.base, 0) ? -EIO : 0;
out:
	free(st);
	free(sp);
	return rc;
}

/* Handles one FollowResponse. 0, or an error that ends the session. */
static int take_response(struct sb_repl_follower *f, const Streambus__V1__FollowResponse *m)
{
	struct sb_repl *r = f->r;
	int64_t epoch = sb_repl_epoch(r);
	if (m->epoch < epoch) {
		SB_WARN("stale_leader", "leader_epoch=%" PRId64 " known_epoch=%" PRId64, m->epoch, epoch);
		return SB_EFENCED;
	}
	if (m->epoch > epoch)
		(void)sb_repl__adopt_epoch(r, m->epoch, m->leader_id);
	if (m->has_topics) {
		int rc = apply_topics(f, m);
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < m->n_truncations; i++) {
		int rc = take_truncation(f, m->truncations[i]);
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < m->n_data; i++) {
		int rc = take_data(f, m->data[i]);
		if (rc)
			return rc;
	}
	int in_sync = 0;
	for (size_t i = 0; i < m->n_in_sync_nodes; i++)
		in_sync |= m->in_sync_nodes[i] == r->node_id;
	pthread_mutex_lock(&r->lock);
	r->fol_in_sync = in_sync;
	r->fol_in_sync_until = in_sync && m->in_sync_left_ms > 0 ? m->echo_sent_ms + m->in_sync_left_ms : 0;
	r->fol_session_up = 1;
	pthread_mutex_unlock(&r->lock);
	__atomic_store_n(&r->fol_lag, lag(f), __ATOMIC_RELEASE);
	return 0;
}

/* Once, before the first hello: every sealed segment is read whole and
 * checked. A partition with a bad one is cut back to that segment's base, so
 * the hello asks the leader for it (and everything after) again. */
static void verify_once(struct sb_repl_follower *f)
{
	int64_t t0 = sb_mono_ms(), bad_parts = 0;
	if (f->verified)
		return;
	f->verified = 1;
	for (uint32_t i = 0; i < f->nparts; i++) {
		struct fol_part *p = f->parts[i];
		int64_t bad = -1;
		int rc = sb_log_verify_sealed(p->log, &bad);
		if (!rc && bad >= 0) {
			rc = sb_log_truncate(p->log, bad);
			if (!rc)
				p->acked = p->sent = bad;
			SB_WARN("replica_segment_refetch", "topic=%s partition=%d base=%" PRId64 " result=\"%s\"",
				p->topic, p->partition, bad, rc ? sb_strerror(rc) : "cut back: fetched again");
			bad_parts++;
		} else if (rc) {
			SB_ERROR("replica_verify_failed", "topic=%s partition=%d error=\"%s\"", p->topic, p->partition,
				 sb_strerror(rc));
		}
	}
	SB_INFO("replica_verified", "partitions=%u bad=%" PRId64 " ms=%" PRId64, f->nparts, bad_parts,
		sb_mono_ms() - t0);
}

/* One stream to the leader, until it breaks or we stop. Returns 1 if it got
 * as far as receiving data (reset the back-off). */
static int session(struct sb_repl_follower *f, int32_t leader, const char *addr)
{
	struct sbc_conn c;
	struct sbc_call k;
	struct sbc_status st;
	int progressed = 0, ended = 0, cancelled = 0, rc;

	memset(&k, 0, sizeof k);
	sbc_conn_init(&c, addr, CONNECT_TIMEOUT_S);
	if (sbc_call_start(&c, &k, FOLLOW_METHOD, NULL, 0, &st)) {
		SB_LOG_RATELIMITED(SB_LEVEL_WARN, 5000, "follow_start_failed", "leader=%s error=\"%s\"", addr, st.msg);
		sbc_conn_fini(&c);
		return 0;
	}
	int prc = refresh_parts(f);
	if (!prc)
		verify_once(f);
	if (prc || send_state(f, &k, 1, 0)) {
		sbc_call_cancel(&k);
		cancelled = 1;
	}
	pthread_mutex_lock(&f->wake_lock);
	f->k = &k;
	pthread_mutex_unlock(&f->wake_lock);
	while (!sbc_call_idle(&k) || __atomic_load_n(&f->inflight, __ATOMIC_ACQUIRE) > 0) {
		struct sbc_event ev;
		if (!ended && sb_repl_leader(f->r, NULL, 0) != leader) {
			SB_INFO("leader_changed", "old=%d new=%d", leader, sb_repl_leader(f->r, NULL, 0));
			ended = 1; /* follow the new one */
		}
		if (!cancelled && (__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE) || ended)) {
			sbc_call_cancel(&k);
			cancelled = 1;
		}
		if (!ended && !cancelled && !k.send_busy &&
		    sb_mono_ms() - f->last_sent_ms >= sb_repl__heartbeat_ms(f->r) && send_state(f, &k, 0, 1))
			ended = 1; /* the keepalive that renews the in-sync lease */
		if (!sbc_next(&c, 50, &ev))
			continue;
		switch (ev.kind) {
		case SBC_EV_RECV:
			if (!ev.msg) {
				ended = 1;
				break;
			}
			/* The next message arrives while this one is applied. */
			if (sbc_call_recv(&k))
				ended = 1;
			{
				Streambus__V1__FollowResponse *m = (Streambus__V1__FollowResponse *)sbc_unpack(
					&streambus__v1__follow_response__descriptor, ev.msg);
				rc = m ? take_response(f, m) : SB_EBADBATCH;
				if (m)
					protobuf_c_message_free_unpacked(&m->base, NULL);
				if (rc) {
					SB_WARN("follow_session_error", "leader=%s error=\"%s\"", addr, sb_strerror(rc));
					ended = 1;
					break;
				}
				progressed = 1;
			}
			/* New partitions (and truncations) change what we hold without an append. */
			if (!ended && !k.send_busy && send_state(f, &k, 0, 0))
				ended = 1;
			break;
		case SBC_EV_SENT:
		case SBC_EV_WAKE:
			if (!ev.ok && ev.kind == SBC_EV_SENT)
				ended = 1;
			else if (!k.send_busy && !ended && !cancelled && send_state(f, &k, 0, 0))
				ended = 1;
			break;
		case SBC_EV_STATUS:
			sbc_call_status(&k, &st);
			ended = 1;
			if (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE))
				SB_LOG_RATELIMITED(SB_LEVEL_WARN, 5000, "follow_stream_ended", "leader=%s status=%s message=\"%s\"",
						   addr, sbc_status_name(st.code), st.msg);
			break;
		default:
			break;
		}
	}
	pthread_mutex_lock(&f->wake_lock);
	f->k = NULL;
	pthread_mutex_unlock(&f->wake_lock);
	pthread_mutex_lock(&f->r->lock);
	f->r->fol_session_up = 0;
	pthread_mutex_unlock(&f->r->lock);
	sbc_call_fini(&k);
	sbc_conn_fini(&c);
	return progressed;
}

static void *follower_main(void *arg)
{
	struct sb_repl_follower *f = arg;
	int64_t backoff = SB_REPL_BACKOFF_MIN_MS;
	char addr[256];
	while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
		int32_t leader = sb_repl_leader(f->r, addr, sizeof addr);
		if (leader >= 0 && leader != f->r->node_id && session(f, leader, addr))
			backoff = SB_REPL_BACKOFF_MIN_MS;
		else if ((backoff *= 2) > SB_REPL_BACKOFF_MAX_MS)
			backoff = SB_REPL_BACKOFF_MAX_MS;
		for (int64_t t = 0; t < backoff && !__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE); t += 10)
			usleep(10000);
	}
	free_parts(f->parts, f->nparts);
	f->parts = NULL;
	f->nparts = 0;
	return NULL;
}

int sb_repl__follower_start(struct sb_repl *r)
{
	struct sb_repl_follower *f = calloc(1, sizeof *f);
	if (!f)
		return -ENOMEM;
	f->r = r;
	pthread_mutex_init(&f->wake_lock, NULL);
	int rc = pthread_create(&r->follower, NULL, follower_main, f);
	if (rc) {
		pthread_mutex_destroy(&f->wake_lock);
		free(f);
		return -rc;
	}
	r->fol = f;
	r->follower_started = 1;
	return 0;
}

void sb_repl__follower_stop(struct sb_repl *r)
{
	struct sb_repl_follower *f = r->fol;
	if (!r->follower_started)
		return;
	__atomic_store_n(&f->stop, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&f->wake_lock);
	if (f->k)
		sbc_call_wake(f->k); /* the session loop sees stop at once */
	pthread_mutex_unlock(&f->wake_lock);
	pthread_join(r->follower, NULL);
	r->follower_started = 0;
	pthread_mutex_destroy(&f->wake_lock);
	free(f);
	r->fol = NULL;
}
