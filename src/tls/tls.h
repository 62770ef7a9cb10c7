/*
 * OpenSSL contexts: the server side (several certificates picked by SNI, ECDSA
 * and RSA side by side, tickets) and the client side towards the CAS (verify,
 * SNI, host-name check). Knows nothing of HTTP.
 */
#ifndef EF_TLS_TLS_H
#define EF_TLS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <openssl/ssl.h>

struct conf;

/* The server contexts of one config generation; immutable once built, shared
 * by all workers (OpenSSL contexts are thread-safe for handshakes). */
struct tls_server;

/*
 * Builds the server contexts for c->certs: TLS 1.2 and 1.3 only, AEAD ciphers
 * with forward secrecy in our order (SHA-256 suites first; a client listing
 * ChaCha20 first gets it), no compression, no renegotiation, session tickets
 * (keys made once per process: every context, and every tls_server a reload
 * builds, accepts the same tickets), SSL_MODE_RELEASE_BUFFERS.
 * Certificates with the same names but different key types (ECDSA and RSA)
 * share one context so OpenSSL picks by what the client supports. Returns NULL
 * with *err ("FILE:LINE: reason" lines, malloc'd) on failure.
 */
struct tls_server *tls_server_new(const struct conf *c, char **err);

/* Frees the contexts; sessions that still use one keep it alive through
 * OpenSSL's reference counts. A connection still in its handshake also needs
 * ts itself (the SNI callback reads it): free ts only once no handshake on
 * its contexts is in progress, as the generation's reference count ensures.
 * NULL is accepted. */
void tls_server_free(struct tls_server *ts);

/* The context to give SSL_new() for a new client connection: the default
 * certificate's, with the SNI callback installed. */
SSL_CTX *tls_server_ctx(const struct tls_server *ts);

/* What the operators see of one served certificate. */
struct tls_cert_info {
	const char *const *names; /* ts's: the names it serves, sorted */
	size_t n_names;
	time_t not_after;	  /* expiry, Unix time; 0: unreadable */
	const char *key_type;	  /* "ECDSA", "RSA" or "other" */
};

/* How many certificates ts serves: one per conf.certs entry, in order. */
unsigned tls_server_n_certs(const struct tls_server *ts);

/* Fills *out for certificate i (below tls_server_n_certs); what it points
 * to lives as long as ts. */
void tls_server_cert_info(const struct tls_server *ts, unsigned i,
                          struct tls_cert_info *out);

/* Index into conf.certs of the certificate a client asking for servername
 * (NULL: no SNI) gets: the first whose SAN (or CN when there is no SAN)
 * matches, wildcards in the left-most label only; else 0. For tests and
 * `easfront preflight`. */
int tls_server_select(const struct tls_server *ts, const char *servername);

/* True when some configured certificate names name (SAN, wildcards as in
 * tls_server_select); false when a client asking for it would get the
 * default certificate only because nothing matched. */
bool tls_server_covers(const struct tls_server *ts, const char *name);

/*
 * Checks every certificate and key of c without building contexts: readable,
 * parseable, the key matches its certificate, not expired and not yet valid
 * only in the future. Returns 0, or -1 with *err holding one
 * "CONFIGFILE:LINE: reason" line per problem (the line of the cert entry).
 */
int tls_check_certs(const struct conf *c, char **err);

/*
 * For `easfront preflight`: every certificate's chain verifies (the file's
 * intermediates, the system store, a self-signed root at the end of the file
 * as its own anchor) and no leaf expires within days. Returns 0, or -1 with
 * *err holding "CONFIGFILE:LINE: reason" lines.
 */
int tls_preflight_certs(const struct conf *c, unsigned days, char **err);

/* The client context towards CAS servers: TLS 1.2+, peer verified against
 * ca_file (NULL: the system store). Returns NULL with *err on failure.
 * Sessions are the caller's to keep (SSL_get1_session, SSL_set_session): a
 * TLS 1.3 ticket arrives with the first bytes read after the handshake, and
 * OpenSSL marks the session unusable when its SSL is freed without having
 * sent close_notify (SSL_shutdown). */
SSL_CTX *tls_client_ctx_new(const char *ca_file, char **err);

/* A new client SSL for host, in connect state: SNI set (unless host is an IP
 * literal, IPv6 with or without brackets) and the certificate's names (or
 * iPAddress) checked against host. Returns NULL on failure. */
SSL *tls_client_ssl_new(SSL_CTX *ctx, const char *host);

/* "TLSv1.3" etc. for logs. */
const char *tls_version_str(const SSL *ssl);

#endif
