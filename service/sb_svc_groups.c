/* sb_svc_groups.c - consumer groups: StreamBus.CommitOffsets and
 * FetchOffsets, and the committed offset a Consume with a group resumes
 * from.
 *
 * Offsets live in the internal topic SB_OFFSETS_TOPIC (created by the
 * leader on the first commit: SB_OFFSETS_TOPIC_PARTITIONS partitions,
 * cleanup_policy "compact", no retention), so they are as durable as any
 * record and replicate like any topic. A group's commits all go to one
 * partition (CRC32C of the group), one keyed record per (group, topic,
 * partition): key "<group>\0<topic>\0<partition in decimal>", value a packed
 * PartitionOffset. The newest record of a key is the committed offset; the
 * partition's key store (sb_kvstore.h) answers FetchOffsets.
 *
 * A commit is answered once its record is readable (on a cluster: held by
 * the in-sync replicas, as ACKS_ALL), from the I/O loop thread: the gRPC
 * worker does not wait. */
#include "sb_svc.h"

#include "sb_auth.h"
#include "sb_batch.h"
#include "sb_crc32c.h"
#include "sb_kvstore.h"
#include "sb_limits.h"
#include "sb_logmgr.h"
#include "sb_repl.h"
#include "sb_svc_status.h"
#include "sb_time.h"
#include "streambus/v1/streambus.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX (SB_GROUP_NAME_MAX + SB_TOPIC_NAME_MAX + 16)

static size_t offset_key(const char *group, const char *topic, int32_t partition, uint8_t out[KEY_MAX])
{
	size_t g = strlen(group), t = strlen(topic);
	memcpy(out, group, g);
	out[g] = 0;
	memcpy(out + g + 1, topic, t);
	out[g + 1 + t] = 0;
	return g + 2 + t + (size_t)snprintf((char *)out + g + 2 + t, 12, "%d", partition);
}

static int32_t group_partition(const char *group, int32_t np)
{
	return (int32_t)(sb_crc32c(group, strlen(group)) % (uint32_t)np);
}

static void fail(struct sb_unary_reply *r, grpc_status_code code, const char *fmt, const char *arg)
{
	r->code = code;
	snprintf(r->msg, sizeof r->msg, fmt, arg);
}

/* The checks both calls share; *t gets the topic (a reference). */
static int check_call(struct sb_svc *svc, const char *group, const char *topic, struct sb_unary_reply *r,
		      struct sb_topic **t)
{
	size_t n = strlen(group);
	if (n == 0 || n > SB_GROUP_NAME_MAX) {
		fail(r, GRPC_STATUS_INVALID_ARGUMENT, "group names have 1 to 255 bytes%s", "");
		return -1;
	}
	const struct sb_principal *p = r->who ? r->who->who : NULL;
	if (!sb_principal_can(p, SB_PERM_CONSUME, topic)) {
		r->code = GRPC_STATUS_PERMISSION_DENIED;
		snprintf(r->msg, sizeof r->msg, "principal %s may not consume from topic \"%.300s\"", sb_principal_name(p),
			 topic);
		return -1;
	}
	int rc = sb_logmgr_acquire(svc->mgr, topic, t);
	if (rc) {
		fail(r, sb_svc_status(rc), "unknown topic \"%.300s\"", topic);
		return -1;
	}
	return 0;
}

/* The offsets topic (a reference), created on first use when create is set. */
static int offsets_topic(struct sb_svc *svc, int create, struct sb_topic **t)
{
	int rc = sb_logmgr_acquire(svc->mgr, SB_OFFSETS_TOPIC, t);
	if (rc != SB_ENOTOPIC || !create)
		return rc;
	struct sb_topic_config cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.log.fsync_policy = SB_FSYNC_DEFAULT;
	cfg.partitions = SB_OFFSETS_TOPIC_PARTITIONS;
	cfg.log.retention_ms = -1;
	cfg.log.retention_bytes = -1;
	snprintf(cfg.cleanup_policy, sizeof cfg.cleanup_policy, "compact");
	if (sb_repl_clustered(svc->repl)) {
		struct sb_repl_node nodes[SB_REPL_NODES_MAX];
		const char *roles[SB_REPL_NODES_MAX];
		cfg.replication_factor = sb_repl_nodes(svc->repl, nodes, roles, SB_REPL_NODES_MAX);
	}
	rc = sb_logmgr_create_topic(svc->mgr, SB_OFFSETS_TOPIC, &cfg);
	if (rc == 0)
		sb_repl_topics_changed(svc->repl); /* followers create it too */
	else if (rc != SB_EEXISTS)
		return rc;
	return sb_logmgr_acquire(svc->mgr, SB_OFFSETS_TOPIC, t);
}

/* ---- CommitOffsets ---- */

struct commit {
	struct sb_svc *svc;
	grpc_call *call;
	struct sb_caller *who;
	struct sb_topic *offsets; /* a reference */
	struct sb_log *log;
	int64_t end;       /* after the commit's records, once appended */
	uint32_t records;
	int32_t partition;
	int min_insync;
	struct sb_log_waiter w;
};

static void commit_done(struct commit *c, grpc_status_code code, const char *msg)
{
	struct sb_unary_reply r = {.code = code};
	if (code == GRPC_STATUS_OK) {
		Streambus__V1__CommitOffsetsResponse resp = STREAMBUS__V1__COMMIT_OFFSETS_RESPONSE__INIT;
		r.bb = sb_rpc_pack(&resp.base);
	} else {
		snprintf(r.msg, sizeof r.msg, "%s", msg);
	}
	sb_svc__unary_reply(c->svc, c->call, c->who, &r);
	sb_topic_release(c->offsets);
	free(c);
}

/* The record became readable (or the log closed). */
static void on_commit_readable(struct sb_log_waiter *w)
{
	struct commit *c = w->arg;
	struct sb_log_info li;
	sb_log_info(c->log, &li);
	if (li.high_watermark < c->end) {
		commit_done(c, GRPC_STATUS_UNAVAILABLE,
			    "the offsets partition closed or lost its in-sync replicas before the commit was "
			    "replicated: it may or may not be kept; commit again");
		return;
	}
	commit_done(c, GRPC_STATUS_OK, NULL);
}

static void on_commit_appended(void *arg, int64_t base, int result)
{
	struct commit *c = arg;
	char msg[256];
	if (result) {
		snprintf(msg, sizeof msg, "commit failed: %s; nothing was committed", sb_strerror(result));
		commit_done(c, sb_svc_status(result), msg);
		return;
	}
	c->end = base + c->records;
	c->w = (struct sb_log_waiter){.fn = on_commit_readable, .arg = c};
	int rc = sb_log_wait(c->log, c->end - 1, &c->w);
	if (rc == 0)
		return;
	on_commit_readable(&c->w); /* readable already, or the log closed */
}

/* The commit's batch: one record per offset. */
static int build_commit(const Streambus__V1__CommitOffsetsRequest *q, struct sb_batch_builder *b)
{
	uint8_t key[KEY_MAX], value[SB_OFFSET_METADATA_MAX + 64];
	int64_t now = sb_wall_ms();
	for (size_t i = 0; i < q->n_offsets; i++) {
		const Streambus__V1__PartitionOffset *o = q->offsets[i];
		struct sb_record_in rec = {0};
		rec.key = key;
		rec.key_len = (uint32_t)offset_key(q->group, q->topic, o->partition, key);
		rec.value = value;
		rec.value_len = (uint32_t)protobuf_c_message_pack(&o->base, value);
		rec.timestamp_ms = now;
		int rc = sb_batch_builder_add(b, &rec);
		if (rc)
			return rc;
	}
	return 0;
}

void sb_svc__commit_offsets(struct sb_svc *svc, const Streambus__V1__CommitOffsetsRequest *q,
			    struct sb_unary_reply *r)
{
	struct sb_topic *t = NULL, *off = NULL;
	struct sb_batch_builder b = {0};
	struct commit *c = NULL;
	const void *batch;
	size_t len;
	char msg[160];
	int rc;
	if (check_call(svc, q->group, q->topic, r, &t))
		return;
	int32_t np = sb_topic_partitions(t);
	uint64_t seen[(SB_PARTITIONS_MAX + 63) / 64] = {0};
	if (q->n_offsets == 0 || q->n_offsets > (size_t)np) {
		snprintf(msg, sizeof msg, "a commit carries 1 to %d offsets (one per partition of the topic)", np);
		fail(r, GRPC_STATUS_INVALID_ARGUMENT, "%s", msg);
		goto out;
	}
	for (size_t i = 0; i < q->n_offsets; i++) {
		const Streambus__V1__PartitionOffset *o = q->offsets[i];
		if (o->partition < 0 || o->partition >= np || o->offset < 0 ||
		    strlen(o->metadata) > SB_OFFSET_METADATA_MAX || (seen[o->partition / 64] >> (o->partition % 64)) & 1) {
			snprintf(msg, sizeof msg, "offsets[%zu]: partition %d of %d, offset %" PRId64 " >= 0, metadata of "
				 "at most 4096 bytes, each partition once", i, o->partition, np, o->offset);
			fail(r, GRPC_STATUS_INVALID_ARGUMENT, "%s", msg);
			goto out;
		}
		seen[o->partition / 64] |= 1ull << (o->partition % 64);
	}
	if ((rc = offsets_topic(svc, 1, &off)) != 0) {
		fail(r, sb_svc_status(rc), "the offsets topic cannot be opened: %s", sb_strerror(rc));
		goto out;
	}
	if (!(c = calloc(1, sizeof *c))) {
		fail(r, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory%s", "");
		goto out;
	}
	c->partition = group_partition(q->group, sb_topic_partitions(off));
	c->min_insync = sb_topic_config(off)->min_insync_replicas;
	if ((rc = sb_topic_log(off, c->partition, &c->log)) != 0) {
		fail(r, sb_svc_status(rc), "the offsets topic has no partition for the group: %s", sb_strerror(rc));
		goto out;
	}
	int isr = sb_repl_insync(svc->repl, SB_OFFSETS_TOPIC, c->partition, NULL, 0);
	if (isr < c->min_insync) {
		snprintf(msg, sizeof msg, "not enough in-sync replicas of the offsets topic: %d of %d; nothing was "
			 "committed", isr, c->min_insync);
		fail(r, GRPC_STATUS_UNAVAILABLE, "%s", msg);
		goto out;
	}
	rc = sb_batch_builder_init(&b, SB_BATCH_BYTES_MAX);
	if (!rc)
		rc = build_commit(q, &b);
	if (!rc)
		rc = sb_batch_builder_finish(&b, &batch, &len);
	if (rc) {
		fail(r, sb_svc_status(rc), "the commit does not fit in one batch: %s", sb_strerror(rc));
		goto out;
	}
	c->svc = svc;
	c->call = r->call;
	c->who = r->who;
	c->offsets = off;
	c->records = (uint32_t)q->n_offsets;
	rc = sb_log_append_trusted(c->log, batch, len, (int32_t)sb_repl_epoch(svc->repl), on_commit_appended, c);
	if (rc) {
		fail(r, sb_svc_status(rc), "commit refused: %s", sb_strerror(rc));
		goto out;
	}
	r->deferred = 1; /* on_commit_appended answers */
	c = NULL;
	off = NULL;
out:
	sb_batch_builder_fini(&b);
	free(c);
	sb_topic_release(off);
	sb_topic_release(t);
}

/* ---- FetchOffsets and the committed offset ---- */

/* The committed PartitionOffset of (group, topic, partition) in *out
 * (caller frees), or NULL with 0 when there is none. */
static int committed(struct sb_topic *off, const char *group, const char *topic, int32_t partition,
		     Streambus__V1__PartitionOffset **out)
{
	uint8_t key[KEY_MAX];
	struct sb_kvstore *kv;
	struct sb_kv_result res;
	*out = NULL;
	int rc = sb_topic_kv(off, group_partition(group, sb_topic_partitions(off)), &kv);
	if (!rc)
		rc = sb_kvstore_get(kv, key, (uint32_t)offset_key(group, topic, partition, key), &res);
	if (rc || !res.found)
		return rc;
	*out = streambus__v1__partition_offset__unpack(NULL, res.value_len, res.value);
	sb_kv_result_free(&res);
	return *out ? 0 : SB_ECORRUPT;
}

void sb_svc__fetch_offsets(struct sb_svc *svc, const Streambus__V1__FetchOffsetsRequest *q,
			   struct sb_unary_reply *r)
{
	Streambus__V1__FetchOffsetsResponse resp = STREAMBUS__V1__FETCH_OFFSETS_RESPONSE__INIT;
	struct sb_topic *t = NULL, *off = NULL;
	int rc = 0;
	if (check_call(svc, q->group, q->topic, r, &t))
		return;
	int32_t np = sb_topic_partitions(t);
	resp.offsets = calloc((size_t)np, sizeof *resp.offsets);
	if (!resp.offsets)
		rc = -ENOMEM;
	if (!rc && (rc = offsets_topic(svc, 0, &off)) == SB_ENOTOPIC)
		rc = 0; /* nothing was ever committed */
	for (int32_t p = 0; off && !rc && p < np; p++) {
		Streambus__V1__PartitionOffset *o;
		if ((rc = committed(off, q->group, q->topic, p, &o)) == 0 && o)
			resp.offsets[resp.n_offsets++] = o;
	}
	if (rc)
		fail(r, sb_svc_status(rc), "reading the committed offsets failed: %s", sb_strerror(rc));
	else
		r->bb = sb_rpc_pack(&resp.base);
	for (size_t i = 0; i < resp.n_offsets; i++)
		streambus__v1__partition_offset__free_unpacked(resp.offsets[i], NULL);
	free(resp.offsets);
	sb_topic_release(off);
	sb_topic_release(t);
}

int sb_svc__committed_offset(struct sb_svc *svc, const char *group, const char *topic, int32_t partition,
			     int64_t *offset)
{
	struct sb_topic *off = NULL;
	Streambus__V1__PartitionOffset *o = NULL;
	int rc = offsets_topic(svc, 0, &off);
	if (rc == SB_ENOTOPIC)
		return SB_ENOTFOUND;
	if (!rc)
		rc = committed(off, group, topic, partition, &o);
	if (!rc && !o)
		rc = SB_ENOTFOUND;
	if (!rc)
		*offset = o->offset;
	if (o)
		streambus__v1__partition_offset__free_unpacked(o, NULL);
	sb_topic_release(off);
	return rc;
}
