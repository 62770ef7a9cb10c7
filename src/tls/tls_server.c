#include "tls/tls.h"

#include "conf/conf.h"
#include "core/str.h"
#include "tls/tls_int.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* TLS 1.2 suites: forward secrecy and AEAD only (Mozilla "intermediate"),
 * ECDSA and RSA so both kinds of certificate can be served. */
#define TLS_SERVER_CIPHERS_12                                                  \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"           \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"           \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
/* TLS 1.3 suites: OpenSSL's three defaults (all AEAD), SHA-256 ones first.
 * A SHA-384 suite makes every HKDF step and the transcript hash run
 * SHA-512 in software, about a tenth of a handshake's CPU; SHA-256 runs on
 * the SHA extensions of current x86 and ARM cores. */
#define TLS_SERVER_SUITES_13                                                   \
	"TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:"                 \
	"TLS_AES_256_GCM_SHA384"
#define TLS_SERVER_GROUPS "X25519:P-256:P-384"

/* Same value on every context, like the ticket keys: a session resumes only
 * under the sid_ctx it was made under, and which context's value is checked
 * depends on when OpenSSL runs the SNI callback, so all contexts agree. */
#define TLS_SERVER_SID_CTX "easfront"

/* Session tickets are protected as OpenSSL's built-in scheme does it
 * (AES-256-CBC, then HMAC-SHA256 over name, IV and ciphertext), but with the
 * cipher fetched once instead of on every ticket. The keys: a 16-byte name
 * sent in the clear, then the HMAC secret, then the AES key. */
#define TLS_TICKET_NAME_LEN 16
#define TLS_TICKET_HMAC_LEN 32
#define TLS_TICKET_AES_LEN 32
#define TLS_TICKET_KEYS_LEN                                                    \
	(TLS_TICKET_NAME_LEN + TLS_TICKET_HMAC_LEN + TLS_TICKET_AES_LEN)
#define TLS_TICKET_CIPHER "AES-256-CBC"
#define TLS_TICKET_DIGEST "SHA256"

/* Random bytes for session ids and ticket IVs come from the DRBG a block at
 * a time: a call costs about as much as a kilobyte of its output. One block
 * per thread; a forked child drops what it inherited. */
#define TLS_RAND_BLOCK 1024

struct tls_server_cert {
	char **names; /* owned (tls_pem_names): what the cert serves */
	size_t n_names;
	int key_type; /* EVP_PKEY base id of the key: its slot in a ctx */
	SSL_CTX *ctx; /* not owned: the entry of ts->ctxs serving it */
	time_t not_after; /* the leaf's expiry, Unix time; 0: unreadable */
};

struct tls_server {
	struct tls_server_cert *certs; /* owned, one per conf.certs entry */
	unsigned n_certs;
	SSL_CTX **ctxs; /* owned (a reference each); ctxs[0] is certs[0]'s */
	unsigned n_ctxs;
	EVP_CIPHER *tick_cipher; /* owned: TLS_TICKET_CIPHER, fetched once */
};

/* Name, HMAC secret, AES key: one set for the life of the process, so a
 * reload (a new tls_server) leaves every client's ticket valid instead of
 * sending them all through a full handshake at once. */
static unsigned char tick_keys[TLS_TICKET_KEYS_LEN];
static int tick_keys_ok;

struct tls_rand {
	unsigned char buf[TLS_RAND_BLOCK];
	size_t off; /* bytes of buf already handed out */
};

static _Thread_local struct tls_rand tls_rand = {.off = TLS_RAND_BLOCK};
static pthread_once_t tls_process_once = PTHREAD_ONCE_INIT;

/* In the child of a fork: what the parent had left must not be handed out
 * a second time. */
static void tls_rand_atfork_child(void)
{
	OPENSSL_cleanse(tls_rand.buf, sizeof(tls_rand.buf));
	tls_rand.off = sizeof(tls_rand.buf);
}

/* What every tls_server of the process shares, made once: the fork guard
 * of the random blocks and the ticket keys. */
static void tls_process_init(void)
{
	pthread_atfork(NULL, NULL, tls_rand_atfork_child);
	tick_keys_ok = RAND_priv_bytes(tick_keys, sizeof(tick_keys)) == 1;
}

/* Fills out with n unpredictable bytes. Returns 0, or -1 when the DRBG
 * fails. */
static int tls_rand_take(unsigned char *out, size_t n)
{
	struct tls_rand *r = &tls_rand;

	if (n > sizeof(r->buf))
		return RAND_bytes(out, (int)n) == 1 ? 0 : -1;
	if (r->off + n > sizeof(r->buf)) {
		if (RAND_bytes(r->buf, sizeof(r->buf)) != 1)
			return -1;
		r->off = 0;
	}
	memcpy(out, r->buf + r->off, n);
	OPENSSL_cleanse(r->buf + r->off, n);
	r->off += n;
	return 0;
}

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

/* Session ids (TLS 1.2 ones, and the internal id of every TLS 1.3 ticket's
 * session) from the per-thread random block. With the session cache off no
 * id is kept, so there is nothing to collide with. */
static int server_session_id_cb(SSL *ssl, unsigned char *id, unsigned int *len)
{
	(void)ssl;
	return tls_rand_take(id, *len) == 0;
}

/* Sets up the protection of a ticket being made (enc) or checked: 1 done,
 * 2 done and a new ticket is due (TLS 1.3 resumption, as OpenSSL's own
 * scheme does), 0 (checking) a key name that is not ours so the client gets
 * a full handshake, -1 error. Every context of a tls_server has the
 * tls_server as app data. */
static int server_ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv,
                            EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	const struct tls_server *ts =
	    SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	const unsigned char *k = tick_keys;
	char digest[] = TLS_TICKET_DIGEST;
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
	    OSSL_PARAM_construct_end()};
	int iv_len = EVP_CIPHER_get_iv_length(ts->tick_cipher);

	if (enc) {
		memcpy(name, k, TLS_TICKET_NAME_LEN);
		if (tls_rand_take(iv, (size_t)iv_len) < 0)
			return -1;
	} else if (CRYPTO_memcmp(name, k, TLS_TICKET_NAME_LEN) != 0) {
		return 0;
	}
	if (!EVP_CipherInit_ex2(cctx, ts->tick_cipher,
	                        k + TLS_TICKET_NAME_LEN + TLS_TICKET_HMAC_LEN,
	                        iv, enc, NULL) ||
	    !EVP_MAC_init(hctx, k + TLS_TICKET_NAME_LEN, TLS_TICKET_HMAC_LEN,
	                  params))
		return -1;
	return !enc && SSL_version(ssl) >= TLS1_3_VERSION ? 2 : 1;
}

/* Everything but the certificates; identical on every context of ts because
 * SSL_set_SSL_CTX moves only certificates and sid_ctx, the rest stays what
 * the first context gave the connection. */
static SSL_CTX *server_ctx_new(struct tls_server *ts)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL)
		return NULL;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_cipher_list(ctx, TLS_SERVER_CIPHERS_12) ||
	    !SSL_CTX_set_ciphersuites(ctx, TLS_SERVER_SUITES_13) ||
	    !SSL_CTX_set1_groups_list(ctx, TLS_SERVER_GROUPS) ||
	    !SSL_CTX_set_session_id_context(
	        ctx, (const unsigned char *)TLS_SERVER_SID_CTX,
	        sizeof(TLS_SERVER_SID_CTX) - 1) ||
	    !SSL_CTX_set_app_data(ctx, ts) ||
	    !SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, server_ticket_cb) ||
	    !SSL_CTX_set_generate_session_id(ctx, server_session_id_cb)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* Our order of suites (all strong) decides, except that a client
	 * listing ChaCha20 first (a phone without AES hardware) gets it. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	                             SSL_OP_NO_RENEGOTIATION |
	                             SSL_OP_CIPHER_SERVER_PREFERENCE |
	                             SSL_OP_PRIORITIZE_CHACHA);
	/* Tickets are the resumption path. */
	SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
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
                          const char *file, char *why, size_t cap)
{
	struct tls_server_cert *tc = &ts->certs[i];
	SSL_CTX *ctx = server_group_find(ts, i);

	if (ctx == NULL) {
		ctx = server_ctx_new(ts);
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

/* t as Unix time, for the operators' view of expiry; 0 when unreadable. */
static time_t asn1_unix(const ASN1_TIME *t)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

/* Loads c->certs[i] into ts: its own context, or the one of its twin. */
static int server_add_cert(struct tls_server *ts, const struct conf *c,
                           unsigned i, char **err)
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
	tc->not_after = asn1_unix(X509_get0_notAfter(p.leaf));
	rc = server_install(ts, i, &p, cc->cert, why, sizeof(why));
out:
	if (rc < 0)
		tls_err_add(err, "%s:%u: %s", path, cc->line, why);
	tls_pem_clear(&p);
	return rc;
}

struct tls_server *tls_server_new(const struct conf *c, char **err)
{
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
	    pthread_once(&tls_process_once, tls_process_init) != 0 || !tick_keys_ok ||
	    (ts->tick_cipher =
	         EVP_CIPHER_fetch(NULL, TLS_TICKET_CIPHER, NULL)) == NULL) {
		ERR_clear_error();
		tls_err_add(err, "%s: cannot set up TLS (memory, randomness)",
		            path);
		rc = -1;
	} else {
		ts->n_certs = c->n_certs;
		/* Every entry is tried so all problems are reported at once. */
		for (unsigned i = 0; i < c->n_certs; i++)
			if (server_add_cert(ts, c, i, err) < 0)
				rc = -1;
	}
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
	EVP_CIPHER_free(ts->tick_cipher);
	free(ts);
}

SSL_CTX *tls_server_ctx(const struct tls_server *ts)
{
	return ts->ctxs[0];
}

unsigned tls_server_n_certs(const struct tls_server *ts)
{
	return ts->n_certs;
}

void tls_server_cert_info(const struct tls_server *ts, unsigned i,
                          struct tls_cert_info *out)
{
	const struct tls_server_cert *tc = &ts->certs[i];

	out->names = (const char *const *)tc->names;
	out->n_names = tc->n_names;
	out->not_after = tc->not_after;
	out->key_type = tc->key_type == EVP_PKEY_EC ? "ECDSA"
	                : tc->key_type == EVP_PKEY_RSA ? "RSA"
	                                               : "other";
}
