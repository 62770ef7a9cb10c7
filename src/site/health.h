/*
 * The health state of one CAS address: up or down, flipped only after
 * `rise` good or `fall` bad checks in a row. Pure; the checks themselves are
 * made by the proxy.
 */
#ifndef EF_SITE_HEALTH_H
#define EF_SITE_HEALTH_H

#include <stdbool.h>

struct health {
	bool up;	 /* starts up: traffic flows before the first check */
	unsigned streak; /* results in a row that contradict `up` */
};

/* Feeds one result (ok or not); returns true when the state flipped. A
 * result that agrees with the state resets the streak. rise/fall of 0 act
 * as 1. */
bool health_feed(struct health *h, bool ok, unsigned rise, unsigned fall);

#endif
