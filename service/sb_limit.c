/* sb_limit.c - the limiter table: a hash of callers with an idle list. */
#include "sb_limit.h"

#include "sb_time.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 4096 /* hash chains; SB_LIMITERS_MAX entries at most */
#define BUSY_RETRY_MS 100 /* advice when in-flight bytes or streams are at their bound */

struct sb_limiter {
	char key[SB_LIMIT_KEY_MAX];
	struct sb_limiter *chain;            /* hash chain */
	struct sb_limiter *idle_prev, *idle_next; /* idle list (refs == 0), oldest first */
	int refs;
	int64_t streams, inflight;
	double tokens;
	int64_t last_ns; /* last bucket refill */
};

struct sb_limits {
	pthread_mutex_t lock;
	struct sb_limits_cfg cfg;
	struct sb_limiter *buckets[BUCKETS];
	struct sb_limiter *idle_head, *idle_tail;
	size_t count;
};

static uint32_t hash(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h % BUCKETS;
}

int sb_limits_open(struct sb_limits **out, const struct sb_limits_cfg *cfg)
{
	struct sb_limits *L = calloc(1, sizeof *L);
	if (!L)
		return -ENOMEM;
	pthread_mutex_init(&L->lock, NULL);
	L->cfg = *cfg;
	if (L->cfg.burst < 1)
		L->cfg.burst = L->cfg.rate > 1 ? L->cfg.rate : 1;
	*out = L;
	return 0;
}

void sb_limits_close(struct sb_limits *L)
{
	if (!L)
		return;
	for (int i = 0; i < BUCKETS; i++) {
		struct sb_limiter *l = L->buckets[i], *n;
		for (; l; l = n) {
			n = l->chain;
			free(l);
		}
	}
	pthread_mutex_destroy(&L->lock);
	free(L);
}

static void idle_unlink(struct sb_limits *L, struct sb_limiter *l)
{
	if (l->idle_prev)
		l->idle_prev->idle_next = l->idle_next;
	else if (L->idle_head == l)
		L->idle_head = l->idle_next;
	if (l->idle_next)
		l->idle_next->idle_prev = l->idle_prev;
	else if (L->idle_tail == l)
		L->idle_tail = l->idle_prev;
	l->idle_prev = l->idle_next = NULL;
}

static void remove_entry(struct sb_limits *L, struct sb_limiter *l)
{
	struct sb_limiter **pp = &L->buckets[hash(l->key)];
	while (*pp != l)
		pp = &(*pp)->chain;
	*pp = l->chain;
	idle_unlink(L, l);
	L->count--;
	free(l);
}

struct sb_limiter *sb_limiter_get(struct sb_limits *L, const char *key)
{
	struct sb_limiter *l;
	uint32_t h = hash(key);
	pthread_mutex_lock(&L->lock);
	for (l = L->buckets[h]; l; l = l->chain)
		if (strcmp(l->key, key) == 0)
			break;
	if (!l) {
		if (L->count >= SB_LIMITERS_MAX && L->idle_head)
			remove_entry(L, L->idle_head);
		if (L->count < SB_LIMITERS_MAX && (l = calloc(1, sizeof *l))) {
			snprintf(l->key, sizeof l->key, "%s", key);
			l->tokens = L->cfg.burst;
			l->last_ns = sb_mono_ns();
			l->chain = L->buckets[h];
			L->buckets[h] = l;
			L->count++;
		}
	} else if (l->refs == 0) {
		idle_unlink(L, l);
	}
	if (l)
		l->refs++;
	pthread_mutex_unlock(&L->lock);
	return l;
}

void sb_limiter_put(struct sb_limits *L, struct sb_limiter *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&L->lock);
	if (--l->refs == 0) { /* idle: newest at the tail */
		l->idle_prev = L->idle_tail;
		l->idle_next = NULL;
		if (L->idle_tail)
			L->idle_tail->idle_next = l;
		else
			L->idle_head = l;
		L->idle_tail = l;
	}
	pthread_mutex_unlock(&L->lock);
}

/* Lock held. Takes one token; 0 or SB_EBUSY with the time until one is due. */
static int take_token(struct sb_limits *L, struct sb_limiter *l, int64_t *retry_ms)
{
	if (L->cfg.rate <= 0)
		return 0;
	int64_t now = sb_mono_ns();
	l->tokens += (double)(now - l->last_ns) * 1e-9 * L->cfg.rate;
	if (l->tokens > L->cfg.burst)
		l->tokens = L->cfg.burst;
	l->last_ns = now;
	if (l->tokens >= 1) {
		l->tokens -= 1;
		return 0;
	}
	*retry_ms = (int64_t)((1 - l->tokens) / L->cfg.rate * 1000) + 1;
	return SB_EBUSY;
}

int sb_limiter_call_begin(struct sb_limits *L, struct sb_limiter *l, int64_t *retry_ms)
{
	int rc = 0;
	*retry_ms = 0;
	pthread_mutex_lock(&L->lock);
	if (L->cfg.streams > 0 && l->streams >= L->cfg.streams) {
		*retry_ms = BUSY_RETRY_MS;
		rc = SB_EBUSY;
	} else if ((rc = take_token(L, l, retry_ms)) == 0) {
		l->streams++;
	}
	pthread_mutex_unlock(&L->lock);
	return rc;
}

void sb_limiter_call_end(struct sb_limits *L, struct sb_limiter *l)
{
	pthread_mutex_lock(&L->lock);
	l->streams--;
	pthread_mutex_unlock(&L->lock);
}

int sb_limiter_request(struct sb_limits *L, struct sb_limiter *l, int64_t bytes, int64_t *retry_ms)
{
	int rc = 0;
	*retry_ms = 0;
	pthread_mutex_lock(&L->lock);
	if (L->cfg.inflight_bytes > 0 && l->inflight > 0 && l->inflight + bytes > L->cfg.inflight_bytes) {
		*retry_ms = BUSY_RETRY_MS;
		rc = SB_EBUSY;
	} else if ((rc = take_token(L, l, retry_ms)) == 0) {
		l->inflight += bytes;
	}
	pthread_mutex_unlock(&L->lock);
	return rc;
}

void sb_limiter_done(struct sb_limits *L, struct sb_limiter *l, int64_t bytes)
{
	pthread_mutex_lock(&L->lock);
	l->inflight -= bytes;
	pthread_mutex_unlock(&L->lock);
}
