/* sb_repl_leader.c - the leader's side of Replication/Follow: one stream
 * per follower. The follower's hello says where it stands; the pump sends
 * the topic list, then batches from each partition's acknowledged end (read
 * with sb_log_read_stable, so followers get records before the high
 * watermark covers them) and high-watermark moves; when there is nothing to
 * send it parks tail waiters on every partition. Acknowledgements from the
 * follower move the in-sync set and the high watermark (sb_repl.c).
 *
 * Threads: tags run on the server's completion-queue workers; waiters fire
 * on the I/O loop (or a cap-raising thread) and only queue a wake tag. One
 * pump runs at a time per stream (pumping / pump_again), one send is in
 * flight at a time. Every outstanding tag holds a reference; the base
 * reference goes once the status is sent and every waiter is cancelled. */
#include "sb_repl_internal.h"

#include <grpc/byte_buffer_reader.h>

#include "sb_crc32c.h"
#include "sb_logging.h"
#include "sb_logmgr.h"
#include "sb_rpc.h"
#include "sb_time.h"
#include "streambus/v1/streambus.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Partitions that get a segment chunk in one message. */
#define SHIP_CHUNKS_MAX 64
/* Largest FollowRequest accepted: one state per partition. */
#define FOLLOW_REQUEST_BYTES_MAX (64u << 20)

struct fstream;

struct fpart {
	struct fstream *s;
	int64_t fetch;   /* next offset to send */
	int64_t trunc;   /* >= 0: tell the follower to cut its log back to this first */
	int64_t sent_hw; /* high watermark the follower was last told */
	struct sb_log_waiter w_data, w_hw;
	int data_armed, hw_armed; /* atomics: set when armed, cleared by the waiter */
	/* Shipping a whole sealed segment (ship.base_offset >= 0). */
	struct sb_log_segment_info ship;
	uint64_t ship_pos;  /* bytes sent */
	uint32_t ship_crc;  /* CRC32C of [0, ship_pos) */
	int64_t resume_base, resume_bytes; /* hello: a partly staged segment */
};

/* Where the follower said it stands, sorted for lookups. */
struct hello_ent {
	char *topic;
	int32_t partition;
	int64_t staged_base, staged_bytes; /* a partly received segment */
	uint64_t topic_id;                 /* the incarnation the follower holds */
	int64_t end;        /* the follower's log end */
	int32_t last_epoch; /* epoch of its last batch */
	int64_t start;      /* where it continues: end, or the divergence point */
};

struct fstream {
	struct sb_rpc_tag recv_tag, send_tag, wake_tag, close_tag, status_tag;
	struct sb_repl *r;
	grpc_call *call;
	pthread_mutex_t lock; /* the flags below */
	pthread_cond_t idle;  /* signalled when a pump ends */
	pthread_t pump_thread; /* the thread running the pump, while pumping */
	int refs;             /* atomic */
	grpc_byte_buffer *in, *out;
	int node;             /* node index, -1 before the hello */
	int close_cancelled;
	int pumping, pump_again, send_inflight, ending, status_started, initial_md_sent;
	grpc_status_code end_code;
	char end_msg[256];
	int wake_pending;     /* atomic */
	/* Pump-owned: partition progress parallel to ps. */
	struct pset *ps;
	struct fpart *fp;
	uint64_t topics_gen_sent;
	int topics_sent;
	uint32_t isr_sent;    /* r->isr_all as last sent; ~0 before the first */
	int64_t echo_ms;      /* sent_ms of the latest request taken (under lock) */
	int64_t last_send_ms; /* pump-owned: when the last message went out */
	uint32_t rr;
	struct hello_ent *hello;
	uint32_t nhello;
	struct fstream *next, *prev; /* r->streams, under r->lock */
	void (*done)(void *arg);     /* told when the stream is freed */
	void *done_arg;
};

static void pump(struct fstream *s);

static void stream_unref(struct fstream *s)
{
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	void (*done)(void *) = s->done;
	void *arg = s->done_arg;
	grpc_call_unref(s->call);
	for (uint32_t i = 0; i < s->nhello; i++)
		free(s->hello[i].topic);
	free(s->hello);
	free(s->fp);
	pthread_cond_destroy(&s->idle);
	pthread_mutex_destroy(&s->lock);
	free(s);
	if (done)
		done(arg);
}

static void ref(struct fstream *s)
{
	__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

/* Any thread, no locks needed: queues one wake tag. */
static void stream_wake(struct fstream *s)
{
	if (__atomic_exchange_n(&s->wake_pending, 1, __ATOMIC_ACQ_REL))
		return;
	ref(s);
	if (sb_rpc_wake(s->call, &s->wake_tag)) {
		__atomic_store_n(&s->wake_pending, 0, __ATOMIC_RELEASE);
		__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL); /* never the last: base ref held */
	}
}

static void on_data_waiter(struct sb_log_waiter *w)
{
	struct fpart *f = w->arg;
	__atomic_store_n(&f->data_armed, 0, __ATOMIC_RELEASE);
	stream_wake(f->s);
}

static void on_hw_waiter(struct sb_log_waiter *w)
{
	struct fpart *f = w->arg;
	__atomic_store_n(&f->hw_armed, 0, __ATOMIC_RELEASE);
	stream_wake(f->s);
}

/* Disarms every waiter of the current partitions and returns once none can
 * run any more. Always through sb_log_wait_cancel, even for a waiter whose
 * flag says it fired: its callback may still be running (between clearing
 * the flag and queuing the wake), and the cancel waits for that round to
 * end. Pump-owned state: from the pump or the final teardown. */
static void cancel_waiters(struct fstream *s)
{
	for (uint32_t i = 0; s->ps && i < s->ps->n; i++) {
		struct fpart *f = &s->fp[i];
		struct sb_log *log = s->ps->v[i]->log;
		sb_log_wait_cancel(log, &f->w_data);
		sb_log_wait_cancel(log, &f->w_hw);
		__atomic_store_n(&f->data_armed, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&f->hw_armed, 0, __ATOMIC_RELEASE);
	}
}

/* ---- ending ---- */

static void on_status(struct sb_rpc_tag *t, int ok);

/* s->lock held. Sends the status once no message is in flight. Returns 1
 * if the call refused it: the caller then runs on_status itself, after
 * unlocking (the status tag's reference is still held for it). */
static int try_status(struct fstream *s)
{
	if (!s->ending || s->status_started || s->send_inflight)
		return 0;
	s->status_started = 1;
	ref(s);
	int rc = sb_rpc_send_status(s->call, &s->status_tag, !s->initial_md_sent, s->end_code, s->end_msg, NULL, 0);
	s->initial_md_sent = 1;
	return rc != 0;
}

static void end_stream(struct fstream *s, grpc_status_code code, const char *msg)
{
	pthread_mutex_lock(&s->lock);
	if (!s->ending) {
		s->ending = 1;
		s->end_code = code;
		snprintf(s->end_msg, sizeof s->end_msg, "%s", msg);
		if (code != GRPC_STATUS_OK && code != GRPC_STATUS_CANCELLED)
			SB_WARN("follow_stream_ended", "node=%d code=%d reason=\"%s\"",
				s->node >= 0 ? s->r->nodes[s->node].id : -1, (int)code, msg);
	}
	int run = try_status(s);
	pthread_mutex_unlock(&s->lock);
	if (run)
		on_status(&s->status_tag, 0);
}

/* The status went out (or could not): the stream is over for the leader. */
static void on_status(struct sb_rpc_tag *t, int ok)
{
	struct fstream *s = (struct fstream *)((char *)t - offsetof(struct fstream, status_tag));
	struct sb_repl *r = s->r;
	(void)ok;
	/* A pump running on another worker owns the partition set and parks
	 * waiters: let it finish (it sees `ending` and stops) before both go.
	 * Called from inside the pump itself (a refused status), it returns
	 * straight after. */
	pthread_mutex_lock(&s->lock);
	while (s->pumping && !pthread_equal(s->pump_thread, pthread_self()))
		pthread_cond_wait(&s->idle, &s->lock);
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_lock(&r->lock);
	if (s->node >= 0 && r->by_node[s->node] == s) {
		r->by_node[s->node] = NULL;
		sb_repl__connected(r, s->node, 0);
	}
	if (s->prev)
		s->prev->next = s->next;
	else if (r->streams == s)
		r->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
	sb_repl__unlock(r);
	sb_repl__apply_caps(r); /* a follower that left may let the high watermark move */
	cancel_waiters(s);
	pthread_mutex_lock(&r->lock);
	sb_repl__pset_unref(r, s->ps);
	s->ps = NULL;
	sb_repl__unlock(r);
	stream_unref(s); /* the tag's */
	stream_unref(s); /* the base reference */
}

static void on_close(struct sb_rpc_tag *t, int ok)
{
	struct fstream *s = (struct fstream *)((char *)t - offsetof(struct fstream, close_tag));
	(void)ok;
	end_stream(s, GRPC_STATUS_CANCELLED, "follower went away");
	stream_unref(s);
}

/* ---- the hello and acknowledgements ---- */

static int cmp_hello(const void *a, const void *b)
{
	const struct hello_ent *x = a, *y = b;
	int c = strcmp(x->topic, y->topic);
	return c ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

/* What the follower said of rp, or NULL if it holds another incarnation of
 * the topic (it drops that one when it sees our topic list). */
static const struct hello_ent *hello_find(const struct fstream *s, const struct rpart *rp)
{
	struct hello_ent key = {.topic = (char *)rp->topic, .partition = rp->partition};
	const struct hello_ent *h = s->nhello ? bsearch(&key, s->hello, s->nhello, sizeof key, cmp_hello) : NULL;
	return h && h->topic_id == rp->topic_id ? h : NULL;
}

/* Validates the hello against this leader and records where the follower
 * stands. 0, or a status code with msg filled. */
static grpc_status_code take_hello(struct fstream *s, const Streambus__V1__FollowRequest *q, char *msg, size_t cap)
{
	struct sb_repl *r = s->r;
	int node = sb_repl__node_index(r, q->node_id);
	if (!q->hello || node < 0 || node == r->self) {
		snprintf(msg, cap, "a Follow stream starts with a hello from a configured peer (node %d is not one)", q->node_id);
		return GRPC_STATUS_INVALID_ARGUMENT;
	}
	if (q->epoch > sb_repl_epoch(r)) {
		sb_repl__adopt_epoch(r, q->epoch, -1 /* unknown: not us */);
		snprintf(msg, cap, "node %d knows epoch %" PRId64 ": this node no longer leads", q->node_id, q->epoch);
		return GRPC_STATUS_FAILED_PRECONDITION;
	}
	s->hello = calloc(q->n_partitions ? q->n_partitions : 1, sizeof *s->hello);
	if (!s->hello) {
		snprintf(msg, cap, "out of memory");
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	}
	for (size_t i = 0; i < q->n_partitions; i++) {
		const Streambus__V1__ReplicaPartitionState *p = q->partitions[i];
		if (!(s->hello[s->nhello].topic = strdup(p->topic))) {
			snprintf(msg, cap, "out of memory");
			return GRPC_STATUS_RESOURCE_EXHAUSTED;
		}
		s->hello[s->nhello].partition = p->partition;
		s->hello[s->nhello].end = p->end_offset;
		s->hello[s->nhello].last_epoch = p->last_epoch;
		s->hello[s->nhello].start = p->end_offset;
		s->hello[s->nhello].staged_base = p->staged_base;
		s->hello[s->nhello].staged_bytes = p->staged_bytes;
		s->hello[s->nhello].topic_id = p->topic_id;
		s->nhello++;
	}
	qsort(s->hello, s->nhello, sizeof *s->hello, cmp_hello);

	int64_t now = sb_mono_ms();
	pthread_mutex_lock(&r->lock);
	struct pset *ps = sb_repl__cur(r);
	grpc_status_code code = GRPC_STATUS_OK;
	for (uint32_t i = 0; ps && i < ps->n && code == GRPC_STATUS_OK; i++) {
		struct rpart *rp = ps->v[i];
		struct hello_ent *h = (struct hello_ent *)hello_find(s, rp);
		struct sb_log_info li;
		int64_t epoch_end;
		if (!h || h->end == 0)
			continue;
		sb_log_info(rp->log, &li);
		/* Where the logs part (KIP-101): the end of the follower's last
		 * epoch in our log. What it holds past that, it must drop. */
		int rc = sb_log_epoch_end(rp->log, h->last_epoch, &epoch_end);
		if (rc) {
			snprintf(msg, cap, "cannot find where %.100s/%d diverges: %s", rp->topic, rp->partition,
				 sb_strerror(rc));
			code = GRPC_STATUS_INTERNAL;
			break;
		}
		h->start = h->end < epoch_end ? h->end : epoch_end;
		if (h->start < li.log_start) {
			snprintf(msg, cap, "node %d holds %.100s/%d up to %" PRId64 ", before this leader's log start %" PRId64
				 ": catching up from a trimmed log is not supported yet",
				 q->node_id, rp->topic, rp->partition, h->start, li.log_start);
			code = GRPC_STATUS_FAILED_PRECONDITION;
		} else if (h->start < h->end) {
			SB_WARN("follower_diverged", "node=%d topic=%s partition=%d follower_end=%" PRId64
				" follower_epoch=%d truncate_to=%" PRId64, q->node_id, rp->topic, rp->partition, h->end,
				h->last_epoch, h->start);
		}
	}
	if (code == GRPC_STATUS_OK && !ps)
		code = GRPC_STATUS_RESOURCE_EXHAUSTED;
	if (code == GRPC_STATUS_OK) {
		struct fstream *old = r->by_node[node];
		if (old) /* a reconnect: the newer stream wins */
			grpc_call_cancel(old->call, NULL);
		r->by_node[node] = s;
		s->node = node;
		sb_repl__connected(r, node, 1);
		for (uint32_t i = 0; i < ps->n; i++) {
			const struct hello_ent *h = hello_find(s, ps->v[i]);
			if (h)
				sb_repl__acked(r, ps->v[i], node, h->start, now);
		}
	}
	sb_repl__pset_unref(r, ps);
	sb_repl__unlock(r);
	return code;
}

static void take_acks(struct fstream *s, const Streambus__V1__FollowRequest *q)
{
	struct sb_repl *r = s->r;
	int64_t now = sb_mono_ms();
	pthread_mutex_lock(&r->lock);
	struct pset *ps = sb_repl__cur(r);
	for (size_t i = 0; ps && i < q->n_partitions; i++) {
		const Streambus__V1__ReplicaPartitionState *p = q->partitions[i];
		struct rpart *rp = sb_repl__find(ps, p->topic, strlen(p->topic), p->partition);
		if (rp && rp->topic_id == p->topic_id)
			sb_repl__acked(r, rp, s->node, p->end_offset, now);
	}
	sb_repl__pset_unref(r, ps);
	sb_repl__unlock(r);
	sb_repl__apply_caps(r);
}

static void on_recv(struct sb_rpc_tag *t, int ok)
{
	struct fstream *s = (struct fstream *)((char *)t - offsetof(struct fstream, recv_tag));
	grpc_byte_buffer *in = s->in;
	s->in = NULL;
	if (!ok || !in) {
		end_stream(s, GRPC_STATUS_OK, "");
		stream_unref(s);
		return;
	}
	Streambus__V1__FollowRequest *q = (Streambus__V1__FollowRequest *)sb_rpc_unpack(
		&streambus__v1__follow_request__descriptor, in, FOLLOW_REQUEST_BYTES_MAX);
	grpc_byte_buffer_destroy(in);
	char msg[256];
	grpc_status_code code = GRPC_STATUS_OK;
	if (!q) {
		code = GRPC_STATUS_INVALID_ARGUMENT;
		snprintf(msg, sizeof msg, "malformed FollowRequest");
	} else if (s->node < 0) {
		code = take_hello(s, q, msg, sizeof msg);
		if (code == GRPC_STATUS_OK)
			pump(s);
	} else {
		take_acks(s, q);
	}
	if (q && code == GRPC_STATUS_OK) {
		/* Taken: the next message may echo it (after the acks above). */
		pthread_mutex_lock(&s->lock);
		if (q->sent_ms > s->echo_ms)
			s->echo_ms = q->sent_ms;
		pthread_mutex_unlock(&s->lock);
	}
	if (q)
		protobuf_c_message_free_unpacked(&q->base, NULL);
	if (code != GRPC_STATUS_OK) {
		end_stream(s, code, msg);
	} else {
		ref(s);
		if (sb_rpc_recv(s->call, &s->recv_tag, &s->in)) {
			__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
			end_stream(s, GRPC_STATUS_CANCELLED, "stream broken");
		}
	}
	stream_unref(s);
}

/* ---- the pump ---- */

/* Pump only. Moves the stream onto the current partition set, carrying each
 * surviving partition's progress. New partitions start where the hello said,
 * or at 0 (a topic the follower creates from the list we send). */
static int migrate(struct fstream *s)
{
	struct sb_repl *r = s->r;
	pthread_mutex_lock(&r->lock);
	struct pset *ps = sb_repl__cur(r);
	if (!ps || ps == s->ps) {
		sb_repl__pset_unref(r, ps);
		sb_repl__unlock(r);
		return ps ? 0 : -ENOMEM;
	}
	sb_repl__unlock(r);
	struct fpart *fp = calloc(ps->n ? ps->n : 1, sizeof *fp);
	if (!fp) {
		pthread_mutex_lock(&r->lock);
		sb_repl__pset_unref(r, ps);
		sb_repl__unlock(r);
		return -ENOMEM;
	}
	cancel_waiters(s);
	for (uint32_t i = 0; i < ps->n; i++) {
		struct rpart *rp = ps->v[i];
		struct rpart *prev = s->ps ? sb_repl__find(s->ps, rp->topic, strlen(rp->topic), rp->partition) : NULL;
		if (prev && prev->topic_id != rp->topic_id)
			prev = NULL; /* re-created: the old incarnation's progress means nothing */
		const struct hello_ent *h = hello_find(s, rp);
		fp[i].s = s;
		fp[i].w_data = (struct sb_log_waiter){.fn = on_data_waiter, .arg = &fp[i]};
		fp[i].w_hw = (struct sb_log_waiter){.fn = on_hw_waiter, .arg = &fp[i]};
		if (prev) {
			const struct fpart *old = &s->fp[sb_repl__index(s->ps, prev)];
			fp[i].fetch = old->fetch;
			fp[i].sent_hw = old->sent_hw;
			fp[i].trunc = old->trunc;
			fp[i].ship = old->ship;
			fp[i].ship_pos = old->ship_pos;
			fp[i].ship_crc = old->ship_crc;
			fp[i].resume_base = old->resume_base;
			fp[i].resume_bytes = old->resume_bytes;
		} else {
			fp[i].fetch = h ? h->start : 0;
			fp[i].trunc = h && h->start < h->end ? h->start : -1;
			fp[i].sent_hw = -1;
			fp[i].ship.base_offset = -1;
			fp[i].resume_base = h && h->start == h->end ? h->staged_base : -1;
			fp[i].resume_bytes = h ? h->staged_bytes : 0;
		}
	}
	pthread_mutex_lock(&r->lock);
	sb_repl__pset_unref(r, s->ps);
	sb_repl__unlock(r);
	free(s->fp);
	s->fp = fp;
	s->ps = ps;
	s->rr = 0;
	return 0;
}

struct topic_list {
	Streambus__V1__ReplicaTopic **v;
	size_t n, cap;
};

static int add_topic(void *arg, const char *name, const struct sb_topic_config *cfg)
{
	struct topic_list *l = arg;
	char conf[SB_CONFIG_FILE_BYTES_MAX];
	int len = sb_topic_config_format(cfg, conf, sizeof conf);
	if (len < 0)
		return len;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		Streambus__V1__ReplicaTopic **v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	Streambus__V1__ReplicaTopic *t = malloc(sizeof *t);
	if (!t)
		return -ENOMEM;
	streambus__v1__replica_topic__init(t);
	t->name = strdup(name);
	t->config = strndup(conf, (size_t)len);
	l->v[l->n++] = t;
	return t->name && t->config ? 0 : -ENOMEM;
}

static void free_topics(struct topic_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i]->name);
		free(l->v[i]->config);
		free(l->v[i]);
	}
	free(l->v);
}

struct outmsg {
	Streambus__V1__FollowResponse m;
	Streambus__V1__SegmentChunk chunk[SHIP_CHUNKS_MAX]; /* one per partition shipped */
	uint32_t nchunk;
	struct topic_list topics;
	Streambus__V1__ReplicaTruncation *trunc, **truncp;
	size_t ntrunc;
	int32_t isr[SB_REPL_NODES_MAX];
	Streambus__V1__ReplicaData **data;
	uint8_t **bufs; /* read buffers the data points into */
	size_t n, cap;
	size_t bytes;
};

static void outmsg_free(struct outmsg *o)
{
	free_topics(&o->topics);
	free(o->trunc);
	free(o->truncp);
	for (size_t i = 0; i < o->n; i++) {
		free(o->data[i]);
		free(o->bufs[i]);
	}
	free(o->data);
	free(o->bufs);
}

static int outmsg_add(struct outmsg *o, const struct rpart *rp, const struct sb_log_read *rd, int64_t hw);

/* Starts shipping f's sealed segment at f->fetch, resuming a partly staged
 * copy: the CRC of the prefix the follower has is computed here. */
static int ship_start(struct fpart *f, struct sb_log *log, const struct sb_log_segment_info *si)
{
	f->ship = *si;
	f->ship_pos = 0;
	f->ship_crc = 0;
	if (f->resume_base == si->base_offset && f->resume_bytes > 0 && (uint64_t)f->resume_bytes <= si->size) {
		uint8_t *buf = malloc(1u << 20);
		if (!buf)
			return -ENOMEM;
		while (f->ship_pos < (uint64_t)f->resume_bytes) {
			size_t want = (uint64_t)f->resume_bytes - f->ship_pos < (1u << 20) ? (size_t)((uint64_t)f->resume_bytes - f->ship_pos) : (1u << 20);
			int64_t n = sb_log_read_sealed(log, si->base_offset, f->ship_pos, buf, want);
			if (n <= 0) {
				free(buf);
				return n < 0 ? (int)n : SB_ECORRUPT;
			}
			f->ship_crc = sb_crc32c_extend(f->ship_crc, buf, (size_t)n);
			f->ship_pos += (uint64_t)n;
		}
		free(buf);
		SB_INFO("segment_ship_resumed", "base=%" PRId64 " position=%" PRIu64, si->base_offset, f->ship_pos);
	}
	f->resume_base = -1;
	return 0;
}

/* Adds the next chunk of f's segment to o. */
static int ship_chunk(struct outmsg *o, struct fpart *f, const struct rpart *rp, size_t budget,
		      const struct sb_log_info *li)
{
	size_t want = f->ship.size - f->ship_pos < budget ? (size_t)(f->ship.size - f->ship_pos) : budget;
	struct sb_log_read rd = {0};
	if (o->nchunk == sizeof o->chunk / sizeof o->chunk[0])
		return 0; /* next message */
	rd.buf = malloc(want ? want : 1);
	if (!rd.buf)
		return -ENOMEM;
	int64_t n = sb_log_read_sealed(rp->log, f->ship.base_offset, f->ship_pos, rd.buf, want);
	if (n < 0 || (n == 0 && want > 0)) {
		free(rd.buf);
		return n < 0 ? (int)n : SB_ECORRUPT;
	}
	rd.log_start = li->log_start;
	rd.stable_end = li->stable_end;
	int rc = outmsg_add(o, rp, &rd, li->high_watermark); /* owns rd.buf now */
	if (rc) {
		free(rd.buf);
		return rc;
	}
	Streambus__V1__SegmentChunk *c = &o->chunk[o->nchunk++];
	streambus__v1__segment_chunk__init(c);
	c->base_offset = f->ship.base_offset;
	c->next_offset = f->ship.next_offset;
	c->file_size = (int64_t)f->ship.size;
	c->position = (int64_t)f->ship_pos;
	c->data.data = rd.buf;
	c->data.len = (size_t)n;
	c->last_epoch = f->ship.last_epoch;
	f->ship_crc = sb_crc32c_extend(f->ship_crc, rd.buf, (size_t)n);
	f->ship_pos += (uint64_t)n;
	c->crc32c = f->ship_crc;
	o->data[o->n - 1]->segment = c;
	o->bytes += (size_t)n;
	if (f->ship_pos == f->ship.size) {
		f->fetch = f->ship.next_offset;
		f->ship.base_offset = -1;
	}
	return 0;
}

static int outmsg_add(struct outmsg *o, const struct rpart *rp, const struct sb_log_read *rd, int64_t hw)
{
	if (o->n == o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 16;
		Streambus__V1__ReplicaData **d = realloc(o->data, cap * sizeof *d);
		if (!d)
			return -ENOMEM;
		o->data = d;
		uint8_t **b = realloc(o->bufs, cap * sizeof *b);
		if (!b)
			return -ENOMEM;
		o->bufs = b;
		o->cap = cap;
	}
	Streambus__V1__ReplicaData *d = malloc(sizeof *d);
	if (!d)
		return -ENOMEM;
	streambus__v1__replica_data__init(d);
	d->topic = (char *)rp->topic;
	d->partition = rp->partition;
	d->high_watermark = hw;
	d->log_start_offset = rd->log_start;
	d->log_end_offset = rd->stable_end;
	if (rd->len) {
		d->batches.data = (uint8_t *)rd->data;
		d->batches.len = rd->len;
		d->segment_base = rd->segment_base;
	}
	o->data[o->n] = d;
	o->bufs[o->n] = rd->buf;
	o->n++;
	o->bytes += rd->len + 64;
	return 0;
}

/* Pump only: reads what the follower lacks into o. 0, or an error that ends
 * the stream (with msg). */
static int gather(struct fstream *s, struct outmsg *o, char *msg, size_t cap)
{
	struct pset *ps = s->ps;
	uint32_t n = ps->n;
	for (uint32_t i = 0; i < n; i++) { /* truncations go first, all at once */
		if (s->fp[i].trunc < 0)
			continue;
		if (!o->trunc) {
			o->trunc = calloc(n, sizeof *o->trunc);
			o->truncp = calloc(n, sizeof *o->truncp);
			if (!o->trunc || !o->truncp) {
				snprintf(msg, cap, "out of memory");
				return -ENOMEM;
			}
		}
		Streambus__V1__ReplicaTruncation *t = &o->trunc[o->ntrunc];
		streambus__v1__replica_truncation__init(t);
		t->topic = ps->v[i]->topic;
		t->partition = ps->v[i]->partition;
		t->offset = s->fp[i].trunc;
		o->truncp[o->ntrunc++] = t;
		s->fp[i].trunc = -1;
	}
	for (uint32_t k = 0; k < n && o->bytes < SB_REPL_MESSAGE_BYTES; k++) {
		uint32_t i = (s->rr + k) % n;
		struct fpart *f = &s->fp[i];
		struct rpart *rp = ps->v[i];
		struct sb_log_read rd;
		struct sb_log_segment_info si;
		size_t budget = SB_REPL_MESSAGE_BYTES - o->bytes;
		int rc = 0;
		/* Catch-up by whole files: a follower standing at the base of a
		 * sealed segment gets the file itself. */
		if (f->ship.base_offset < 0 && sb_log_sealed_at(rp->log, f->fetch, &si))
			rc = ship_start(f, rp->log, &si);
		if (!rc && f->ship.base_offset >= 0) {
			struct sb_log_info li;
			sb_log_info(rp->log, &li);
			rc = ship_chunk(o, f, rp, budget, &li);
			if (!rc) {
				f->sent_hw = li.high_watermark;
				continue;
			}
		}
		if (rc) {
			snprintf(msg, cap, "shipping %.100s/%d segment %" PRId64 " to the follower: %s", rp->topic,
				 rp->partition, f->ship.base_offset, sb_strerror(rc));
			return rc == SB_ENOTFOUND ? SB_ERANGE_LOW : rc;
		}
		size_t want = budget < SB_REPL_PARTITION_BYTES ? budget : SB_REPL_PARTITION_BYTES;
		rc = sb_log_read_stable(rp->log, f->fetch, want, &rd);
		if (!rc && rd.len > want && o->bytes > 0) {
			free(rd.buf); /* one big batch: it goes alone in the next message */
			break;
		}
		if (rc) {
			snprintf(msg, cap, "reading %.100s/%d at %" PRId64 " for the follower: %s", rp->topic, rp->partition,
				 f->fetch, sb_strerror(rc));
			return rc;
		}
		if (rd.len == 0 && rd.high_watermark <= f->sent_hw)
			continue;
		rc = outmsg_add(o, rp, &rd, rd.high_watermark);
		if (rc) {
			free(rd.buf);
			snprintf(msg, cap, "out of memory");
			return rc;
		}
		if (rd.len)
			f->fetch = rd.next_offset;
		f->sent_hw = rd.high_watermark;
	}
	s->rr = n ? (s->rr + 1) % n : 0;
	return 0;
}

/* Pump only: parks waiters on every partition. Returns 1 if something
 * arrived meanwhile (pump again). */
static int park(struct fstream *s)
{
	int again = 0;
	for (uint32_t i = 0; i < s->ps->n && !again; i++) {
		struct fpart *f = &s->fp[i];
		struct sb_log *log = s->ps->v[i]->log;
		int rc;
		if (!__atomic_load_n(&f->data_armed, __ATOMIC_ACQUIRE)) {
			__atomic_store_n(&f->data_armed, 1, __ATOMIC_RELEASE);
			rc = sb_log_wait_stable(log, f->fetch, &f->w_data);
			if (rc)
				__atomic_store_n(&f->data_armed, 0, __ATOMIC_RELEASE);
			again |= rc == 1;
		}
		if (!__atomic_load_n(&f->hw_armed, __ATOMIC_ACQUIRE)) {
			__atomic_store_n(&f->hw_armed, 1, __ATOMIC_RELEASE);
			rc = sb_log_wait(log, f->sent_hw, &f->w_hw);
			if (rc)
				__atomic_store_n(&f->hw_armed, 0, __ATOMIC_RELEASE);
			again |= rc == 1;
		}
	}
	return again;
}

/* One round: returns 1 if a message went out or the stream ends, 0 if it
 * parked with nothing to send, -1 to go round again. */
static int pump_once(struct fstream *s)
{
	struct sb_repl *r = s->r;
	struct outmsg o = {.m = STREAMBUS__V1__FOLLOW_RESPONSE__INIT};
	char msg[256] = "";
	int rc = migrate(s);
	if (rc) {
		end_stream(s, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return 1;
	}
	if (!s->topics_sent || s->topics_gen_sent != s->ps->gen) {
		rc = sb_logmgr_list_topics(r->mgr, add_topic, &o.topics);
		if (rc) {
			outmsg_free(&o);
			end_stream(s, GRPC_STATUS_RESOURCE_EXHAUSTED, "listing topics failed");
			return 1;
		}
		o.m.has_topics = 1;
		o.m.n_topics = o.topics.n;
		o.m.topics = o.topics.v;
		s->topics_sent = 1;
		s->topics_gen_sent = s->ps->gen;
	}
	rc = gather(s, &o, msg, sizeof msg);
	if (rc) {
		outmsg_free(&o);
		end_stream(s, rc == SB_ERANGE_LOW ? GRPC_STATUS_FAILED_PRECONDITION : GRPC_STATUS_INTERNAL, msg);
		return 1;
	}
	/* The echo is read before the lease is computed: the request it
	 * names was taken before this moment, so the follower's lease (echo +
	 * left, on its clock) ends no later than this node could drop it. */
	pthread_mutex_lock(&s->lock);
	int64_t echo = s->echo_ms;
	pthread_mutex_unlock(&s->lock);
	int64_t now = sb_mono_ms(), left = 0;
	pthread_mutex_lock(&r->lock);
	uint32_t isr = r->isr_all;
	if (s->node >= 0 && ((isr >> s->node) & 1)) {
		left = r->lag_max_ms;
		for (uint32_t i = 0; s->ps && i < s->ps->n; i++) {
			int64_t c = s->ps->v[i]->caught_up_ms[s->node];
			int64_t l = c > 0 ? r->lag_max_ms - (now - c) : 0;
			if (l < left)
				left = l;
		}
		if (left < 0)
			left = 0;
	}
	int64_t hb = sb_repl__heartbeat_ms(r);
	pthread_mutex_unlock(&r->lock);
	if (!o.m.has_topics && o.n == 0 && o.ntrunc == 0 && isr == s->isr_sent && now - s->last_send_ms < hb) {
		outmsg_free(&o);
		return park(s) ? -1 : 0;
	}
	o.m.echo_sent_ms = echo;
	o.m.in_sync_left_ms = left;
	s->last_send_ms = now;
	for (int k = 0; k < r->nnodes; k++)
		if ((isr >> k) & 1)
			o.isr[o.m.n_in_sync_nodes++] = r->nodes[k].id;
	o.m.in_sync_nodes = o.isr;
	o.m.n_truncations = o.ntrunc;
	o.m.truncations = o.truncp;
	s->isr_sent = isr;
	o.m.epoch = sb_repl_epoch(r);
	o.m.leader_id = r->node_id;
	o.m.n_data = o.n;
	o.m.data = o.data;
	grpc_byte_buffer *bb = sb_rpc_pack(&o.m.base);
	outmsg_free(&o);
	if (!bb) {
		end_stream(s, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return 1;
	}
	pthread_mutex_lock(&s->lock);
	if (s->ending) {
		pthread_mutex_unlock(&s->lock);
		grpc_byte_buffer_destroy(bb);
		return 1;
	}
	s->out = bb;
	s->send_inflight = 1;
	ref(s);
	if (sb_rpc_send(s->call, &s->send_tag, bb, !s->initial_md_sent, 0)) {
		s->send_inflight = 0;
		s->out = NULL;
		grpc_byte_buffer_destroy(bb);
		__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
		pthread_mutex_unlock(&s->lock);
		end_stream(s, GRPC_STATUS_CANCELLED, "stream broken");
		return 1;
	}
	s->initial_md_sent = 1;
	pthread_mutex_unlock(&s->lock);
	return 1;
}

static void pump(struct fstream *s)
{
	pthread_mutex_lock(&s->lock);
	if (s->pumping) {
		s->pump_again = 1;
		pthread_mutex_unlock(&s->lock);
		return;
	}
	s->pumping = 1;
	s->pump_thread = pthread_self();
	for (;;) {
		s->pump_again = 0;
		if (s->ending || s->send_inflight || s->node < 0)
			break;
		pthread_mutex_unlock(&s->lock);
		int rc = pump_once(s);
		pthread_mutex_lock(&s->lock);
		if (rc < 0)
			s->pump_again = 1;
		if (!s->pump_again)
			break;
	}
	s->pumping = 0;
	pthread_cond_broadcast(&s->idle);
	pthread_mutex_unlock(&s->lock);
}

static void on_sent(struct sb_rpc_tag *t, int ok)
{
	struct fstream *s = (struct fstream *)((char *)t - offsetof(struct fstream, send_tag));
	pthread_mutex_lock(&s->lock);
	grpc_byte_buffer_destroy(s->out);
	s->out = NULL;
	s->send_inflight = 0;
	int run = try_status(s);
	pthread_mutex_unlock(&s->lock);
	if (run)
		on_status(&s->status_tag, 0);
	if (!ok)
		end_stream(s, GRPC_STATUS_CANCELLED, "send failed");
	else
		pump(s);
	stream_unref(s);
}

static void on_wake(struct sb_rpc_tag *t, int ok)
{
	struct fstream *s = (struct fstream *)((char *)t - offsetof(struct fstream, wake_tag));
	(void)ok;
	__atomic_store_n(&s->wake_pending, 0, __ATOMIC_RELEASE);
	pump(s);
	stream_unref(s);
}

/* ---- entry points ---- */

void sb_repl_serve_follow(struct sb_repl *r, grpc_call *call, void (*done)(void *arg), void *arg)
{
	struct fstream *s = calloc(1, sizeof *s);
	char leader[300], md_val[300];
	if (!s) {
		grpc_call_cancel(call, NULL);
		grpc_call_unref(call);
		if (done)
			done(arg);
		return;
	}
	s->done = done;
	s->done_arg = arg;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->idle, NULL);
	s->r = r;
	s->call = call;
	s->node = -1;
	s->isr_sent = ~0u;
	s->refs = 1; /* base */
	s->recv_tag.fn = on_recv;
	s->send_tag.fn = on_sent;
	s->wake_tag.fn = on_wake;
	s->close_tag.fn = on_close;
	s->status_tag.fn = on_status;
	pthread_mutex_lock(&r->lock);
	int lead = r->role == SB_ROLE_LEADER && r->ready && !r->stopping;
	if (lead) {
		s->next = r->streams;
		if (r->streams)
			r->streams->prev = s;
		r->streams = s;
	}
	pthread_mutex_unlock(&r->lock);
	ref(s);
	if (sb_rpc_recv_close(call, &s->close_tag, &s->close_cancelled))
		__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
	if (!lead) {
		int32_t id = sb_repl_leader(r, leader, sizeof leader);
		snprintf(md_val, sizeof md_val, "%s", leader);
		const char *md[2] = {"streambus-leader", md_val};
		pthread_mutex_lock(&s->lock);
		s->ending = 1;
		s->status_started = 1;
		ref(s);
		char msg[400];
		snprintf(msg, sizeof msg, "node %d does not lead (leader: node %d at %s)", r->node_id, id, leader);
		int rc = sb_rpc_send_status(call, &s->status_tag, 1, GRPC_STATUS_UNAVAILABLE, msg, md,
					    id >= 0 && leader[0] ? 1 : 0);
		pthread_mutex_unlock(&s->lock);
		if (rc)
			on_status(&s->status_tag, 0);
		return;
	}
	ref(s);
	if (sb_rpc_recv(call, &s->recv_tag, &s->in)) {
		__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
		end_stream(s, GRPC_STATUS_CANCELLED, "stream broken");
	}
}

void sb_repl__streams_wake(struct sb_repl *r)
{
	pthread_mutex_lock(&r->lock);
	for (struct fstream *s = r->streams; s; s = s->next)
		stream_wake(s);
	pthread_mutex_unlock(&r->lock);
}

void sb_repl__streams_end(struct sb_repl *r)
{
	pthread_mutex_lock(&r->lock);
	for (struct fstream *s = r->streams; s; s = s->next)
		grpc_call_cancel(s->call, NULL);
	pthread_mutex_unlock(&r->lock);
}
