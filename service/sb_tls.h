/* sb_tls.h - the server's TLS credentials, reloadable without a restart.
 *
 * gRPC asks a certificate-config fetcher for the current certificate at
 * every TLS handshake. sb_tls_reload() (SIGHUP) marks the files stale; the
 * next handshake reads them again and, if they parse, serves them from then
 * on — connections already open keep the old certificate. A file that fails
 * to load leaves the old certificate in force (logged).
 */
#ifndef SB_SERVICE_TLS_H
#define SB_SERVICE_TLS_H

#include <grpc/grpc_security.h>
#include <stddef.h>

#include "sb_error.h"

struct sb_tls;

/* Reads cert/key (and client_ca, "" = no client certificates) and makes
 * server credentials that fetch them through t. 0, or SB_EBADCONFIG with a
 * message in err. t must outlive the gRPC server (sb_tls_free after it). */
int sb_tls_open(struct sb_tls **t, const char *cert, const char *key, const char *client_ca,
		grpc_server_credentials **creds, char *err, size_t errcap) SB_MUST_CHECK;
void sb_tls_reload(struct sb_tls *t);
void sb_tls_free(struct sb_tls *t);

/* The whole of a PEM file, NUL-terminated (free it); NULL with a message. */
char *sb_tls_read_pem(const char *path, char *err, size_t errcap);

#endif
