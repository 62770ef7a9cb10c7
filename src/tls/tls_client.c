#include "tls/tls.h"

#include "tls/tls_int.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

SSL_CTX *tls_client_ctx_new(const char *ca_file, char **err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char why[512];

	if (err)
		*err = NULL;
	if (ctx == NULL) {
		tls_err_ssl(why, sizeof(why), "cannot create TLS context");
		goto fail;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
		tls_err_ssl(why, sizeof(why), "cannot require TLS 1.2");
		goto fail;
	}
	if (ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
	            : SSL_CTX_set_default_verify_paths(ctx) != 1) {
		tls_err_ssl(why, sizeof(why), "cannot load CA certificates %s",
		            ca_file ? ca_file : "(system store)");
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_options(ctx,
	                    SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	/* The caller keeps sessions per CAS (SSL_get1_session/SSL_set_session);
	 * OpenSSL's own store would only grow beside them. */
	SSL_CTX_set_session_cache_mode(
	    ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	return ctx;
fail:
	tls_err_add(err, "%s", why);
	SSL_CTX_free(ctx);
	return NULL;
}

/* Copies host without the brackets of a URL's "[v6]" form into buf. */
static const char *client_host(const char *host, char *buf, size_t cap)
{
	size_t len = strlen(host);

	if (len >= 2 && host[0] == '[' && host[len - 1] == ']' &&
	    len - 2 < cap) {
		memcpy(buf, host + 1, len - 2);
		buf[len - 2] = '\0';
		return buf;
	}
	return host;
}

static bool is_ip_literal(const char *host)
{
	unsigned char addr[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, addr) == 1 ||
	       inet_pton(AF_INET6, host, addr) == 1;
}

SSL *tls_client_ssl_new(SSL_CTX *ctx, const char *host)
{
	char buf[INET6_ADDRSTRLEN + 1];
	SSL *ssl = SSL_new(ctx);
	int ok;

	if (ssl == NULL)
		return NULL;
	host = client_host(host, buf, sizeof(buf));
	/* RFC 6066 forbids IP literals in SNI; the certificate must then
	 * carry the address as an iPAddress SAN. */
	if (is_ip_literal(host)) {
		ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
	} else {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		ok = SSL_set_tlsext_host_name(ssl, host) == 1 &&
		     SSL_set1_host(ssl, host) == 1;
	}
	if (ok != 1) {
		ERR_clear_error();
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_connect_state(ssl);
	return ssl;
}

const char *tls_version_str(const SSL *ssl)
{
	return ssl ? SSL_get_version(ssl) : "-";
}
