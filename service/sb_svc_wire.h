/* sb_svc_wire.h - a zero-allocation decoder for ProduceRequest: the produce
 * hot path reads the protobuf wire bytes once and encodes the records
 * straight into a record batch (no intermediate message objects). Field
 * numbers follow api/streambus/v1/streambus.proto; unknown fields are skipped
 * as protobuf requires. Hostile input gets an error, never a read out of
 * bounds. */
#ifndef SB_SERVICE_WIRE_H
#define SB_SERVICE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "sb_batch.h"
#include "sb_error.h"

struct sb_wire_produce {
	uint64_t request_id;
	const char *topic; /* not NUL-terminated */
	size_t topic_len;
	int32_t partition;
	int32_t acks;
	uint32_t n_records;
	const uint8_t *first_key; /* key of the first record (NULL if none) */
	size_t first_key_len;
	const uint8_t *buf;       /* the whole message */
	size_t len;
};

/* Parses the top level of a ProduceRequest in buf[0..len) (which must stay
 * valid while *out is used) and checks every record's structure. Returns 0,
 * SB_EBADNAME (the topic is not UTF-8 or holds a NUL byte; request_id is
 * set if it came first) or SB_EINVAL (malformed). */
int sb_wire_produce_parse(const uint8_t *buf, size_t len, struct sb_wire_produce *out) SB_MUST_CHECK;

/* Adds every record to b (timestamp 0 = now_ms). Returns 0, SB_ETOOBIG (the
 * batch or a record exceeds the builder's limit, or > max_headers headers
 * on one record), SB_EINVAL, or -ENOMEM. */
int sb_wire_produce_records(const struct sb_wire_produce *req, struct sb_batch_builder *b, int64_t now_ms,
			    uint32_t max_headers) SB_MUST_CHECK;

#endif
