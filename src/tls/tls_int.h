/*
 * Helpers shared by the files of src/tls only: loading a certificate entry of
 * the config, reading the names a certificate serves, and building the
 * "CONFIGFILE:LINE: reason" text handed back through char **err.
 */
#ifndef EF_TLS_TLS_INT_H
#define EF_TLS_TLS_INT_H

#include <stddef.h>

#include <openssl/ssl.h>

struct conf_cert;

/* One certificate entry of the config, loaded. Every field is owned. */
struct tls_pem {
	X509 *leaf;             /* the first certificate of the cert file */
	STACK_OF(X509) * chain; /* the ones after it, in file order */
	EVP_PKEY *key;          /* from the key file (the cert file if none) */
};

/*
 * Reads cc's certificate chain and private key into p. Encrypted keys are
 * refused rather than prompted for. Does not check that the key matches.
 * Returns 0, or -1 with p empty and a reason ("cannot open ...") in why.
 */
int tls_pem_load(const struct conf_cert *cc, struct tls_pem *p, char *why,
                 size_t cap);

/* Frees what p holds and empties it; an empty p is accepted. */
void tls_pem_clear(struct tls_pem *p);

/*
 * The host names x serves: its SAN dNSNames, or its subject CN when it has no
 * dNSName, lower-cased, sorted and without duplicates, in a malloc'd array of
 * malloc'd strings (free with tls_pem_names_free). Returns 0, or -1 when out
 * of memory.
 */
int tls_pem_names(X509 *x, char ***names, size_t *n);

/* Frees an array from tls_pem_names; NULL is accepted. */
void tls_pem_names_free(char **names, size_t n);

/*
 * Appends one formatted line to the malloc'd text *err (starting it when
 * *err is NULL). err may be NULL: the line is dropped. Out of memory keeps
 * what was there.
 */
void tls_err_add(char **err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Formats fmt into why, appends ": " and OpenSSL's reason for the most recent
 * error of this thread, and empties the thread's error queue. */
void tls_err_ssl(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
