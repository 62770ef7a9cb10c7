/*
 * LDAP connections: the settings, the blocking open (connect, StartTLS,
 * bind) and the helper thread that runs it away from the event loop, and
 * the blocking check of `easfront check`.
 *
 * Why a thread rather than LDAP_OPT_CONNECT_ASYNC: libldap 2.5 can start a
 * TCP connect without waiting, but StartTLS (ldap_start_tls_s() and the TLS
 * handshake of ldap_install_tls()) and SASL binds have no non-blocking form,
 * and ldaps:// shakes hands inside the connect. A thread runs the plain,
 * well-trodden blocking calls, bounded by LDAP_OPT_NETWORK_TIMEOUT and
 * LDAP_OPT_TIMEOUT, and hands one bound handle to the loop, which from then
 * on is its only user. One attempt per client runs at a time.
 */
#include "ldap/ldap_int.h"

#include "core/log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define PASSWORD_MAX 1024
#define MAX_MESSAGE (1U << 20) /* bytes of one message from a server */

struct ldap_attempt {
	pthread_mutex_t mu;
	bool done;      /* the thread has finished (under mu) */
	bool abandoned; /* nobody waits: the thread frees (under mu) */
	int efd;        /* owned: eventfd, written once when done */
	struct ldap_src_conf *conf; /* owned copy: the thread may outlive
	                               the client */
	unsigned first;
	/* The outcome, written by the thread before done: */
	LDAP *ld; /* owned until taken: the bound handle, or NULL */
	unsigned uri;
	char err[LDAP_SRC_ERR_MAX];
};

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

/* libldap's global options and its TLS library are set up lazily, with
 * unlocked "first time" flags; doing it once here, before any helper thread
 * exists, keeps two workers' first connections from racing on them. */
static void lib_init(void)
{
	int v = LDAP_VERSION3, zero = 0;

	ldap_set_option(NULL, LDAP_OPT_PROTOCOL_VERSION, &v);
	/* Fails harmlessly when the system's ldap.conf has no TLS set-up;
	 * what matters is that the TLS library is initialised. */
	ldap_set_option(NULL, LDAP_OPT_X_TLS_NEWCTX, &zero);
}

static char *dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

void ldap_conf_free(struct ldap_src_conf *c)
{
	if (c == NULL)
		return;
	for (unsigned i = 0; i < c->n_uris && c->uris != NULL; i++)
		free(c->uris[i]);
	free(c->uris);
	free(c->ca_file);
	free(c->cert_file);
	free(c->key_file);
	free(c->bind_dn);
	free(c->password_file);
	free(c->base);
	free(c->filter);
	free(c->attribute);
	for (unsigned i = 0; i < c->n_cloud_domains; i++)
		free(c->cloud_domains[i]);
	free(c->cloud_domains);
	free(c);
}

/* Copies the n_cloud_domains of c into d (d's were cleared). Returns 0, or
 * -1 when out of memory. */
static int dup_domains(struct ldap_src_conf *d, const struct ldap_src_conf *c)
{
	if (c->n_cloud_domains == 0)
		return 0;
	d->cloud_domains = calloc(c->n_cloud_domains, sizeof(char *));
	if (d->cloud_domains == NULL)
		return -1;
	for (; d->n_cloud_domains < c->n_cloud_domains; d->n_cloud_domains++)
		if ((d->cloud_domains[d->n_cloud_domains] =
		         strdup(c->cloud_domains[d->n_cloud_domains])) == NULL)
			return -1;
	return 0;
}

/* Clamps v into [lo, hi], with def for 0. */
static unsigned clamp(unsigned v, unsigned def, unsigned lo, unsigned hi)
{
	if (v == 0)
		v = def;
	return v < lo ? lo : v > hi ? hi : v;
}

struct ldap_src_conf *ldap_conf_dup(const struct ldap_src_conf *c)
{
	struct ldap_src_conf *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	*d = *c;
	d->cloud_domains = NULL;
	d->n_cloud_domains = 0;
	d->uris = calloc(c->n_uris + 1, sizeof(*d->uris));
	d->n_uris = d->uris != NULL ? c->n_uris : 0;
	for (unsigned i = 0; i < d->n_uris; i++)
		if ((d->uris[i] = strdup(c->uris[i])) == NULL)
			goto fail;
	d->ca_file = dup_or_null(c->ca_file);
	d->cert_file = dup_or_null(c->cert_file);
	d->key_file = dup_or_null(c->key_file);
	d->bind_dn = dup_or_null(c->bind_dn);
	d->password_file = dup_or_null(c->password_file);
	d->base = dup_or_null(c->base);
	d->filter = dup_or_null(c->filter);
	d->attribute =
	    strdup(c->attribute != NULL ? c->attribute : LDAP_SRC_ATTRIBUTE);
	if (d->uris == NULL || (c->ca_file && !d->ca_file) ||
	    (c->cert_file && !d->cert_file) || (c->key_file && !d->key_file) ||
	    (c->bind_dn && !d->bind_dn) ||
	    (c->password_file && !d->password_file) || (c->base && !d->base) ||
	    (c->filter && !d->filter) || d->attribute == NULL ||
	    dup_domains(d, c) < 0)
		goto fail;
	d->timeout_ms = clamp(c->timeout_ms, LDAP_SRC_TIMEOUT_MS, 10, 600000);
	d->connect_timeout_ms = clamp(c->connect_timeout_ms,
	                              LDAP_SRC_CONNECT_TIMEOUT_MS, 100, 600000);
	d->max_inflight =
	    clamp(c->max_inflight, LDAP_SRC_INFLIGHT, 1, LDAP_SRC_INFLIGHT_MAX);
	d->max_queue =
	    clamp(c->max_queue, LDAP_SRC_QUEUE, 1, LDAP_SRC_QUEUE_MAX);
	d->backoff_max_ms = clamp(c->backoff_max_ms, LDAP_SRC_BACKOFF_MAX_MS,
	                          LDAP_SRC_BACKOFF_MS, 3600000);
	return d;
fail:
	ldap_conf_free(d);
	return NULL;
}

/* Sets *err to a malloc'd copy of msg when err is not NULL. */
static int fail_with(char **err, const char *msg)
{
	if (err != NULL)
		*err = strdup(msg);
	return -1;
}

/* True when s is an attribute type: a descr (ALPHA *(ALPHA / DIGIT / "-"))
 * or a numeric OID. */
static bool attribute_ok(const char *s)
{
	size_t n = strlen(s);
	bool oid = n > 0 && s[0] >= '0' && s[0] <= '9';

	if (n == 0 || n > 128)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
		bool digit = c >= '0' && c <= '9';

		if (oid ? !(digit || (c == '.' && i + 1 < n && s[i - 1] != '.'))
		        : !(alpha || (i > 0 && (digit || c == '-'))))
			return false;
	}
	return true;
}

/* Checks the URIs: parseable, ldap/ldaps/ldapi, no DN or search part. */
static int uris_check(const struct ldap_src_conf *c, char *why, size_t cap)
{
	if (c->n_uris == 0 || c->uris == NULL) {
		snprintf(why, cap, "no LDAP URI");
		return -1;
	}
	for (unsigned i = 0; i < c->n_uris; i++) {
		LDAPURLDesc *u = NULL;
		const char *s = c->uris[i];
		bool ok =
		    s != NULL && ldap_url_parse(s, &u) == LDAP_URL_SUCCESS;

		ok = ok && (strcmp(u->lud_scheme, "ldap") == 0 ||
		            strcmp(u->lud_scheme, "ldaps") == 0 ||
		            strcmp(u->lud_scheme, "ldapi") == 0);
		ok = ok && (u->lud_dn == NULL || u->lud_dn[0] == '\0') &&
		     u->lud_attrs == NULL && u->lud_filter == NULL;
		if (u != NULL)
			ldap_free_urldesc(u);
		if (!ok) {
			snprintf(
			    why, cap,
			    "invalid LDAP URI \"%.200s\" (ldap://HOST[:PORT], "
			    "ldaps://... or ldapi://...)",
			    s != NULL ? s : "");
			return -1;
		}
	}
	return 0;
}

/* Checks the credential settings. */
static int creds_check(const struct ldap_src_conf *c, char *why, size_t cap)
{
	if (c->sasl_external && c->bind_dn != NULL) {
		snprintf(why, cap,
		         "bind_dn and SASL EXTERNAL exclude each "
		         "other");
		return -1;
	}
	if ((c->bind_dn != NULL) != (c->password_file != NULL)) {
		snprintf(why, cap, "bind_dn and password_file go together");
		return -1;
	}
	if ((c->cert_file != NULL) != (c->key_file != NULL)) {
		snprintf(why, cap, "cert_file and key_file go together");
		return -1;
	}
	return 0;
}

int ldap_src_conf_check(const struct ldap_src_conf *c, char **err)
{
	char why[400];
	LDAPDN dn = NULL;

	if (err != NULL)
		*err = NULL;
	if (c == NULL)
		return fail_with(err, "no LDAP settings");
	if (uris_check(c, why, sizeof(why)) != 0 ||
	    creds_check(c, why, sizeof(why)) != 0)
		return fail_with(err, why);
	if (c->base == NULL ||
	    ldap_str2dn(c->base, &dn, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS) {
		snprintf(why, sizeof(why), "invalid search base \"%.200s\"",
		         c->base != NULL ? c->base : "");
		return fail_with(err, why);
	}
	ldap_dnfree(dn);
	if (c->attribute != NULL && !attribute_ok(c->attribute)) {
		snprintf(why, sizeof(why), "invalid attribute name \"%.100s\"",
		         c->attribute);
		return fail_with(err, why);
	}
	return ldap_filter_check(c->filter, err);
}

void ldap_conn_err(LDAP *ld, int rc, const char *what, char *err, size_t cap)
{
	char *diag = NULL;

	if (ld != NULL)
		ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
	/* libldap's own diagnostics may come in parentheses already. */
	if (diag == NULL || diag[0] == '\0')
		snprintf(err, cap, "%s: %s", what, ldap_err2string(rc));
	else if (diag[0] == '(')
		snprintf(err, cap, "%s: %s %.200s", what, ldap_err2string(rc),
		         diag);
	else
		snprintf(err, cap, "%s: %s (%.200s)", what, ldap_err2string(rc),
		         diag);
	ldap_memfree(diag);
}

/* Sets one option; on failure writes why into err. */
static int opt(LDAP *ld, int option, const void *v, const char *name, char *err,
               size_t cap)
{
	int rc = ldap_set_option(ld, option, v);

	if (rc != LDAP_OPT_SUCCESS) {
		snprintf(err, cap, "cannot set %s", name);
		return -1;
	}
	return 0;
}

/* TLS settings of one handle: the certificate is always verified. */
static int set_tls(LDAP *ld, const struct ldap_src_conf *c, char *err,
                   size_t cap)
{
	int demand = LDAP_OPT_X_TLS_DEMAND, zero = 0, rc;

	if (opt(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand, "TLS_REQCERT", err,
	        cap) != 0)
		return -1;
	/* Only the configured CA: not also a directory from ldap.conf. */
	if (c->ca_file != NULL && (opt(ld, LDAP_OPT_X_TLS_CACERTFILE,
	                               c->ca_file, "CA file", err, cap) != 0 ||
	                           opt(ld, LDAP_OPT_X_TLS_CACERTDIR, NULL,
	                               "CA directory", err, cap) != 0))
		return -1;
	if (c->cert_file != NULL &&
	    (opt(ld, LDAP_OPT_X_TLS_CERTFILE, c->cert_file, "cert file", err,
	         cap) != 0 ||
	     opt(ld, LDAP_OPT_X_TLS_KEYFILE, c->key_file, "key file", err,
	         cap) != 0))
		return -1;
	/* A context of this handle's own, built from the options above
	 * (and failing here, with a reason, on an unreadable file). */
	rc = ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &zero);
	if (rc != LDAP_OPT_SUCCESS) {
		ldap_conn_err(ld, rc, "TLS set-up (CA, cert or key file)", err,
		              cap);
		return -1;
	}
	return 0;
}

/* Options of a fresh handle. */
static int set_options(LDAP *ld, const struct ldap_src_conf *c, char *err,
                       size_t cap)
{
	int v3 = LDAP_VERSION3, idle = 60, probes = 3, interval = 10;
	ber_len_t max = MAX_MESSAGE;
	Sockbuf *sb = NULL;
	struct timeval tv = {
	    .tv_sec = c->connect_timeout_ms / 1000,
	    .tv_usec = (suseconds_t)(c->connect_timeout_ms % 1000) * 1000};

	/* No referral chasing: libldap would open (and bind) connections of
	 * its own, blocking, to whatever server a referral names. */
	if (opt(ld, LDAP_OPT_PROTOCOL_VERSION, &v3, "protocol version", err,
	        cap) != 0 ||
	    opt(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF, "referrals", err, cap) !=
	        0 ||
	    opt(ld, LDAP_OPT_RESTART, LDAP_OPT_ON, "restart", err, cap) != 0 ||
	    opt(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv, "network timeout", err,
	        cap) != 0 ||
	    opt(ld, LDAP_OPT_TIMEOUT, &tv, "timeout", err, cap) != 0)
		return -1;
	/* liblber allocates what a message's length says: without a cap, a
	 * broken or hostile server would have us allocate gigabytes. */
	if (ldap_get_option(ld, LDAP_OPT_SOCKBUF, &sb) != LDAP_OPT_SUCCESS ||
	    sb == NULL ||
	    ber_sockbuf_ctrl(sb, LBER_SB_OPT_SET_MAX_INCOMING, &max) != 1) {
		snprintf(err, cap, "cannot cap the size of messages");
		return -1;
	}
	/* Keepalives find a directory that vanished without a reset while
	 * the connection is idle; failing to set them is no error. */
	ldap_set_option(ld, LDAP_OPT_X_KEEPALIVE_IDLE, &idle);
	ldap_set_option(ld, LDAP_OPT_X_KEEPALIVE_PROBES, &probes);
	ldap_set_option(ld, LDAP_OPT_X_KEEPALIVE_INTERVAL, &interval);
	return set_tls(ld, c, err, cap);
}

/* Reads the first line of path into buf. Returns its length or -1. */
static ssize_t password_read(const char *path, char *buf, size_t cap, char *err,
                             size_t errcap)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (f == NULL) {
		snprintf(err, errcap, "password file %.200s: %s", path,
		         strerror(errno));
		return -1;
	}
	n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = '\0';
	n = strcspn(buf, "\r\n");
	buf[n] = '\0';
	/* An empty password makes a simple bind an unauthenticated one
	 * (RFC 4513 §5.1.2), which servers accept without checking. */
	if (n == 0) {
		snprintf(err, errcap, "password file %.200s: empty password",
		         path);
		return -1;
	}
	return (ssize_t)n;
}

/* Binds ld as c says: SASL EXTERNAL, simple with a DN, or anonymous (a
 * bind all the same, so that the connection is proven). */
static int do_bind(LDAP *ld, const struct ldap_src_conf *c, char *err,
                   size_t cap)
{
	char pw[PASSWORD_MAX];
	struct berval cred = {0, pw};
	const char *dn = "";
	ssize_t n;
	int rc;

	pw[0] = '\0';
	if (c->sasl_external) {
		/* An empty initial response: "authorise me as the identity
		 * the transport proved" (RFC 4422 appendix A), in one step;
		 * a server that still asks gets the same empty answer. */
		cred.bv_len = 0;
		rc = LDAP_SASL_BIND_IN_PROGRESS;
		for (int step = 0; step < 3 && rc == LDAP_SASL_BIND_IN_PROGRESS;
		     step++)
			rc = ldap_sasl_bind_s(ld, NULL, "EXTERNAL", &cred, NULL,
			                      NULL, NULL);
		if (rc != LDAP_SUCCESS)
			ldap_conn_err(ld, rc, "SASL EXTERNAL bind", err, cap);
		return rc == LDAP_SUCCESS ? 0 : -1;
	}
	if (c->bind_dn != NULL) {
		n = password_read(c->password_file, pw, sizeof(pw), err, cap);
		if (n < 0)
			return -1;
		cred.bv_len = (ber_len_t)n;
		dn = c->bind_dn;
	}
	rc =
	    ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
	explicit_bzero(pw, sizeof(pw));
	if (rc != LDAP_SUCCESS)
		ldap_conn_err(ld, rc, "bind", err, cap);
	return rc == LDAP_SUCCESS ? 0 : -1;
}

/* Opens, secures and binds one URI. */
static LDAP *open_one(const struct ldap_src_conf *c, const char *uri, char *err,
                      size_t cap)
{
	LDAP *ld = NULL;
	int rc = ldap_initialize(&ld, uri);

	if (rc != LDAP_SUCCESS || ld == NULL) {
		ldap_conn_err(NULL, rc, "initialise", err, cap);
		return NULL;
	}
	if (set_options(ld, c, err, cap) != 0)
		goto fail;
	if (c->starttls && strncmp(uri, "ldap://", 7) == 0) {
		rc = ldap_start_tls_s(ld, NULL, NULL);
		if (rc != LDAP_SUCCESS) {
			ldap_conn_err(ld, rc, "StartTLS", err, cap);
			goto fail;
		}
	}
	if (do_bind(ld, c, err, cap) != 0)
		goto fail;
	return ld;
fail:
	ldap_unbind_ext_s(ld, NULL, NULL);
	return NULL;
}

LDAP *ldap_conn_open(const struct ldap_src_conf *c, unsigned first,
                     unsigned *uri, char *err, size_t cap)
{
	char one[LDAP_SRC_ERR_MAX];

	pthread_once(&lib_once, lib_init);
	snprintf(err, cap, "no LDAP URI");
	for (unsigned k = 0; k < c->n_uris; k++) {
		unsigned i = (first + k) % c->n_uris;
		LDAP *ld = open_one(c, c->uris[i], one, sizeof(one));

		if (ld != NULL) {
			*uri = i;
			err[0] = '\0';
			return ld;
		}
		snprintf(err, cap, "%.200s: %s", c->uris[i], one);
		log_debug("ldap: %s", err);
	}
	return NULL;
}

/* Frees a, unbinding a handle nobody took. */
static void attempt_free(struct ldap_attempt *a)
{
	if (a->ld != NULL)
		ldap_unbind_ext(a->ld, NULL, NULL);
	close(a->efd);
	ldap_conf_free(a->conf);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

static void *attempt_main(void *arg)
{
	struct ldap_attempt *a = arg;
	uint64_t one = 1;
	bool abandoned;

	a->ld =
	    ldap_conn_open(a->conf, a->first, &a->uri, a->err, sizeof(a->err));
	pthread_mutex_lock(&a->mu);
	a->done = true;
	abandoned = a->abandoned;
	/* Written under the lock: once it is released, a client that is
	 * not abandoning may free a (and close the fd) at any time. */
	if (!abandoned && write(a->efd, &one, sizeof(one)) != sizeof(one))
		log_warn("ldap: cannot signal the end of a connection");
	pthread_mutex_unlock(&a->mu);
	if (abandoned)
		attempt_free(a);
	return NULL;
}

/* Starts the thread with every signal blocked, so that the process's
 * signals keep going to the threads that handle them. */
static int attempt_spawn(struct ldap_attempt *a)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t t;
	int rc;

	if (pthread_attr_init(&attr) != 0)
		return -1;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&t, &attr, attempt_main, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return rc == 0 ? 0 : -1;
}

struct ldap_attempt *ldap_attempt_start(const struct ldap_src_conf *c,
                                        unsigned first)
{
	struct ldap_attempt *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	pthread_once(&lib_once, lib_init);
	a->first = first;
	a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	a->conf = ldap_conf_dup(c);
	if (a->efd < 0 || a->conf == NULL ||
	    pthread_mutex_init(&a->mu, NULL) != 0) {
		if (a->efd >= 0)
			close(a->efd);
		ldap_conf_free(a->conf);
		free(a);
		return NULL;
	}
	if (attempt_spawn(a) != 0) {
		attempt_free(a);
		return NULL;
	}
	return a;
}

int ldap_attempt_fd(const struct ldap_attempt *a)
{
	return a->efd;
}

LDAP *ldap_attempt_finish(struct ldap_attempt *a, unsigned *uri, char *err,
                          size_t cap)
{
	LDAP *ld;

	/* The lock orders the thread's writes before these reads. */
	pthread_mutex_lock(&a->mu);
	ld = a->ld;
	a->ld = NULL;
	*uri = a->uri;
	snprintf(err, cap, "%s", a->err);
	pthread_mutex_unlock(&a->mu);
	attempt_free(a);
	return ld;
}

void ldap_attempt_abandon(struct ldap_attempt *a)
{
	bool done;

	if (a == NULL)
		return;
	pthread_mutex_lock(&a->mu);
	done = a->done;
	a->abandoned = true;
	pthread_mutex_unlock(&a->mu);
	if (done)
		attempt_free(a);
}

/* The search of ldap_check(): a user that cannot exist, so that the answer
 * proves the base and the filter without depending on any entry. */
static int check_search(LDAP *ld, const struct ldap_src_conf *c, char *err,
                        size_t cap)
{
	char filter[LDAP_SRC_FILTER_MAX];
	char *attrs[] = {c->attribute, NULL};
	struct timeval tv = {.tv_sec = (c->timeout_ms + 999) / 1000};
	LDAPMessage *res = NULL;
	int rc;

	if (ldap_filter_build(c->filter, "easfront-check@invalid.invalid",
	                      filter, sizeof(filter)) < 0) {
		snprintf(err, cap, "cannot build the filter");
		return -1;
	}
	rc = ldap_search_ext_s(ld, c->base, LDAP_SCOPE_SUBTREE, filter, attrs,
	                       0, NULL, NULL, &tv, 1, &res);
	ldap_msgfree(res);
	if (rc != LDAP_SUCCESS && rc != LDAP_SIZELIMIT_EXCEEDED) {
		ldap_conn_err(ld, rc, "search", err, cap);
		return -1;
	}
	return 0;
}

int ldap_check(const struct ldap_src_conf *c, char **err)
{
	struct ldap_src_conf *d;
	char why[LDAP_SRC_ERR_MAX + 512], one[LDAP_SRC_ERR_MAX];
	unsigned uri = 0;
	LDAP *ld;
	int rc;

	if (ldap_src_conf_check(c, err) != 0)
		return -1;
	d = ldap_conf_dup(c);
	if (d == NULL)
		return fail_with(err, "ldap: out of memory");
	ld = ldap_conn_open(d, 0, &uri, one, sizeof(one));
	if (ld == NULL) {
		ldap_conf_free(d);
		return fail_with(err, one);
	}
	rc = check_search(ld, d, one, sizeof(one));
	if (rc != 0) {
		snprintf(why, sizeof(why), "%.200s: %s (base \"%.200s\")",
		         d->uris[uri], one, d->base);
		fail_with(err, why);
	}
	ldap_unbind_ext_s(ld, NULL, NULL);
	ldap_conf_free(d);
	return rc;
}
