#include "site/health.h"

bool health_feed(struct health *h, bool ok, unsigned rise, unsigned fall)
{
	unsigned need = h->up ? fall : rise;

	if (ok == h->up) {
		h->streak = 0;
		return false;
	}
	if (++h->streak < (need ? need : 1))
		return false;
	h->up = ok;
	h->streak = 0;
	return true;
}
