/* sb_metrics.h - Prometheus text exposition on /metrics, on its own port
 * (--metrics-listen), served by libmicrohttpd's own thread.
 *
 * Every scrape reads the live state: counters kept by the call handlers
 * (sb_svc: failed requests by status, the produce-ack histogram), the
 * storage layer (per-topic traffic, per-partition offsets, segments, the
 * fsync histogram) and replication (epoch, in-sync replicas, lag per
 * follower). docs/OPERATIONS.md explains each metric and the alerts worth
 * setting on them.
 */
#ifndef SB_SERVICE_METRICS_H
#define SB_SERVICE_METRICS_H

#include <stddef.h>

#include "sb_error.h"

struct sb_svc;
struct sb_metrics;

#define SB_METRICS_BYTES_MAX (32u << 20) /* one exposition; series past it are left out */

/* Serves /metrics on listen ("HOST:PORT"; port 0 picks a free one, logged
 * as event=metrics_listening). 0, or SB_EBADCONFIG (cannot bind). */
int sb_metrics_start(struct sb_metrics **out, const char *listen, struct sb_svc *svc) SB_MUST_CHECK;
void sb_metrics_stop(struct sb_metrics *m);

/* The exposition as text (malloc'd, NUL-terminated); NULL on OOM. */
char *sb_metrics_render(struct sb_svc *svc, size_t *len);

#endif
