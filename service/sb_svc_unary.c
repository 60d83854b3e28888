/* sb_svc_unary.c - unary methods: Fetch, Lookup, the Admin service, Health.Check.
 * Each runs on the worker thread that received it (reads come from the page
 * cache; admin calls are rare) and replies in one batch. */
#include "sb_svc.h"

#include "sb_repl.h"

#include "sb_auth.h"
#include "grpc/health/v1/health.pb-c.h"
#include "sb_crc32c.h"
#include "sb_kvstore.h"
#include "sb_limits.h"
#include "sb_logmgr.h"
#include "sb_logging.h"
#include "sb_svc_encode.h"
#include "sb_svc_status.h"
#include "streambus/v1/streambus.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct unary {
	struct sb_rpc_tag sent, closed;
	grpc_call *call;
	grpc_byte_buffer *bb; /* the reply message, destroyed after it was sent */
	struct sb_svc *svc;
	struct sb_caller *who;
	int refs, cancelled;
};

#define reply sb_unary_reply

static void unary_unref(struct unary *u)
{
	if (__atomic_sub_fetch(&u->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		grpc_call_unref(u->call);
		if (u->bb)
			grpc_byte_buffer_destroy(u->bb);
		sb_svc__caller_end(u->svc, u->who);
		sb_svc__call_end(u->svc);
		free(u);
	}
}

static void on_sent(struct sb_rpc_tag *t, int ok)
{
	(void)ok;
	unary_unref((struct unary *)((char *)t - offsetof(struct unary, sent)));
}

static void on_closed(struct sb_rpc_tag *t, int ok)
{
	(void)ok;
	unary_unref((struct unary *)((char *)t - offsetof(struct unary, closed)));
}

static void fail(struct reply *r, int err, const char *fmt, const char *arg)
{
	r->code = sb_svc_status(err);
	snprintf(r->msg, sizeof r->msg, fmt, arg);
}

/* Looks up topic/partition for a request, with the right status on failure. */
static int find_log(struct sb_svc *svc, const char *topic, int32_t partition, struct sb_topic **t,
		    struct sb_log **log, struct reply *r)
{
	int rc = sb_logmgr_acquire(svc->mgr, topic, t);
	if (rc == SB_EBADNAME) {
		fail(r, rc, "invalid topic name \"%.300s\": use 1-249 characters of [A-Za-z0-9._-]", topic);
		return rc;
	}
	if (rc) {
		fail(r, rc, "unknown topic \"%.300s\"", topic);
		return rc;
	}
	rc = sb_topic_log(*t, partition, log);
	if (rc) {
		r->code = GRPC_STATUS_NOT_FOUND;
		snprintf(r->msg, sizeof r->msg, "topic \"%.300s\" has no partition %d (it has %d)", topic,
			 partition, sb_topic_partitions(*t));
		sb_topic_release(*t);
		*t = NULL;
	}
	return rc;
}

/* A caller without the permission learns nothing about the topic: the
 * answer is the same whether it exists or not. */
static int denied(const struct sb_caller *who, enum sb_perm perm, const char *topic, struct reply *r)
{
	const struct sb_principal *p = who ? who->who : NULL;
	int ok = perm ? sb_principal_can(p, perm, topic) : sb_principal_sees(p, topic);
	if (!ok) {
		r->code = GRPC_STATUS_PERMISSION_DENIED;
		snprintf(r->msg, sizeof r->msg, "principal %s may not %s topic \"%.300s\"", sb_principal_name(p),
			 perm == SB_PERM_CONSUME ? "consume from" : "see", topic);
	}
	return !ok;
}

static void do_fetch(struct sb_svc *svc, const Streambus__V1__FetchRequest *q, struct reply *r,
		     const struct sb_caller *who)
{
	struct sb_topic *t = NULL;
	struct sb_log *log;
	struct sb_log_read rd = {0};
	struct sb_enc e;
	uint32_t n = 0;
	int64_t next = q->offset;

	if (q->offset < 0) {
		fail(r, SB_EINVAL, "offset must be >= 0%s", "");
		return;
	}
	if (denied(who, SB_PERM_CONSUME, q->topic, r))
		return;
	if (find_log(svc, q->topic, q->partition, &t, &log, r))
		return;
	size_t max_bytes = q->max_bytes && q->max_bytes < svc->cfg->consume_max_bytes ? q->max_bytes
										  : (size_t)svc->cfg->consume_max_bytes;
	uint32_t max_records = q->max_records && q->max_records < svc->cfg->consume_max_records
				       ? q->max_records : (uint32_t)svc->cfg->consume_max_records;
	int rc = sb_log_read(log, q->offset, max_bytes, &rd);
	sb_enc_init(&e);
	if (rc == SB_ERANGE_LOW || rc == SB_ERANGE_HIGH) {
		r->code = GRPC_STATUS_OUT_OF_RANGE;
		snprintf(r->msg, sizeof r->msg, "offset %" PRId64 " is out of range: valid offsets are [%" PRId64
			 ", %" PRId64 "]", q->offset, rd.log_start, rd.stable_end);
	} else if (rc) {
		fail(r, rc, "read failed: %s", sb_strerror(rc));
	} else {
		rc = sb_enc_records(&e, 1, rd.data, rd.len, q->offset, INT64_MAX, max_records, max_bytes, &n, &next);
		if (!rc && rd.len == 0 && rd.next_offset > next)
			next = rd.next_offset; /* the read stepped over a gap between segments */
		if (!rc)
			rc = sb_enc_varint_field(&e, 2, (uint64_t)rd.stable_end);
		if (!rc)
			rc = sb_enc_varint_field(&e, 3, (uint64_t)rd.log_start);
		if (!rc)
			rc = sb_enc_varint_field(&e, 4, (uint64_t)next);
		if (rc) {
			fail(r, rc, "read failed: %s", sb_strerror(rc));
		} else {
			sb_topic_count(t, 0, n, (int64_t)e.len);
			grpc_slice s = grpc_slice_from_copied_buffer((const char *)e.buf, e.len);
			r->bb = grpc_raw_byte_buffer_create(&s, 1);
			grpc_slice_unref(s);
		}
	}
	sb_enc_fini(&e);
	free(rd.buf);
	sb_topic_release(t);
}

/* One LookupResult (1 key, 2 found, 3 partition, 4 record) for key, as
 * field 1 of out. */
static int lookup_one(struct sb_topic *t, int32_t partition, const ProtobufCBinaryData *key, struct sb_enc *out)
{
	struct sb_kvstore *kv;
	struct sb_kv_result res;
	struct sb_enc item;
	int rc = sb_topic_kv(t, partition, &kv);
	if (rc)
		return rc;
	if ((rc = sb_kvstore_get(kv, key->data, (uint32_t)key->len, &res)) != 0)
		return rc;
	sb_enc_init(&item);
	rc = sb_enc_bytes_field(&item, 1, key->data, key->len);
	if (!rc)
		rc = sb_enc_varint_field(&item, 2, (uint64_t)res.found);
	if (!rc)
		rc = sb_enc_varint_field(&item, 3, (uint64_t)partition);
	if (!rc && res.found) {
		struct sb_record_view v = {
			.offset = res.offset,
			.timestamp_ms = res.timestamp_ms,
			.key = key->data,
			.key_len = (int32_t)key->len,
			.value = res.value,
			.value_len = (int32_t)res.value_len,
			.headers = res.headers,
			.headers_end = res.headers + res.headers_len,
		};
		rc = sb_enc_record(&item, 4, &v);
	}
	if (!rc)
		rc = sb_enc_bytes_field(out, 1, item.buf, item.len);
	sb_enc_fini(&item);
	sb_kv_result_free(&res);
	return rc;
}

static void do_lookup(struct sb_svc *svc, const Streambus__V1__LookupRequest *q, struct reply *r,
		      const struct sb_caller *who)
{
	struct sb_topic *t = NULL;
	struct sb_enc e;
	int rc = 0;
	if (q->n_keys == 0 || q->n_keys > SB_LOOKUP_KEYS_MAX) {
		r->code = GRPC_STATUS_INVALID_ARGUMENT;
		snprintf(r->msg, sizeof r->msg, "a lookup takes 1 to %u keys, not %zu", SB_LOOKUP_KEYS_MAX, q->n_keys);
		return;
	}
	for (size_t i = 0; i < q->n_keys; i++)
		if (q->keys[i].len == 0 || q->keys[i].len > SB_KV_KEY_MAX) {
			r->code = GRPC_STATUS_INVALID_ARGUMENT;
			snprintf(r->msg, sizeof r->msg, "key %zu has %zu bytes: keys have 1 to %u", i, q->keys[i].len,
				 SB_KV_KEY_MAX);
			return;
		}
	if (denied(who, SB_PERM_CONSUME, q->topic, r))
		return;
	struct sb_log *log0;
	if (find_log(svc, q->topic, q->partition < 0 ? 0 : q->partition, &t, &log0, r))
		return;
	int32_t np = sb_topic_partitions(t);
	sb_enc_init(&e);
	for (size_t i = 0; i < q->n_keys && !rc; i++) {
		int32_t p = q->partition >= 0 ? q->partition
					      : (int32_t)(sb_crc32c(q->keys[i].data, q->keys[i].len) % (uint32_t)np);
		rc = lookup_one(t, p, &q->keys[i], &e);
		if (!rc && e.len > (size_t)svc->cfg->max_message_bytes)
			rc = SB_ETOOBIG;
	}
	if (rc == SB_ETOOBIG)
		fail(r, rc, "the values exceed the message limit (max-message-bytes): ask for fewer keys%s", "");
	else if (rc == SB_ENOTFOUND)
		fail(r, SB_EFAILED, "this server keeps no key store (--memtable-bytes 0)%s", "");
	else if (rc)
		fail(r, rc, "lookup failed: %s", sb_strerror(rc));
	else {
		grpc_slice s = grpc_slice_from_copied_buffer((const char *)e.buf, e.len);
		r->bb = grpc_raw_byte_buffer_create(&s, 1);
		grpc_slice_unref(s);
	}
	sb_enc_fini(&e);
	sb_topic_release(t);
}

/* TopicConfig (0/empty = default) -> sb_topic_config. */
static int map_config(const Streambus__V1__TopicConfig *c, struct sb_topic_config *out, struct reply *r)
{
	if (!c)
		return 0;
	out->log.retention_bytes = c->retention_bytes;
	out->log.retention_ms = c->retention_ms;
	out->log.segment_bytes = c->segment_bytes > 0 ? (uint64_t)c->segment_bytes : 0;
	out->log.segment_ms = c->segment_ms;
	out->log.fsync_interval_ms = c->fsync_interval_ms;
	out->min_insync_replicas = c->min_insync_replicas;
	if (c->segment_bytes < 0 || c->fsync_interval_ms < 0 || c->min_insync_replicas < 0 ||
	    c->retention_bytes < -1 || c->retention_ms < -1 || c->segment_ms < 0) {
		fail(r, SB_EBADCONFIG, "invalid topic config: negative value%s", "");
		return SB_EBADCONFIG;
	}
	if (c->fsync_policy && c->fsync_policy[0] && sb_fsync_policy_parse(c->fsync_policy, &out->log.fsync_policy)) {
		fail(r, SB_EBADCONFIG, "invalid fsync_policy \"%.64s\": use always, interval or never", c->fsync_policy);
		return SB_EBADCONFIG;
	}
	if (c->cleanup_policy && c->cleanup_policy[0]) {
		if (strlen(c->cleanup_policy) >= sizeof out->cleanup_policy) {
			fail(r, SB_EBADCONFIG, "invalid cleanup_policy%s", "");
			return SB_EBADCONFIG;
		}
		snprintf(out->cleanup_policy, sizeof out->cleanup_policy, "%s", c->cleanup_policy);
	}
	return 0;
}

static void do_create(struct sb_svc *svc, const Streambus__V1__CreateTopicRequest *q, struct reply *r)
{
	struct sb_topic_config cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.log.fsync_policy = SB_FSYNC_DEFAULT;
	if (q->partitions < 0 || q->replication_factor < 0) {
		fail(r, SB_EINVAL, "partitions and replication_factor must be >= 0%s", "");
		return;
	}
	cfg.partitions = q->partitions;
	cfg.replication_factor = q->replication_factor;
	if (sb_repl_clustered(svc->repl)) {
		/* Every node holds every partition: the factor is the cluster's size. */
		struct sb_repl_node nodes[SB_REPL_NODES_MAX];
		const char *roles[SB_REPL_NODES_MAX];
		int n = sb_repl_nodes(svc->repl, nodes, roles, SB_REPL_NODES_MAX);
		if (q->replication_factor != 0 && q->replication_factor != n) {
			r->code = GRPC_STATUS_INVALID_ARGUMENT;
			snprintf(r->msg, sizeof r->msg,
				 "every node of this %d-node cluster holds every partition: replication_factor must be %d (or 0)",
				 n, n);
			return;
		}
		cfg.replication_factor = n;
	}
	if (map_config(q->config, &cfg, r))
		return;
	int rc = sb_logmgr_create_topic(svc->mgr, q->name, &cfg);
	if (rc == SB_EBADNAME)
		fail(r, rc, "invalid topic name \"%.300s\": use 1-249 characters of [A-Za-z0-9._-], not . or ..", q->name);
	else if (rc == SB_EEXISTS)
		fail(r, rc, "topic \"%.300s\" already exists", q->name);
	else if (rc == SB_EBADCONFIG)
		fail(r, rc, "invalid topic configuration for \"%.300s\" (see docs/API.md for the bounds)", q->name);
	else if (rc)
		fail(r, rc, "create failed: %s", sb_strerror(rc));
	else {
		Streambus__V1__CreateTopicResponse resp = STREAMBUS__V1__CREATE_TOPIC_RESPONSE__INIT;
		sb_repl_topics_changed(svc->repl); /* followers create it too */
		r->bb = sb_rpc_pack(&resp.base);
	}
}

static void do_delete(struct sb_svc *svc, const Streambus__V1__DeleteTopicRequest *q, struct reply *r)
{
	struct sb_topic *t = NULL;
	int held = sb_logmgr_acquire(svc->mgr, q->name, &t) == 0;
	int rc = sb_logmgr_delete_topic(svc->mgr, q->name);
	if (held && rc == 0)
		sb_svc__consume_topic_deleted(svc, t); /* its subscribers learn at once */
	if (held)
		sb_topic_release(t);
	if (rc == 0)
		sb_repl_topics_changed(svc->repl); /* releases replication's references; followers delete it */
	if (rc == SB_EBADNAME)
		fail(r, rc, "invalid topic name \"%.300s\"", q->name);
	else if (rc == SB_ENOTOPIC)
		fail(r, rc, "unknown topic \"%.300s\"", q->name);
	else if (rc)
		fail(r, rc, "delete failed: %s", sb_strerror(rc));
	else {
		Streambus__V1__DeleteTopicResponse resp = STREAMBUS__V1__DELETE_TOPIC_RESPONSE__INIT;
		r->bb = sb_rpc_pack(&resp.base);
	}
}

/* Fills a TopicConfig from a topic's settings (strings point into cfg). */
static void config_out(const struct sb_topic_config *cfg, Streambus__V1__TopicConfig *c)
{
	c->retention_bytes = cfg->log.retention_bytes;
	c->retention_ms = cfg->log.retention_ms;
	c->segment_bytes = (int64_t)cfg->log.segment_bytes;
	c->segment_ms = cfg->log.segment_ms;
	c->fsync_policy = (char *)sb_fsync_policy_name(cfg->log.fsync_policy);
	c->fsync_interval_ms = cfg->log.fsync_interval_ms;
	c->cleanup_policy = (char *)cfg->cleanup_policy;
	c->min_insync_replicas = cfg->min_insync_replicas;
}

struct listing {
	Streambus__V1__TopicInfo *infos;
	Streambus__V1__TopicInfo **ptrs;
	Streambus__V1__TopicConfig *cfgs;
	char **names;
	struct sb_topic_config *copies;
	size_t n, cap;
	const struct sb_principal *who; /* lists only the topics it may see */
};

static int list_one(void *arg, const char *name, const struct sb_topic_config *cfg)
{
	struct listing *l = arg;
	if (!sb_principal_sees(l->who, name))
		return 0;
	if (l->n == l->cap)
		return 1;
	size_t i = l->n++;
	streambus__v1__topic_info__init(&l->infos[i]);
	streambus__v1__topic_config__init(&l->cfgs[i]);
	l->names[i] = strdup(name);
	l->copies[i] = *cfg;
	l->infos[i].name = l->names[i];
	l->infos[i].partitions = cfg->partitions;
	l->infos[i].replication_factor = cfg->replication_factor;
	config_out(&l->copies[i], &l->cfgs[i]);
	l->infos[i].config = &l->cfgs[i];
	l->ptrs[i] = &l->infos[i];
	return 0;
}

static int count_one(void *arg, const char *name, const struct sb_topic_config *cfg)
{
	(void)name;
	(void)cfg;
	(*(size_t *)arg)++;
	return 0;
}

static void do_list(struct sb_svc *svc, struct reply *r, const struct sb_caller *who)
{
	struct listing l = {0};
	l.who = who ? who->who : NULL;
	Streambus__V1__ListTopicsResponse resp = STREAMBUS__V1__LIST_TOPICS_RESPONSE__INIT;
	/* Size the arrays to the topics there are now (plus slack for ones
	 * created meanwhile), not to the 10,000-topic maximum. */
	l.cap = 16;
	if (sb_logmgr_list_topics(svc->mgr, count_one, &l.cap) == 0 && l.cap > SB_TOPICS_MAX_LISTED)
		l.cap = SB_TOPICS_MAX_LISTED;
	l.infos = calloc(l.cap, sizeof *l.infos);
	l.ptrs = calloc(l.cap, sizeof *l.ptrs);
	l.cfgs = calloc(l.cap, sizeof *l.cfgs);
	l.names = calloc(l.cap, sizeof *l.names);
	l.copies = calloc(l.cap, sizeof *l.copies);
	if (l.infos && l.ptrs && l.cfgs && l.names && l.copies) {
		int rc = sb_logmgr_list_topics(svc->mgr, list_one, &l);
		(void)rc; /* 1 = listing full: the rest is cut */
		resp.n_topics = l.n;
		resp.topics = l.ptrs;
		r->bb = sb_rpc_pack(&resp.base);
	} else {
		fail(r, -ENOMEM, "out of memory%s", "");
	}
	for (size_t i = 0; i < l.n; i++)
		free(l.names[i]);
	free(l.infos);
	free(l.ptrs);
	free(l.cfgs);
	free(l.names);
	free(l.copies);
}

static void do_describe(struct sb_svc *svc, const Streambus__V1__DescribeTopicRequest *q, struct reply *r,
			const struct sb_caller *who)
{
	struct sb_topic *t = NULL;
	if (denied(who, 0, q->name, r))
		return;
	int rc = sb_logmgr_acquire(svc->mgr, q->name, &t);
	if (rc) {
		fail(r, rc, rc == SB_EBADNAME ? "invalid topic name \"%.300s\"" : "unknown topic \"%.300s\"", q->name);
		return;
	}
	const struct sb_topic_config *cfg = sb_topic_config(t);
	int32_t np = sb_topic_partitions(t), leader = sb_repl_leader(svc->repl, NULL, 0);
	int32_t replicas[SB_REPL_NODES_MAX];
	struct sb_repl_node nodes[SB_REPL_NODES_MAX];
	const char *roles[SB_REPL_NODES_MAX];
	int nrep = sb_repl_nodes(svc->repl, nodes, roles, SB_REPL_NODES_MAX);
	int32_t *isr = calloc((size_t)np * SB_REPL_NODES_MAX, sizeof *isr);
	for (int i = 0; i < nrep; i++)
		replicas[i] = nodes[i].id;
	Streambus__V1__DescribeTopicResponse resp = STREAMBUS__V1__DESCRIBE_TOPIC_RESPONSE__INIT;
	Streambus__V1__TopicInfo info = STREAMBUS__V1__TOPIC_INFO__INIT;
	Streambus__V1__TopicConfig c = STREAMBUS__V1__TOPIC_CONFIG__INIT;
	Streambus__V1__PartitionInfo *parts = calloc((size_t)np, sizeof *parts);
	Streambus__V1__PartitionInfo **ptrs = calloc((size_t)np, sizeof *ptrs);
	if (!parts || !ptrs || !isr) {
		fail(r, -ENOMEM, "out of memory%s", "");
		goto out;
	}
	info.name = (char *)sb_topic_name(t);
	info.partitions = np;
	info.replication_factor = cfg->replication_factor;
	config_out(cfg, &c);
	info.config = &c;
	for (int32_t p = 0; p < np; p++) {
		struct sb_log *log;
		struct sb_log_info li;
		if (sb_topic_log(t, p, &log))
			continue;
		sb_log_info(log, &li);
		streambus__v1__partition_info__init(&parts[p]);
		parts[p].partition = p;
		parts[p].log_start_offset = li.log_start;
		parts[p].log_end_offset = li.stable_end;
		parts[p].high_watermark = li.high_watermark;
		parts[p].leader = leader;
		parts[p].n_replicas = (size_t)nrep;
		parts[p].replicas = replicas;
		int32_t *in = isr + (size_t)p * SB_REPL_NODES_MAX;
		int n = sb_repl_insync(svc->repl, sb_topic_name(t), p, in, SB_REPL_NODES_MAX);
		parts[p].n_in_sync_replicas = li.failed ? 0 : (size_t)(n < SB_REPL_NODES_MAX ? n : SB_REPL_NODES_MAX);
		parts[p].in_sync_replicas = in;
		parts[p].size_bytes = (int64_t)li.size_bytes;
		parts[p].segments = (int32_t)li.segments;
		ptrs[p] = &parts[p];
	}
	resp.topic = &info;
	resp.n_partitions = (size_t)np;
	resp.partitions = ptrs;
	r->bb = sb_rpc_pack(&resp.base);
out:
	free(parts);
	free(ptrs);
	free(isr);
	sb_topic_release(t);
}

static void do_cluster(struct sb_svc *svc, struct reply *r)
{
	Streambus__V1__GetClusterInfoResponse resp = STREAMBUS__V1__GET_CLUSTER_INFO_RESPONSE__INIT;
	Streambus__V1__NodeInfo info[SB_REPL_NODES_MAX], *ptrs[SB_REPL_NODES_MAX];
	struct sb_repl_node nodes[SB_REPL_NODES_MAX];
	const char *roles[SB_REPL_NODES_MAX];
	int n = sb_repl_nodes(svc->repl, nodes, roles, SB_REPL_NODES_MAX);
	for (int i = 0; i < n; i++) {
		streambus__v1__node_info__init(&info[i]);
		info[i].id = nodes[i].id;
		/* A single node reports the address it listens on. */
		info[i].address = sb_repl_clustered(svc->repl) ? nodes[i].address : (char *)svc->cfg->listen;
		info[i].role = (char *)roles[i];
		ptrs[i] = &info[i];
	}
	resp.n_nodes = (size_t)n;
	resp.nodes = ptrs;
	resp.leader_epoch = sb_repl_epoch(svc->repl);
	resp.node_id = sb_repl_node_id(svc->repl);
	r->bb = sb_rpc_pack(&resp.base);
}

/* Health: liveness is SERVING unless a log has failed (sb_svc_check_storage);
 * "" and readiness are NOT_SERVING while draining or while the disk is
 * stalled. Exposed for Watch. */
int sb_svc__health_status(struct sb_svc *svc, const char *service)
{
	int live = strcmp(service, "liveness") == 0, down;
	if (!live && strcmp(service, "") && strcmp(service, "readiness") && strcmp(service, "streambus.v1.StreamBus") &&
	    strcmp(service, "streambus.v1.Admin"))
		return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
	pthread_mutex_lock(&svc->lock);
	down = live ? svc->logs_failed : svc->draining || svc->disk_stalled;
	pthread_mutex_unlock(&svc->lock);
	return down ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
		    : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
}

void sb_svc_check_storage(struct sb_svc *svc)
{
	struct sb_storage_health h;
	sb_logmgr_health(svc->mgr, &h);
	int stalled = svc->cfg->disk_stall_ms > 0 && h.io_wait_ms >= svc->cfg->disk_stall_ms;
	int failed = h.failed_logs > 0;
	pthread_mutex_lock(&svc->lock);
	int changed = stalled != svc->disk_stalled || failed != svc->logs_failed;
	int was_stalled = svc->disk_stalled, was_failed = svc->logs_failed;
	svc->disk_stalled = stalled;
	svc->logs_failed = failed;
	pthread_mutex_unlock(&svc->lock);
	if (stalled && !was_stalled)
		SB_WARN("disk_stalled", "io_wait_ms=%lld limit_ms=%lld readiness=NOT_SERVING", (long long)h.io_wait_ms,
			(long long)svc->cfg->disk_stall_ms);
	else if (!stalled && was_stalled)
		SB_INFO("disk_recovered", "readiness=SERVING");
	if (failed && !was_failed)
		SB_ERROR("logs_failed", "failed_logs=%u liveness=NOT_SERVING hint=\"an fsync or write failed: restart the "
			 "node to recover the partitions from disk\"", h.failed_logs);
	if (changed)
		sb_svc__health_changed(svc);
}

static void do_health(struct sb_svc *svc, const Grpc__Health__V1__HealthCheckRequest *q, struct reply *r)
{
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	int st = sb_svc__health_status(svc, q->service ? q->service : "");
	if (st == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN) {
		r->code = GRPC_STATUS_NOT_FOUND;
		snprintf(r->msg, sizeof r->msg, "unknown service \"%.200s\"", q->service);
		return;
	}
	resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
	r->bb = sb_rpc_pack(&resp.base);
}

static void do_promote(struct sb_svc *svc, const Streambus__V1__PromoteRequest *q, struct reply *r)
{
	struct sb_repl_promotion pr;
	char addr[256];
	int rc = sb_repl_promote(svc->repl, q->node_id, q->unclean, &pr);
	if (rc == SB_EINVAL) {
		r->code = sb_repl_clustered(svc->repl) ? GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_FAILED_PRECONDITION;
		snprintf(r->msg, sizeof r->msg, sb_repl_clustered(svc->repl)
			 ? "this is node %d: send Promote to the node to promote (%d)"
			 : "node %d is a single node (no --peers): there is nothing to promote%.0d",
			 sb_repl_node_id(svc->repl), q->node_id);
		return;
	}
	if (rc == SB_ENOTLEADER) {
		r->code = GRPC_STATUS_FAILED_PRECONDITION;
		snprintf(r->msg, sizeof r->msg,
			 "node %d is not in sync with the leader (%" PRId64 " records behind when last heard): "
			 "promote it with unclean=true to accept losing them",
			 q->node_id, pr.records_at_risk);
		return;
	}
	if (rc) {
		r->code = sb_svc_status(rc);
		snprintf(r->msg, sizeof r->msg, "promotion failed: %s", sb_strerror(rc));
		return;
	}
	Streambus__V1__PromoteResponse resp = STREAMBUS__V1__PROMOTE_RESPONSE__INIT;
	resp.leader_epoch = pr.epoch;
	resp.leader_id = sb_repl_leader(svc->repl, addr, sizeof addr);
	resp.records_at_risk = pr.records_at_risk;
	resp.was_in_sync = pr.was_in_sync;
	r->bb = sb_rpc_pack(&resp.base);
}

static void do_announce(struct sb_svc *svc, const Streambus__V1__AnnounceRequest *q, struct reply *r)
{
	int64_t epoch = q->epoch;
	int32_t leader = q->leader_id;
	sb_repl_announce(svc->repl, &epoch, &leader);
	Streambus__V1__AnnounceResponse resp = STREAMBUS__V1__ANNOUNCE_RESPONSE__INIT;
	resp.epoch = epoch;
	resp.leader_id = leader;
	r->bb = sb_rpc_pack(&resp.base);
}

static const ProtobufCMessageDescriptor *request_type(enum sb_method m)
{
	switch (m) {
	case SB_M_FETCH: return &streambus__v1__fetch_request__descriptor;
	case SB_M_LOOKUP: return &streambus__v1__lookup_request__descriptor;
	case SB_M_COMMIT_OFFSETS: return &streambus__v1__commit_offsets_request__descriptor;
	case SB_M_FETCH_OFFSETS: return &streambus__v1__fetch_offsets_request__descriptor;
	case SB_M_CREATE_TOPIC: return &streambus__v1__create_topic_request__descriptor;
	case SB_M_DELETE_TOPIC: return &streambus__v1__delete_topic_request__descriptor;
	case SB_M_LIST_TOPICS: return &streambus__v1__list_topics_request__descriptor;
	case SB_M_DESCRIBE_TOPIC: return &streambus__v1__describe_topic_request__descriptor;
	case SB_M_CLUSTER_INFO: return &streambus__v1__get_cluster_info_request__descriptor;
	case SB_M_HEALTH_CHECK: return &grpc__health__v1__health_check_request__descriptor;
	case SB_M_PROMOTE: return &streambus__v1__promote_request__descriptor;
	case SB_M_REPL_ANNOUNCE: return &streambus__v1__announce_request__descriptor;
	default: return NULL;
	}
}

static void handle(struct sb_svc *svc, enum sb_method m, const ProtobufCMessage *q, struct reply *r,
		   const struct sb_caller *who)
{
	switch (m) {
	case SB_M_FETCH: do_fetch(svc, (const void *)q, r, who); break;
	case SB_M_LOOKUP: do_lookup(svc, (const void *)q, r, who); break;
	case SB_M_COMMIT_OFFSETS: sb_svc__commit_offsets(svc, (const void *)q, r); break;
	case SB_M_FETCH_OFFSETS: sb_svc__fetch_offsets(svc, (const void *)q, r); break;
	case SB_M_CREATE_TOPIC: do_create(svc, (const void *)q, r); break;
	case SB_M_DELETE_TOPIC: do_delete(svc, (const void *)q, r); break;
	case SB_M_LIST_TOPICS: do_list(svc, r, who); break;
	case SB_M_DESCRIBE_TOPIC: do_describe(svc, (const void *)q, r, who); break;
	case SB_M_CLUSTER_INFO: do_cluster(svc, r); break;
	case SB_M_HEALTH_CHECK: do_health(svc, (const void *)q, r); break;
	case SB_M_PROMOTE: do_promote(svc, (const void *)q, r); break;
	case SB_M_REPL_ANNOUNCE: do_announce(svc, (const void *)q, r); break;
	default: r->code = GRPC_STATUS_UNIMPLEMENTED; break;
	}
}

void sb_svc__unary(struct sb_svc *svc, enum sb_method m, grpc_call *call, grpc_byte_buffer *payload,
		   struct sb_caller *who)
{
	struct reply r = {.bb = NULL, .code = GRPC_STATUS_OK, .call = call, .who = who};
	ProtobufCMessage *q = NULL;
	int rc = m == SB_M_HEALTH_CHECK ? 0 : sb_svc__call_begin(svc);

	if (rc) {
		if (payload)
			grpc_byte_buffer_destroy(payload);
		sb_svc__caller_end(svc, who);
		sb_svc__reject(svc, call, rc == SB_ECLOSED ? GRPC_STATUS_UNAVAILABLE : GRPC_STATUS_RESOURCE_EXHAUSTED,
			       rc == SB_ECLOSED ? "server is shutting down: retry on another node or later"
					        : "too many concurrent calls (max-streams): retry later");
		return;
	}
	if (m == SB_M_HEALTH_CHECK) {
		pthread_mutex_lock(&svc->lock); /* health answers even while draining */
		svc->calls++;
		pthread_mutex_unlock(&svc->lock);
	}
	q = sb_rpc_unpack(request_type(m), payload, (size_t)svc->cfg->max_message_bytes);
	if (payload)
		grpc_byte_buffer_destroy(payload);
	if (!q) {
		r.code = GRPC_STATUS_INVALID_ARGUMENT;
		snprintf(r.msg, sizeof r.msg, "malformed request message");
	} else {
		handle(svc, m, q, &r, who);
		protobuf_c_message_free_unpacked(q, NULL);
	}
	if (!r.deferred)
		sb_svc__unary_reply(svc, call, who, &r);
}

void sb_svc__unary_reply(struct sb_svc *svc, grpc_call *call, struct sb_caller *who, struct sb_unary_reply *r)
{
	sb_svc__count_status(svc, r->code);
	struct unary *u = calloc(1, sizeof *u);
	if (!u) {
		if (r->bb)
			grpc_byte_buffer_destroy(r->bb);
		grpc_call_cancel_with_status(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
		grpc_call_unref(call);
		sb_svc__caller_end(svc, who);
		sb_svc__call_end(svc);
		return;
	}
	u->who = who;
	u->sent.fn = on_sent;
	u->closed.fn = on_closed;
	u->call = call;
	u->svc = svc;
	u->refs = 3; /* sent, closed, and this function */
	u->bb = r->bb;
	if (sb_rpc_reply(call, &u->sent, r->code == GRPC_STATUS_OK ? r->bb : NULL, r->code, r->msg) != 0)
		u->refs--;
	if (sb_rpc_recv_close(call, &u->closed, &u->cancelled) != 0)
		u->refs--;
	unary_unref(u);
}
