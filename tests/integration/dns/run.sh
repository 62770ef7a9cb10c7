#!/bin/bash
# Runs the dns/ resolver against a real Knot DNS server on 127.0.0.1.
#
#   run.sh DRIVER        install knot if missing, serve site1.test on a port
#                        picked now, run DRIVER against it, kill the server
#   run.sh ctl DIR CMD   called by DRIVER: repoint (cas1 -> cas1-b + reload),
#                        stop (stop the server and wait until it is gone)
#
# Never skips: a machine without knot gets it from Debian's packages.
set -euo pipefail

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The zone; $1 is the serial, $2 the target of cas1 (TTL 2).
write_zone() {
	local big=""
	for i in $(seq 1 40); do
		big+="big A 127.0.1.$i"$'\n'
	done
	cat > "$dir/site1.test.zone.new" <<ZONE
\$ORIGIN site1.test.
\$TTL 60
@       SOA  ns hostmaster $1 3600 600 86400 5
@       NS   ns
ns      A    127.0.0.1
cas1 2  CNAME $2
cas1-a  A    127.0.0.11
cas1-b  A    127.0.0.12
dual    A    127.0.0.21
dual    AAAA 2001:db8::21
c3      CNAME c2
c2      CNAME c1
c1      CNAME cas1-a
loop1   CNAME loop2
loop2   CNAME loop1
$big
ZONE
	# Atomic, so the server never reads half a file.
	mv "$dir/site1.test.zone.new" "$dir/site1.test.zone"
}

# True once pid has exited (a zombie counts: its parent reaps it later).
gone() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
	[ -z "$st" ] || [ "$st" = Z ]
}

knotc_() {
	timeout 10 knotc -c "$dir/knot.conf" -t 5 "$@"
}

# True when the server has loaded serial $1 of the zone.
serial_is() {
	local st
	st=$(knotc_ zone-status site1.test 2>/dev/null) || return 1
	[[ $st == *"serial: $1 "* || $st == *"serial: $1" ]]
}

if [ "${1:-}" = ctl ]; then
	dir=$2
	case $3 in
	repoint)
		write_zone 2 cas1-b
		knotc_ -b zone-reload site1.test >/dev/null
		for _ in $(seq 1 100); do
			serial_is 2 && exit 0
			sleep 0.05
		done
		echo "run.sh: knot did not load serial 2" >&2
		exit 1 ;;
	stop)
		pid=$(cat "$dir/knotd.pid")
		kill "$pid"
		for _ in $(seq 1 100); do
			gone "$pid" && exit 0
			sleep 0.05
		done
		kill -9 "$pid" 2>/dev/null || true
		exit 0 ;;
	esac
	echo "run.sh: unknown ctl command $3" >&2
	exit 2
fi

driver=${1:?usage: run.sh DRIVER}

if ! command -v knotd >/dev/null || ! command -v knotc >/dev/null; then
	echo "run.sh: installing knot from Debian's packages"
	export DEBIAN_FRONTEND=noninteractive
	if ! timeout 600 apt-get install -y --no-install-recommends knot; then
		timeout 600 apt-get update
		timeout 600 apt-get install -y --no-install-recommends knot
	fi
fi

dir=$(mktemp -d /tmp/ef-dns.XXXXXX)
pid=
cleanup() {
	local rc=$?
	if [ -n "$pid" ] && ! gone "$pid"; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			gone "$pid" && break
			sleep 0.05
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	if [ $rc -ne 0 ] && [ -f "$dir/knotd.log" ]; then
		echo "--- knotd.log" >&2
		tail -n 30 "$dir/knotd.log" >&2
	fi
	rm -rf "$dir"
	exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM

write_zone 1 cas1-a
mkdir -p "$dir/db"

# A port free for UDP and TCP, picked by the kernel; retried if knot loses
# the race for it.
started=
for attempt in 1 2 3 4 5; do
	port=$("$driver" --free-port)
	cat > "$dir/knot.conf" <<CONF
server:
    rundir: "$dir"
    listen: 127.0.0.1@$port
    pidfile: "$dir/knot.pidfile"
    background-workers: 1
    udp-workers: 1
    tcp-workers: 1
control:
    listen: "$dir/knot.sock"
database:
    storage: "$dir/db"
log:
  - target: stderr
    any: info
template:
  - id: default
    storage: "$dir"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: site1.test
    file: "$dir/site1.test.zone"
CONF
	t0=$(date +%s%N)
	knotd -c "$dir/knot.conf" >"$dir/knotd.log" 2>&1 &
	pid=$!
	echo "$pid" > "$dir/knotd.pid"
	for _ in $(seq 1 200); do
		gone "$pid" && break
		if serial_is 1; then
			started=1
			break
		fi
		sleep 0.02
	done
	[ -n "$started" ] && break
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=
done
if [ -z "$started" ]; then
	echo "run.sh: knotd did not start" >&2
	exit 1
fi
t1=$(date +%s%N)
echo "run.sh: $(knotd --version) serving site1.test on 127.0.0.1:$port," \
	"ready in $(( (t1 - t0) / 1000000 )) ms"

EF_DNS_SERVER="127.0.0.1:$port" EF_DNS_CTL="bash $(printf %q "$0") ctl $(printf %q "$dir")" \
	"$driver"
