#include "tls/tls.h"

#include "conf/conf.h"
#include "tls/tls_int.h"

#include <stdio.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

/* Where problems of one cert entry are reported: "CONFIGFILE:LINE: ". */
struct check_at {
	const char *path;
	unsigned line;
	char **err;
};

static void time_str(const ASN1_TIME *t, char *buf, size_t cap)
{
	struct tm tm;

	if (ASN1_TIME_to_tm(t, &tm) != 1 ||
	    strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, cap, "an unreadable date");
}

/* what names the certificate in the message ("certificate FILE"). */
static int check_dates(const struct check_at *at, X509 *x, const char *what)
{
	const ASN1_TIME *nb = X509_get0_notBefore(x);
	const ASN1_TIME *na = X509_get0_notAfter(x);
	int cb = X509_cmp_current_time(nb);
	int ca = X509_cmp_current_time(na);
	char when[64];

	if (cb == 0 || ca == 0) {
		ERR_clear_error();
		tls_err_add(at->err, "%s:%u: %s has unreadable validity dates",
		            at->path, at->line, what);
		return -1;
	}
	if (cb > 0) {
		time_str(nb, when, sizeof(when));
		tls_err_add(at->err, "%s:%u: %s is not valid before %s",
		            at->path, at->line, what, when);
		return -1;
	}
	if (ca < 0) {
		time_str(na, when, sizeof(when));
		tls_err_add(at->err, "%s:%u: %s expired on %s", at->path,
		            at->line, what, when);
		return -1;
	}
	return 0;
}

/* Clients are given the chain as it is in the file; some of them fail unless
 * each certificate is followed by its issuer. */
static int check_chain(const struct check_at *at, const struct tls_pem *p,
                       const char *file)
{
	X509 *prev = p->leaf;
	char what[512];
	int rc = 0;

	for (int k = 0; k < sk_X509_num(p->chain); k++) {
		X509 *x = sk_X509_value(p->chain, k);

		snprintf(what, sizeof(what), "certificate %d of %s", k + 2,
		         file);
		if (X509_check_issued(x, prev) != X509_V_OK) {
			tls_err_add(at->err,
			            "%s:%u: %s is not the issuer of the one "
			            "before it (order: leaf first, then each "
			            "issuer)",
			            at->path, at->line, what);
			rc = -1;
		}
		if (check_dates(at, x, what) < 0)
			rc = -1;
		prev = x;
	}
	return rc;
}

static int check_entry(const struct conf *c, const struct conf_cert *cc,
                       char **err)
{
	struct check_at at = {c->path ? c->path : "-", cc->line, err};
	struct tls_pem p;
	char why[512];
	int rc = 0;

	if (tls_pem_load(cc, &p, why, sizeof(why)) < 0) {
		tls_err_add(err, "%s:%u: %s", at.path, at.line, why);
		return -1;
	}
	if (X509_check_private_key(p.leaf, p.key) != 1) {
		ERR_clear_error();
		tls_err_add(err, "%s:%u: key %s does not match certificate %s",
		            at.path, at.line, cc->key ? cc->key : cc->cert,
		            cc->cert);
		rc = -1;
	}
	snprintf(why, sizeof(why), "certificate %s", cc->cert);
	if (check_dates(&at, p.leaf, why) < 0)
		rc = -1;
	if (check_chain(&at, &p, cc->cert) < 0)
		rc = -1;
	tls_pem_clear(&p);
	return rc;
}

int tls_check_certs(const struct conf *c, char **err)
{
	int rc = 0;

	if (err)
		*err = NULL;
	if (c->n_certs == 0) {
		tls_err_add(err, "%s: no TLS certificate configured",
		            c->path ? c->path : "-");
		return -1;
	}
	for (unsigned i = 0; i < c->n_certs; i++)
		if (check_entry(c, &c->certs[i], err) < 0)
			rc = -1;
	return rc;
}

/* Verifies the leaf with the file's own intermediates against the system
 * trust store; a self-signed last certificate in the file (a private CA
 * shipped with the chain) is trusted as the anchor. */
static int verify_chain(const struct tls_pem *p, char *why, size_t cap)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int n = sk_X509_num(p->chain), rc = -1;

	if (store == NULL || ctx == NULL ||
	    X509_STORE_set_default_paths(store) != 1)
		goto out;
	if (n > 0) {
		X509 *last = sk_X509_value(p->chain, n - 1);

		if (X509_check_issued(last, last) == X509_V_OK)
			X509_STORE_add_cert(store, last);
	}
	if (X509_STORE_CTX_init(ctx, store, p->leaf, p->chain) != 1)
		goto out;
	if (X509_verify_cert(ctx) == 1) {
		rc = 0;
	} else {
		snprintf(why, cap, "%s", X509_verify_cert_error_string(
						 X509_STORE_CTX_get_error(ctx)));
	}
out:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return rc;
}

static int preflight_entry(const struct conf *c, const struct conf_cert *cc,
			   unsigned days, char **err)
{
	const char *path = c->path ? c->path : "-";
	struct tls_pem p;
	char why[512];
	time_t soon = time(NULL) + (time_t)days * 86400;
	int rc = 0;

	if (tls_pem_load(cc, &p, why, sizeof(why)) < 0) {
		tls_err_add(err, "%s:%u: %s", path, cc->line, why);
		return -1;
	}
	if (verify_chain(&p, why, sizeof(why)) != 0) {
		tls_err_add(err,
			    "%s:%u: certificate %s: chain does not verify: %s "
			    "(put every intermediate in the file, leaf first)",
			    path, cc->line, cc->cert, why);
		rc = -1;
	}
	if (X509_cmp_time(X509_get0_notAfter(p.leaf), &soon) < 0) {
		time_str(X509_get0_notAfter(p.leaf), why, sizeof(why));
		tls_err_add(err, "%s:%u: certificate %s expires %s, within %u days",
			    path, cc->line, cc->cert, why, days);
		rc = -1;
	}
	tls_pem_clear(&p);
	return rc;
}

int tls_preflight_certs(const struct conf *c, unsigned days, char **err)
{
	int rc = 0;

	if (err)
		*err = NULL;
	for (unsigned i = 0; i < c->n_certs; i++)
		if (preflight_entry(c, &c->certs[i], days, err) < 0)
			rc = -1;
	return rc;
}
