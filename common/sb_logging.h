/* sb_logging.h - one structured line per event on stderr.
 *
 * A line is an event name plus logfmt key=value pairs, printed as logfmt
 *   ts=2026-11-25T18:50:08.123Z level=info event=segment_rolled topic=t base=42
 * or, in JSON mode, as one JSON object per line with the same fields.
 * SB_LOG() checks the level before evaluating its arguments. Repeated errors
 * are rate-limited by SB_LOG_RATELIMITED (at most one line per interval per
 * call site, with a count of the suppressed ones).
 *
 * The kv format string must produce `key=value` pairs separated by single
 * spaces; values containing spaces must be written inside double quotes
 * (e.g. "path=\"%s\""), which JSON mode turns into strings.
 * Thread-safe: each line is written with a single write(2).
 */
#ifndef SB_COMMON_LOGGING_H
#define SB_COMMON_LOGGING_H

#include <stdint.h>

enum sb_level { SB_LEVEL_ERROR = 0, SB_LEVEL_WARN = 1, SB_LEVEL_INFO = 2, SB_LEVEL_DEBUG = 3 };
enum sb_log_format { SB_LOG_LOGFMT = 0, SB_LOG_JSON = 1 };

extern int sb_logging_level;

/* Sets the threshold and output format; call before threads start. */
void sb_logging_init(enum sb_level level, enum sb_log_format format);
/* Parses "error|warn|info|debug" or "logfmt|json"; 0 or SB_EINVAL. */
int sb_logging_parse_level(const char *s, enum sb_level *out);
int sb_logging_parse_format(const char *s, enum sb_log_format *out);
/* Sets static fields added to every line (e.g. "node=1"); the string is
 * copied. Call before threads start. */
void sb_logging_set_context(const char *kv);

void sb_logging_emit(enum sb_level level, const char *event, const char *kvfmt, ...)
	__attribute__((format(printf, 3, 4)));

#define SB_LOG(level, event, ...) \
	do { \
		if ((int)(level) <= sb_logging_level) \
			sb_logging_emit((level), (event), __VA_ARGS__); \
	} while (0)
#define SB_ERROR(event, ...) SB_LOG(SB_LEVEL_ERROR, event, __VA_ARGS__)
#define SB_WARN(event, ...) SB_LOG(SB_LEVEL_WARN, event, __VA_ARGS__)
#define SB_INFO(event, ...) SB_LOG(SB_LEVEL_INFO, event, __VA_ARGS__)
#define SB_DEBUG(event, ...) SB_LOG(SB_LEVEL_DEBUG, event, __VA_ARGS__)

struct sb_ratelimit {
	int64_t next_ms;
	uint64_t suppressed;
};
/* Returns 1 if a line may be printed now (and how many were suppressed
 * since the last one in *suppressed), 0 if it should be dropped. */
int sb_ratelimit_ok(struct sb_ratelimit *rl, int interval_ms, uint64_t *suppressed);

#define SB_LOG_RATELIMITED(level, interval_ms, event, fmt, ...) \
	do { \
		static struct sb_ratelimit sb__rl; \
		uint64_t sb__supp; \
		if ((int)(level) <= sb_logging_level && sb_ratelimit_ok(&sb__rl, (interval_ms), &sb__supp)) \
			sb_logging_emit((level), (event), fmt " suppressed=%llu", ##__VA_ARGS__, \
					(unsigned long long)sb__supp); \
	} while (0)

#endif
