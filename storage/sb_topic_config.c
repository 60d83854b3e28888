/* sb_topic_config.c - topic names and the topic.conf format: one key=value
 * per line, '#' comments, every key known (an unknown key is an error, so a
 * typo in a hand-edited file is caught at start-up, not ignored). */
#include "sb_logmgr.h"

#include "sb_limits.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sb_topic_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > SB_TOPIC_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

void sb_topic_config_default(struct sb_topic_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->partitions = 1;
	cfg->replication_factor = 1;
	cfg->min_insync_replicas = 1;
	snprintf(cfg->cleanup_policy, sizeof cfg->cleanup_policy, "delete");
	sb_log_config_default(&cfg->log);
}

int sb_topic_config_check(const struct sb_topic_config *cfg)
{
	const char *cp = cfg->cleanup_policy;
	if (cfg->partitions < 1 || cfg->partitions > SB_PARTITIONS_MAX || cfg->replication_factor < 1 ||
	    cfg->replication_factor > 16 || cfg->min_insync_replicas < 1 ||
	    cfg->min_insync_replicas > cfg->replication_factor)
		return SB_EBADCONFIG;
	if (strcmp(cp, "delete") && strcmp(cp, "compact") && strcmp(cp, "compact,delete"))
		return SB_EBADCONFIG;
	return sb_log_config_check(&cfg->log);
}

int sb_topic_config_format(const struct sb_topic_config *cfg, char *buf, size_t cap)
{
	int n = snprintf(buf, cap,
			 "# StreamBus topic configuration\n"
			 "version=1\n"
			 "partitions=%d\n"
			 "replication_factor=%d\n"
			 "min_insync_replicas=%d\n"
			 "cleanup_policy=%s\n"
			 "segment_bytes=%" PRIu64 "\n"
			 "segment_ms=%" PRId64 "\n"
			 "index_interval_bytes=%u\n"
			 "fsync_policy=%s\n"
			 "fsync_interval_ms=%" PRId64 "\n"
			 "retention_bytes=%" PRId64 "\n"
			 "retention_ms=%" PRId64 "\n"
			 "inflight_bytes_max=%u\n",
			 cfg->partitions, cfg->replication_factor, cfg->min_insync_replicas,
			 cfg->cleanup_policy, cfg->log.segment_bytes, cfg->log.segment_ms,
			 cfg->log.index_interval_bytes, sb_fsync_policy_name(cfg->log.fsync_policy),
			 cfg->log.fsync_interval_ms, cfg->log.retention_bytes, cfg->log.retention_ms,
			 cfg->log.inflight_bytes_max);
	if (n >= 0 && (size_t)n < cap && cfg->id)
		n += snprintf(buf + n, cap - (size_t)n, "id=%016" PRIx64 "\n", cfg->id);
	if (n < 0 || (size_t)n >= cap)
		return SB_ETOOBIG;
	return n;
}

static int parse_i64(const char *v, int64_t *out)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v || *end)
		return SB_EBADCONFIG;
	*out = x;
	return 0;
}

/* Applies one key=value pair. */
static int apply(struct sb_topic_config *cfg, const char *k, const char *v)
{
	int64_t x = 0;
	if (strcmp(k, "cleanup_policy") == 0) {
		if (strlen(v) >= sizeof cfg->cleanup_policy)
			return SB_EBADCONFIG;
		snprintf(cfg->cleanup_policy, sizeof cfg->cleanup_policy, "%s", v);
		return 0;
	}
	if (strcmp(k, "fsync_policy") == 0)
		return sb_fsync_policy_parse(v, &cfg->log.fsync_policy) ? SB_EBADCONFIG : 0;
	if (strcmp(k, "id") == 0) {
		char *end;
		errno = 0;
		unsigned long long id = strtoull(v, &end, 16);
		if (errno || end == v || *end || strlen(v) != 16)
			return SB_EBADCONFIG;
		cfg->id = id;
		return 0;
	}
	if (parse_i64(v, &x))
		return SB_EBADCONFIG;
	if (strcmp(k, "version") == 0)
		return x == 1 ? 0 : SB_EBADCONFIG;
	if (x < INT32_MIN || (x > INT32_MAX && strcmp(k, "segment_bytes") && strcmp(k, "segment_ms") &&
			      strcmp(k, "retention_bytes") && strcmp(k, "retention_ms") &&
			      strcmp(k, "fsync_interval_ms")))
		return SB_EBADCONFIG;
	if (strcmp(k, "partitions") == 0)
		cfg->partitions = (int32_t)x;
	else if (strcmp(k, "replication_factor") == 0)
		cfg->replication_factor = (int32_t)x;
	else if (strcmp(k, "min_insync_replicas") == 0)
		cfg->min_insync_replicas = (int32_t)x;
	else if (strcmp(k, "segment_bytes") == 0 && x > 0)
		cfg->log.segment_bytes = (uint64_t)x;
	else if (strcmp(k, "segment_ms") == 0)
		cfg->log.segment_ms = x;
	else if (strcmp(k, "index_interval_bytes") == 0 && x > 0)
		cfg->log.index_interval_bytes = (uint32_t)x;
	else if (strcmp(k, "fsync_interval_ms") == 0)
		cfg->log.fsync_interval_ms = x;
	else if (strcmp(k, "retention_bytes") == 0)
		cfg->log.retention_bytes = x;
	else if (strcmp(k, "retention_ms") == 0)
		cfg->log.retention_ms = x;
	else if (strcmp(k, "inflight_bytes_max") == 0 && x > 0)
		cfg->log.inflight_bytes_max = (uint32_t)x;
	else
		return SB_EBADCONFIG;
	return 0;
}

int sb_topic_config_parse(const char *text, size_t len, struct sb_topic_config *cfg)
{
	char line[512];
	size_t at = 0;
	while (at < len) {
		size_t end = at;
		while (end < len && text[end] != '\n')
			end++;
		size_t n = end - at;
		if (n >= sizeof line)
			return SB_EBADCONFIG;
		memcpy(line, text + at, n);
		line[n] = 0;
		at = end + 1;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0; /* comments, whole-line or trailing */
		n = strlen(line);
		while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r'))
			line[--n] = 0;
		if (n == 0)
			continue;
		char *eq = strchr(line, '=');
		if (!eq)
			return SB_EBADCONFIG;
		*eq = 0;
		int rc = apply(cfg, line, eq + 1);
		if (rc)
			return rc;
	}
	return sb_topic_config_check(cfg);
}
