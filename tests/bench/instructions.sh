#!/usr/bin/env bash
# Instructions per request of easfront builds, counted by callgrind: a
# measure that CPU steal on a shared machine cannot move, for judging a
# change (wall-clock CPU per request wanders by 20 % between runs there).
#
#   BENCH_KEEP=1 tests/bench/run.sh --smoke      # prints "work directory kept: DIR"
#   tests/bench/instructions.sh DIR BINARY[:CONFIG] [BINARY[:CONFIG]...]
#
# CONFIG is a config file of DIR (default easfront-small.yaml), e.g.
# easfront-guard.yaml: the same binary with the guard on.
#
# For each binary and each kind of request (a keep-alive Sync proxied to the
# stand-in CAS, and a 451 for a remote user), easfront runs under callgrind
# twice, serving wrk for 3 s and for 9 s at 16 connections; the difference
# of the two totals over the difference of the request counts cancels
# start-up and exit. Loopback only; every run is bounded in time.
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: $0 BENCH_WORK_DIR BINARY..." >&2; exit 2; }
W=$1
shift
command -v valgrind >/dev/null && command -v wrk >/dev/null ||
	{ echo "needs valgrind and wrk (the bench installs wrk)" >&2; exit 2; }
CAS=$(grep -o 'http://127.0.0.1:[0-9]*' "$W/easfront-small.yaml" | head -1 | cut -d: -f3)
OUT=$(mktemp -d /tmp/easfront-instr.XXXXXX)
taskset -c 1 "$W/bin/backend" -l "$CAS" -C $((CAS + 1)) -T 3600 -H 600 >"$OUT/backend.log" 2>&1 &
BACK=$!
trap 'kill $BACK 2>/dev/null; rm -rf "$OUT"' EXIT
# A config that shares its guard through a store (the bench's guard config)
# gets a redis-server at that port, as run.sh starts one.
REDIS=$(grep -ho 'redis://127.0.0.1:[0-9]*' "$W"/*.yaml | head -1 | cut -d: -f3)
if [ -n "$REDIS" ]; then
	taskset -c 1 redis-server --port "$REDIS" --bind 127.0.0.1 --save "" \
		--appendonly no >"$OUT/redis.log" 2>&1 &
	RPID=$!
	trap 'kill $BACK $RPID 2>/dev/null; rm -rf "$OUT"' EXIT
fi
sleep 0.5

one() { # binary config kind seconds -> "instructions requests"
	local bin=$1 conf=$W/$2 kind=$3 secs=$4 p i port
	local q="/Microsoft-Server-ActiveSync?Cmd=Sync&User=u1&DeviceId=D1&DeviceType=iPhone"
	[ "$kind" = remote ] && q="/Microsoft-Server-ActiveSync?Cmd=Sync&User=u2&DeviceId=D2&DeviceType=iPhone"
	port=$(awk -F'"' '/address:/ { print $2; exit }' "$conf" | cut -d: -f2)
	rm -f "$OUT"/cg.*
	timeout 120 valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p" \
		"$bin" run -c "$conf" >"$OUT/ef.log" 2>&1 &
	p=$!
	for i in $(seq 300); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
	timeout $((secs + 30)) taskset -c 1 wrk -t1 -c16 -d"$secs"s --timeout 10s \
		-s "$W/sync-$kind.lua" "https://127.0.0.1:$port$q" >"$OUT/wrk.txt" 2>&1
	kill -TERM "$p"
	wait "$p" 2>/dev/null
	echo "$(grep -h '^summary:' "$OUT"/cg.* | awk '{ s += $2 } END { print s }')" \
		"$(awk '/requests in/ { print $1 }' "$OUT/wrk.txt")"
}

for arg in "$@"; do
	bin=${arg%%:*} conf=easfront-small.yaml
	[ "$arg" != "$bin" ] && conf=${arg#*:}
	for kind in local remote; do
		read -r i1 r1 < <(one "$bin" "$conf" "$kind" 3)
		read -r i2 r2 < <(one "$bin" "$conf" "$kind" 9)
		awk -v i1="$i1" -v r1="$r1" -v i2="$i2" -v r2="$r2" -v k="$kind" -v b="$arg" 'BEGIN {
			printf "%s %s: %.0f instructions per request (%d and %d requests)\n",
				b, (k == "local" ? "keep-alive Sync" : "451"), (i2 - i1) / (r2 - r1), r1, r2 }'
	done
done
