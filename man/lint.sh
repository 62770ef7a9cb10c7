#!/bin/sh
# `mandoc -T lint` on the pages given: any message fails, but for two that
# say which manuals this machine has installed, not what the pages are: a
# cross-reference to a manual not installed here (logrotate(8), or each
# other before `cmake --install`) and a stale mandoc.db.
mandoc -T lint "$@" 2>&1 | awk '
	/outdated mandoc\.db|referenced manual not found: Xr / { next }
	{ print; bad = 1 }
	END { exit bad }'
