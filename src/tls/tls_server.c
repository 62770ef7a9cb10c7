#include "tls/tls.h"

#include "conf/conf.h"
#include "core/str.h"
#include "tls/tls_int.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>

/* TLS 1.2 suites: forward secrecy and AEAD only (Mozilla "intermediate"),
 * ECDSA and RSA so both kinds of certificate can be served. TLS 1.3 keeps
 * OpenSSL's default suites, which are all AEAD. */
#define TLS_SERVER_CIPHERS_12                                                  \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"           \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"           \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_SERVER_GROUPS "X25519:P-256:P-384"

/* Same value on every context, like the ticket keys: a session resumes only
 * under the sid_ctx it was made under, and which context's value is checked
 * depends on when OpenSSL runs the SNI callback, so all contexts agree. */
#define TLS_SERVER_SID_CTX "easfront"

/* 16 bytes key name, 32 HMAC secret, 32 AES key
 * (SSL_CTX_set_tlsext_ticket_keys) */
#define TLS_TICKET_KEYS_LEN 80

struct tls_server_cert {
	char **names; /* owned (tls_pem_names): what the cert serves */
	size_t n_names;
	int key_type; /* EVP_PKEY base id of the key: its slot in a ctx */
	SSL_CTX *ctx; /* not owned: the entry of ts->ctxs serving it */
};

struct tls_server {
	struct tls_server_cert *certs; /* owned, one per conf.certs entry */
	unsigned n_certs;
	SSL_CTX **ctxs; /* owned (a reference each); ctxs[0] is certs[0]'s */
	unsigned n_ctxs;
};

/* True when pattern (lower case, from a certificate) covers host. A
 * wildcard is only "*." as the whole left-most label and stands for exactly
 * one non-empty label. */
static bool name_match(const char *pattern, struct str host)
{
	struct str pat = str_from(pattern);
	const char *dot;

	if (pat.len > 2 && pattern[0] == '*' && pattern[1] == '.') {
		dot = memchr(host.p, '.', host.len);
		if (dot == NULL || dot == host.p)
			return false;
		host.len -= (size_t)(dot + 1 - host.p);
		host.p = dot + 1;
		pat.p += 2;
		pat.len -= 2;
	}
	return str_eq_ci(pat, host);
}

/* Index of the first certificate naming servername, or -1. */
static int find_cert(const struct tls_server *ts, const char *servername)
{
	struct str host = str_from(servername);

	/* An absolute name with its root dot is the same name. */
	if (host.len > 0 && host.p[host.len - 1] == '.')
		host.len--;
	if (host.len == 0)
		return -1;
	for (unsigned i = 0; i < ts->n_certs; i++)
		for (size_t k = 0; k < ts->certs[i].n_names; k++)
			if (name_match(ts->certs[i].names[k], host))
				return (int)i;
	return -1;
}

int tls_server_select(const struct tls_server *ts, const char *servername)
{
	int i = find_cert(ts, servername);

	return i < 0 ? 0 : i;
}

bool tls_server_covers(const struct tls_server *ts, const char *name)
{
	return find_cert(ts, name) >= 0;
}

static int server_sni_cb(SSL *ssl, int *alert, void *arg)
{
	const struct tls_server *ts = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	SSL_CTX *ctx = ts->certs[tls_server_select(ts, name)].ctx;

	if (ctx != SSL_get_SSL_CTX(ssl) && SSL_set_SSL_CTX(ssl, ctx) == NULL) {
		*alert = SSL_AD_INTERNAL_ERROR;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	return SSL_TLSEXT_ERR_OK;
}

/* Everything but the certificates; identical on every context of ts because
 * SSL_set_SSL_CTX moves only certificates and sid_ctx, the rest stays what
 * the first context gave the connection. */
static SSL_CTX *server_ctx_new(struct tls_server *ts, const unsigned char *keys)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL)
		return NULL;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_cipher_list(ctx, TLS_SERVER_CIPHERS_12) ||
	    !SSL_CTX_set1_groups_list(ctx, TLS_SERVER_GROUPS) ||
	    !SSL_CTX_set_session_id_context(
	        ctx, (const unsigned char *)TLS_SERVER_SID_CTX,
	        sizeof(TLS_SERVER_SID_CTX) - 1) ||
	    SSL_CTX_set_tlsext_ticket_keys(ctx, (void *)keys,
	                                   TLS_TICKET_KEYS_LEN) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_options(ctx,
	                    SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	/* Tickets are the resumption path; clients pick among the suites,
	 * all strong, so phones without AES hardware can take ChaCha20. */
	SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET |
	                               SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
	                          SSL_MODE_ENABLE_PARTIAL_WRITE |
	                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* No server-side cache: with stateless tickets it would only grow. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* TLS 1.3 sends two tickets by default; a phone resumes with one, and
	 * each costs an encryption per handshake. */
	SSL_CTX_set_num_tickets(ctx, 1);
	SSL_CTX_set_tlsext_servername_callback(ctx, server_sni_cb);
	SSL_CTX_set_tlsext_servername_arg(ctx, ts);
	return ctx;
}

static bool names_equal(const struct tls_server_cert *a,
                        const struct tls_server_cert *b)
{
	if (a->n_names != b->n_names)
		return false;
	for (size_t k = 0; k < a->n_names; k++)
		if (strcmp(a->names[k], b->names[k]) != 0)
			return false;
	return true;
}

/* The context an earlier certificate with the same names made, when its
 * slot for this key type is still free; a second certificate of the same
 * type would replace the first, so it gets a context of its own. */
static SSL_CTX *server_group_find(const struct tls_server *ts, unsigned i)
{
	const struct tls_server_cert *tc = &ts->certs[i];

	for (unsigned j = 0; j < i; j++) {
		SSL_CTX *ctx = ts->certs[j].ctx;
		bool taken = false;

		if (ctx == NULL || !names_equal(&ts->certs[j], tc))
			continue;
		for (unsigned k = 0; k < i; k++)
			if (ts->certs[k].ctx == ctx &&
			    ts->certs[k].key_type == tc->key_type)
				taken = true;
		if (!taken)
			return ctx;
	}
	return NULL;
}

static int server_install(struct tls_server *ts, unsigned i, struct tls_pem *p,
                          const unsigned char *keys, const char *file,
                          char *why, size_t cap)
{
	struct tls_server_cert *tc = &ts->certs[i];
	SSL_CTX *ctx = server_group_find(ts, i);

	if (ctx == NULL) {
		ctx = server_ctx_new(ts, keys);
		if (ctx == NULL) {
			tls_err_ssl(why, cap, "cannot create TLS context");
			return -1;
		}
		ts->ctxs[ts->n_ctxs++] = ctx;
	}
	tc->ctx = ctx;
	if (SSL_CTX_use_certificate(ctx, p->leaf) != 1 ||
	    SSL_CTX_set1_chain(ctx, p->chain) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, p->key) != 1) {
		tls_err_ssl(why, cap, "cannot use certificate %s", file);
		return -1;
	}
	return 0;
}

/* Loads c->certs[i] into ts: its own context, or the one of its twin. */
static int server_add_cert(struct tls_server *ts, const struct conf *c,
                           unsigned i, const unsigned char *keys, char **err)
{
	const struct conf_cert *cc = &c->certs[i];
	struct tls_server_cert *tc = &ts->certs[i];
	const char *path = c->path ? c->path : "-";
	struct tls_pem p;
	char why[512];
	int rc = -1;

	if (tls_pem_load(cc, &p, why, sizeof(why)) < 0)
		goto out;
	if (X509_check_private_key(p.leaf, p.key) != 1) {
		ERR_clear_error();
		snprintf(why, sizeof(why),
		         "key %s does not match certificate %s",
		         cc->key ? cc->key : cc->cert, cc->cert);
		goto out;
	}
	if (tls_pem_names(p.leaf, &tc->names, &tc->n_names) < 0) {
		snprintf(why, sizeof(why), "out of memory");
		goto out;
	}
	tc->key_type = EVP_PKEY_get_base_id(p.key);
	rc = server_install(ts, i, &p, keys, cc->cert, why, sizeof(why));
out:
	if (rc < 0)
		tls_err_add(err, "%s:%u: %s", path, cc->line, why);
	tls_pem_clear(&p);
	return rc;
}

struct tls_server *tls_server_new(const struct conf *c, char **err)
{
	unsigned char keys[TLS_TICKET_KEYS_LEN];
	const char *path = c->path ? c->path : "-";
	struct tls_server *ts;
	int rc = 0;

	if (err)
		*err = NULL;
	if (c->n_certs == 0) {
		tls_err_add(err, "%s: no TLS certificate configured", path);
		return NULL;
	}
	ts = calloc(1, sizeof(*ts));
	if (ts == NULL ||
	    (ts->certs = calloc(c->n_certs, sizeof(*ts->certs))) == NULL ||
	    (ts->ctxs = calloc(c->n_certs, sizeof(*ts->ctxs))) == NULL ||
	    RAND_priv_bytes(keys, sizeof(keys)) != 1) {
		tls_err_add(err, "%s: cannot set up TLS (memory, randomness)",
		            path);
		rc = -1;
	} else {
		ts->n_certs = c->n_certs;
		/* Every entry is tried so all problems are reported at once. */
		for (unsigned i = 0; i < c->n_certs; i++)
			if (server_add_cert(ts, c, i, keys, err) < 0)
				rc = -1;
	}
	OPENSSL_cleanse(keys, sizeof(keys));
	if (rc < 0) {
		tls_server_free(ts);
		return NULL;
	}
	return ts;
}

void tls_server_free(struct tls_server *ts)
{
	if (ts == NULL)
		return;
	for (unsigned i = 0; i < ts->n_certs; i++)
		tls_pem_names_free(ts->certs[i].names, ts->certs[i].n_names);
	for (unsigned i = 0; i < ts->n_ctxs; i++)
		SSL_CTX_free(ts->ctxs[i]);
	free(ts->certs);
	free(ts->ctxs);
	free(ts);
}

SSL_CTX *tls_server_ctx(const struct tls_server *ts)
{
	return ts->ctxs[0];
}
