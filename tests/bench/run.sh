#!/usr/bin/env bash
# easfront side by side with nginx and HAProxy, in one run on one machine.
#
#   tests/bench/run.sh            full benchmark (~10 min), writes
#                                 tests/bench/results.md
#   tests/bench/run.sh --smoke    a short pass (CI): 1 run, 2 s per
#                                 measurement, 100 held connections, 1 MiB
#                                 bodies, a 10k-user map; fails only when a
#                                 proxy does not serve, never on timing
#   tests/bench/run.sh --profile  perf record -g of easfront under the
#                                 keep-alive load; prints the top functions
#
# Installs nginx, haproxy and wrk (Debian packages) when missing, builds
# easfront (Release, build-bench/) or takes $EASFRONT_BIN in smoke mode,
# builds the stand-in CAS (backend.c) and the TLS clients (benchcli.c), makes
# one ECDSA P-256 multi-SAN certificate, and measures, in turn and in the
# same run, a TLS-terminating proxy pinned to core 0 with the load generator
# and the stand-in CAS pinned to core 1. All traffic stays on 127.0.0.1;
# every load loop is bounded in count and time; every process started here
# is stopped on exit, failure included.
#
# Environment (optional): BENCH_RUNS, BENCH_SECONDS (wrk seconds per cell),
# BENCH_HS_SECONDS, BENCH_HELD (held long-polls), BENCH_BIG_MIB,
# BENCH_BIG_CLIENTS, BENCH_MAP_USERS, BENCH_RESULTS (output file),
# BENCH_KEEP=1 (keep the work directory), EASFRONT_BIN (smoke mode: use this
# binary instead of building); for a quick look while tuning, not for the
# table: BENCH_PROXIES (a subset of "direct easfront nginx haproxy"),
# BENCH_BASELINE=BINARY (another easfront build, measured interleaved with
# this one as "easfront-base" and reported beside it with their ratio: how a
# change is judged), BENCH_HELD_BIG=0 (skip the held and big-body cells),
# BENCH_MAP=0 (skip the site map).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
MODE=full
# Taken before anything is written: the report itself rewrites results.md,
# which would make every run look built from a modified tree.
EF_VERSION=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)
case "${1:-}" in
--smoke) MODE=smoke ;;
--profile) MODE=profile ;;
"") ;;
*)
	echo "usage: $0 [--smoke|--profile]" >&2
	exit 2
	;;
esac

if [ "$MODE" = smoke ]; then
	RUNS=${BENCH_RUNS:-1} SECS=${BENCH_SECONDS:-2} HS_SECS=${BENCH_HS_SECONDS:-2}
	HELD=${BENCH_HELD:-100} BIG_MIB=${BENCH_BIG_MIB:-1}
	MAP_USERS=${BENCH_MAP_USERS:-10000} CONNS_LIST="64"
	RESULTS=${BENCH_RESULTS:-}
else
	RUNS=${BENCH_RUNS:-3} SECS=${BENCH_SECONDS:-5} HS_SECS=${BENCH_HS_SECONDS:-4}
	HELD=${BENCH_HELD:-10000} BIG_MIB=${BENCH_BIG_MIB:-25}
	MAP_USERS=${BENCH_MAP_USERS:-1000000} CONNS_LIST="64 256"
	RESULTS=${BENCH_RESULTS:-$HERE/results.md}
fi
BIG_CLIENTS=${BENCH_BIG_CLIENTS:-100}
# Hard bounds, whatever the environment says.
[ "$HELD" -ge 1 ] && [ "$HELD" -le 50000 ] || { echo "BENCH_HELD out of 1..50000" >&2; exit 2; }
[ "$BIG_MIB" -ge 1 ] && [ "$BIG_MIB" -le 256 ] || { echo "BENCH_BIG_MIB out of 1..256" >&2; exit 2; }
[ "$BIG_CLIENTS" -ge 1 ] && [ "$BIG_CLIENTS" -le 1000 ] || { echo "BENCH_BIG_CLIENTS out of 1..1000" >&2; exit 2; }
[ "$SECS" -ge 1 ] && [ "$SECS" -le 120 ] || { echo "BENCH_SECONDS out of 1..120" >&2; exit 2; }
[ "$HS_SECS" -ge 1 ] && [ "$HS_SECS" -le 120 ] || { echo "BENCH_HS_SECONDS out of 1..120" >&2; exit 2; }
[ "$RUNS" -ge 1 ] && [ "$RUNS" -le 9 ] || { echo "BENCH_RUNS out of 1..9" >&2; exit 2; }
[ "$MAP_USERS" -ge 10 ] && [ "$MAP_USERS" -le 5000000 ] || { echo "BENCH_MAP_USERS out of 10..5000000" >&2; exit 2; }

HELD_NOTE=""
WORK=$(mktemp -d /tmp/easfront-bench.XXXXXX)
PIDS=()        # every process started here, stopped by cleanup
FAILURES=()    # what did not serve
DATA=$WORK/data.tsv # run <TAB> metric <TAB> who <TAB> value
: >"$DATA"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() {
	FAILURES+=("$*")
	log "FAIL: $*"
}
die() {
	log "fatal: $*"
	exit 1
}

cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null
	done
	sleep 0.3
	for p in "${PIDS[@]}"; do
		if kill -0 "$p" 2>/dev/null; then
			sleep 1
			kill -9 "$p" 2>/dev/null
		fi
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null
	done
	if [ -n "${BENCH_KEEP:-}" ]; then
		log "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

record() { printf '%s\t%s\t%s\t%s\n' "$RUN" "$1" "$2" "$3" >>"$DATA"; }

# ---------------------------------------------------------------- set-up

ensure_pkg() { # binary package
	if command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; then
		return 0
	fi
	log "installing $2"
	export DEBIAN_FRONTEND=noninteractive
	# Other tests may be installing at the same time: wait for dpkg's lock.
	local lock=(-o DPkg::Lock::Timeout=300)
	apt-get install "${lock[@]}" -y -q "$2" >"$WORK/apt.log" 2>&1 ||
		{ apt-get update "${lock[@]}" -q >>"$WORK/apt.log" 2>&1 &&
			apt-get install "${lock[@]}" -y -q "$2" >>"$WORK/apt.log" 2>&1; } ||
		die "apt-get install $2 failed (see $WORK/apt.log)"
}

setup_tools() {
	ensure_pkg nginx nginx
	ensure_pkg haproxy haproxy
	ensure_pkg wrk wrk
	ensure_pkg redis-server redis-server
	ensure_pkg openssl openssl
	ensure_pkg curl curl
	ensure_pkg taskset util-linux
	NGINX=$(command -v nginx || echo /usr/sbin/nginx)
	HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
	# The Debian packages start their services where an init system runs;
	# ours are separate processes on their own ports and files, so a
	# running system nginx or HAProxy is left alone.
	# Each held long-poll costs a proxy two descriptors. Raise the limit as
	# far as this machine allows (a container without CAP_SYS_RESOURCE
	# keeps its hard limit) and size everything from what we got.
	ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
	NOFILE=$(ulimit -n)
	MAXCONN=$(((NOFILE - 200) / 2))
	# nginx counts its cached upstream connections against
	# worker_connections too: leave it room.
	if [ "$HELD" -gt $((MAXCONN - 900)) ]; then
		log "held long-polls: $HELD need about $((2 * HELD + 2000)) descriptors per proxy, the limit is $NOFILE: using $((MAXCONN - 900))"
		HELD_NOTE=" (asked for $HELD; the hard RLIMIT_NOFILE of $NOFILE here, which root cannot raise without CAP_SYS_RESOURCE, leaves room for $((MAXCONN - 900)))"
		HELD=$((MAXCONN - 900))
	fi
	[ "$(nproc)" -ge 2 ] || log "warning: fewer than 2 CPUs; core pinning collapses onto one"
}

build() {
	if [ "$MODE" = smoke ] && [ -n "${EASFRONT_BIN:-}" ]; then
		[ -x "$EASFRONT_BIN" ] || die "EASFRONT_BIN=$EASFRONT_BIN is not executable"
		EF_BIN=$EASFRONT_BIN
		EF_BUILD=""
	else
		EF_BUILD=$REPO/build-bench
		log "building easfront (Release) in $EF_BUILD"
		# Every part (the project's default list): the daemon links
		# whichever parts it grows to need.
		cmake -S "$REPO" -B "$EF_BUILD" -G Ninja -UEF_PARTS \
			-DCMAKE_BUILD_TYPE=Release >"$WORK/cmake.log" 2>&1 &&
			cmake --build "$EF_BUILD" --target easfront >>"$WORK/cmake.log" 2>&1 ||
			{ tail -30 "$WORK/cmake.log" >&2; die "easfront build failed"; }
		EF_BIN=$EF_BUILD/src/easfront
	fi
	if [ -n "${BENCH_BASELINE:-}" ]; then
		[ -x "$BENCH_BASELINE" ] || die "BENCH_BASELINE=$BENCH_BASELINE is not executable"
		EF_BASE_BIN=$BENCH_BASELINE
		EF_BASE_VERSION=${BENCH_BASELINE_NAME:-$(basename "$BENCH_BASELINE")}
	fi
	mkdir -p "$WORK/bin"
	cc -O2 -Wall -o "$WORK/bin/backend" "$HERE/backend.c" -lssl -lcrypto ||
		die "backend.c does not build"
	cc -O2 -Wall -o "$WORK/bin/benchcli" "$HERE/benchcli.c" -lssl -lcrypto ||
		die "benchcli.c does not build"
	MAPLOOKUP=""
	if [ -n "$EF_BUILD" ]; then
		# The site map timed through easfront's own libraries; every
		# library of the build in one group, so new dependencies of the
		# site part keep linking.
		if cc -O2 -I"$REPO/src" -o "$WORK/bin/maplookup" "$HERE/maplookup.c" \
			-Wl,--start-group $(find "$EF_BUILD/src" -name 'libef_*.a' | sort) -Wl,--end-group \
			$(pkg-config --libs libcyaml yaml-0.1 libxml-2.0 ldns libevent_core libevent_extra \
				libevent_openssl libevent_pthreads 2>/dev/null) \
			$( [ -e /usr/lib/x86_64-linux-gnu/libldap.so ] && echo -lldap -llber) \
			-lssl -lcrypto -lpthread >"$WORK/maplookup-cc.log" 2>&1; then
			MAPLOOKUP=$WORK/bin/maplookup
		else
			log "warning: maplookup.c does not link against easfront's libraries (see $WORK/maplookup-cc.log): map load and lookup times not measured"
			head -5 "$WORK/maplookup-cc.log" >&2
		fi
	fi
	BACKEND=$WORK/bin/backend
	CLI=$WORK/bin/benchcli
}

make_cert() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$WORK/eas.key" -out "$WORK/eas.pem" -days 2 -sha256 \
		-subj "/CN=eas.contoso.test" \
		-addext "subjectAltName=DNS:eas.contoso.test,DNS:site1-eas.contoso.test,DNS:site2-eas.contoso.test,DNS:autodiscover.contoso.test,IP:127.0.0.1" \
		-addext "basicConstraints=critical,CA:FALSE" \
		-addext "keyUsage=critical,digitalSignature" \
		-addext "extendedKeyUsage=serverAuth" >"$WORK/openssl.log" 2>&1 ||
		die "openssl could not make the certificate"
	cat "$WORK/eas.pem" "$WORK/eas.key" >"$WORK/haproxy.pem"
}

pick_ports() {
	local -a p
	mapfile -t p < <("$CLI" port 10)
	[ "${#p[@]}" -eq 10 ] || die "no free ports"
	P_BACK=${p[0]} P_CTL=${p[1]} P_DIRECT=${p[2]} P_EF=${p[3]} P_NGX=${p[4]}
	P_HAP=${p[5]} P_EFMAP=${p[6]} P_DCTL=${p[7]} P_EFG=${p[8]} P_REDIS=${p[9]}
}

# Credentials: u1 lives in this site (proxied), u2 in site2 (451 at 14.1).
AUTH_LOCAL=$(printf 'u1@contoso.test:Passw0rd' | base64)
AUTH_REMOTE=$(printf 'u2@contoso.test:Passw0rd' | base64)
SITE2_URL="https://site2-eas.contoso.test/Microsoft-Server-ActiveSync"
EAS_PATH="/Microsoft-Server-ActiveSync"

# The small config with the guard on: the password shield, 100 device rules
# none of which matches the bench's device, so each request is checked
# against all of them (issue 14), and the throttle shared through a local
# redis-server (issue 15), its budgets too large to refuse anything, so
# every request pays for its buckets and the tally (each: within 5 % of
# guard absent).
write_guard_config() {
	head -c 32 /dev/urandom >"$WORK/guard.key"
	sed -e "s/127.0.0.1:$P_EF\"/127.0.0.1:$P_EFG\"/" \
		-e "s|easfront-small.pid|easfront-guard.pid|" \
		"$WORK/easfront-small.yaml" >"$WORK/easfront-guard.yaml"
	awk -v key="$WORK/guard.key" -v redis="$P_REDIS" 'BEGIN {
		print "guard:"
		print "  passwords: { password_failures: 3, user_failures: 10, window: 1800, hold: 1800 }"
		print "  throttle:"
		print "    device: { requests: 1000000, per: 1 }"
		print "    user: { requests: 1000000, per: 1 }"
		print "  key_file: \"" key "\""
		print "  store: \"redis://127.0.0.1:" redis "\""
		print "  devices:"
		for (i = 0; i < 100; i++) {
			if (i % 4 == 0) printf "    - block: { device_type: \"^BadPhone%d$\" }\n", i
			else if (i % 4 == 1) printf "    - block: { user_agent: \"^Broken-Agent/%d\\\\.\" }\n", i
			else if (i % 4 == 2) printf "    - block: { device_id: \"^BAD%04d\" }\n", i
			else printf "    - block: { user: \"blocked%d@contoso.test\", cmd: \"Sync\" }\n", i
		}
	}' >>"$WORK/easfront-guard.yaml"
}

write_configs() {
	local b
	# Site maps: the small one, and one with MAP_USERS users over 100
	# databases (odd ones in site1, even ones in site2: u1 local, u2 remote).
	cat >"$WORK/sitemap-small.tsv" <<EOF
database	DB01	site1
database	DB02	site2
user	u1@contoso.test	DB01
user	u2@contoso.test	DB02
domain	fabrikam.test	site2
EOF
	awk -v n="$MAP_USERS" 'BEGIN {
		for (d = 0; d < 100; d++) printf "database\tDB%02d\tsite%d\n", d, (d % 2) ? 1 : 2
		for (i = 0; i < n; i++) printf "user\tu%d@contoso.test\tDB%02d\n", i, i % 100
		printf "domain\tfabrikam.test\tsite2\n"
	}' >"$WORK/sitemap-big.tsv"
	for b in small big; do
		local port=$P_EF
		[ $b = big ] && port=$P_EFMAP
		cat >"$WORK/easfront-$b.yaml" <<EOF
site: site1
listen:
  - address: "127.0.0.1:$port"
tls:
  certificates:
    - cert: $WORK/eas.pem
      key: $WORK/eas.key
sites:
  - name: site1
    external_url: https://site1-eas.contoso.test/Microsoft-Server-ActiveSync
    cas: [ "http://127.0.0.1:$P_BACK" ]
  - name: site2
    external_url: $SITE2_URL
    cas: [ "http://127.0.0.1:$P_BACK" ]
sitemap:
  file: $WORK/sitemap-$b.tsv
  default_site: site1
timeouts:
  idle: 120
  long_poll: 3660
workers: 1
pid_file: $WORK/easfront-$b.pid
log:
  level: info
limits:
  connections: $MAXCONN
  connections_per_client: $MAXCONN
EOF
	done
	mkdir -p "$WORK/nginx"
	cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
worker_rlimit_nofile $NOFILE;
events { worker_connections $((NOFILE - 100)); }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    client_max_body_size 0;
    client_header_timeout 15s;
    client_body_timeout 60s;
    # EAS: stream both ways (long-polls, big attachments), like easfront.
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_http_version 1.1;
    proxy_connect_timeout 5s;
    proxy_read_timeout 3660s;
    proxy_send_timeout 60s;
    upstream cas {
        server 127.0.0.1:$P_BACK;
        keepalive 512;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:$P_NGX ssl;
        ssl_certificate $WORK/eas.pem;
        ssl_certificate_key $WORK/eas.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            if (\$http_authorization = "Basic $AUTH_REMOTE") {
                add_header X-MS-Location "$SITE2_URL" always;
                add_header Cache-Control private always;
                return 451;
            }
            proxy_pass http://cas;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto https;
        }
    }
}
EOF
	cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $MAXCONN
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode http
    option http-keep-alive
    http-reuse always
    maxconn $MAXCONN
    timeout connect 5s
    timeout http-request 15s
    timeout http-keep-alive 120s
    timeout client 3660s
    timeout server 3660s

frontend eas
    bind 127.0.0.1:$P_HAP ssl crt $WORK/haproxy.pem alpn http/1.1
    http-request return status 451 hdr X-MS-Location "$SITE2_URL" hdr Cache-Control private if { req.hdr(authorization) -m str "Basic $AUTH_REMOTE" }
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    default_backend cas

backend cas
    server cas1 127.0.0.1:$P_BACK
EOF
	write_guard_config
	# wrk scripts: the same EAS Sync POST, a local and a remote user.
	local u auth
	for u in local remote; do
		auth=$AUTH_LOCAL
		[ $u = remote ] && auth=$AUTH_REMOTE
		cat >"$WORK/sync-$u.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Basic $auth"
wrk.headers["MS-ASProtocolVersion"] = "14.1"
wrk.headers["Content-Type"] = "application/vnd.ms-sync.wbxml"
wrk.headers["User-Agent"] = "Apple-iPhone9C1/1402.72"
-- ~100 bytes of WBXML-ish Sync request
wrk.body = "\3\1\106\0\0\0\69\92\79\75\3\48\0\1\82\3\49\0\1\78\87\0\1\1\1\1" ..
           string.rep("\75\3\49\0\1", 14) .. "\1\1"
EOF
	done
	SYNC_Q="$EAS_PATH?Cmd=Sync&User=u1&DeviceId=D1&DeviceType=iPhone"
	SYNC_Q_REMOTE="$EAS_PATH?Cmd=Sync&User=u2&DeviceId=D2&DeviceType=iPhone"
}

# ---------------------------------------------------------------- processes

# Starts cmd in the background with its output in $WORK/logname; every such
# process is stopped by cleanup. Sets LAST_PID.
spawn() { # logname cmd...
	local logf=$WORK/$1
	shift
	"$@" >"$logf" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

stop_pid() { # pid [signal]
	local pid=$1 sig=${2:-TERM} i
	kill -"$sig" "$pid" 2>/dev/null || return 0
	for i in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

wait_port() { # port seconds [pid: give up when it has exited]
	local i
	for i in $(seq 1 $(($2 * 20))); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then
			return 1
		fi
		sleep 0.05
	done
	return 1
}

# The guard's shared store: a redis-server on loopback, next to the clients
# on core 1, without persistence, as a fleet would run it.
start_redis() {
	spawn redis.log taskset -c 1 redis-server --port "$P_REDIS" --bind 127.0.0.1 \
		--save "" --appendonly no --daemonize no
	wait_port "$P_REDIS" 10 "$LAST_PID" || die "redis-server did not start"
}

start_backend() {
	spawn backend.log taskset -c 1 "$BACKEND" -l "$P_BACK" -C "$P_CTL" -T 3600 -H 600
	BACK_PID=$LAST_PID
	wait_port "$P_BACK" 10 "$BACK_PID" || die "the stand-in CAS did not start"
}

# Starts proxy $1 (direct|easfront|nginx|haproxy|easfront-map) on core 0.
# Sets PX_PID (the process to signal), PX_PORT, and PX_PIDS (every process
# whose CPU and memory count).
start_proxy() {
	local who=$1 i
	case $who in
	direct)
		spawn direct.log taskset -c 0 "$BACKEND" -s "$P_DIRECT" -c "$WORK/eas.pem" \
			-k "$WORK/eas.key" -C "$P_DCTL" -T 3600 -H 600
		PX_PORT=$P_DIRECT
		;;
	easfront)
		spawn easfront.log taskset -c 0 "$EF_BIN" run -c "$WORK/easfront-small.yaml"
		PX_PORT=$P_EF
		;;
	easfront-base)
		spawn easfront-base.log taskset -c 0 "$EF_BASE_BIN" run -c "$WORK/easfront-small.yaml"
		PX_PORT=$P_EF
		;;
	easfront-guard)
		spawn easfront-guard.log taskset -c 0 "$EF_BIN" run -c "$WORK/easfront-guard.yaml"
		PX_PORT=$P_EFG
		;;
	easfront-map)
		spawn easfront-map.log taskset -c 0 "$EF_BIN" run -c "$WORK/easfront-big.yaml"
		PX_PORT=$P_EFMAP
		;;
	nginx)
		spawn nginx.log taskset -c 0 "$NGINX" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
		PX_PORT=$P_NGX
		;;
	haproxy)
		spawn haproxy.log taskset -c 0 "$HAPROXY" -db -f "$WORK/haproxy.cfg"
		PX_PORT=$P_HAP
		;;
	esac
	PX_PID=$LAST_PID
	PX_WHO=$who
	if ! wait_port "$PX_PORT" 60 "$PX_PID"; then
		fail "$who did not start listening on 127.0.0.1:$PX_PORT"
		tail -5 "$WORK/$who.log" >&2
		return 1
	fi
	PX_PIDS="$PX_PID"
	if [ "$who" = nginx ]; then
		for i in $(seq 1 50); do
			PX_PIDS="$PX_PID $(pgrep -P "$PX_PID" | tr '\n' ' ')"
			[ "$(echo $PX_PIDS | wc -w)" -ge 2 ] && break
			sleep 0.1
		done
		for i in $PX_PIDS; do PIDS+=("$i"); done
	fi
	return 0
}

stop_proxy() {
	local p
	if [ "$PX_WHO" = nginx ]; then
		stop_pid "$PX_PID" QUIT
		for p in $PX_PIDS; do kill -9 "$p" 2>/dev/null; done
	else
		stop_pid "$PX_PID" TERM
	fi
	if [ "${PX_WHO}" = easfront ] || [ "${PX_WHO}" = easfront-map ] ||
		[ "${PX_WHO}" = easfront-base ]; then
		# A fatal line, a sanitizer report, or the stand-in CAS judged
		# down by the health checks (every request after it is a 503).
		local bad='ERROR: AddressSanitizer|runtime error:|LeakSanitizer| error |is down'
		if grep -E "$bad" "$WORK/$PX_WHO.log" >/dev/null 2>&1; then
			fail "$PX_WHO logged an error, a sanitizer report or a CAS down:"
			grep -E "$bad" "$WORK/$PX_WHO.log" | head -5 >&2
		fi
		# The next start appends to the same log.
		mv "$WORK/$PX_WHO.log" "$WORK/$PX_WHO-$RUN-$(date +%s%N).log" 2>/dev/null
	fi
}

# CPU time (µs) of the proxy's processes: utime + stime of /proc/PID/stat.
cpu_us() {
	local p t=0 v
	for p in $PX_PIDS; do
		v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null) || v=0
		t=$((t + ${v:-0}))
	done
	echo $((t * 1000000 / CLK_TCK))
}

# Sum of a /proc/PID/status field (KiB) over the proxy's processes.
mem_kib() { # VmRSS|VmHWM
	local p t=0 v
	for p in $PX_PIDS; do
		v=$(awk -v f="$1:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null)
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# ---------------------------------------------------------------- checks

# One request of each kind through the proxy, checked on the wire.
check_serving() {
	local who=$1 port=$2 code hdr
	hdr=$WORK/check-$who.hdr
	code=$(curl -sk -o /dev/null -D "$hdr" -w '%{http_code}' --max-time 10 \
		-X POST --data-binary 'x' \
		-H "Authorization: Basic $AUTH_LOCAL" -H 'MS-ASProtocolVersion: 14.1' \
		-H 'Content-Type: application/vnd.ms-sync.wbxml' \
		"https://127.0.0.1:$port$SYNC_Q")
	if [ "$code" != 200 ] || ! grep -qi '^MS-Server-ActiveSync:' "$hdr"; then
		fail "$who: Sync for a local user answered $code, not the CAS's 200"
		return 1
	fi
	[ "$who" = direct ] && return 0
	code=$(curl -sk -o /dev/null -D "$hdr" -w '%{http_code}' --max-time 10 \
		-X POST --data-binary 'x' \
		-H "Authorization: Basic $AUTH_REMOTE" -H 'MS-ASProtocolVersion: 14.1' \
		-H 'Content-Type: application/vnd.ms-sync.wbxml' \
		"https://127.0.0.1:$port$SYNC_Q_REMOTE")
	if [ "$code" != 451 ] || ! grep -qi "^X-MS-Location: $SITE2_URL" "$hdr"; then
		fail "$who: Sync for a remote user answered $code without the 451 redirect"
		return 1
	fi
	return 0
}

# ---------------------------------------------------------------- measurements

to_ms() { # "1.23ms" / "512.00us" / "1.02s" -> ms
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
		else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000 }
		else print "nan" }'
}

# wrk at $2 connections; $1 = metric prefix, $3 = local|remote.
# Records req/s, p50, p99 and CPU µs per request.
run_wrk() {
	local prefix=$1 conns=$2 kind=$3 secs=${4:-$SECS} out c0 c1 reqs rps p50 p99 non2xx errs q
	q=$SYNC_Q
	[ "$kind" = remote ] && q=$SYNC_Q_REMOTE
	out=$WORK/wrk-$PX_WHO-$prefix-$conns-$RUN.txt
	c0=$(cpu_us)
	timeout $((secs + 30)) taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --timeout 10s --latency \
		-s "$WORK/sync-$kind.lua" "https://127.0.0.1:$PX_PORT$q" >"$out" 2>&1
	c1=$(cpu_us)
	reqs=$(awk '/requests in/ { print $1 }' "$out")
	rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
	p50=$(awk '$1 == "50%" { print $2 }' "$out")
	p99=$(awk '$1 == "99%" { print $2 }' "$out")
	non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
	errs=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$out")
	non2xx=${non2xx:-0} errs=${errs:-0}
	if [ -z "$reqs" ] || [ "$reqs" -eq 0 ]; then
		fail "$PX_WHO: wrk $prefix at $conns connections completed no request"
		sed 's/^/    /' "$out" >&2
		return 1
	fi
	if [ "$kind" = local ] && [ "$non2xx" -ne 0 ]; then
		fail "$PX_WHO: $non2xx of $reqs Sync requests were not answered 2xx"
	fi
	if [ "$kind" = remote ] && [ "$non2xx" -ne "$reqs" ]; then
		fail "$PX_WHO: only $non2xx of $reqs remote-user requests got the 451"
	fi
	[ "$errs" -gt 0 ] && log "$PX_WHO $prefix/$conns: $errs socket errors (see $(basename "$out"))"
	record "$prefix.$conns.rps" "$PX_WHO" "$rps"
	record "$prefix.$conns.p50" "$PX_WHO" "$(to_ms "$p50")"
	record "$prefix.$conns.p99" "$PX_WHO" "$(to_ms "$p99")"
	record "$prefix.$conns.cpu" "$PX_WHO" "$(awk -v c=$((c1 - c0)) -v r="$reqs" 'BEGIN { printf "%.2f", c / r }')"
	log "$PX_WHO $prefix/$conns: $rps req/s, p50 $p50, p99 $p99, $(awk -v c=$((c1 - c0)) -v r="$reqs" 'BEGIN { printf "%.1f", c / r }') µs CPU/req"
}

run_hs() { # full|resumed
	local kind=$1 out c0 c1 n resumed failed secs flag=""
	[ "$kind" = resumed ] && flag=-r
	out=$WORK/hs-$PX_WHO-$kind-$RUN.txt
	c0=$(cpu_us)
	timeout $((HS_SECS + 30)) taskset -c 1 "$CLI" hs -p "$PX_PORT" -d "$HS_SECS" -c 16 $flag >"$out" 2>&1
	c1=$(cpu_us)
	n=$(sed -n 's/.*handshakes=\([0-9]*\).*/\1/p' "$out")
	resumed=$(sed -n 's/.*resumed=\([0-9]*\).*/\1/p' "$out")
	failed=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' "$out")
	secs=$(sed -n 's/.*secs=\([0-9.]*\).*/\1/p' "$out")
	if [ -z "$n" ] || [ "$n" -eq 0 ]; then
		fail "$PX_WHO: no $kind TLS handshake completed"
		cat "$out" >&2
		return 1
	fi
	if [ "$kind" = resumed ] && [ "$resumed" -lt $((n / 2)) ]; then
		fail "$PX_WHO: only $resumed of $n handshakes resumed"
	fi
	record "hs.$kind.rate" "$PX_WHO" "$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')"
	record "hs.$kind.cpu" "$PX_WHO" "$(awk -v c=$((c1 - c0)) -v n="$n" 'BEGIN { printf "%.1f", c / n }')"
	record "hs.$kind.resumed" "$PX_WHO" "$(awk -v r="$resumed" -v n="$n" 'BEGIN { printf "%.1f", 100 * r / n }')"
	log "$PX_WHO $kind handshakes: $n in ${secs}s ($resumed resumed, $failed failed), $(awk -v c=$((c1 - c0)) -v n="$n" 'BEGIN { printf "%.0f", c / n }') µs CPU each"
}

run_held() {
	local out rss0 rss1 i held=0 line ok cpid
	out=$WORK/held-$PX_WHO-$RUN.txt
	check_serving "$PX_WHO" "$PX_PORT" || return 1
	sleep 0.5
	rss0=$(mem_kib VmRSS)
	spawn "held-$PX_WHO-$RUN.txt" timeout 300 taskset -c 1 "$CLI" hold -p "$PX_PORT" -n "$HELD" -d 240 -c 256
	cpid=$LAST_PID
	# Every Ping must have reached the CAS through the proxy.
	for i in $(seq 1 1200); do
		line=$("$CLI" ctl "$P_CTL" count 2>/dev/null)
		held=$(echo "$line" | sed -n 's/.*held=\([0-9]*\).*/\1/p')
		[ "${held:-0}" -ge "$HELD" ] && break
		kill -0 "$cpid" 2>/dev/null || break
		sleep 0.1
	done
	sleep 1
	rss1=$(mem_kib VmRSS)
	"$CLI" ctl "$P_CTL" release >/dev/null
	for i in $(seq 1 600); do
		kill -0 "$cpid" 2>/dev/null || break
		sleep 0.1
	done
	stop_pid "$cpid"
	ok=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' "$out")
	if [ "${held:-0}" -lt "$HELD" ] || [ "${ok:-0}" -ne "$HELD" ]; then
		fail "$PX_WHO: $HELD held long-polls: ${held:-0} reached the CAS, ${ok:-0} answered"
		cat "$out" >&2
		return 1
	fi
	record held.idle "$PX_WHO" "$(awk -v k="$rss0" 'BEGIN { printf "%.1f", k / 1024 }')"
	record held.rss "$PX_WHO" "$(awk -v k="$rss1" 'BEGIN { printf "%.1f", k / 1024 }')"
	record held.kib "$PX_WHO" "$(awk -v a="$rss0" -v b="$rss1" -v n="$HELD" 'BEGIN { printf "%.2f", (b - a) / n }')"
	log "$PX_WHO held $HELD long-polls: RSS $((rss0 / 1024)) -> $((rss1 / 1024)) MiB, $(awk -v a="$rss0" -v b="$rss1" -v n="$HELD" 'BEGIN { printf "%.1f", (b - a) / n }') KiB each"
}

run_big() {
	local out rss0 hwm1 ok c0 c1 bytes=$((BIG_MIB * 1024 * 1024))
	out=$WORK/big-$PX_WHO-$RUN.txt
	check_serving "$PX_WHO" "$PX_PORT" || return 1
	sleep 0.3
	rss0=$(mem_kib VmRSS)
	c0=$(cpu_us)
	timeout 300 taskset -c 1 "$CLI" big -p "$PX_PORT" -n "$BIG_CLIENTS" -s "$bytes" -d 240 >"$out" 2>&1
	c1=$(cpu_us)
	hwm1=$(mem_kib VmHWM)
	ok=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' "$out")
	if [ "${ok:-0}" -ne "$BIG_CLIENTS" ]; then
		fail "$PX_WHO: big bodies: ${ok:-0} of $BIG_CLIENTS clients completed"
		cat "$out" >&2
		return 1
	fi
	record big.idle "$PX_WHO" "$(awk -v k="$rss0" 'BEGIN { printf "%.1f", k / 1024 }')"
	record big.hwm "$PX_WHO" "$(awk -v k="$hwm1" 'BEGIN { printf "%.1f", k / 1024 }')"
	record big.kib "$PX_WHO" "$(awk -v a="$rss0" -v b="$hwm1" -v n="$BIG_CLIENTS" 'BEGIN { printf "%.0f", (b - a) / n }')"
	record big.secs "$PX_WHO" "$(sed -n 's/.*secs=\([0-9.]*\).*/\1/p' "$out")"
	# CPU per MiB carried, counting both directions
	record big.cpu "$PX_WHO" "$(awk -v c=$((c1 - c0)) -v n="$BIG_CLIENTS" -v m="$BIG_MIB" 'BEGIN { printf "%.0f", c / (2 * n * m) }')"
	log "$PX_WHO big bodies: RSS $((rss0 / 1024)) MiB idle, peak $((hwm1 / 1024)) MiB ($(cat "$out"))"
}

# One proxy, one run: throughput, redirects, handshakes on one instance;
# held long-polls and big bodies each on a fresh one (clean RSS and VmHWM).
measure_proxy() {
	local who=$1 c
	log "---- $who (run $RUN)"
	start_proxy "$who" || return 1
	if check_serving "$who" "$PX_PORT"; then
		# warm-up: connections, pools, allocator
		timeout 30 taskset -c 1 wrk -t1 -c64 -d1s -s "$WORK/sync-local.lua" \
			"https://127.0.0.1:$PX_PORT$SYNC_Q" >/dev/null 2>&1
		for c in $CONNS_LIST; do run_wrk ka "$c" local; done
		if [ "$who" != direct ]; then
			for c in $CONNS_LIST; do run_wrk r451 "$c" remote; done
		fi
		# The guard's cost is that of a request: the rest is the same
		# binary measured as easfront.
		if [ "$who" = easfront-guard ]; then
			stop_proxy
			return 0
		fi
		run_hs full
		run_hs resumed
	fi
	stop_proxy
	[ "$who" = direct ] || [ "${BENCH_HELD_BIG:-1}" = 0 ] && return 0
	start_proxy "$who" && { run_held; stop_proxy; }
	start_proxy "$who" && { run_big; stop_proxy; }
}

# The site map, easfront only: load time, memory, lookups, and p99 during a
# SIGHUP reload under the keep-alive load.
measure_map() {
	local i t0 t1 rss_small rss_big out line ready base during
	log "---- site map: $MAP_USERS users ($(du -h "$WORK/sitemap-big.tsv" | cut -f1))"
	for RUN in $(seq 1 "$RUNS"); do
		t0=$(date +%s%N)
		"$EF_BIN" check -c "$WORK/easfront-big.yaml" >"$WORK/check.out" 2>&1 ||
			{ fail "easfront check of the $MAP_USERS-user map failed"; cat "$WORK/check.out" >&2; return 1; }
		t1=$(date +%s%N)
		record map.check "easfront" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')"
		grep -q "$MAP_USERS users" "$WORK/check.out" ||
			fail "easfront check did not count $MAP_USERS users: $(cat "$WORK/check.out")"
		if [ -n "$MAPLOOKUP" ]; then
			line=$("$MAPLOOKUP" "$WORK/easfront-big.yaml" "$MAP_USERS" 2000000) ||
				{ fail "maplookup failed"; return 1; }
			record map.load "easfront" "$(echo "$line" | sed -n 's/.*load_ms=\([0-9.]*\).*/\1/p' | awk '{ printf "%.3f", $1 / 1000 }')"
			record map.lookup "easfront" "$(echo "$line" | sed -n 's/.*lookup_ns=\([0-9.-]*\).*/\1/p')"
			record map.kib "easfront" "$(echo "$line" | sed -n 's/.*map_kib=\([0-9-]*\).*/\1/p')"
			log "maplookup: $line"
		fi
	done
	RUN=1
	# RSS of a started easfront with the small map and with the big one.
	start_proxy easfront || return 1
	check_serving easfront "$PX_PORT"
	rss_small=$(mem_kib VmRSS)
	stop_proxy
	t0=$(date +%s%N)
	start_proxy easfront-map || return 1
	t1=$(date +%s%N)
	ready=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
	check_serving easfront-map "$PX_PORT" || { stop_proxy; return 1; }
	rss_big=$(mem_kib VmRSS)
	record map.ready easfront "$ready"
	record map.rss easfront "$(awk -v a="$rss_small" -v b="$rss_big" 'BEGIN { printf "%.1f", (b - a) / 1024 }')"
	log "easfront with the map: ready in ${ready}s, RSS $((rss_small / 1024)) -> $((rss_big / 1024)) MiB"
	timeout 30 taskset -c 1 wrk -t1 -c64 -d1s -s "$WORK/sync-local.lua" \
		"https://127.0.0.1:$PX_PORT$SYNC_Q" >/dev/null 2>&1
	for RUN in $(seq 1 "$RUNS"); do
		out=$WORK/wrk-reload-base-$RUN.txt
		timeout 60 taskset -c 1 wrk -t1 -c64 -d3s --latency -s "$WORK/sync-local.lua" \
			"https://127.0.0.1:$PX_PORT$SYNC_Q" >"$out" 2>&1
		base=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
		out=$WORK/wrk-reload-hup-$RUN.txt
		local n0
		n0=$(grep -c 'reloaded' "$WORK/easfront-map.log")
		timeout 60 taskset -c 1 wrk -t1 -c64 -d3s --latency -s "$WORK/sync-local.lua" \
			"https://127.0.0.1:$PX_PORT$SYNC_Q" >"$out" 2>&1 &
		local wpid=$!
		PIDS+=("$wpid")
		sleep 0.5
		kill -HUP "$PX_PID"
		wait "$wpid"
		during=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
		# easfront builds the new map at the lowest CPU priority, so on a
		# saturated core it finishes once the load stops: wait for it
		# (bounded) rather than expect it inside the window.
		local waited=0
		while [ "$(grep -c 'reloaded' "$WORK/easfront-map.log")" -le "$n0" ] &&
		      [ "$waited" -lt 30 ]; do
			sleep 1
			waited=$((waited + 1))
		done
		if [ "$(grep -c 'reloaded' "$WORK/easfront-map.log")" -le "$n0" ]; then
			fail "easfront did not log a reload within 30 s of the window"
			tail -3 "$WORK/easfront-map.log" >&2
		fi
		if ! awk '/Non-2xx or 3xx/ { bad = 1 } END { exit bad }' "$out"; then
			fail "easfront answered non-2xx during the reload"
		fi
		record map.p99base easfront "$base"
		record map.p99hup easfront "$during"
		record map.p99delta easfront "$(awk -v a="$base" -v b="$during" 'BEGIN { printf "%.2f", b - a }')"
		log "reload run $RUN: p99 $base ms without, $during ms with a SIGHUP reload"
	done
	stop_proxy
}

# ---------------------------------------------------------------- report

# median [min–max] of metric $1 for $2; "—" when not measured.
cell() {
	awk -F'\t' -v m="$1" -v w="$2" -v d="${3:-1}" '
		$2 == m && $3 == w && $4 != "" { v[n++] = $4 + 0 }
		END {
			if (n == 0) { printf "—"; exit }
			for (i = 0; i < n; i++) for (j = i + 1; j < n; j++)
				if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
			med = (n % 2) ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2
			f = "%." d "f"
			printf f, med
			if (n > 1) printf " (" f "–" f ")", v[0], v[n - 1]
		}' "$DATA"
}

med() { # median only, for ratios
	awk -F'\t' -v m="$1" -v w="$2" '
		$2 == m && $3 == w && $4 != "" { v[n++] = $4 + 0 }
		END {
			if (n == 0) { print ""; exit }
			for (i = 0; i < n; i++) for (j = i + 1; j < n; j++)
				if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
			print (n % 2) ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2
		}' "$DATA"
}

# ratio row: target text, easfront value, reference value, limit, op (le|ge)
target_row() {
	local name=$1 ef=$2 ref=$3 limit=$4 op=$5 detail=$6
	if [ -z "$ef" ] || [ -z "$ref" ]; then
		printf '| %s | %s | — | not measured |\n' "$name" "$detail"
		return
	fi
	awk -v n="$name" -v a="$ef" -v b="$ref" -v l="$limit" -v op="$op" -v d="$detail" 'BEGIN {
		r = (b == 0) ? 0 : a / b
		ok = (op == "le") ? (r <= l) : (r >= l)
		printf "| %s | %s | %.2f× | %s |\n", n, d, r, ok ? "**met**" : "**missed**" }'
}

best_of() { # metric, lower|higher
	local n h
	n=$(med "$1" nginx) h=$(med "$1" haproxy)
	awk -v n="$n" -v h="$h" -v dir="$2" 'BEGIN {
		if (n == "" && h == "") exit
		if (n == "") { print h; exit } if (h == "") { print n; exit }
		if (dir == "lower") print (n + 0 < h + 0) ? n : h; else print (n + 0 > h + 0) ? n : h }'
}

best_name() {
	local n h
	n=$(med "$1" nginx) h=$(med "$1" haproxy)
	awk -v n="$n" -v h="$h" -v dir="$2" 'BEGIN {
		if (n == "") { print "HAProxy"; exit } if (h == "") { print "nginx"; exit }
		if (dir == "lower") print (n + 0 <= h + 0) ? "nginx" : "HAProxy"
		else print (n + 0 >= h + 0) ? "nginx" : "HAProxy" }'
}

NAMES=(direct easfront nginx haproxy)
EF_NAMES=(easfront)
if [ -n "${BENCH_BASELINE:-}" ]; then
	NAMES=(direct easfront easfront-base nginx haproxy)
	EF_NAMES=(easfront easfront-base)
fi
label() {
	case $1 in
	direct) echo "direct TLS backend (limit)" ;;
	easfront) echo "easfront" ;;
	easfront-base) echo "easfront baseline ($EF_BASE_VERSION)" ;;
	nginx) echo "nginx" ;;
	haproxy) echo "HAProxy" ;;
	esac
}

# One proxy against another, medians of the same interleaved runs: title,
# the two names and their column heads, then the measures (with CONNS for
# each connection count).
ratio_rows() { # title who-a head-a who-b head-b measure...
	local title=$1 wa=$2 ha=$3 wb=$4 hb=$5 c m a b
	shift 5
	echo "## $title"
	echo
	echo "| measure | $ha | $hb | ratio |"
	echo "|---|---|---|---|"
	for c in $CONNS_LIST; do
		for m in "$@"; do
			m=${m//CONNS/$c}
			a=$(med "$m" "$wa") b=$(med "$m" "$wb")
			awk -v m="$m" -v a="$a" -v b="$b" 'BEGIN {
				if (a == "" || b == "" || b == 0) exit
				printf "| %s | %s | %s | %.3f |\n", m, a, b, a / b }'
		done
	done
	echo
}

# This build against BENCH_BASELINE.
baseline_rows() {
	ratio_rows "This build against the baseline ($EF_BASE_VERSION)" \
		easfront "this build" easfront-base baseline \
		ka.CONNS.cpu r451.CONNS.cpu ka.CONNS.rps r451.CONNS.rps
}

# The guard on (password shield, 100 device rules, the throttle shared
# through a local Redis) against guard absent, the same binary (issues 14
# and 15: CPU per request within 5 %, keep-alive and 451).
guard_rows() {
	ratio_rows "The guard on (shield, 100 device rules, throttle, shared store) against guard absent (same binary)" \
		easfront-guard "guard on" easfront "guard absent" \
		ka.CONNS.cpu r451.CONNS.cpu ka.CONNS.rps r451.CONNS.rps
}

report() {
	local out=$1 c w ef ref v cpu_model
	cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	{
		echo "# easfront side by side with nginx and HAProxy"
		echo
		echo "Made by \`tests/bench/run.sh$([ "$MODE" = smoke ] && echo " --smoke")\` on $(date -u '+%Y-%m-%d %H:%M UTC');"
		echo "each cell is the median of $RUNS run(s), with min–max beside it."
		echo
		echo "- load average (1, 5, 15 min) at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg) (the run itself keeps about one core busy)"
		echo "- machine: $(nproc) CPUs ($cpu_model), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
		echo "- easfront $EF_VERSION (${EF_BIN#"$REPO"/})"
		echo "- $("$NGINX" -v 2>&1 | sed 's/nginx version: //'), $("$HAPROXY" -v 2>/dev/null | head -1 | awk '{ print "HAProxy " $3 }'), $(openssl version | awk '{ print "OpenSSL " $2 }'), wrk $(wrk -v 2>&1 | head -1 | awk '{ print $2 }')"
		echo "- each proxy: 1 worker (easfront \`workers: 1\`, nginx \`worker_processes 1\`, HAProxy \`nbthread 1\`) pinned with taskset to core 0;"
		echo "  wrk, the TLS clients and the stand-in CAS (\`backend.c\`, epoll, HTTP/1.1 keep-alive) pinned to core 1"
		echo "- TLS 1.3, one ECDSA P-256 multi-SAN certificate for all; HTTP/1.1 keep-alive to the same CAS (nginx: \`proxy_http_version 1.1\`,"
		echo "  \`proxy_set_header Connection \"\"\`, \`keepalive 512\`, streaming both ways; HAProxy: \`http-reuse always\`); access logs off"
		echo "- load: \`POST $SYNC_Q\` with a ~100-byte WBXML-ish body, \`MS-ASProtocolVersion: 14.1\`, Basic auth; wrk -t1, ${SECS} s per cell"
		echo "- CPU per request or handshake: utime+stime of every process of the proxy (/proc/PID/stat) over the run, divided by the count"
		echo "- the direct TLS backend is the stand-in CAS itself serving TLS on core 0: what a proxy cannot beat"
		echo
		for c in $CONNS_LIST; do
			echo "## Keep-alive EAS Sync over TLS, $c connections"
			echo
			echo "| | req/s | p50 ms | p99 ms | proxy CPU µs/req |"
			echo "|---|---|---|---|---|"
			for w in "${NAMES[@]}"; do
				echo "| $(label $w) | $(cell ka.$c.rps $w 0) | $(cell ka.$c.p50 $w 2) | $(cell ka.$c.p99 $w 2) | $(cell ka.$c.cpu $w 1) |"
			done
			echo
		done
		for c in $CONNS_LIST; do
			echo "## 451 redirects (user of site2 at EAS 14.1), $c connections"
			echo
			echo "easfront decides from its site map; nginx and HAProxy get a static rule on the same Authorization header."
			echo
			echo "| | req/s | % of direct TLS backend | p50 ms | p99 ms | proxy CPU µs/req |"
			echo "|---|---|---|---|---|---|"
			ref=$(med ka.$c.rps direct)
			for w in "${EF_NAMES[@]}" nginx haproxy; do
				v=$(med r451.$c.rps $w)
				echo "| $(label $w) | $(cell r451.$c.rps $w 0) | $(awk -v a="$v" -v b="$ref" 'BEGIN { if (a == "" || b == "" || b == 0) printf "—"; else printf "%.0f %%", 100 * a / b }') | $(cell r451.$c.p50 $w 2) | $(cell r451.$c.p99 $w 2) | $(cell r451.$c.cpu $w 1) |"
			done
			echo
		done
		echo "## TLS handshakes (TLS 1.3, X25519, ECDSA P-256; 16 at a time, ${HS_SECS} s each)"
		echo
		echo "Each client connection waits for the first session ticket, sends close_notify and closes; resumed ones present the newest ticket."
		echo
		echo "| | full /s | proxy CPU µs per full | resumed /s | resumed % | proxy CPU µs per resumed |"
		echo "|---|---|---|---|---|---|"
		for w in "${NAMES[@]}"; do
			echo "| $(label $w) | $(cell hs.full.rate $w 0) | $(cell hs.full.cpu $w 0) | $(cell hs.resumed.rate $w 0) | $(cell hs.resumed.resumed $w 0) | $(cell hs.resumed.cpu $w 0) |"
		done
		echo
		echo "## Held long-polls: $HELD TLS connections each holding a Ping"
		echo
		echo "The CAS answers only once all $HELD are held$HELD_NOTE; RSS per connection = (RSS with all held − RSS idle) / $HELD."
		echo
		echo "| | RSS idle MiB | RSS with $HELD held MiB | KiB per held connection |"
		echo "|---|---|---|---|"
		for w in "${EF_NAMES[@]}" nginx haproxy; do
			echo "| $(label $w) | $(cell held.idle $w 1) | $(cell held.rss $w 1) | $(cell held.kib $w 1) |"
		done
		echo
		echo "## Big bodies: $BIG_CLIENTS clients each upload then download $BIG_MIB MiB"
		echo
		echo "| | RSS idle MiB | peak RSS (VmHWM) MiB | peak growth per client KiB | seconds for all | proxy CPU µs per MiB carried |"
		echo "|---|---|---|---|---|---|"
		for w in "${EF_NAMES[@]}" nginx haproxy; do
			echo "| $(label $w) | $(cell big.idle $w 1) | $(cell big.hwm $w 1) | $(cell big.kib $w 0) | $(cell big.secs $w 1) | $(cell big.cpu $w 0) |"
		done
		echo
		echo "## Site map of $MAP_USERS users (easfront only: nginx and HAProxy have no equivalent)"
		echo
		echo "| | value |"
		echo "|---|---|"
		echo "| \`easfront check -c\` (config, certificate, map), s | $(cell map.check easfront 3) |"
		echo "| map load alone (sitemap_load), s | $(cell map.load easfront 3) |"
		echo "| \`easfront run\` start-up to accepting, s | $(cell map.ready easfront 3) |"
		echo "| memory: RSS with the map − RSS with a 2-user map, MiB | $(cell map.rss easfront 1) |"
		echo "| memory: sitemap_load alone, KiB | $(cell map.kib easfront 0) |"
		echo "| lookup (normalise + sitemap_lookup), ns | $(cell map.lookup easfront 0) |"
		echo "| p99 at 64 connections without reload, ms | $(cell map.p99base easfront 2) |"
		echo "| p99 at 64 connections, 3 s window with a SIGHUP reload of the map, ms | $(cell map.p99hup easfront 2) |"
		echo "| p99 moved by the reload, ms | $(cell map.p99delta easfront 2) |"
		echo
		[ -n "${BENCH_BASELINE:-}" ] && baseline_rows
		[[ $PROXIES == *" easfront-guard "* ]] && guard_rows
		echo "## Targets (easfront against the best of nginx and HAProxy)"
		echo
		echo "| target | measured | ratio | result |"
		echo "|---|---|---|---|"
		for c in $CONNS_LIST; do
			ef=$(med ka.$c.cpu easfront) ref=$(best_of ka.$c.cpu lower)
			target_row "keep-alive CPU per request ≤ 0.75× ($c conns)" "$ef" "$ref" 0.75 le \
				"easfront $ef µs vs $(best_name ka.$c.cpu lower) $ref µs"
		done
		for c in $CONNS_LIST; do
			ef=$(med r451.$c.rps easfront) ref=$(med ka.$c.rps direct)
			target_row "451 req/s ≥ 80 % of direct TLS backend ($c conns)" "$ef" "$ref" 0.80 ge \
				"easfront $ef vs direct $ref req/s"
		done
		ef=$(med hs.full.cpu easfront) ref=$(best_of hs.full.cpu lower)
		target_row "full handshake CPU ≤ 0.9×" "$ef" "$ref" 0.9 le "easfront $ef µs vs $(best_name hs.full.cpu lower) $ref µs"
		ef=$(med hs.resumed.cpu easfront) ref=$(best_of hs.resumed.cpu lower)
		target_row "resumed handshake CPU ≤ 0.9×" "$ef" "$ref" 0.9 le "easfront $ef µs vs $(best_name hs.resumed.cpu lower) $ref µs"
		ef=$(med held.kib easfront) ref=$(med held.kib haproxy)
		target_row "held long-poll memory ≤ 0.5× HAProxy's" "$ef" "$ref" 0.5 le "easfront $ef KiB vs HAProxy $ref KiB per connection"
		ef=$(med big.kib easfront)
		if [ -n "$ef" ]; then
			awk -v k="$ef" -v b="$BIG_MIB" 'BEGIN {
				printf "| big-body peak RSS flat (growth per client < 1 MiB, body %d MiB) | %.0f KiB per client | %.3f of a body | %s |\n",
					b, k, k / (b * 1024), (k < 1024) ? "**met**" : "**missed**" }'
		fi
		v=$(med map.load easfront)
		[ -z "$v" ] && v=$(med map.check easfront)
		[ -n "$v" ] && awk -v s="$v" -v n="$MAP_USERS" 'BEGIN {
			printf "| %d-user map loads < 1 s | %.3f s | — | %s |\n", n, s, (s < 1) ? "**met**" : "**missed**" }'
		v=$(med map.lookup easfront)
		[ -n "$v" ] && awk -v s="$v" 'BEGIN {
			printf "| lookups < 1 µs | %.0f ns | — | %s |\n", s, (s < 1000) ? "**met**" : "**missed**" }'
		v=$(med map.p99delta easfront)
		[ -n "$v" ] && awk -v s="$v" 'BEGIN {
			printf "| reload moves p99 < 1 ms | %+.2f ms | — | %s |\n", s, (s < 1) ? "**met**" : "**missed**" }'
		echo
		if [ ${#FAILURES[@]} -gt 0 ]; then
			echo "## Failures"
			echo
			for v in "${FAILURES[@]}"; do echo "- $v"; done
			echo
		fi
	} >"$out"
}

# ---------------------------------------------------------------- profile

profile() {
	command -v perf >/dev/null 2>&1 || ensure_pkg perf linux-perf
	RUN=1
	start_backend
	start_proxy easfront || exit 1
	check_serving easfront "$PX_PORT" || exit 1
	timeout 30 taskset -c 1 wrk -t1 -c64 -d1s -s "$WORK/sync-local.lua" \
		"https://127.0.0.1:$PX_PORT$SYNC_Q" >/dev/null 2>&1
	perf record -e cpu-clock -F 2000 -g -p "$PX_PID" -o "$WORK/perf.data" -- sleep 10 >"$WORK/perf.log" 2>&1 &
	local ppid=$!
	PIDS+=("$ppid")
	timeout 60 taskset -c 1 wrk -t1 -c64 -d10s --latency -s "$WORK/sync-local.lua" \
		"https://127.0.0.1:$PX_PORT$SYNC_Q" >"$WORK/wrk-profile.txt"
	wait "$ppid"
	cat "$WORK/wrk-profile.txt"
	echo "== where the CPU goes, by object"
	perf report -i "$WORK/perf.data" --stdio --no-children --sort dso -g none 2>/dev/null |
		grep -v '^#' | grep -v '^$' | head -12
	echo "== top functions (self)"
	perf report -i "$WORK/perf.data" --stdio --no-children --sort dso,symbol --percent-limit 0.5 -g none 2>/dev/null |
		grep -v '^#' | grep -v '^$' | head -60
	echo "== top functions (with callees)"
	perf report -i "$WORK/perf.data" --stdio --children --sort symbol --percent-limit 3 -g none 2>/dev/null |
		grep -v '^#' | grep -v '^$' | head -60
	cp "$WORK/perf.data" "${BENCH_PERF_OUT:-/tmp/easfront-bench-perf.data}" 2>/dev/null &&
		log "perf data: ${BENCH_PERF_OUT:-/tmp/easfront-bench-perf.data} (perf report -i FILE)"
	stop_proxy
}

# ---------------------------------------------------------------- main

CLK_TCK=$(getconf CLK_TCK)
setup_tools
build
make_cert
pick_ports
write_configs
log "mode $MODE: $RUNS run(s), ${SECS}s per wrk cell, $HELD held, $BIG_CLIENTS x $BIG_MIB MiB, $MAP_USERS-user map; work in $WORK"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average: $LOAD_START"

if [ "$MODE" = profile ]; then
	profile
	exit 0
fi

start_backend
[[ " ${BENCH_PROXIES:-easfront-guard} " == *" easfront-guard "* ]] && start_redis
ORDER=(easfront easfront-guard nginx haproxy)
PROXIES=" ${BENCH_PROXIES:-direct easfront easfront-guard nginx haproxy} "
if [ -n "${BENCH_BASELINE:-}" ]; then
	ORDER=(easfront easfront-guard easfront-base nginx haproxy)
	PROXIES="$PROXIES easfront-base "
fi
for RUN in $(seq 1 "$RUNS"); do
	[[ $PROXIES == *" direct "* ]] && measure_proxy direct
	# A different proxy goes first in each run, so no one always gets the
	# warmest (or the coldest) machine.
	for i in "${!ORDER[@]}"; do
		who=${ORDER[$(((i + RUN - 1) % ${#ORDER[@]}))]}
		[[ $PROXIES == *" $who "* ]] && measure_proxy "$who"
	done
done
[ "${BENCH_MAP:-1}" != 0 ] && measure_map
stop_pid "$BACK_PID"

OUT=${RESULTS:-$WORK/results.md}
report "$OUT"
cat "$OUT"
[ -n "$RESULTS" ] && log "results written to $OUT"
if [ ${#FAILURES[@]} -gt 0 ]; then
	log "${#FAILURES[@]} failure(s):"
	for f in "${FAILURES[@]}"; do log "  $f"; done
	exit 1
fi
log "every proxy served"
exit 0
