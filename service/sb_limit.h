/* sb_limit.h - per-caller limits: concurrent streams, in-flight produce
 * bytes and a request rate (token bucket).
 *
 * A limiter is keyed by the caller: its principal's name when the server
 * authenticates callers ("p:alice"), its connection's peer address
 * otherwise ("c:ipv4:10.0.0.7:51234") — so limits are per principal across
 * its connections, or per connection for anonymous callers. Limiters are
 * reference counted by the calls that use them; an idle one keeps its rate
 * state until the table is full, then the least recently idle one goes.
 *
 * A refused request gets RESOURCE_EXHAUSTED with a retry delay in
 * milliseconds (trailing metadata `streambus-retry-after-ms` and the
 * message). One lock guards the whole table: each operation is a few
 * arithmetic steps.
 */
#ifndef SB_SERVICE_LIMIT_H
#define SB_SERVICE_LIMIT_H

#include <stdint.h>

#include "sb_error.h"

#define SB_LIMITERS_MAX 65536 /* limiters kept, live and idle */
#define SB_LIMIT_KEY_MAX 128

struct sb_limits_cfg {
	int64_t streams;        /* concurrent calls (0 = unlimited) */
	int64_t inflight_bytes; /* produce bytes received, not yet answered (0 = unlimited) */
	double rate;            /* requests per second (0 = unlimited) */
	double burst;           /* bucket size, requests */
};

struct sb_limits;
struct sb_limiter;

int sb_limits_open(struct sb_limits **out, const struct sb_limits_cfg *cfg) SB_MUST_CHECK;
void sb_limits_close(struct sb_limits *L);

/* The limiter for key, referenced; NULL if memory is short or every slot is
 * held by a live caller (treat as RESOURCE_EXHAUSTED). */
struct sb_limiter *sb_limiter_get(struct sb_limits *L, const char *key);
void sb_limiter_put(struct sb_limits *L, struct sb_limiter *l);

/* A new call: counts a stream and takes one request from the bucket.
 * 0, or SB_EBUSY with *retry_ms set (0 if no delay can be promised). */
int sb_limiter_call_begin(struct sb_limits *L, struct sb_limiter *l, int64_t *retry_ms) SB_MUST_CHECK;
void sb_limiter_call_end(struct sb_limits *L, struct sb_limiter *l);
/* One request inside a stream carrying bytes of produce data: takes a
 * token and adds the bytes to the in-flight count (a request is admitted
 * when nothing is in flight, whatever its size). 0 or SB_EBUSY (*retry_ms). */
int sb_limiter_request(struct sb_limits *L, struct sb_limiter *l, int64_t bytes, int64_t *retry_ms) SB_MUST_CHECK;
/* The request's bytes were answered. */
void sb_limiter_done(struct sb_limits *L, struct sb_limiter *l, int64_t bytes);

#endif
