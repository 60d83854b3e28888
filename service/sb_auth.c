/* sb_auth.c - the tokens table: parse, look up by SHA-256, reload. */
#include "sb_auth.h"

#include "sb_limits.h"
#include "sb_vfs.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SECRET_MIN 16 /* bytes: a shorter cluster secret is refused */

struct perm {
	uint8_t kind; /* SB_PERM_PRODUCE or SB_PERM_CONSUME */
	char pattern[SB_TOPIC_NAME_MAX + 1];
};

struct sb_principal {
	int refs;
	unsigned flags; /* SB_PERM_ADMIN, SB_PERM_REPLICATE */
	char name[SB_AUTH_NAME_MAX];
	int nperms;
	struct perm perms[];
};

struct entry {
	uint8_t hash[32];
	struct sb_principal *p;
};

struct table {
	size_t n;
	struct entry *e; /* sorted by hash */
};

struct sb_auth {
	pthread_mutex_t lock;
	struct table *t;
	char *tokens_path, *secret_path;
	int enabled;
};

static void sha256(const void *data, size_t len, uint8_t out[32])
{
	unsigned int n = 32;
	EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

void sb_auth_hash_hex(const char *token, size_t len, char hex[65])
{
	uint8_t h[32];
	sha256(token, len, h);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
}

static void errf(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, cap, fmt, ap);
	va_end(ap);
}

static void table_free(struct table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		sb_principal_release(t->e[i].p);
	free(t->e);
	free(t);
}

static int cmp_entry(const void *a, const void *b)
{
	return memcmp(((const struct entry *)a)->hash, ((const struct entry *)b)->hash, 32);
}

static int unhex(const char *s, uint8_t out[32])
{
	if (strlen(s) != 64)
		return -1;
	for (int i = 0; i < 32; i++) {
		int v = 0;
		for (int k = 0; k < 2; k++) {
			int c = tolower((unsigned char)s[2 * i + k]);
			if (c >= '0' && c <= '9')
				v = v * 16 + (c - '0');
			else if (c >= 'a' && c <= 'f')
				v = v * 16 + (c - 'a' + 10);
			else
				return -1;
		}
		out[i] = (uint8_t)v;
	}
	return 0;
}

static int valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= SB_AUTH_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._@-", s[i]))
			return 0;
	return 1;
}

/* A topic pattern: topic-name characters plus the fnmatch wildcards. */
static int valid_pattern(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > SB_TOPIC_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-*?[]!", s[i]))
			return 0;
	return 1;
}

static struct sb_principal *principal_new(const char *name, int nperms)
{
	struct sb_principal *p = calloc(1, sizeof *p + (size_t)nperms * sizeof(struct perm));
	if (!p)
		return NULL;
	p->refs = 1;
	snprintf(p->name, sizeof p->name, "%s", name);
	return p;
}

/* One tokens-file line, already split into words: hash name perm... */
static int parse_line(char **w, int nw, struct entry *e, const char *path, int line, char *err, size_t cap)
{
	if (nw < 3) {
		errf(err, cap, "%s:%d: want <sha256-hex> <principal> <permission>...", path, line);
		return SB_EBADCONFIG;
	}
	if (unhex(w[0], e->hash)) {
		errf(err, cap, "%s:%d: the first word must be the SHA-256 of the token in 64 hex digits "
			       "(printf %%s TOKEN | sha256sum)", path, line);
		return SB_EBADCONFIG;
	}
	if (!valid_name(w[1])) {
		errf(err, cap, "%s:%d: principal \"%.80s\": use 1-63 characters of [A-Za-z0-9._@-]", path, line, w[1]);
		return SB_EBADCONFIG;
	}
	if (nw - 2 > SB_AUTH_PERMS_MAX) {
		errf(err, cap, "%s:%d: more than %d permissions", path, line, SB_AUTH_PERMS_MAX);
		return SB_EBADCONFIG;
	}
	struct sb_principal *p = principal_new(w[1], nw - 2);
	if (!p)
		return -ENOMEM;
	for (int i = 2; i < nw; i++) {
		const char *v = w[i];
		if (strcmp(v, "admin") == 0) {
			p->flags |= SB_PERM_ADMIN;
		} else if (strcmp(v, "replicate") == 0) {
			p->flags |= SB_PERM_REPLICATE;
		} else if ((strncmp(v, "produce:", 8) == 0 && valid_pattern(v + 8)) ||
			   (strncmp(v, "consume:", 8) == 0 && valid_pattern(v + 8))) {
			struct perm *q = &p->perms[p->nperms++];
			q->kind = v[0] == 'p' ? SB_PERM_PRODUCE : SB_PERM_CONSUME;
			snprintf(q->pattern, sizeof q->pattern, "%s", v + 8);
		} else {
			errf(err, cap, "%s:%d: permission \"%.80s\": want admin, replicate, produce:<pattern> "
				       "or consume:<pattern> (pattern: topic characters and * ? [ ])", path, line, v);
			sb_principal_release(p);
			return SB_EBADCONFIG;
		}
	}
	e->p = p;
	return 0;
}

static int read_file(const char *path, char **out, size_t *len, char *err, size_t cap)
{
	int rc = sb_vfs_read_text(sb_vfs_posix(), path, SB_AUTH_FILE_MAX, out, len);
	if (rc == -ENOMEM)
		return rc;
	if (rc) {
		errf(err, cap, "%s: %s", path, rc == -EFBIG ? "larger than 4 MiB" : sb_strerror(rc));
		return SB_EBADCONFIG;
	}
	return 0;
}

static int load_tokens(struct table *t, const char *path, char *err, size_t cap)
{
	char *buf = NULL, *save = NULL;
	size_t len = 0;
	int rc = read_file(path, &buf, &len, err, cap);
	if (rc)
		return rc;
	int line = 0;
	for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char *w[SB_AUTH_PERMS_MAX + 3], *s2 = NULL;
		int nw = 0;
		line++;
		char *hash = strchr(l, '#');
		if (hash)
			*hash = 0;
		for (char *x = strtok_r(l, " \t\r", &s2); x && nw < (int)(sizeof w / sizeof *w);
		     x = strtok_r(NULL, " \t\r", &s2))
			w[nw++] = x;
		if (nw == 0)
			continue;
		if (t->n == SB_AUTH_TOKENS_MAX) {
			errf(err, cap, "%s: more than %d tokens", path, SB_AUTH_TOKENS_MAX);
			rc = SB_EBADCONFIG;
			break;
		}
		rc = parse_line(w, nw, &t->e[t->n], path, line, err, cap);
		if (rc)
			break;
		t->n++;
	}
	free(buf);
	return rc;
}

static int load_secret(struct table *t, const char *path, char *err, size_t cap)
{
	char *buf = NULL;
	size_t len = 0;
	int rc = read_file(path, &buf, &len, err, cap);
	if (rc)
		return rc;
	while (len > 0 && isspace((unsigned char)buf[len - 1]))
		len--;
	if (len < SECRET_MIN) {
		errf(err, cap, "%s: the cluster secret must be at least %d bytes", path, SECRET_MIN);
		rc = SB_EBADCONFIG;
		goto out;
	}
	struct entry *e = &t->e[t->n];
	sha256(buf, len, e->hash);
	e->p = principal_new("cluster", 0);
	if (!e->p) {
		rc = -ENOMEM;
		goto out;
	}
	e->p->flags = SB_PERM_REPLICATE;
	t->n++;
out:
	OPENSSL_cleanse(buf, len);
	free(buf);
	return rc;
}

static int build(struct sb_auth *a, struct table **out, char *err, size_t cap)
{
	int rc = 0;
	struct table *t = calloc(1, sizeof *t);
	if (!t)
		return -ENOMEM;
	t->e = calloc(SB_AUTH_TOKENS_MAX + 1, sizeof *t->e);
	if (!t->e) {
		rc = -ENOMEM;
		goto fail;
	}
	if (a->tokens_path && (rc = load_tokens(t, a->tokens_path, err, cap)))
		goto fail;
	if (a->secret_path && (rc = load_secret(t, a->secret_path, err, cap)))
		goto fail;
	qsort(t->e, t->n, sizeof *t->e, cmp_entry);
	for (size_t i = 1; i < t->n; i++) {
		if (memcmp(t->e[i - 1].hash, t->e[i].hash, 32) == 0) {
			errf(err, cap, "the same token is listed twice (principals %s and %s)", t->e[i - 1].p->name,
			     t->e[i].p->name);
			rc = SB_EBADCONFIG;
			goto fail;
		}
	}
	*out = t;
	return 0;
fail:
	table_free(t);
	return rc;
}

int sb_auth_open(struct sb_auth **out, const char *tokens_path, const char *cluster_secret_path, char *err,
		 size_t errcap)
{
	struct sb_auth *a = calloc(1, sizeof *a);
	int rc = 0;
	if (!a)
		return -ENOMEM;
	pthread_mutex_init(&a->lock, NULL);
	if (tokens_path && *tokens_path)
		a->tokens_path = strdup(tokens_path);
	if (cluster_secret_path && *cluster_secret_path)
		a->secret_path = strdup(cluster_secret_path);
	a->enabled = a->tokens_path || a->secret_path;
	if (a->enabled && (rc = build(a, &a->t, err, errcap))) {
		sb_auth_close(a);
		return rc;
	}
	*out = a;
	return 0;
}

int sb_auth_reload(struct sb_auth *a, char *err, size_t errcap)
{
	struct table *t = NULL, *old;
	if (!a->enabled)
		return 0;
	int rc = build(a, &t, err, errcap);
	if (rc)
		return rc;
	pthread_mutex_lock(&a->lock);
	old = a->t;
	a->t = t;
	pthread_mutex_unlock(&a->lock);
	table_free(old);
	return 0;
}

void sb_auth_close(struct sb_auth *a)
{
	if (!a)
		return;
	table_free(a->t);
	free(a->tokens_path);
	free(a->secret_path);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

int sb_auth_enabled(const struct sb_auth *a)
{
	return a && a->enabled;
}

size_t sb_auth_count(const struct sb_auth *a)
{
	return a && a->t ? a->t->n : 0;
}

int sb_auth_identify(struct sb_auth *a, const char *authorization, struct sb_principal **out)
{
	struct entry key, *e;
	*out = NULL;
	if (!sb_auth_enabled(a))
		return 0;
	if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
		return SB_EUNAUTH;
	const char *tok = authorization + 7;
	while (*tok == ' ')
		tok++;
	size_t n = strlen(tok);
	if (n == 0 || n > SB_AUTH_TOKEN_MAX)
		return SB_EUNAUTH;
	sha256(tok, n, key.hash);
	pthread_mutex_lock(&a->lock);
	e = bsearch(&key, a->t->e, a->t->n, sizeof *a->t->e, cmp_entry);
	if (e) {
		sb_principal_ref(e->p);
		*out = e->p;
	}
	pthread_mutex_unlock(&a->lock);
	return e ? 0 : SB_EUNAUTH;
}

void sb_principal_ref(struct sb_principal *p)
{
	if (p)
		__atomic_fetch_add(&p->refs, 1, __ATOMIC_RELAXED);
}

void sb_principal_release(struct sb_principal *p)
{
	if (p && __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(p);
}

const char *sb_principal_name(const struct sb_principal *p)
{
	return p ? p->name : "-";
}

int sb_principal_can(const struct sb_principal *p, enum sb_perm perm, const char *topic)
{
	if (!p || (p->flags & SB_PERM_ADMIN))
		return 1;
	if (perm == SB_PERM_ADMIN || perm == SB_PERM_REPLICATE)
		return (p->flags & perm) != 0;
	if (!topic)
		return 0;
	for (int i = 0; i < p->nperms; i++)
		if (p->perms[i].kind == perm && fnmatch(p->perms[i].pattern, topic, 0) == 0)
			return 1;
	return 0;
}

int sb_principal_sees(const struct sb_principal *p, const char *topic)
{
	return sb_principal_can(p, SB_PERM_PRODUCE, topic) || sb_principal_can(p, SB_PERM_CONSUME, topic);
}
