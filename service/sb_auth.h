/* sb_auth.h - who is calling and what they may do.
 *
 * Callers present `authorization: Bearer <token>`. The tokens file maps the
 * SHA-256 of each token (never the token itself) to a principal and its
 * permissions; docs/SECURITY.md describes the file:
 *
 *   # sha256-of-token (64 hex)  principal  permission...
 *   9f86d081884c7d65...          alice      produce:orders.* consume:orders.*
 *   60303ae22b998861...          ops        admin
 *
 * Permissions: `admin` (everything), `produce:<pattern>`, `consume:<pattern>`
 * and `replicate` (the Replication service). A pattern is a topic name with
 * fnmatch(3) wildcards. A cluster secret file, shared by every node, gives
 * the principal "cluster" the `replicate` permission: followers present it
 * to the leader.
 *
 * With neither file configured authentication is off: sb_auth_identify()
 * gives NULL, the caller who may do anything. Principals are reference
 * counted, so a reload (SIGHUP) never pulls one from under a live call.
 */
#ifndef SB_SERVICE_AUTH_H
#define SB_SERVICE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "sb_error.h"

#define SB_AUTH_TOKENS_MAX 10000     /* lines in a tokens file */
#define SB_AUTH_PERMS_MAX 64         /* permissions of one principal */
#define SB_AUTH_NAME_MAX 64          /* principal name, bytes */
#define SB_AUTH_TOKEN_MAX 4096       /* a presented token, bytes */
#define SB_AUTH_FILE_MAX (4u << 20)  /* tokens file size */

enum sb_perm {
	SB_PERM_PRODUCE = 1,
	SB_PERM_CONSUME = 2,
	SB_PERM_ADMIN = 4,
	SB_PERM_REPLICATE = 8,
};

struct sb_principal;
struct sb_auth;

/* Loads tokens_path and cluster_secret_path (either may be NULL or "").
 * 0, or SB_EBADCONFIG with a message in err (file unreadable, bad line). */
int sb_auth_open(struct sb_auth **out, const char *tokens_path, const char *cluster_secret_path,
		 char *err, size_t errcap) SB_MUST_CHECK;
/* Reads both files again; on any error the old table stays in force and the
 * error is returned (SB_EBADCONFIG, message in err). */
int sb_auth_reload(struct sb_auth *a, char *err, size_t errcap) SB_MUST_CHECK;
void sb_auth_close(struct sb_auth *a);
/* 1 if callers must authenticate. */
int sb_auth_enabled(const struct sb_auth *a);
/* Tokens currently loaded (for the start-up log line). */
size_t sb_auth_count(const struct sb_auth *a);

/* Resolves an `authorization` header value. 0 with *out = a referenced
 * principal (release it), or 0 with *out = NULL when authentication is off;
 * SB_EUNAUTH when it is on and the header is missing, malformed or unknown. */
int sb_auth_identify(struct sb_auth *a, const char *authorization, struct sb_principal **out) SB_MUST_CHECK;
void sb_principal_ref(struct sb_principal *p);
void sb_principal_release(struct sb_principal *p);
/* Its name ("-" for NULL, the caller of a server without authentication). */
const char *sb_principal_name(const struct sb_principal *p);
/* 1 if p may do perm on topic (topic ignored for ADMIN and REPLICATE). A
 * NULL principal may do anything; ADMIN may do everything. */
int sb_principal_can(const struct sb_principal *p, enum sb_perm perm, const char *topic);
/* 1 if p may see topic at all (produce or consume on it, or admin). */
int sb_principal_sees(const struct sb_principal *p, const char *topic);

/* SHA-256 of a token as 64 lowercase hex digits plus NUL (hex must hold 65). */
void sb_auth_hash_hex(const char *token, size_t len, char hex[65]);

#endif
