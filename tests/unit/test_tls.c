/*
 * Tests of src/tls. Certificates are made here at run time (a CA, ECDSA and
 * RSA leaves, a wildcard, expired and future ones) in a mkdtemp directory,
 * and handshakes run in memory: client and server SSL over a BIO pair.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "conf/conf.h"
#include "tls/tls.h"

#define CONF_PATH "easfront.yaml"
#define MAX_FILES 24

/* Apart from fx, which gcc's -Wrestrict would see as one object. */
static char tmp_dir[200];
static char tmp_files[MAX_FILES][256]; /* every file made, removed at the end */
static int n_tmp_files;

static struct {
	EVP_PKEY *ca_key, *ec_key, *rsa_key, *other_key;
	X509 *ca, *other_ca, *ec1, *rsa1, *wild, *cn, *expired, *future;
	struct conf_cert certs[4];
	struct conf conf; /* ec1, rsa1 (its twin), wild, cn */
	const char *ca_path;
	struct tls_server *ts;
	SSL_CTX *client; /* tls_client_ctx_new(ca.pem) */
} fx;

/* ---- certificates made at test time ---- */

static const char *fx_path(const char *name)
{
	char *p;

	assert_true(n_tmp_files < MAX_FILES);
	p = tmp_files[n_tmp_files++];
	snprintf(p, sizeof(tmp_files[0]), "%s/%s", tmp_dir, name);
	return p;
}

static void add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);

	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

/* A certificate for key valid from..to days from now, signed by issuer (NULL:
 * self-signed); san NULL gives one without subjectAltName. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *san,
                       X509 *issuer, EVP_PKEY *issuer_key, long from, long to)
{
	static long serial = 1;
	X509 *x = X509_new();
	X509_NAME *name;
	X509V3_CTX v3;

	assert_non_null(x);
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), from * 86400));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), to * 86400));
	name = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	                                            (const unsigned char *)cn,
	                                            -1, -1, 0),
	                 1);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	assert_int_equal(X509_set_pubkey(x, key), 1);
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	if (issuer == NULL) {
		add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
		add_ext(x, &v3, NID_subject_key_identifier, "hash");
	} else {
		add_ext(x, &v3, NID_basic_constraints, "CA:FALSE");
		add_ext(x, &v3, NID_ext_key_usage, "serverAuth");
	}
	if (san)
		add_ext(x, &v3, NID_subject_alt_name, san);
	assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) >
	            0);
	return x;
}

/* Writes leaf (then extra, when given) as a PEM chain; returns its path. */
static const char *write_cert(const char *name, X509 *leaf, X509 *extra)
{
	const char *path = fx_path(name);
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(PEM_write_X509(fp, leaf), 1);
	if (extra)
		assert_int_equal(PEM_write_X509(fp, extra), 1);
	assert_int_equal(fclose(fp), 0);
	return path;
}

static const char *write_key(const char *name, EVP_PKEY *key, bool encrypt)
{
	const char *path = fx_path(name);
	FILE *fp = fopen(path, "w");
	unsigned char pass[] = "secret";

	assert_non_null(fp);
	assert_int_equal(
	    PEM_write_PrivateKey(fp, key, encrypt ? EVP_aes_128_cbc() : NULL,
	                         encrypt ? pass : NULL, encrypt ? 6 : 0, NULL,
	                         NULL),
	    1);
	assert_int_equal(fclose(fp), 0);
	return path;
}

static void make_certs(void)
{
	EVP_PKEY *k;

	fx.ca_key = EVP_EC_gen("P-256");
	fx.ec_key = k = EVP_EC_gen("P-256");
	fx.other_key = EVP_EC_gen("P-256");
	fx.rsa_key = EVP_RSA_gen(2048);
	assert_true(fx.ca_key && fx.ec_key && fx.other_key && fx.rsa_key);
	fx.ca = make_cert(fx.ca_key, "Test CA", NULL, NULL, NULL, -1, 365);
	fx.other_ca =
	    make_cert(fx.other_key, "Other CA", NULL, NULL, NULL, -1, 365);
	fx.ec1 = make_cert(k, "eas.contoso.com",
	                   "DNS:eas.contoso.com,DNS:site1-eas.contoso.com,"
	                   "IP:127.0.0.1",
	                   fx.ca, fx.ca_key, -1, 30);
	/* Same names in another order and case: still the same set. */
	fx.rsa1 = make_cert(fx.rsa_key, "eas.contoso.com",
	                    "DNS:SITE1-EAS.contoso.com,DNS:eas.contoso.com,"
	                    "IP:127.0.0.1",
	                    fx.ca, fx.ca_key, -1, 30);
	fx.wild = make_cert(k, "*.fabrikam.com", "DNS:*.fabrikam.com", fx.ca,
	                    fx.ca_key, -1, 30);
	fx.cn =
	    make_cert(k, "legacy.contoso.com", NULL, fx.ca, fx.ca_key, -1, 30);
	fx.expired = make_cert(k, "old.contoso.com", "DNS:old.contoso.com",
	                       fx.ca, fx.ca_key, -30, -1);
	fx.future = make_cert(k, "new.contoso.com", "DNS:new.contoso.com",
	                      fx.ca, fx.ca_key, 1, 30);
}

static int setup(void **state)
{
	static const char *const names[] = {"ec1", "rsa1", "wild", "cn"};
	const char *tmp = getenv("TMPDIR");
	char file[32];
	int n;

	n = snprintf(tmp_dir, sizeof(tmp_dir), "%s/ef_test_tls_XXXXXX",
	             tmp && *tmp ? tmp : "/tmp");
	assert_true(n > 0 && (size_t)n < sizeof(tmp_dir));
	assert_non_null(mkdtemp(tmp_dir));
	make_certs();
	fx.ca_path = write_cert("ca.pem", fx.ca, NULL);
	X509 *leaves[] = {fx.ec1, fx.rsa1, fx.wild, fx.cn};
	for (int i = 0; i < 4; i++) {
		snprintf(file, sizeof(file), "%s.pem", names[i]);
		fx.certs[i].cert = (char *)write_cert(file, leaves[i], fx.ca);
		snprintf(file, sizeof(file), "%s.key", names[i]);
		fx.certs[i].key = (char *)write_key(
		    file, i == 1 ? fx.rsa_key : fx.ec_key, false);
		fx.certs[i].line = 5 + 3 * (unsigned)i;
	}
	fx.conf.path = CONF_PATH;
	fx.conf.certs = fx.certs;
	fx.conf.n_certs = 4;
	fx.ts = tls_server_new(&fx.conf, NULL);
	assert_non_null(fx.ts);
	fx.client = tls_client_ctx_new(fx.ca_path, NULL);
	assert_non_null(fx.client);
	return 0;
}

static int teardown(void **state)
{
	tls_server_free(fx.ts);
	SSL_CTX_free(fx.client);
	X509 *xs[] = {fx.ca,   fx.other_ca, fx.ec1,     fx.rsa1,
	              fx.wild, fx.cn,       fx.expired, fx.future};
	for (size_t i = 0; i < sizeof(xs) / sizeof(xs[0]); i++)
		X509_free(xs[i]);
	EVP_PKEY_free(fx.ca_key);
	EVP_PKEY_free(fx.ec_key);
	EVP_PKEY_free(fx.rsa_key);
	EVP_PKEY_free(fx.other_key);
	for (int i = 0; i < n_tmp_files; i++)
		unlink(tmp_files[i]);
	rmdir(tmp_dir);
	return 0;
}

/* ---- in-memory handshakes ---- */

struct conn {
	SSL *c; /* client, owned */
	SSL *s; /* server, owned */
};

static void conn_open(struct conn *cn, SSL *client, SSL_CTX *server_ctx)
{
	BIO *bc, *bs;

	assert_non_null(client);
	cn->c = client;
	cn->s = SSL_new(server_ctx);
	assert_non_null(cn->s);
	SSL_set_accept_state(cn->s);
	assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
	SSL_set_bio(cn->c, bc, bc);
	SSL_set_bio(cn->s, bs, bs);
}

/* Closes cleanly: freed without close_notify, OpenSSL marks the session
 * unusable, and a resumed connection shares its session with the caller. */
static void conn_close(struct conn *cn)
{
	if (SSL_is_init_finished(cn->c))
		SSL_shutdown(cn->c);
	SSL_free(cn->c);
	SSL_free(cn->s);
	ERR_clear_error();
}

static bool in_progress(SSL *ssl, int r)
{
	int e = SSL_get_error(ssl, r);

	return r == 1 || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* Runs both sides until the handshake is done (0) or one fails (-1); a
 * server failure's OpenSSL reason goes to *srv_reason. */
static int conn_handshake(struct conn *cn, int *srv_reason)
{
	for (int i = 0; i < 32; i++) {
		int rc = SSL_do_handshake(cn->c);
		if (!in_progress(cn->c, rc))
			return -1;
		int rs = SSL_do_handshake(cn->s);
		if (!in_progress(cn->s, rs)) {
			if (srv_reason)
				*srv_reason = ERR_GET_REASON(ERR_peek_error());
			return -1;
		}
		if (rc == 1 && rs == 1)
			return 0;
	}
	return -1;
}

/* A client towards the test server for host, capped at version max. */
static SSL *client_for(const char *host, int max)
{
	SSL *ssl = tls_client_ssl_new(fx.client, host);

	assert_non_null(ssl);
	assert_int_equal(SSL_set_max_proto_version(ssl, max), 1);
	return ssl;
}

/* The leaf a client asking for host gets from the test server. */
static void assert_leaf(const char *host, int max, X509 *want)
{
	struct conn cn;

	conn_open(&cn, client_for(host, max), tls_server_ctx(fx.ts));
	assert_int_equal(conn_handshake(&cn, NULL), 0);
	assert_int_equal(SSL_get_verify_result(cn.c), X509_V_OK);
	assert_int_equal(X509_cmp(SSL_get0_peer_certificate(cn.c), want), 0);
	conn_close(&cn);
}

/* ---- tls_server_select ---- */

static void test_select_exact(void **state)
{
	assert_int_equal(tls_server_select(fx.ts, "eas.contoso.com"), 0);
	assert_int_equal(tls_server_select(fx.ts, "site1-eas.contoso.com"), 0);
	assert_int_equal(tls_server_select(fx.ts, "legacy.contoso.com"), 3);
}

static void test_select_case(void **state)
{
	assert_int_equal(tls_server_select(fx.ts, "EAS.Contoso.COM"), 0);
	assert_int_equal(tls_server_select(fx.ts, "Mail.FABRIKAM.com"), 2);
	assert_int_equal(tls_server_select(fx.ts, "LEGACY.contoso.com"), 3);
}

static void test_select_wildcard(void **state)
{
	assert_int_equal(tls_server_select(fx.ts, "mail.fabrikam.com"), 2);
	assert_int_equal(tls_server_select(fx.ts, "mail.fabrikam.com."), 2);
	/* One label only: not two, not none, not the bare domain. */
	assert_int_equal(tls_server_select(fx.ts, "a.b.fabrikam.com"), 0);
	assert_int_equal(tls_server_select(fx.ts, ".fabrikam.com"), 0);
	assert_int_equal(tls_server_select(fx.ts, "fabrikam.com"), 0);
	assert_int_equal(tls_server_select(fx.ts, "mailfabrikam.com"), 0);
	assert_int_equal(tls_server_select(fx.ts, "*.fabrikam.com"), 2);
}

static void test_select_unknown(void **state)
{
	assert_int_equal(tls_server_select(fx.ts, "unknown.example.org"), 0);
	assert_int_equal(tls_server_select(fx.ts, "contoso.com"), 0);
	assert_int_equal(tls_server_select(fx.ts, "eas.contoso.com.evil"), 0);
	assert_int_equal(tls_server_select(fx.ts, ""), 0);
	assert_int_equal(tls_server_select(fx.ts, "."), 0);
	assert_int_equal(tls_server_select(fx.ts, NULL), 0);
}

/* ---- server contexts and handshakes ---- */

static void assert_server_ctx(SSL_CTX *ctx)
{
	uint64_t o = SSL_CTX_get_options(ctx);
	long m = SSL_CTX_get_mode(ctx);

	assert_true(o & SSL_OP_NO_COMPRESSION);
	assert_true(o & SSL_OP_NO_RENEGOTIATION);
	assert_false(o & SSL_OP_NO_TICKET);
	/* Our order (SHA-256 suites first), ChaCha20 for who asks first. */
	assert_true(o & SSL_OP_CIPHER_SERVER_PREFERENCE);
	assert_true(o & SSL_OP_PRIORITIZE_CHACHA);
	assert_true(m & SSL_MODE_RELEASE_BUFFERS);
	assert_true(m & SSL_MODE_ENABLE_PARTIAL_WRITE);
	assert_true(m & SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	assert_int_equal(SSL_CTX_get_session_cache_mode(ctx),
	                 SSL_SESS_CACHE_OFF);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_get_max_proto_version(ctx), TLS1_3_VERSION);
}

static void test_server_ctx(void **state)
{
	assert_server_ctx(tls_server_ctx(fx.ts));
}

/* What the status page and the expiry metric show: each entry's names
 * (sorted, lower case) and its leaf's expiry, 30 days from now. */
static void test_cert_info(void **state)
{
	struct tls_cert_info ci;
	time_t now = time(NULL);

	assert_int_equal(tls_server_n_certs(fx.ts), 4);
	tls_server_cert_info(fx.ts, 1, &ci);
	assert_string_equal(ci.key_type, "RSA");
	assert_int_equal(ci.n_names, 2);
	assert_string_equal(ci.names[0], "eas.contoso.com");
	assert_string_equal(ci.names[1], "site1-eas.contoso.com");
	assert_true(ci.not_after > now + 30 * 86400 - 120 &&
	            ci.not_after < now + 30 * 86400 + 120);
	tls_server_cert_info(fx.ts, 0, &ci);
	assert_string_equal(ci.key_type, "ECDSA");
}

/* The RSA twin is served from the default context when the client cannot
 * verify ECDSA: both certificates live in one SSL_CTX. */
static void test_twins(void **state)
{
	static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
	struct conn cn;

	for (int i = 0; i < 2; i++) {
		assert_leaf("eas.contoso.com", versions[i], fx.ec1);
		assert_leaf("site1-eas.contoso.com", versions[i], fx.ec1);

		SSL *c = client_for("site1-eas.contoso.com", versions[i]);
		assert_int_equal(
		    SSL_set1_sigalgs_list(c, "RSA+SHA256:RSA-PSS+SHA256"), 1);
		conn_open(&cn, c, tls_server_ctx(fx.ts));
		assert_int_equal(conn_handshake(&cn, NULL), 0);
		assert_int_equal(SSL_get_verify_result(cn.c), X509_V_OK);
		assert_int_equal(
		    X509_cmp(SSL_get0_peer_certificate(cn.c), fx.rsa1), 0);
		assert_ptr_equal(SSL_get_SSL_CTX(cn.s), tls_server_ctx(fx.ts));
		conn_close(&cn);
	}
}

static void test_sni_handshake(void **state)
{
	struct conn cn;

	assert_leaf("mail.fabrikam.com", TLS1_3_VERSION, fx.wild);
	assert_leaf("legacy.contoso.com", TLS1_3_VERSION, fx.cn);
	assert_leaf("legacy.contoso.com", TLS1_2_VERSION, fx.cn);
	/* An IP literal sends no SNI: the default certificate. */
	assert_leaf("127.0.0.1", TLS1_3_VERSION, fx.ec1);

	conn_open(&cn, client_for("Mail.Fabrikam.com", TLS1_3_VERSION),
	          tls_server_ctx(fx.ts));
	assert_int_equal(conn_handshake(&cn, NULL), 0);
	assert_ptr_not_equal(SSL_get_SSL_CTX(cn.s), tls_server_ctx(fx.ts));
	assert_server_ctx(SSL_get_SSL_CTX(cn.s));
	assert_string_equal(tls_version_str(cn.s), "TLSv1.3");
	conn_close(&cn);
}

/* Handshakes with host and returns the client's session after its
 * NewSessionTicket has been read. */
static SSL_SESSION *session_get(const char *host, int max, SSL_CTX *sctx)
{
	SSL_SESSION *sess;
	struct conn cn;
	char b;
	int r;

	conn_open(&cn, client_for(host, max), sctx);
	assert_int_equal(conn_handshake(&cn, NULL), 0);
	assert_int_equal(SSL_session_reused(cn.c), 0);
	/* TLS 1.3 tickets come after the handshake, read like data. */
	r = SSL_read(cn.c, &b, 1);
	assert_true(r <= 0);
	assert_int_equal(SSL_get_error(cn.c, r), SSL_ERROR_WANT_READ);
	sess = SSL_get1_session(cn.c);
	assert_non_null(sess);
	conn_close(&cn);
	assert_true(SSL_SESSION_is_resumable(sess));
	return sess;
}

/* True when a connection to host offering sess was resumed. */
static bool session_resumes(const char *host, int max, SSL_SESSION *sess,
                            SSL_CTX *sctx)
{
	struct conn cn;
	bool reused;

	conn_open(&cn, client_for(host, max), sctx);
	assert_int_equal(SSL_set_session(cn.c, sess), 1);
	assert_int_equal(conn_handshake(&cn, NULL), 0);
	reused = SSL_session_reused(cn.c) == 1;
	assert_int_equal(SSL_session_reused(cn.s), reused);
	conn_close(&cn);
	return reused;
}

static void test_ticket_resume(void **state)
{
	static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
	/* The wildcard's context, the default one, the CN-only one. */
	static const char *const hosts[] = {
	    "mail.fabrikam.com", "eas.contoso.com", "legacy.contoso.com"};
	SSL_CTX *sctx = tls_server_ctx(fx.ts);
	struct tls_server *ts2 = tls_server_new(&fx.conf, NULL);
	SSL_SESSION *s;

	assert_non_null(ts2);
	for (int i = 0; i < 2; i++) {
		/* Fresh sessions each time: TLS 1.3 tickets are single use. */
		for (int k = 0; k < 3; k++) {
			s = session_get("mail.fabrikam.com", versions[i], sctx);
			assert_true(
			    session_resumes(hosts[k], versions[i], s, sctx));
			SSL_SESSION_free(s);
		}
		/* A reload builds another tls_server: tickets stay valid. */
		s = session_get("mail.fabrikam.com", versions[i], sctx);
		assert_true(session_resumes("mail.fabrikam.com", versions[i],
		                            s, tls_server_ctx(ts2)));
		SSL_SESSION_free(s);
	}
	tls_server_free(ts2);
}

static void test_tls11_refused(void **state)
{
	SSL_CTX *old = SSL_CTX_new(TLS_client_method());
	int reason = 0;
	struct conn cn;

	assert_non_null(old);
	SSL_CTX_set_security_level(old, 0);
	assert_int_equal(SSL_CTX_set_min_proto_version(old, TLS1_1_VERSION), 1);
	assert_int_equal(SSL_CTX_set_max_proto_version(old, TLS1_1_VERSION), 1);
	assert_int_equal(SSL_CTX_set_cipher_list(old, "DEFAULT:@SECLEVEL=0"),
	                 1);
	SSL *c = SSL_new(old);
	assert_non_null(c);
	SSL_set_connect_state(c);
	conn_open(&cn, c, tls_server_ctx(fx.ts));
	assert_int_equal(conn_handshake(&cn, &reason), -1);
	assert_int_equal(reason, SSL_R_UNSUPPORTED_PROTOCOL);
	conn_close(&cn);
	SSL_CTX_free(old);
}

/* A TLS 1.2 client offering only the given suites; returns the handshake
 * result and the server's failure reason. */
static int tls12_with(const char *ciphers, int *reason, char *got, size_t cap)
{
	SSL *c = client_for("eas.contoso.com", TLS1_2_VERSION);
	struct conn cn;
	int rc;

	assert_int_equal(SSL_set_cipher_list(c, ciphers), 1);
	conn_open(&cn, c, tls_server_ctx(fx.ts));
	rc = conn_handshake(&cn, reason);
	if (rc == 0)
		snprintf(got, cap, "%s %s", tls_version_str(cn.c),
		         SSL_get_cipher_name(cn.c));
	conn_close(&cn);
	return rc;
}

static void test_tls12_ciphers(void **state)
{
	char got[128];
	int reason = 0;

	assert_int_equal(tls12_with("DEFAULT", &reason, got, sizeof(got)), 0);
	assert_non_null(strstr(got, "TLSv1.2 ECDHE-ECDSA-"));
	assert_int_equal(tls12_with("ECDHE-ECDSA-CHACHA20-POLY1305", &reason,
	                            got, sizeof(got)),
	                 0);
	assert_string_equal(got, "TLSv1.2 ECDHE-ECDSA-CHACHA20-POLY1305");
	/* No forward secrecy, or no AEAD: refused. */
	static const char *const bad[] = {"AES128-GCM-SHA256",
	                                  "ECDHE-ECDSA-AES128-SHA256",
	                                  "ECDHE-ECDSA-AES256-SHA"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		reason = 0;
		assert_int_equal(tls12_with(bad[i], &reason, got, sizeof(got)),
		                 -1);
		assert_int_equal(reason, SSL_R_NO_SHARED_CIPHER);
	}
}

/* ---- errors: tls_server_new and tls_check_certs ---- */

static int err_lines(const char *err)
{
	int n = 1;

	for (const char *p = err; *p; p++)
		n += *p == '\n';
	return n;
}

/* Some line of err starts with "CONFIGFILE:line: " and contains what. */
static void assert_err_line(const char *err, unsigned line, const char *what)
{
	char prefix[64];
	int plen;

	plen = snprintf(prefix, sizeof(prefix), CONF_PATH ":%u: ", line);
	for (const char *p = err; p; p = strchr(p, '\n'), p = p ? p + 1 : p) {
		const char *end = strchr(p, '\n');
		const char *hit = strstr(p, what);

		if (strncmp(p, prefix, (size_t)plen) == 0 && hit &&
		    (end == NULL || hit < end))
			return;
	}
	fail_msg("no line \"%s...%s\" in:\n%s", prefix, what, err);
}

static void test_server_new_errors(void **state)
{
	struct conf_cert certs[] = {
	    {fx.certs[0].cert, fx.certs[0].key, 3},
	    {fx.certs[0].cert, (char *)fx.ca_path, 7}, /* no key in it */
	    {fx.certs[0].cert, fx.certs[1].key, 9},    /* the RSA key */
	    {(char *)fx_path("nope.pem"), fx.certs[0].key, 11},
	};
	struct conf c = {.path = CONF_PATH, .certs = certs, .n_certs = 4};
	char *err = NULL;

	assert_null(tls_server_new(&c, &err));
	assert_non_null(err);
	assert_int_equal(err_lines(err), 3);
	assert_err_line(err, 7, "no usable private key in");
	assert_err_line(err, 9, "does not match certificate");
	assert_err_line(err, 11, "nope.pem: No such file or directory");
	free(err);

	c.n_certs = 0;
	assert_null(tls_server_new(&c, &err));
	assert_non_null(err);
	free(err);
}

static void test_check_certs_ok(void **state)
{
	char *err = (char *)"untouched";

	assert_int_equal(tls_check_certs(&fx.conf, &err), 0);
	assert_null(err);
}

static void test_check_certs_problems(void **state)
{
	const char *ec_key = fx.certs[0].key, *ec1 = fx.certs[0].cert;
	struct conf_cert certs[] = {
	    {(char *)ec1, (char *)ec_key, 2},
	    {(char *)write_cert("expired.pem", fx.expired, fx.ca),
	     (char *)ec_key, 4},
	    {(char *)write_cert("future.pem", fx.future, fx.ca), (char *)ec_key,
	     6},
	    {(char *)ec1, (char *)write_key("other.key", fx.other_key, false),
	     8},
	    {(char *)fx_path("missing.pem"), (char *)ec_key, 10},
	    {(char *)ec1, (char *)write_key("enc.key", fx.ec_key, true), 12},
	    {(char *)write_cert("disorder.pem", fx.ec1, fx.other_ca),
	     (char *)ec_key, 14},
	    {(char *)ec1, (char *)fx_path("missing.key"), 16},
	};
	struct conf c = {.path = CONF_PATH, .certs = certs, .n_certs = 8};
	char *err = NULL;

	assert_int_equal(tls_check_certs(&c, &err), -1);
	assert_non_null(err);
	assert_int_equal(err_lines(err), 7);
	assert_err_line(err, 4, "expired.pem expired on");
	assert_err_line(err, 6, "future.pem is not valid before");
	assert_err_line(err, 8, "other.key does not match certificate");
	assert_err_line(err, 10, "missing.pem: No such file or directory");
	assert_err_line(err, 12, "no usable private key in");
	assert_err_line(err, 14, "certificate 2 of");
	assert_err_line(err, 16, "cannot open key");
	free(err);
}

/* ---- client side ---- */

/* Handshake result of a client for host with the test server; the client's
 * verify result goes to *verify. */
static int client_try(SSL_CTX *ctx, const char *host, long *verify)
{
	struct conn cn;
	int rc;

	conn_open(&cn, tls_client_ssl_new(ctx, host), tls_server_ctx(fx.ts));
	rc = conn_handshake(&cn, NULL);
	*verify = SSL_get_verify_result(cn.c);
	conn_close(&cn);
	return rc;
}

static void test_client_verify(void **state)
{
	long v;

	assert_int_equal(client_try(fx.client, "eas.contoso.com", &v), 0);
	assert_int_equal(v, X509_V_OK);
	assert_int_equal(client_try(fx.client, "mail.fabrikam.com", &v), 0);
	assert_int_equal(v, X509_V_OK);
	assert_int_equal(client_try(fx.client, "wrong.contoso.com", &v), -1);
	assert_int_equal(v, X509_V_ERR_HOSTNAME_MISMATCH);
	/* The default certificate, whose names are not this one. */
	assert_int_equal(client_try(fx.client, "a.b.fabrikam.com", &v), -1);
	assert_int_equal(v, X509_V_ERR_HOSTNAME_MISMATCH);
}

static void test_client_ip(void **state)
{
	struct conn cn;
	long v;

	conn_open(&cn, tls_client_ssl_new(fx.client, "127.0.0.1"),
	          tls_server_ctx(fx.ts));
	assert_int_equal(conn_handshake(&cn, NULL), 0);
	assert_null(SSL_get_servername(cn.s, TLSEXT_NAMETYPE_host_name));
	conn_close(&cn);
	assert_int_equal(client_try(fx.client, "[::1]", &v), -1);
	assert_int_equal(v, X509_V_ERR_IP_ADDRESS_MISMATCH);
	assert_int_equal(client_try(fx.client, "127.0.0.2", &v), -1);
	assert_int_equal(v, X509_V_ERR_IP_ADDRESS_MISMATCH);
}

static void test_client_untrusted(void **state)
{
	/* The system store does not know the test CA. */
	SSL_CTX *sys = tls_client_ctx_new(NULL, NULL);
	long v;

	assert_non_null(sys);
	assert_int_equal(client_try(sys, "eas.contoso.com", &v), -1);
	assert_int_not_equal(v, X509_V_OK);
	SSL_CTX_free(sys);
}

static void test_client_ctx(void **state)
{
	SSL_CTX *ctx = fx.client;
	char *err = NULL;

	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER);
	assert_true(SSL_CTX_get_mode(ctx) & SSL_MODE_RELEASE_BUFFERS);
	assert_true(SSL_CTX_get_session_cache_mode(ctx) &
	            SSL_SESS_CACHE_CLIENT);
	assert_null(tls_client_ctx_new(fx_path("no-ca.pem"), &err));
	assert_non_null(err);
	assert_non_null(strstr(err, "no-ca.pem"));
	free(err);
	assert_null(tls_client_ssl_new(ctx, ""));
	assert_string_equal(tls_version_str(NULL), "-");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_select_exact),
	    cmocka_unit_test(test_select_case),
	    cmocka_unit_test(test_select_wildcard),
	    cmocka_unit_test(test_select_unknown),
	    cmocka_unit_test(test_server_ctx),
	    cmocka_unit_test(test_cert_info),
	    cmocka_unit_test(test_twins),
	    cmocka_unit_test(test_sni_handshake),
	    cmocka_unit_test(test_ticket_resume),
	    cmocka_unit_test(test_tls11_refused),
	    cmocka_unit_test(test_tls12_ciphers),
	    cmocka_unit_test(test_server_new_errors),
	    cmocka_unit_test(test_check_certs_ok),
	    cmocka_unit_test(test_check_certs_problems),
	    cmocka_unit_test(test_client_verify),
	    cmocka_unit_test(test_client_ip),
	    cmocka_unit_test(test_client_untrusted),
	    cmocka_unit_test(test_client_ctx),
	};
	int rc = cmocka_run_group_tests(tests, setup, teardown);

	/* Leaves valgrind nothing of OpenSSL's global state to report. */
	OPENSSL_cleanup();
	return rc;
}
