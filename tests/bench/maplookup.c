/*
 * maplookup: times the site map the way easfront uses it, linked against
 * easfront's own conf and site libraries.
 *
 *   maplookup CONFIG USERS LOOKUPS
 *
 * Loads the site map named by CONFIG (sitemap.file), then normalises and
 * looks up LOOKUPS keys picked pseudo-randomly among u0..u(USERS-1)@
 * contoso.test plus 1 in 8 unknown users. Prints
 * "load_ms=L map_kib=K lookup_ns=N found=F".
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf/conf.h"
#include "site/sitemap.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Resident set of this process in KiB. */
static long rss_kib(void)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0)
			v = strtol(line + 6, NULL, 10);
	if (f != NULL)
		fclose(f);
	return v;
}

int main(int argc, char **argv)
{
	struct conf *c = NULL;
	struct sitemap *m;
	char *err = NULL;
	unsigned long users, lookups, found = 0;
	unsigned long long x = 88172645463325252ULL;
	char name[64], key[SITEMAP_KEY_MAX + 1];
	double t0, t1;
	long rss0;

	if (argc != 4)
		return 2;
	users = strtoul(argv[2], NULL, 10);
	lookups = strtoul(argv[3], NULL, 10);
	if (users == 0 || lookups == 0 || lookups > 100000000UL)
		return 2;
	if (conf_load(argv[1], &c, &err) != 0 || c->sitemap_file == NULL) {
		fprintf(stderr, "maplookup: %s\n",
		        err ? err : "no sitemap.file");
		return 1;
	}
	rss0 = rss_kib();
	t0 = now_s();
	m = sitemap_load(c, c->sitemap_file, &err);
	t1 = now_s();
	if (m == NULL) {
		fprintf(stderr, "maplookup: %s\n", err ? err : "load failed");
		return 1;
	}
	printf("load_ms=%.1f map_kib=%ld ", (t1 - t0) * 1e3, rss_kib() - rss0);
	t0 = now_s();
	for (unsigned long i = 0; i < lookups; i++) {
		struct sitemap_match mt;
		unsigned long k;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		k = (unsigned long)(x % (users + users / 8));
		snprintf(name, sizeof(name), "U%lu@Contoso.test", k);
		if (sitemap_normalise(c, name, key, sizeof(key)) == 0)
			continue;
		sitemap_lookup(m, key, &mt);
		found += mt.site >= 0;
	}
	t1 = now_s();
	/* The same loop without the map, to subtract the key making. */
	{
		double u0 = now_s(), u1;
		unsigned long sink = 0;

		for (unsigned long i = 0; i < lookups; i++) {
			unsigned long k;

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			k = (unsigned long)(x % (users + users / 8));
			sink += (unsigned long)snprintf(name, sizeof(name),
			                                "U%lu@Contoso.test", k);
		}
		u1 = now_s();
		printf("lookup_ns=%.0f found=%lu sink=%lu\n",
		       ((t1 - t0) - (u1 - u0)) * 1e9 / (double)lookups, found,
		       sink % 2);
	}
	sitemap_free(m);
	conf_free(c);
	return 0;
}
