#include "sb_logging.h"

#include "sb_error.h"
#include "sb_time.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int sb_logging_level = SB_LEVEL_INFO;
static enum sb_log_format log_format = SB_LOG_LOGFMT;
static char log_context[256];

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void sb_logging_init(enum sb_level level, enum sb_log_format format)
{
	sb_logging_level = (int)level;
	log_format = format;
}

void sb_logging_set_context(const char *kv)
{
	snprintf(log_context, sizeof log_context, "%s", kv ? kv : "");
}

int sb_logging_parse_level(const char *s, enum sb_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum sb_level)i;
			return 0;
		}
	}
	return SB_EINVAL;
}

int sb_logging_parse_format(const char *s, enum sb_log_format *out)
{
	if (strcmp(s, "logfmt") == 0)
		*out = SB_LOG_LOGFMT;
	else if (strcmp(s, "json") == 0)
		*out = SB_LOG_JSON;
	else
		return SB_EINVAL;
	return 0;
}

/* Appends src to dst[*n..cap) as a JSON string body (no quotes). */
static void json_escape(char *dst, size_t cap, size_t *n, const char *src, size_t len)
{
	for (size_t i = 0; i < len && *n + 7 < cap; i++) {
		unsigned char c = (unsigned char)src[i];
		if (c == '"' || c == '\\') {
			dst[(*n)++] = '\\';
			dst[(*n)++] = (char)c;
		} else if (c < 0x20) {
			*n += (size_t)snprintf(dst + *n, cap - *n, "\\u%04x", c);
		} else {
			dst[(*n)++] = (char)c;
		}
	}
}

/* Converts "k=v k2=\"a b\"" into ,"k":"v","k2":"a b" appended to dst. */
static void kv_to_json(char *dst, size_t cap, size_t *n, const char *kv)
{
	const char *p = kv;
	while (*p && *n + 16 < cap) {
		while (*p == ' ')
			p++;
		const char *eq = strchr(p, '=');
		if (!*p || !eq)
			break;
		dst[(*n)++] = ',';
		dst[(*n)++] = '"';
		json_escape(dst, cap, n, p, (size_t)(eq - p));
		dst[(*n)++] = '"';
		dst[(*n)++] = ':';
		dst[(*n)++] = '"';
		const char *v = eq + 1, *end;
		if (*v == '"') {
			v++;
			end = v;
			while (*end && !(*end == '"' && end[-1] != '\\'))
				end++;
			json_escape(dst, cap, n, v, (size_t)(end - v));
			p = *end ? end + 1 : end;
		} else {
			end = strchr(v, ' ');
			if (!end)
				end = v + strlen(v);
			json_escape(dst, cap, n, v, (size_t)(end - v));
			p = end;
		}
		if (*n + 1 < cap)
			dst[(*n)++] = '"';
	}
}

void sb_logging_emit(enum sb_level level, const char *event, const char *kvfmt, ...)
{
	char kv[2048], line[4096], ts[64];
	struct timespec now;
	struct tm tm;
	va_list ap;
	size_t n = 0;

	va_start(ap, kvfmt);
	vsnprintf(kv, sizeof kv, kvfmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(now.tv_nsec / 1000000));
	if (log_format == SB_LOG_JSON) {
		n = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"event\":\"%s\"",
				     ts, level_names[level], event);
		if (log_context[0])
			kv_to_json(line, sizeof line, &n, log_context);
		kv_to_json(line, sizeof line, &n, kv);
		n += (size_t)snprintf(line + n, sizeof line - n, "}\n");
	} else {
		n = (size_t)snprintf(line, sizeof line, "ts=%s level=%s event=%s%s%s%s%s\n", ts,
				     level_names[level], event, log_context[0] ? " " : "", log_context,
				     kv[0] ? " " : "", kv);
	}
	if (n >= sizeof line) {
		n = sizeof line;
		line[n - 1] = '\n';
	}
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w; /* nothing useful to do if stderr is gone */
}

int sb_ratelimit_ok(struct sb_ratelimit *rl, int interval_ms, uint64_t *suppressed)
{
	int64_t now = sb_mono_ms();
	/* Racy by design: a lost update prints one extra line, never loses one. */
	if (now < __atomic_load_n(&rl->next_ms, __ATOMIC_RELAXED)) {
		__atomic_fetch_add(&rl->suppressed, 1, __ATOMIC_RELAXED);
		return 0;
	}
	__atomic_store_n(&rl->next_ms, now + interval_ms, __ATOMIC_RELAXED);
	*suppressed = __atomic_exchange_n(&rl->suppressed, 0, __ATOMIC_RELAXED);
	return 1;
}
