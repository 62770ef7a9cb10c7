/*
 * Which served path a request is for. Matched case-insensitively as IIS
 * does; nothing is percent-decoded, so an escaped spelling falls to
 * EAS_PATH_OTHER and gets a 4xx from easfront rather than a guess.
 */
#include "eas/eas.h"

const char *eas_path_str(enum eas_path p)
{
	switch (p) {
	case EAS_PATH_OTHER:
		return "other";
	case EAS_PATH_ACTIVESYNC:
		return "activesync";
	case EAS_PATH_AUTODISCOVER:
		return "autodiscover";
	case EAS_PATH_HEALTHCHECK:
		return "healthcheck";
	}
	return "?";
}

enum eas_path eas_path_classify(struct str path)
{
	if (str_eq_ci_lit(path, "/Microsoft-Server-ActiveSync"))
		return EAS_PATH_ACTIVESYNC;
	if (str_eq_ci_lit(path, "/Microsoft-Server-ActiveSync/"))
		return EAS_PATH_ACTIVESYNC;
	if (str_eq_ci_lit(path, "/Microsoft-Server-ActiveSync/healthcheck.htm"))
		return EAS_PATH_HEALTHCHECK;
	if (str_eq_ci_lit(path, "/autodiscover/autodiscover.xml"))
		return EAS_PATH_AUTODISCOVER;
	return EAS_PATH_OTHER;
}
