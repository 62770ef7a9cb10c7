#include "tls/tls_int.h"

#include "conf/conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* A key behind a passphrase cannot be served unattended; failing here also
 * keeps OpenSSL from prompting on the controlling terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

/* Reads the certificates after the leaf. Running out of PEM blocks is the
 * normal end; any other error means a damaged block. */
static int pem_read_chain(FILE *fp, const char *path, struct tls_pem *p,
                          char *why, size_t cap)
{
	unsigned long e;
	X509 *x;

	while ((x = PEM_read_X509(fp, NULL, no_passphrase, NULL)) != NULL) {
		if (!sk_X509_push(p->chain, x)) {
			X509_free(x);
			snprintf(why, cap, "out of memory reading %s", path);
			return -1;
		}
	}
	e = ERR_peek_last_error();
	if (ERR_GET_LIB(e) == ERR_LIB_PEM &&
	    ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
		ERR_clear_error();
		return 0;
	}
	tls_err_ssl(why, cap, "bad certificate after the first in %s", path);
	return -1;
}

static int pem_load_certs(const char *path, struct tls_pem *p, char *why,
                          size_t cap)
{
	FILE *fp = fopen(path, "r");
	int rc = -1;

	if (fp == NULL) {
		snprintf(why, cap, "cannot open certificate %s: %s", path,
		         strerror(errno));
		return -1;
	}
	p->leaf = PEM_read_X509(fp, NULL, no_passphrase, NULL);
	if (p->leaf == NULL)
		tls_err_ssl(why, cap, "no PEM certificate in %s", path);
	else if ((p->chain = sk_X509_new_null()) == NULL)
		snprintf(why, cap, "out of memory reading %s", path);
	else
		rc = pem_read_chain(fp, path, p, why, cap);
	fclose(fp);
	return rc;
}

static int pem_load_key(const char *path, struct tls_pem *p, char *why,
                        size_t cap)
{
	FILE *fp = fopen(path, "r");

	if (fp == NULL) {
		snprintf(why, cap, "cannot open key %s: %s", path,
		         strerror(errno));
		return -1;
	}
	p->key = PEM_read_PrivateKey(fp, NULL, no_passphrase, NULL);
	fclose(fp);
	if (p->key == NULL) {
		tls_err_ssl(why, cap,
		            "no usable private key in %s (PEM, unencrypted)",
		            path);
		return -1;
	}
	return 0;
}

int tls_pem_load(const struct conf_cert *cc, struct tls_pem *p, char *why,
                 size_t cap)
{
	memset(p, 0, sizeof(*p));
	if (cc->cert == NULL) {
		snprintf(why, cap, "no certificate file given");
		return -1;
	}
	/* Without a key file the key is looked for in the cert file, the way
	 * a combined PEM is usually deployed. */
	if (pem_load_certs(cc->cert, p, why, cap) < 0 ||
	    pem_load_key(cc->key ? cc->key : cc->cert, p, why, cap) < 0) {
		tls_pem_clear(p);
		return -1;
	}
	return 0;
}

void tls_pem_clear(struct tls_pem *p)
{
	X509_free(p->leaf);
	sk_X509_pop_free(p->chain, X509_free);
	EVP_PKEY_free(p->key);
	memset(p, 0, sizeof(*p));
}

/* Appends a lower-cased copy of len bytes at s. A name with a NUL inside is a
 * forgery attempt and is skipped, never truncated into another name. */
static int names_add(char ***v, size_t *n, const unsigned char *s, int len)
{
	char **nv, *copy;

	if (len <= 0 || memchr(s, '\0', (size_t)len) != NULL)
		return 0;
	copy = malloc((size_t)len + 1);
	nv = copy ? realloc(*v, (*n + 1) * sizeof(**v)) : NULL;
	if (nv == NULL) {
		free(copy);
		return -1;
	}
	for (int i = 0; i < len; i++)
		copy[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32)
		                                       : (char)s[i];
	copy[len] = '\0';
	nv[(*n)++] = copy;
	*v = nv;
	return 0;
}

static int names_add_san(X509 *x, char ***v, size_t *n)
{
	GENERAL_NAMES *gens =
	    X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int rc = 0;

	for (int i = 0; rc == 0 && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

		if (g->type == GEN_DNS)
			rc =
			    names_add(v, n, ASN1_STRING_get0_data(g->d.dNSName),
			              ASN1_STRING_length(g->d.dNSName));
	}
	GENERAL_NAMES_free(gens);
	return rc;
}

static int names_add_cn(X509 *x, char ***v, size_t *n)
{
	const X509_NAME *subj = X509_get_subject_name(x);
	int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
	unsigned char *utf8 = NULL;
	int len, rc;

	if (idx < 0)
		return 0;
	len = ASN1_STRING_to_UTF8(
	    &utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));
	if (len < 0) {
		ERR_clear_error();
		return 0;
	}
	rc = names_add(v, n, utf8, len);
	OPENSSL_free(utf8);
	return rc;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int tls_pem_names(X509 *x, char ***names, size_t *n)
{
	char **v = NULL;
	size_t nv = 0, j = 0;

	/* As in RFC 6125 and X509_check_host: the CN counts only when the
	 * certificate has no dNSName at all. */
	if (names_add_san(x, &v, &nv) < 0 ||
	    (nv == 0 && names_add_cn(x, &v, &nv) < 0)) {
		tls_pem_names_free(v, nv);
		return -1;
	}
	/* Sorted and unique, so that two certificates serve the same names
	 * exactly when their arrays are equal. */
	if (nv > 1)
		qsort(v, nv, sizeof(*v), name_cmp);
	for (size_t i = 0; i < nv; i++) {
		if (j > 0 && strcmp(v[j - 1], v[i]) == 0)
			free(v[i]);
		else
			v[j++] = v[i];
	}
	*names = v;
	*n = j;
	return 0;
}

void tls_pem_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}
