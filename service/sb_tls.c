/* sb_tls.c - TLS server credentials through a certificate-config fetcher. */
#include "sb_tls.h"

#include "sb_logging.h"
#include "sb_vfs.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEM_MAX (1u << 20) /* a certificate chain, key or CA bundle */

struct sb_tls {
	pthread_mutex_t lock;
	char *cert_path, *key_path, *ca_path; /* ca_path NULL: no client certificates */
	int generation, served;               /* reload requests; the one last served */
};

char *sb_tls_read_pem(const char *path, char *err, size_t errcap)
{
	char *buf = NULL;
	size_t n = 0;
	int rc = sb_vfs_read_text(sb_vfs_posix(), path, PEM_MAX, &buf, &n);
	if (!rc && !strstr(buf, "-----BEGIN"))
		rc = SB_EINVAL;
	if (rc) {
		snprintf(err, errcap, "%s: %s", path, rc == -EFBIG ? "larger than 1 MiB" : rc == SB_EINVAL ? "not a PEM file"
										    : sb_strerror(rc));
		free(buf);
		return NULL;
	}
	return buf;
}

/* Reads the three files into a new certificate config; NULL with a message. */
static grpc_ssl_server_certificate_config *load(struct sb_tls *t, char *err, size_t errcap)
{
	grpc_ssl_server_certificate_config *cfg = NULL;
	char *cert = sb_tls_read_pem(t->cert_path, err, errcap);
	char *key = cert ? sb_tls_read_pem(t->key_path, err, errcap) : NULL;
	char *ca = key && t->ca_path ? sb_tls_read_pem(t->ca_path, err, errcap) : NULL;
	if (key && (!t->ca_path || ca)) {
		grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
		/* gRPC 1.51 asserts that a fetched config has root certificates even
		 * when client certificates are not requested (and the roots are then
		 * unused): give it our own chain. */
		cfg = grpc_ssl_server_certificate_config_create(ca ? ca : cert, &pair, 1); /* copies */
	}
	free(cert);
	if (key) {
		memset(key, 0, strlen(key));
		free(key);
	}
	free(ca);
	return cfg;
}

static grpc_ssl_certificate_config_reload_status fetch(void *arg, grpc_ssl_server_certificate_config **out)
{
	struct sb_tls *t = arg;
	char err[512];
	grpc_ssl_certificate_config_reload_status st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
	pthread_mutex_lock(&t->lock);
	if (t->served != t->generation) {
		int first = t->served < 0;
		t->served = t->generation;
		*out = load(t, err, sizeof err);
		if (*out) {
			st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
			if (!first)
				SB_INFO("tls_reloaded", "cert=\"%s\"", t->cert_path);
		} else {
			/* Keep serving the certificate in force. */
			SB_ERROR("tls_reload_failed", "error=\"%s\"", err);
			st = first ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return st;
}

int sb_tls_open(struct sb_tls **out, const char *cert, const char *key, const char *client_ca,
		grpc_server_credentials **creds, char *err, size_t errcap)
{
	struct sb_tls *t = calloc(1, sizeof *t);
	grpc_ssl_server_certificate_config *probe;
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	t->cert_path = strdup(cert);
	t->key_path = strdup(key);
	t->ca_path = client_ca && *client_ca ? strdup(client_ca) : NULL;
	t->served = -1;
	/* Fail at start-up, with the file named, rather than at the first
	 * handshake. */
	probe = load(t, err, errcap);
	if (!probe) {
		sb_tls_free(t);
		return SB_EBADCONFIG;
	}
	grpc_ssl_server_certificate_config_destroy(probe);
	grpc_ssl_server_credentials_options *o = grpc_ssl_server_credentials_create_options_using_config_fetcher(
	    t->ca_path ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
		       : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
	    fetch, t);
	*creds = grpc_ssl_server_credentials_create_with_options(o);
	if (!*creds) {
		snprintf(err, errcap, "gRPC refused the TLS certificate %s / key %s", cert, key);
		sb_tls_free(t);
		return SB_EBADCONFIG;
	}
	*out = t;
	return 0;
}

void sb_tls_reload(struct sb_tls *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->generation++;
	pthread_mutex_unlock(&t->lock);
}

void sb_tls_free(struct sb_tls *t)
{
	if (!t)
		return;
	free(t->cert_path);
	free(t->key_path);
	free(t->ca_path);
	pthread_mutex_destroy(&t->lock);
	free(t);
}
