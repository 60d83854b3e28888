/* fuzz_request.c - request decoding and validation on the server.
 *
 * Every input is decoded as each request type the server accepts:
 *   - ProduceRequest through the zero-copy hot-path decoder
 *     (service/sb_svc_wire.h: sb_wire_produce_parse, then
 *     sb_wire_produce_records into a batch builder sized as the produce
 *     handler sizes it), cross-checked against protobuf-c's decoder of the
 *     same message; the batch built must pass sb_batch_validate (the produce
 *     path appends it without re-checking the CRC), and encoding it back
 *     with sb_enc_records (the Fetch/Consume path) must give the records
 *     that protobuf-c decoded from the request;
 *   - Consume, Fetch, CreateTopic, DeleteTopic, DescribeTopic, Promote and
 *     Announce through sb_rpc_unpack (what the handlers call, with the
 *     server's default max_message_bytes), then the validation reachable
 *     through headers: sb_topic_name_valid, and for CreateTopic the topic
 *     configuration pipeline (request -> sb_topic_config, defaults,
 *     sb_topic_config_check) and the topic.conf round trip
 *     (sb_topic_config_format then sb_topic_config_parse must give the
 *     same configuration back).
 * The handler-level checks that are static (process() in sb_svc_produce.c,
 * resolve() in sb_svc_consume.c, map_config() in sb_svc_unary.c, and
 * merge_defaults() in storage/sb_logmgr.c) are mirrored below; a change
 * there must be copied here (see README.md "Limitations"). */
#include "fuzz_common.h"

#include "sb_batch.h"
#include "sb_limits.h"
#include "sb_log.h"
#include "sb_logmgr.h"
#include "sb_rpc.h"
#include "sb_settings.h"
#include "sb_svc_encode.h"
#include "sb_svc_wire.h"
#include "streambus/v1/streambus.pb-c.h"

#include <grpc/slice.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static struct sb_settings settings;
static struct sb_batch_builder builder;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	sbf_quiet();
	sb_settings_default(&settings);
	/* As sb_svc__produce sizes it. */
	FUZZ_CHECK(sb_batch_builder_init(&builder, (size_t)settings.max_message_bytes + (1u << 16)) == 0,
		   "builder");
	return 0;
}

static int bytes_eq(const uint8_t *a, size_t a_len, ProtobufCBinaryData b)
{
	return a_len == b.len && (a_len == 0 || memcmp(a, b.data, a_len) == 0);
}

/* The records of a ProduceRequest, encoded back by the Fetch path, must be
 * the records protobuf-c decoded from the request. */
static void check_round_trip(const void *batch, size_t len, const Streambus__V1__ProduceRequest *q, int64_t now)
{
	struct sb_enc e;
	uint32_t count = 0;
	int64_t next = 0;
	sb_enc_init(&e);
	FUZZ_CHECK(sb_enc_records(&e, 1, batch, len, 0, INT64_MAX, UINT32_MAX, SIZE_MAX, &count, &next) == 0,
		   "sb_enc_records refused a batch built from a request");
	FUZZ_CHECK(count == q->n_records, "records lost between produce and fetch");
	Streambus__V1__FetchResponse *m = streambus__v1__fetch_response__unpack(NULL, e.len, e.buf);
	FUZZ_CHECK(m != NULL && m->n_records == q->n_records, "fetch encoding does not decode");
	for (size_t i = 0; i < q->n_records; i++) {
		const Streambus__V1__Record *in = q->records[i];
		const Streambus__V1__ConsumedRecord *out = m->records[i];
		FUZZ_CHECK(out->offset == (int64_t)i, "offset");
		FUZZ_CHECK(out->timestamp_ms == (in->timestamp_ms ? in->timestamp_ms : now), "timestamp");
		FUZZ_CHECK(bytes_eq(in->key.data, in->key.len, out->key), "key");
		FUZZ_CHECK(bytes_eq(in->value.data, in->value.len, out->value), "value");
		FUZZ_CHECK(in->n_headers == out->n_headers, "header count");
		for (size_t j = 0; j < in->n_headers; j++) {
			FUZZ_CHECK(strcmp(in->headers[j]->key, out->headers[j]->key) == 0, "header key");
			FUZZ_CHECK(bytes_eq(in->headers[j]->value.data, in->headers[j]->value.len, out->headers[j]->value),
				   "header value");
		}
	}
	streambus__v1__fetch_response__free_unpacked(m, NULL);
	sb_enc_fini(&e);
}

/* Mirror of process()'s request checks in service/sb_svc_produce.c. */
static int produce_request_ok(const struct sb_wire_produce *r)
{
	char topic[SB_TOPIC_NAME_MAX + 2];
	if (r->n_records == 0 || r->partition < -1 || r->acks < 0 || r->acks > 2 ||
	    (uint64_t)r->n_records > (uint64_t)settings.max_records_per_request)
		return 0;
	if (r->topic_len >= sizeof topic - 1 || memchr(r->topic, 0, r->topic_len))
		return 0;
	memcpy(topic, r->topic, r->topic_len);
	topic[r->topic_len] = 0;
	return sb_topic_name_valid(topic);
}

static void fuzz_produce(const uint8_t *data, size_t size)
{
	struct sb_wire_produce w;
	const int64_t now = 1700000000000;
	int rc = sb_wire_produce_parse(data, size, &w);
	Streambus__V1__ProduceRequest *q = streambus__v1__produce_request__unpack(NULL, size, data);
	if (rc == 0 && q) {
		/* Both decoders accept: they must agree. */
		FUZZ_CHECK(w.request_id == q->request_id, "request_id differs from protobuf-c");
		FUZZ_CHECK(w.partition == q->partition, "partition differs from protobuf-c");
		FUZZ_CHECK(w.acks == (int32_t)q->acks, "acks differs from protobuf-c");
		FUZZ_CHECK(w.n_records == q->n_records, "record count differs from protobuf-c");
		size_t tl = strlen(q->topic);
		FUZZ_CHECK(tl <= w.topic_len && memcmp(q->topic, w.topic, tl) == 0, "topic differs from protobuf-c");
	}
	if (rc == 0) {
		volatile int ok = produce_request_ok(&w);
		(void)ok;
		sb_batch_builder_reset(&builder);
		rc = sb_wire_produce_records(&w, &builder, now, SB_RECORD_HEADERS_MAX); /* as process() */
		const void *batch;
		size_t len;
		if (rc == 0 && w.n_records > 0 && sb_batch_builder_finish(&builder, &batch, &len) == 0) {
			struct sb_batch_header h;
			FUZZ_CHECK(sb_batch_validate(batch, len, &h) == 0, "the builder made an invalid batch from a request");
			FUZZ_CHECK(h.record_count == w.n_records, "record count of the built batch");
			if (q)
				check_round_trip(batch, len, q, now);
		}
	}
	if (q)
		streambus__v1__produce_request__free_unpacked(q, NULL);
}

static ProtobufCMessage *unpack(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t size)
{
	grpc_slice s = grpc_slice_from_copied_buffer((const char *)data, size);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	ProtobufCMessage *m = sb_rpc_unpack(d, bb, (size_t)settings.max_message_bytes);
	grpc_byte_buffer_destroy(bb);
	return m;
}

/* Mirror of map_config() (service/sb_svc_unary.c) and merge_defaults()
 * (storage/sb_logmgr.c): the configuration a CreateTopic would store. */
static int create_config(const Streambus__V1__CreateTopicRequest *q, struct sb_topic_config *out)
{
	struct sb_topic_config d;
	sb_topic_config_default(&d);
	memset(out, 0, sizeof *out);
	out->log.fsync_policy = SB_FSYNC_DEFAULT;
	if (q->partitions < 0 || q->replication_factor < 0)
		return SB_EINVAL;
	out->partitions = q->partitions;
	out->replication_factor = q->replication_factor;
	const Streambus__V1__TopicConfig *c = q->config;
	if (c) {
		out->log.retention_bytes = c->retention_bytes;
		out->log.retention_ms = c->retention_ms;
		out->log.segment_bytes = c->segment_bytes > 0 ? (uint64_t)c->segment_bytes : 0;
		out->log.segment_ms = c->segment_ms;
		out->log.fsync_interval_ms = c->fsync_interval_ms;
		out->min_insync_replicas = c->min_insync_replicas;
		if (c->segment_bytes < 0 || c->fsync_interval_ms < 0 || c->min_insync_replicas < 0 ||
		    c->retention_bytes < -1 || c->retention_ms < -1 || c->segment_ms < 0)
			return SB_EBADCONFIG;
		if (c->fsync_policy && c->fsync_policy[0] && sb_fsync_policy_parse(c->fsync_policy, &out->log.fsync_policy))
			return SB_EBADCONFIG;
		if (c->cleanup_policy && c->cleanup_policy[0]) {
			if (strlen(c->cleanup_policy) >= sizeof out->cleanup_policy)
				return SB_EBADCONFIG;
			memcpy(out->cleanup_policy, c->cleanup_policy, strlen(c->cleanup_policy) + 1);
		}
	}
	if (!out->partitions) out->partitions = d.partitions;
	if (!out->replication_factor) out->replication_factor = d.replication_factor;
	if (!out->min_insync_replicas) out->min_insync_replicas = d.min_insync_replicas;
	if (!out->cleanup_policy[0]) memcpy(out->cleanup_policy, d.cleanup_policy, sizeof out->cleanup_policy);
	if (!out->log.segment_bytes) out->log.segment_bytes = d.log.segment_bytes;
	if (!out->log.segment_ms) out->log.segment_ms = d.log.segment_ms;
	if (!out->log.index_interval_bytes) out->log.index_interval_bytes = d.log.index_interval_bytes;
	if (out->log.fsync_policy == SB_FSYNC_DEFAULT) out->log.fsync_policy = d.log.fsync_policy;
	if (!out->log.fsync_interval_ms) out->log.fsync_interval_ms = d.log.fsync_interval_ms;
	if (!out->log.retention_bytes) out->log.retention_bytes = d.log.retention_bytes;
	if (!out->log.retention_ms) out->log.retention_ms = d.log.retention_ms;
	if (!out->log.inflight_bytes_max) out->log.inflight_bytes_max = d.log.inflight_bytes_max;
	out->id = 0x0123456789abcdefull;
	return sb_topic_config_check(out);
}

static void fuzz_create(const uint8_t *data, size_t size)
{
	Streambus__V1__CreateTopicRequest *q =
		(Streambus__V1__CreateTopicRequest *)unpack(&streambus__v1__create_topic_request__descriptor, data, size);
	if (!q)
		return;
	struct sb_topic_config cfg, back;
	(void)sb_topic_name_valid(q->name);
	if (create_config(q, &cfg) == 0) {
		/* What is accepted is written to topic.conf and read back at every
		 * start: the round trip must be exact. */
		char text[4096];
		int n = sb_topic_config_format(&cfg, text, sizeof text);
		FUZZ_CHECK(n > 0, "an accepted topic config does not format");
		sb_topic_config_default(&back);
		FUZZ_CHECK(sb_topic_config_parse(text, (size_t)n, &back) == 0, "topic.conf written for an accepted config does not parse");
		FUZZ_CHECK(memcmp(&back, &cfg, sizeof cfg) == 0 ||
			   (back.partitions == cfg.partitions && back.replication_factor == cfg.replication_factor &&
			    back.min_insync_replicas == cfg.min_insync_replicas && back.id == cfg.id &&
			    strcmp(back.cleanup_policy, cfg.cleanup_policy) == 0 &&
			    back.log.segment_bytes == cfg.log.segment_bytes && back.log.segment_ms == cfg.log.segment_ms &&
			    back.log.index_interval_bytes == cfg.log.index_interval_bytes &&
			    back.log.fsync_policy == cfg.log.fsync_policy &&
			    back.log.fsync_interval_ms == cfg.log.fsync_interval_ms &&
			    back.log.retention_bytes == cfg.log.retention_bytes &&
			    back.log.retention_ms == cfg.log.retention_ms &&
			    back.log.inflight_bytes_max == cfg.log.inflight_bytes_max),
			   "topic.conf round trip changed the configuration");
	}
	protobuf_c_message_free_unpacked(&q->base, NULL);
}

/* Mirror of resolve()'s argument checks in service/sb_svc_consume.c. */
static void fuzz_consume(const uint8_t *data, size_t size)
{
	Streambus__V1__ConsumeRequest *q =
		(Streambus__V1__ConsumeRequest *)unpack(&streambus__v1__consume_request__descriptor, data, size);
	if (!q)
		return;
	(void)sb_topic_name_valid(q->topic);
	volatile int ok = (q->start != STREAMBUS__V1__START_POSITION__START_OFFSET || q->start_offset >= 0) &&
			  (unsigned)q->start <= 3 && (unsigned)q->stop <= 2 &&
			  (q->stop != STREAMBUS__V1__STOP_POSITION__STOP_AT_OFFSET || q->stop_offset >= 0);
	(void)ok;
	protobuf_c_message_free_unpacked(&q->base, NULL);
}

static void fuzz_named(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t size, size_t name_off)
{
	ProtobufCMessage *m = unpack(d, data, size);
	if (!m)
		return;
	if (name_off != SIZE_MAX)
		(void)sb_topic_name_valid(*(const char *const *)((const char *)m + name_off));
	protobuf_c_message_free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_produce(data, size);
	fuzz_consume(data, size);
	fuzz_create(data, size);
	fuzz_named(&streambus__v1__fetch_request__descriptor, data, size,
		   offsetof(Streambus__V1__FetchRequest, topic));
	fuzz_named(&streambus__v1__delete_topic_request__descriptor, data, size,
		   offsetof(Streambus__V1__DeleteTopicRequest, name));
	fuzz_named(&streambus__v1__describe_topic_request__descriptor, data, size,
		   offsetof(Streambus__V1__DescribeTopicRequest, name));
	fuzz_named(&streambus__v1__promote_request__descriptor, data, size, SIZE_MAX);
	fuzz_named(&streambus__v1__announce_request__descriptor, data, size, SIZE_MAX);
	return 0;
}
