/* sb_repl.c - roles, the persisted leader epoch, the in-sync set and the
 * high watermark (sb_repl.h). */
#include "sb_repl_internal.h"

#include "client.h"
#include "sb_logging.h"
#include "sb_logmgr.h"
#include "sb_path.h"
#include "sb_time.h"
#include "sb_vfs.h"
#include "streambus/v1/streambus.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE_FILE "cluster.state"
#define STATE_BYTES_MAX 4096

/* ---- configuration ---- */

int sb_repl_parse_peers(const char *peers, struct sb_repl_node *nodes, int cap)
{
	int n = 0;
	const char *p = peers;
	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char item[300];
		char *eq, *stop;
		if (len == 0 || len >= sizeof item || n >= cap)
			return SB_EBADCONFIG;
		memcpy(item, p, len);
		item[len] = 0;
		eq = strchr(item, '=');
		if (!eq || eq == item || !eq[1] || strlen(eq + 1) >= sizeof nodes[0].address)
			return SB_EBADCONFIG;
		*eq = 0;
		long id = strtol(item, &stop, 10);
		if (*stop || id < 0 || id > 1023 || !strchr(eq + 1, ':'))
			return SB_EBADCONFIG;
		for (int i = 0; i < n; i++)
			if (nodes[i].id == id)
				return SB_EBADCONFIG;
		nodes[n].id = (int32_t)id;
		snprintf(nodes[n].address, sizeof nodes[n].address, "%s", eq + 1);
		n++;
		p = end ? end + 1 : NULL;
	}
	return n;
}

int sb_repl__node_index(const struct sb_repl *r, int32_t id)
{
	for (int i = 0; i < r->nnodes; i++)
		if (r->nodes[i].id == id)
			return i;
	return -1;
}

/* ---- the persisted state: epoch and leader ---- */

static int state_write(struct sb_repl *r, int64_t epoch, int32_t leader)
{
	char buf[128];
	int n = snprintf(buf, sizeof buf, "epoch=%" PRId64 "\nleader=%d\n", epoch, leader);
	return sb_vfs_write_file_durable(r->vfs, r->data_dir, STATE_FILE, buf, (size_t)n);
}

/* 0 and the values, -ENOENT if there is no state yet, SB_ECORRUPT. */
static int state_read(struct sb_repl *r, int64_t *epoch, int32_t *leader)
{
	char path[SB_PATH_MAX];
	void *data = NULL;
	size_t len = 0;
	long long e = -1;
	int l = -1;
	sb_path_fmt(path, sizeof path, "%s/%s", r->data_dir, STATE_FILE);
	int rc = sb_vfs_read_file(r->vfs, path, STATE_BYTES_MAX, &data, &len);
	if (rc)
		return rc;
	char *text = realloc(data, len + 1);
	if (!text) {
		free(data);
		return -ENOMEM;
	}
	text[len] = 0;
	if (sscanf(text, "epoch=%lld\nleader=%d", &e, &l) != 2 || e < 0 || l < -1)
		rc = SB_ECORRUPT;
	free(text);
	*epoch = e;
	*leader = l;
	return rc;
}

int sb_repl__adopt_epoch(struct sb_repl *r, int64_t epoch, int32_t leader_id)
{
	pthread_mutex_lock(&r->lock);
	if (epoch <= r->epoch || r->nnodes <= 1) {
		pthread_mutex_unlock(&r->lock);
		return 0;
	}
	if (leader_id >= 0 && sb_repl__node_index(r, leader_id) < 0)
		leader_id = -1; /* not one of ours: learn the epoch, find the leader later */
	int step_down = r->role == SB_ROLE_LEADER && leader_id != r->node_id;
	__atomic_store_n(&r->epoch, epoch, __ATOMIC_RELEASE);
	r->leader_id = leader_id;
	if (step_down)
		r->role = SB_ROLE_FOLLOWER;
	pthread_mutex_unlock(&r->lock);
	int rc = state_write(r, epoch, leader_id);
	SB_INFO("epoch_adopted", "epoch=%" PRId64 " leader=%d stepped_down=%d persisted=\"%s\"", epoch, leader_id,
		step_down, rc ? sb_strerror(rc) : "ok");
	if (step_down)
		sb_repl__become_follower(r);
	return rc;
}

/* Every log of the current set: followers roll only where the leader did. */
static void set_follower_all(struct sb_repl *r, int on)
{
	pthread_mutex_lock(&r->lock);
	struct pset *s = sb_repl__cur(r);
	pthread_mutex_unlock(&r->lock);
	for (uint32_t i = 0; s && i < s->n; i++)
		sb_log_set_follower(s->v[i]->log, on);
	pthread_mutex_lock(&r->lock);
	sb_repl__pset_unref(r, s);
	sb_repl__unlock(r);
}

/* Fails every ACKS_ALL request still waiting on this node's partitions. */
static void wake_all_waiters(struct sb_repl *r)
{
	pthread_mutex_lock(&r->apply);
	pthread_mutex_lock(&r->lock);
	struct pset *s = r->cur;
	if (s)
		s->refs++;
	pthread_mutex_unlock(&r->lock);
	for (uint32_t i = 0; s && i < s->n; i++)
		sb_log_wake_waiters(s->v[i]->log);
	pthread_mutex_lock(&r->lock);
	sb_repl__pset_unref(r, s);
	sb_repl__unlock(r);
	pthread_mutex_unlock(&r->apply);
}

void sb_repl__become_follower(struct sb_repl *r)
{
	SB_WARN("stepped_down", "node=%d hint=\"another node leads a newer epoch: following it\"", r->node_id);
	sb_repl__streams_end(r);
	wake_all_waiters(r);
	set_follower_all(r, 1);
	pthread_mutex_lock(&r->lock);
	int start = !r->stopping && !r->follower_started;
	pthread_mutex_unlock(&r->lock);
	if (start && sb_repl__follower_start(r))
		SB_ERROR("follower_start_failed", "node=%d", r->node_id);
}

void sb_repl_announce(struct sb_repl *r, int64_t *epoch, int32_t *leader_id)
{
	if (*epoch > 0)
		(void)sb_repl__adopt_epoch(r, *epoch, *leader_id);
	pthread_mutex_lock(&r->lock);
	*epoch = r->epoch;
	*leader_id = r->leader_id;
	pthread_mutex_unlock(&r->lock);
}

int sb_repl_promote(struct sb_repl *r, int32_t node_id, int unclean, struct sb_repl_promotion *out)
{
	memset(out, 0, sizeof *out);
	if (node_id != r->node_id || r->nnodes <= 1)
		return SB_EINVAL;
	pthread_mutex_lock(&r->lock);
	/* In sync only while the lease the leader granted lasts: past it, the
	 * leader may have dropped this node and acknowledged writes it lacks
	 * (it cannot tell a dead leader from one it cannot reach). */
	out->was_in_sync = r->fol_in_sync && sb_mono_ms() < r->fol_in_sync_until;
	out->records_at_risk = __atomic_load_n(&r->fol_lag, __ATOMIC_ACQUIRE);
	if (r->role == SB_ROLE_LEADER) {
		out->epoch = r->epoch;
		out->leader_id = r->leader_id;
		out->was_in_sync = 1;
		out->records_at_risk = 0;
		pthread_mutex_unlock(&r->lock);
		return 0;
	}
	int64_t epoch = r->epoch + 1;
	pthread_mutex_unlock(&r->lock);
	if (!out->was_in_sync && !unclean)
		return SB_ENOTLEADER;
	/* Durable first: a node that crashes right after still knows it leads. */
	int rc = state_write(r, epoch, r->node_id);
	if (rc)
		return rc;
	sb_repl__follower_stop(r);
	pthread_mutex_lock(&r->lock);
	if (epoch <= r->epoch) { /* someone announced a newer epoch meanwhile */
		pthread_mutex_unlock(&r->lock);
		return SB_EFENCED;
	}
	__atomic_store_n(&r->epoch, epoch, __ATOMIC_RELEASE);
	r->leader_id = r->node_id;
	r->role = SB_ROLE_LEADER;
	r->connected = 0;
	/* A new leadership builds its in-sync set afresh: what this node knew
	 * from an earlier term of its own says nothing now. */
	for (uint32_t i = 0; r->cur && i < r->cur->n; i++)
		for (int k = 0; k < SB_REPL_NODES_MAX; k++) {
			r->cur->v[i]->in_sync[k] = 0;
			r->cur->v[i]->acked[k] = -1;
			r->cur->v[i]->caught_up_ms[k] = 0;
		}
	r->gen++; /* fresh partition set: every cap is applied anew */
	pthread_cond_broadcast(&r->tick_cv); /* announce now */
	out->epoch = epoch;
	out->leader_id = r->node_id;
	pthread_mutex_unlock(&r->lock);
	set_follower_all(r, 0); /* a leader rolls by size and age again */
	sb_repl__apply_caps(r);
	SB_WARN("promoted", "node=%d epoch=%" PRId64 " was_in_sync=%d records_at_risk=%" PRId64, r->node_id, epoch,
		out->was_in_sync, out->records_at_risk);
	return 0;
}

int sb_repl_open(const struct sb_repl_options *o, struct sb_repl **out)
{
	struct sb_repl *r = calloc(1, sizeof *r);
	int rc;
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->apply, NULL);
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->tick_cv, NULL);
	r->mgr = o->mgr;
	r->vfs = o->vfs ? o->vfs : sb_vfs_posix();
	r->node_id = o->node_id;
	r->lag_max_ms = o->replica_lag_max_ms;
	r->data_dir = strdup(o->data_dir);
	if (!r->data_dir) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = sb_repl_parse_peers(o->peers ? o->peers : "", r->nodes, SB_REPL_NODES_MAX);
	if (rc < 0) {
		SB_ERROR("repl_bad_peers", "peers=\"%s\" hint=\"use ID=HOST:PORT,... with ids 0-1023, at most %d nodes\"",
			 o->peers, SB_REPL_NODES_MAX);
		goto fail;
	}
	r->nnodes = rc;
	if (r->nnodes == 0) { /* single node: it leads, epoch 0, nothing persisted */
		r->nnodes = 1;
		r->nodes[0].id = o->node_id;
		snprintf(r->nodes[0].address, sizeof r->nodes[0].address, "local");
		r->role = SB_ROLE_LEADER;
		r->leader_id = o->node_id;
		r->ready = 1;
		*out = r;
		return 0;
	}
	r->self = sb_repl__node_index(r, o->node_id);
	int32_t initial = o->leader_id;
	if (initial < 0) {
		initial = r->nodes[0].id;
		for (int i = 1; i < r->nnodes; i++)
			if (r->nodes[i].id < initial)
				initial = r->nodes[i].id;
	}
	if (r->self < 0 || sb_repl__node_index(r, initial) < 0) {
		SB_ERROR("repl_bad_config", "node_id=%d leader_id=%d hint=\"both must appear in --peers\"",
			 o->node_id, initial);
		rc = SB_EBADCONFIG;
		goto fail;
	}
	rc = state_read(r, &r->epoch, &r->leader_id);
	if (rc == -ENOENT) {
		r->epoch = 1;
		r->leader_id = initial;
		rc = state_write(r, r->epoch, r->leader_id);
	}
	if (rc)
		goto fail;
	if (r->leader_id >= 0 && sb_repl__node_index(r, r->leader_id) < 0) {
		SB_ERROR("repl_bad_state", "leader=%d hint=\"the persisted leader is not in --peers\"", r->leader_id);
		rc = SB_EBADCONFIG;
		goto fail;
	}
	r->role = r->leader_id == r->node_id ? SB_ROLE_LEADER : SB_ROLE_FOLLOWER;
	SB_INFO("repl_opened", "node=%d role=%s epoch=%" PRId64 " leader=%d nodes=%d", r->node_id,
		r->role == SB_ROLE_LEADER ? "leader" : "follower", r->epoch, r->leader_id, r->nnodes);
	*out = r;
	return 0;
fail:
	sb_repl_close(r);
	return rc;
}

/* ---- queries ---- */

int sb_repl_clustered(const struct sb_repl *r)
{
	return r->nnodes > 1;
}

int sb_repl_is_leader(struct sb_repl *r)
{
	pthread_mutex_lock(&r->lock);
	int yes = r->role == SB_ROLE_LEADER && r->ready;
	pthread_mutex_unlock(&r->lock);
	return yes;
}

int64_t sb_repl_epoch(struct sb_repl *r)
{
	/* Every append asks: no lock (writers store it atomically under the lock). */
	return __atomic_load_n(&r->epoch, __ATOMIC_ACQUIRE);
}

int32_t sb_repl_node_id(const struct sb_repl *r)
{
	return r->node_id;
}

int32_t sb_repl_leader(struct sb_repl *r, char *address, size_t cap)
{
	pthread_mutex_lock(&r->lock);
	int32_t id = r->leader_id;
	pthread_mutex_unlock(&r->lock);
	int i = sb_repl__node_index(r, id);
	if (address && cap)
		snprintf(address, cap, "%s", i >= 0 ? r->nodes[i].address : "");
	return i >= 0 ? id : -1;
}

int sb_repl_nodes(struct sb_repl *r, struct sb_repl_node *nodes, const char **roles, int cap)
{
	int32_t leader = sb_repl_leader(r, NULL, 0);
	int n = r->nnodes < cap ? r->nnodes : cap;
	for (int i = 0; i < n; i++) {
		nodes[i] = r->nodes[i];
		roles[i] = nodes[i].id == leader ? "leader" : "follower";
	}
	return n;
}

int sb_repl_insync(struct sb_repl *r, const char *topic, int32_t partition, int32_t *ids, int cap)
{
	int n = 0;
	if (cap > 0)
		ids[n] = r->node_id;
	n++;
	pthread_mutex_lock(&r->lock);
	if (r->role == SB_ROLE_LEADER && r->nnodes > 1) {
		/* The current set as it is: no rebuild here, this runs in waiter
		 * callbacks on the I/O loop thread. */
		struct pset *s = r->cur;
		struct rpart *rp = s ? sb_repl__find(s, topic, strlen(topic), partition) : NULL;
		for (int i = 0; rp && i < r->nnodes; i++) {
			if (i == r->self || !rp->in_sync[i])
				continue;
			if (n < cap)
				ids[n] = r->nodes[i].id;
			n++;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return n;
}

int sb_repl_lag(struct sb_repl *r, const char *topic, int32_t partition, int64_t leader_end,
		struct sb_repl_lag *out, int cap)
{
	int n = 0;
	int64_t now = sb_mono_ms();
	pthread_mutex_lock(&r->lock);
	if (r->role == SB_ROLE_LEADER && r->nnodes > 1 && r->cur) {
		struct rpart *rp = sb_repl__find(r->cur, topic, strlen(topic), partition);
		for (int i = 0; rp && i < r->nnodes && n < cap; i++) {
			if (i == r->self)
				continue;
			int64_t a = rp->seen[i], t = rp->seen_caught_up_ms[i];
			out[n].node_id = r->nodes[i].id;
			out[n].records = a < 0 ? -1 : leader_end > a ? leader_end - a : 0;
			out[n].ms = a >= 0 && a >= leader_end ? 0 : t > 0 ? now - t : -1;
			out[n].in_sync = rp->in_sync[i];
			n++;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return n;
}

/* ---- the partition set ---- */

static int cmp_part(const char *ta, size_t la, int32_t pa, const struct rpart *b)
{
	size_t lb = strlen(b->topic);
	int c = memcmp(ta, b->topic, la < lb ? la : lb);
	if (c)
		return c;
	if (la != lb)
		return la < lb ? -1 : 1;
	return pa < b->partition ? -1 : pa > b->partition;
}

struct rpart *sb_repl__find(struct pset *s, const char *topic, size_t topic_len, int32_t partition)
{
	uint32_t lo = 0, hi = s->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = cmp_part(topic, topic_len, partition, s->v[mid]);
		if (c == 0)
			return s->v[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

void sb_repl__pset_free(struct pset *s)
{
	for (uint32_t i = 0; i < s->n; i++) {
		sb_topic_release(s->v[i]->t);
		free(s->v[i]);
	}
	free(s->v);
	free(s);
}

void sb_repl__pset_unref(struct sb_repl *r, struct pset *s)
{
	if (!s || --s->refs > 0)
		return;
	s->next_dead = r->dead;
	r->dead = s;
}

void sb_repl__unlock(struct sb_repl *r)
{
	struct pset *dead = r->dead;
	r->dead = NULL;
	pthread_mutex_unlock(&r->lock);
	while (dead) { /* topic references go outside the lock: a release may close logs */
		struct pset *next = dead->next_dead;
		sb_repl__pset_free(dead);
		dead = next;
	}
}

struct names {
	char **v;
	uint32_t n, cap;
};

static int collect_name(void *arg, const char *name, const struct sb_topic_config *cfg)
{
	struct names *nm = arg;
	(void)cfg;
	if (nm->n == nm->cap) {
		uint32_t cap = nm->cap ? nm->cap * 2 : 64;
		char **v = realloc(nm->v, cap * sizeof *v);
		if (!v)
			return -ENOMEM;
		nm->v = v;
		nm->cap = cap;
	}
	if (!(nm->v[nm->n] = strdup(name)))
		return -ENOMEM;
	nm->n++;
	return 0;
}

/* Lock held. Builds the set of every partition (names come sorted from the
 * manager, partitions in order), carrying follower progress over from old. */
static struct pset *pset_build(struct sb_repl *r, const struct pset *old)
{
	struct names nm = {0};
	struct pset *s = calloc(1, sizeof *s);
	int rc = s ? sb_logmgr_list_topics(r->mgr, collect_name, &nm) : -ENOMEM;
	uint32_t cap = 0;
	for (uint32_t i = 0; i < nm.n && !rc; i++) {
		for (int32_t p = 0; !rc; p++) {
			struct sb_topic *t;
			struct rpart *rp;
			if (sb_logmgr_acquire(r->mgr, nm.v[i], &t))
				break; /* deleted meanwhile */
			if (p >= sb_topic_partitions(t)) {
				sb_topic_release(t);
				break;
			}
			if (s->n == cap) {
				struct rpart **v = realloc(s->v, (cap ? cap * 2 : 64) * sizeof *v);
				if (!v) {
					sb_topic_release(t);
					rc = -ENOMEM;
					break;
				}
				s->v = v;
				cap = cap ? cap * 2 : 64;
			}
			if (!(rp = calloc(1, sizeof *rp)) || sb_topic_log(t, p, &rp->log)) {
				free(rp);
				sb_topic_release(t);
				rc = rp ? 0 : -ENOMEM;
				break;
			}
			snprintf(rp->topic, sizeof rp->topic, "%s", nm.v[i]);
			rp->partition = p;
			rp->min_insync = sb_topic_config(t)->min_insync_replicas;
			rp->topic_id = sb_topic_config(t)->id;
			rp->cap = -2; /* unknown: the first apply sets it */
			rp->t = t;
			for (int k = 0; k < SB_REPL_NODES_MAX; k++)
				rp->acked[k] = rp->seen[k] = -1;
			struct rpart *prev = old ? sb_repl__find((struct pset *)old, rp->topic, strlen(rp->topic), p) : NULL;
			if (prev && prev->topic_id == rp->topic_id) {
				memcpy(rp->acked, prev->acked, sizeof rp->acked);
				memcpy(rp->caught_up_ms, prev->caught_up_ms, sizeof rp->caught_up_ms);
				memcpy(rp->in_sync, prev->in_sync, sizeof rp->in_sync);
				memcpy(rp->seen, prev->seen, sizeof rp->seen);
				memcpy(rp->seen_caught_up_ms, prev->seen_caught_up_ms, sizeof rp->seen_caught_up_ms);
				if (r->role == SB_ROLE_LEADER)
					rp->cap = prev->cap;
			}
			rp->index = s->n;
			s->v[s->n++] = rp;
		}
	}
	for (uint32_t i = 0; i < nm.n; i++)
		free(nm.v[i]);
	free(nm.v);
	if (rc && s) {
		sb_repl__pset_free(s);
		return NULL;
	}
	s->refs = 1; /* r->cur's */
	s->gen = r->gen;
	return s;
}

struct pset *sb_repl__cur(struct sb_repl *r)
{
	if (!r->cur || r->cur->gen != r->gen) {
		struct pset *s = pset_build(r, r->cur);
		if (!s)
			return NULL;
		sb_repl__pset_unref(r, r->cur);
		r->cur = s;
	}
	r->cur->refs++;
	return r->cur;
}

void sb_repl_topics_changed(struct sb_repl *r)
{
	pthread_mutex_lock(&r->apply);
	pthread_mutex_lock(&r->lock);
	r->gen++;
	struct pset *s = sb_repl__cur(r); /* rebuilt now, so old topic references go */
	sb_repl__pset_unref(r, s);
	sb_repl__unlock(r);
	pthread_mutex_unlock(&r->apply);
	sb_repl__streams_wake(r);
}

/* ---- in-sync set and high watermark ---- */

/* Lock held: is node (index) in sync on rp at now? */
static void update_in_sync(struct sb_repl *r, struct rpart *rp, int node, int64_t now_ms)
{
	struct sb_log_info li;
	int up = (r->connected >> node) & 1;
	sb_log_info(rp->log, &li);
	/* A follower leaves the in-sync set only by time, never at once when
	 * its stream breaks: its in-sync lease (docs/REPLICATION.md) may still
	 * run, and until it ends no write may be acknowledged without it. */
	if (up && rp->acked[node] >= li.stable_end)
		rp->caught_up_ms[node] = rp->seen_caught_up_ms[node] = now_ms;
	rp->in_sync[node] = rp->caught_up_ms[node] > 0 && now_ms - rp->caught_up_ms[node] <= r->lag_max_ms;
}

void sb_repl__acked(struct sb_repl *r, struct rpart *rp, int node, int64_t end, int64_t now_ms)
{
	if (end > rp->acked[node])
		rp->acked[node] = end;
	if (end > rp->seen[node])
		rp->seen[node] = end;
	update_in_sync(r, rp, node, now_ms);
}

void sb_repl__connected(struct sb_repl *r, int node, int up)
{
	if (up)
		r->connected |= 1u << node;
	else
		r->connected &= ~(1u << node);
	/* A reconnected follower's durable end is what its hello proves (it
	 * may have cut a suffix meanwhile). Whether it is in sync changes only
	 * with time (update_in_sync): a follower whose stream broke stays in
	 * the set until its lease has certainly ended, so until then the high
	 * watermark waits for it. */
	for (uint32_t i = 0; up && r->cur && i < r->cur->n; i++)
		r->cur->v[i]->acked[node] = -1;
	SB_INFO("follower_connection", "node=%d up=%d", r->nodes[node].id, up);
}

struct cap_change {
	struct sb_log *log;
	int64_t cap;
	int wake; /* the partition just fell below min_insync: fail its ACKS_ALL waiters */
};

/* Lock held: the end that n followers hold durably besides the leader (the
 * n-th largest durable end they reported), -1 if fewer than n reported. */
static int64_t held_by(const struct sb_repl *r, const struct rpart *rp, int n)
{
	int64_t v[SB_REPL_NODES_MAX];
	int m = 0;
	if (n <= 0)
		return INT64_MAX;
	for (int k = 0; k < r->nnodes; k++)
		if (k != r->self && rp->seen[k] >= 0)
			v[m++] = rp->seen[k];
	if (m < n)
		return -1;
	for (int i = 0; i < n; i++) /* partial selection sort: the n largest first */
		for (int j = i + 1; j < m; j++)
			if (v[j] > v[i]) {
				int64_t t = v[i];
				v[i] = v[j];
				v[j] = t;
			}
	return v[n - 1];
}

void sb_repl__apply_caps(struct sb_repl *r)
{
	struct cap_change *ch = NULL;
	uint32_t n = 0;
	pthread_mutex_lock(&r->apply);
	pthread_mutex_lock(&r->lock);
	struct pset *s = r->role == SB_ROLE_LEADER ? sb_repl__cur(r) : NULL;
	if (s && s->n)
		ch = malloc(s->n * sizeof *ch);
	for (uint32_t i = 0; ch && i < s->n; i++) {
		struct rpart *rp = s->v[i];
		int64_t cap = INT64_MAX;
		int isr = 1;
		for (int k = 0; k < r->nnodes; k++)
			if (k != r->self && rp->in_sync[k]) {
				isr++;
				if (rp->acked[k] < cap)
					cap = rp->acked[k];
			}
		int below = isr < rp->min_insync;
		if (below) {
			/* Fewer in sync than the topic requires: readers see only
			 * what min_insync nodes hold durably, so that no failover
			 * can take back a record anyone read. The high watermark
			 * never moves back. */
			struct sb_log_info li;
			int64_t held = held_by(r, rp, rp->min_insync - 1);
			sb_log_info(rp->log, &li);
			if (held < li.high_watermark)
				held = li.high_watermark;
			if (held < cap)
				cap = held;
		}
		int wake = below && !rp->below_min;
		rp->below_min = below;
		if (cap != rp->cap || wake) {
			rp->cap = cap;
			ch[n++] = (struct cap_change){rp->log, cap, wake};
		}
	}
	pthread_mutex_unlock(&r->lock);
	/* The set stays referenced (s) while the caps go in. */
	for (uint32_t i = 0; i < n; i++) {
		sb_log_set_hw_cap(ch[i].log, ch[i].cap);
		if (ch[i].wake)
			sb_log_wake_waiters(ch[i].log); /* waiting ACKS_ALL requests give up now */
	}
	pthread_mutex_lock(&r->lock);
	sb_repl__pset_unref(r, s);
	sb_repl__unlock(r);
	pthread_mutex_unlock(&r->apply);
	free(ch);
}

/* ---- the ticker: the in-sync set moves with time, not only with acks ---- */

/* Lock held: followers in sync on every partition (connected ones when
 * there are no partitions). */
static uint32_t isr_all_mask(const struct sb_repl *r, const struct pset *s)
{
	uint32_t mask = r->connected & ~(1u << r->self);
	for (uint32_t i = 0; s && i < s->n; i++)
		for (int k = 0; k < r->nnodes; k++)
			if (!s->v[i]->in_sync[k])
				mask &= ~(1u << k);
	return mask;
}

/* Lock held: sleeps up to ms, or until stop or a promotion wakes tick_cv. */
static void wait_ms(struct sb_repl *r, long ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += ms * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_cond_timedwait(&r->tick_cv, &r->lock, &ts);
}

static void *ticker_main(void *arg)
{
	struct sb_repl *r = arg;
	pthread_mutex_lock(&r->lock);
	while (!r->stopping) {
		wait_ms(r, SB_REPL_TICK_MS);
		if (r->stopping || r->role != SB_ROLE_LEADER)
			continue;
		struct pset *s = sb_repl__cur(r);
		int64_t now = sb_mono_ms();
		for (uint32_t i = 0; s && i < s->n; i++)
			for (int k = 0; k < r->nnodes; k++)
				if (k != r->self) {
					uint8_t was = s->v[i]->in_sync[k];
					update_in_sync(r, s->v[i], k, now);
					if (was != s->v[i]->in_sync[k])
						SB_INFO("isr_changed", "topic=%s partition=%d node=%d in_sync=%d acked=%" PRId64,
							s->v[i]->topic, s->v[i]->partition, r->nodes[k].id,
							s->v[i]->in_sync[k], s->v[i]->acked[k]);
				}
		uint32_t mask = isr_all_mask(r, s);
		int changed = mask != r->isr_all;
		r->isr_all = mask;
		sb_repl__pset_unref(r, s);
		sb_repl__unlock(r);
		sb_repl__apply_caps(r);
		pthread_mutex_lock(&r->lock);
		int beat = now - r->last_heartbeat_ms >= sb_repl__heartbeat_ms(r);
		if (changed || beat)
			r->last_heartbeat_ms = now;
		pthread_mutex_unlock(&r->lock);
		if (changed || beat)
			sb_repl__streams_wake(r); /* followers learn whether they are in sync; leases renew */
		pthread_mutex_lock(&r->lock);
	}
	sb_repl__unlock(r);
	return NULL;
}

/* ---- announcements: how epochs travel between nodes ---- */

/* Tells the peers (all of them, or only those not already connected to
 * this node's leadership) the epoch and leader we know, adopting any newer
 * one they answer with. conns[i] is the channel to node i. */
static void announce_round(struct sb_repl *r, struct sbc_conn *conns, int all)
{
	pthread_mutex_lock(&r->lock);
	int64_t epoch = r->epoch;
	int32_t leader = r->leader_id;
	int role = r->role;
	uint32_t connected = r->connected;
	int session_up = r->fol_session_up;
	pthread_mutex_unlock(&r->lock);
	for (int i = 0; i < r->nnodes; i++) {
		Streambus__V1__AnnounceRequest q = STREAMBUS__V1__ANNOUNCE_REQUEST__INIT;
		Streambus__V1__AnnounceResponse *a = NULL;
		struct sbc_status st;
		if (i == r->self)
			continue;
		if (!all && role == SB_ROLE_LEADER && ((connected >> i) & 1))
			continue; /* it follows us: it knows */
		if (!all && role == SB_ROLE_FOLLOWER && r->nodes[i].id == leader && session_up)
			continue; /* our leader, and we hear from it */
		q.epoch = epoch;
		q.leader_id = leader;
		q.node_id = r->node_id;
		if (sbc_unary(&conns[i], "/streambus.v1.Replication/Announce", &q.base,
			      &streambus__v1__announce_response__descriptor, (ProtobufCMessage **)&a, &st))
			continue; /* down or unreachable: next round */
		if (a->epoch > epoch)
			(void)sb_repl__adopt_epoch(r, a->epoch, a->leader_id);
		protobuf_c_message_free_unpacked(&a->base, NULL);
	}
}

static void conns_init(struct sb_repl *r, struct sbc_conn *conns)
{
	for (int i = 0; i < r->nnodes; i++)
		if (i != r->self)
			sbc_conn_init(&conns[i], r->nodes[i].address, SB_REPL_ANNOUNCE_MS / 1000.0);
}

static void conns_fini(struct sb_repl *r, struct sbc_conn *conns)
{
	for (int i = 0; i < r->nnodes; i++)
		if (i != r->self)
			sbc_conn_fini(&conns[i]);
}

static void *announcer_main(void *arg)
{
	struct sb_repl *r = arg;
	struct sbc_conn conns[SB_REPL_NODES_MAX];
	conns_init(r, conns);
	pthread_mutex_lock(&r->lock);
	while (!r->stopping) {
		wait_ms(r, SB_REPL_ANNOUNCE_MS);
		if (r->stopping)
			break;
		pthread_mutex_unlock(&r->lock);
		announce_round(r, conns, 0);
		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	conns_fini(r, conns);
	return NULL;
}

/* Lock held: a follower in sync on every partition, preferring one that
 * holds everything the leader has; -1 if none. */
static int handover_target(struct sb_repl *r, int *complete)
{
	int best = -1;
	*complete = 0;
	for (int k = 0; k < r->nnodes; k++) {
		if (k == r->self || !((r->isr_all >> k) & 1))
			continue;
		int all = 1;
		for (uint32_t i = 0; r->cur && i < r->cur->n && all; i++) {
			struct sb_log_info li;
			sb_log_info(r->cur->v[i]->log, &li);
			all = r->cur->v[i]->acked[k] >= li.stable_end;
		}
		if (all) {
			*complete = 1;
			return k;
		}
		if (best < 0)
			best = k;
	}
	return best;
}

int sb_repl_handover(struct sb_repl *r, int64_t timeout_ms)
{
	int64_t deadline = sb_mono_ms() + timeout_ms;
	int target = -1, complete = 0;
	if (r->nnodes <= 1 || !sb_repl_is_leader(r))
		return 0;
	for (;;) {
		pthread_mutex_lock(&r->lock);
		target = handover_target(r, &complete);
		pthread_mutex_unlock(&r->lock);
		if (complete || sb_mono_ms() >= deadline)
			break;
		struct timespec d = {0, 20 * 1000000};
		nanosleep(&d, NULL);
	}
	if (target < 0) {
		SB_WARN("handover_skipped", "node=%d hint=\"no follower is in sync: the cluster has no leader until one is promoted\"",
			r->node_id);
		return SB_ENOTFOUND;
	}
	Streambus__V1__PromoteRequest q = STREAMBUS__V1__PROMOTE_REQUEST__INIT;
	Streambus__V1__PromoteResponse *a = NULL;
	struct sbc_conn c;
	struct sbc_status st;
	q.node_id = r->nodes[target].id;
	sbc_conn_init(&c, r->nodes[target].address, 5.0);
	int rc = sbc_unary(&c, "/streambus.v1.Admin/Promote", &q.base, &streambus__v1__promote_response__descriptor,
			   (ProtobufCMessage **)&a, &st) ? SB_ENOTLEADER : 0;
	if (!rc) {
		SB_INFO("handover", "node=%d new_leader=%d epoch=%" PRId64 " complete=%d", r->node_id, a->leader_id,
			a->leader_epoch, complete);
		(void)sb_repl__adopt_epoch(r, a->leader_epoch, a->leader_id); /* steps down now */
		protobuf_c_message_free_unpacked(&a->base, NULL);
	} else {
		SB_WARN("handover_failed", "node=%d target=%d status=%s message=\"%s\"", r->node_id, q.node_id,
			sbc_status_name(st.code), st.msg);
	}
	sbc_conn_fini(&c);
	return rc;
}

int sb_repl_start(struct sb_repl *r)
{
	struct sbc_conn conns[SB_REPL_NODES_MAX];
	if (r->nnodes <= 1)
		return 0;
	/* Before taking writes: does a peer know a newer epoch (were we replaced
	 * while we were away)? Peers that do not answer within the timeout are
	 * taken to be down. */
	conns_init(r, conns);
	announce_round(r, conns, 1);
	conns_fini(r, conns);
	pthread_mutex_lock(&r->lock);
	r->ready = 1;
	int follower = r->role == SB_ROLE_FOLLOWER;
	pthread_mutex_unlock(&r->lock);
	int rc = pthread_create(&r->ticker, NULL, ticker_main, r);
	if (rc)
		return -rc;
	r->ticker_started = 1;
	rc = pthread_create(&r->announcer, NULL, announcer_main, r);
	if (rc)
		return -rc;
	r->announcer_started = 1;
	if (follower && !r->follower_started) {
		rc = sb_repl__follower_start(r);
		if (rc)
			return rc;
	}
	SB_INFO("repl_started", "node=%d role=%s epoch=%" PRId64 " leader=%d", r->node_id,
		follower ? "follower" : "leader", sb_repl_epoch(r), sb_repl_leader(r, NULL, 0));
	return 0;
}

void sb_repl_stop(struct sb_repl *r)
{
	pthread_mutex_lock(&r->lock);
	r->stopping = 1;
	pthread_cond_broadcast(&r->tick_cv);
	pthread_mutex_unlock(&r->lock);
	sb_repl__follower_stop(r);
	if (r->ticker_started) {
		pthread_join(r->ticker, NULL);
		r->ticker_started = 0;
	}
	if (r->announcer_started) {
		pthread_join(r->announcer, NULL);
		r->announcer_started = 0;
	}
	sb_repl__streams_end(r);
}

void sb_repl_close(struct sb_repl *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	sb_repl__pset_unref(r, r->cur);
	r->cur = NULL;
	sb_repl__unlock(r);
	pthread_mutex_destroy(&r->apply);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->tick_cv);
	free(r->data_dir);
	free(r);
}
