/*
 * A generation: everything one config load produced (conf, site map, TLS
 * contexts, the resolved CAS targets), immutable once published and reference
 * counted. Sessions hold the generation they started a request with, so a
 * reload never changes the ground under a request in flight.
 */
#ifndef EF_PROXY_GEN_H
#define EF_PROXY_GEN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/ssl.h>

#include "core/str.h"
#include "upstream/cas.h"

struct conf;
struct sitemap;
struct tls_server;
struct shield_key;
struct rules;



/* What the proxy needs of one configured site, derived once per load. */
struct gen_site {
	struct cas_target *cas; /* n_cas entries; owned */
	unsigned n_cas;
	struct str proxy_path;	/* view of conf's proxy_path */
};

struct gen {
	atomic_uint refs;
	unsigned id;		   /* 1, 2, 3... per process */
	time_t loaded_at;	   /* when its files were read */
	struct conf *conf;	   /* owned */
	struct sitemap *map;	   /* owned; NULL when no sitemap.file */
	struct tls_server *tls;	   /* owned */
	SSL_CTX *client_ctx;	   /* owned: TLS towards the CAS */
	struct gen_site *sites;	   /* conf->n_sites entries; owned */
	int own_site;		   /* index of conf->site */
	char hostname[256];	   /* for healthcheck.htm */
	char hsts[32];		   /* Strict-Transport-Security value from
				      tls.hsts ("max-age=N"); "" when off */
	unsigned char log_key[32]; /* log.hash_identities: the HMAC key */
	unsigned log_key_len;
	struct shield_key *guard_key; /* owned: guard.key_file's key (or the
					 process's random one) ready to
					 hash credentials; NULL when
					 guard.passwords is off */
	unsigned char guard_key_fp[32]; /* SHA-256 of that key: ids made
					   under another key mean nothing */
	uint8_t bucket_key[16]; /* SipHash key of the throttle's buckets:
				   guard.key_file's (the fleet's) or the
				   process's */
	struct rules *rules;	   /* owned: guard.devices compiled; NULL
				      when there are none */
	atomic_uint_fast64_t *rule_blocks; /* owned: requests each rule
					      blocked under this generation
					      (n_guard_devices); NULL with
					      rules */
	char *store_password;      /* owned: guard.store_password_file's
	                              first line; NULL without one */
};

/* True when no CAS of site has an up member (a target with no process
 * state, as in the commands, counts as up). A site without CAS (a cloud
 * site) is never down. */
bool gen_site_down(const struct gen *g, int site);

/* Takes a reference; returns g for convenience. */
struct gen *gen_hold(struct gen *g);
/* Drops a reference and frees everything the generation owns with the last
 * one. NULL is accepted. Any thread may call it. */
void gen_release(struct gen *g);

#endif
