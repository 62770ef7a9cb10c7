#!/bin/bash
# shellcheck disable=SC2317  # cleanup() and descendants() run from a trap
# easfront in front of a real ActiveSync server (SOGo 5 from Debian).
#
# Installs what it needs from Debian's packages when missing (never skips:
# a missing package that cannot be installed fails the test), then runs the
# stdlib-only unittest module test_sogo.py with /usr/bin/python3. Every
# process the test starts is killed on the way out, even when Python dies:
# the module records each process group in $SOGO_TEST_DIR/pgids/, and the
# trap below kills those groups and their descendants.
#
#   EASFRONT_BIN=/path/to/easfront tests/integration/sogo/run.sh
#
# Environment: EASFRONT_BIN (required; set by CTest), SOGO_TEST_KEEP=1 keeps
# the temporary directory (configs, logs), SOGO_TEST_VERBOSE=1 prints the
# tails of every log even on success.
set -u

here=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" != 0 ]; then
	echo "run.sh: must run as root (installs packages, runs daemons as" \
		"their own users)" >&2
	exit 1
fi
if [ -z "${EASFRONT_BIN:-}" ] || [ ! -x "${EASFRONT_BIN}" ]; then
	echo "run.sh: EASFRONT_BIN=${EASFRONT_BIN:-} is not an executable" >&2
	exit 1
fi

# ---------------------------------------------------------------- packages

# what must be there -> the package that brings it
need=(
	"/usr/sbin/sogod:sogo"
	"/usr/lib/GNUstep/SOGo/ActiveSync.SOGo/ActiveSync:sogo-activesync"
	"/usr/sbin/dovecot:dovecot-core"
	"/usr/lib/dovecot/imap:dovecot-imapd"
	"/usr/bin/memcached:memcached"
	"pg-server:postgresql"
	"/usr/bin/openssl:openssl"
	"/usr/bin/python3:python3"
)
missing=()
for entry in "${need[@]}"; do
	path=${entry%%:*}
	pkg=${entry#*:}
	if [ "$path" = pg-server ]; then
		compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null &&
			continue
	elif [ -e "$path" ]; then
		continue
	fi
	missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
	echo "run.sh: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt_opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300)
	t0=$(date +%s)
	if ! apt-get install "${apt_opts[@]}" "${missing[@]}" \
		>/tmp/ef-sogo-apt.$$.log 2>&1; then
		apt-get update -q >>/tmp/ef-sogo-apt.$$.log 2>&1
		if ! apt-get install "${apt_opts[@]}" "${missing[@]}" \
			>>/tmp/ef-sogo-apt.$$.log 2>&1; then
			tail -30 /tmp/ef-sogo-apt.$$.log >&2
			rm -f /tmp/ef-sogo-apt.$$.log
			echo "run.sh: FAILED: apt-get install ${missing[*]}" >&2
			exit 1
		fi
	fi
	rm -f /tmp/ef-sogo-apt.$$.log
	echo "run.sh: installed in $(($(date +%s) - t0)) s" >&2
fi

# ------------------------------------------------------- processes, trap

SOGO_TEST_DIR=$(mktemp -d /tmp/ef-sogo.XXXXXX)
export SOGO_TEST_DIR

descendants() {
	local child
	for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
		echo "$child"
		descendants "$child"
	done
}

cleanup() {
	local rc=$? f pgid kids pids=()
	trap - EXIT INT TERM HUP
	if [ -n "${py:-}" ] && kill -0 "$py" 2>/dev/null; then
		kill -TERM "$py" 2>/dev/null
		sleep 1
		kill -KILL "$py" 2>/dev/null
	fi
	for f in "$SOGO_TEST_DIR"/pgids/*.pgid; do
		[ -e "$f" ] || continue
		pgid=$(cat "$f")
		mapfile -t kids < <(descendants "$pgid")
		pids+=("$pgid" "${kids[@]}")
		kill -TERM -- "-$pgid" 2>/dev/null
	done
	if [ ${#pids[@]} -gt 0 ]; then
		echo "run.sh: killing what the test left running: ${pids[*]}" >&2
		sleep 2
		for f in "$SOGO_TEST_DIR"/pgids/*.pgid; do
			[ -e "$f" ] && kill -KILL -- "-$(cat "$f")" 2>/dev/null
		done
		kill -KILL "${pids[@]}" 2>/dev/null
	fi
	if [ "$rc" != 0 ] || [ -n "${SOGO_TEST_VERBOSE:-}" ]; then
		find "$SOGO_TEST_DIR" -path "$SOGO_TEST_DIR/mail" -prune -o \
			\( -name '*.log' -o -name '*.out' \) -print | sort |
			while read -r f; do
				echo "---- tail of $f ----" >&2
				tail -c 3000 "$f" >&2
				echo >&2
			done
	fi
	if [ -n "${SOGO_TEST_KEEP:-}" ]; then
		echo "run.sh: kept $SOGO_TEST_DIR" >&2
	else
		rm -rf "$SOGO_TEST_DIR"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

cd "$here" || exit 1
# in the background, so that a signal to run.sh is handled at once (the
# trap stops Python and everything it started)
PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
	/usr/bin/python3 -m unittest -v test_sogo &
py=$!
wait "$py"
rc=$?
py=
exit "$rc"
