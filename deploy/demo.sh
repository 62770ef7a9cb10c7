#!/usr/bin/env bash
# The demo, on a fresh Debian 12 machine as root: installs what it needs,
# builds easfront, makes a demo CA and one multi-SAN certificate, starts two
# stand-in CAS sites and easfront on loopback, and prints curl lines that go
# through it. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
port=${EASFRONT_DEMO_PORT:-8443}

packages=(build-essential cmake ninja-build pkg-config libevent-dev libssl-dev
          libxml2-dev libldns-dev libcyaml-dev libldap2-dev libcmocka-dev
          openssl curl python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
cmake -S "$top" -B "$top/build" -G Ninja >/dev/null
cmake --build "$top/build" --target easfront >/dev/null

work=$(mktemp -d /tmp/easfront-demo.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# A demo CA and one ECDSA certificate for every name a phone may use.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=easfront demo CA" -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=eas.contoso.test" -keyout "$work/eas.key" -out "$work/eas.csr" 2>/dev/null
printf 'subjectAltName=DNS:eas.contoso.test,DNS:site1-eas.contoso.test,DNS:site2-eas.contoso.test,DNS:autodiscover.contoso.test\n' >"$work/san.ext"
openssl x509 -req -in "$work/eas.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -days 30 -extfile "$work/san.ext" -out "$work/eas.pem" 2>/dev/null

/usr/bin/python3 tests/integration/standin_cas.py --port 18081 >"$work/cas-site1.log" 2>&1 &
pids+=($!)
/usr/bin/python3 tests/integration/standin_cas.py --port 18082 >"$work/cas-site2.log" 2>&1 &
pids+=($!)

cat >"$work/sitemap.tsv" <<MAP
# what	key	value
database	DB01	site1
database	DB03	site2
user	alice@contoso.test	DB03
user	bob@contoso.test	DB01
MAP
cat >"$work/easfront.yaml" <<CONF
site: site1
listen:
  - address: "127.0.0.1:$port"
tls:
  certificates:
    - cert: $work/eas.pem
      key: $work/eas.key
sites:
  - name: site1
    external_url: https://site1-eas.contoso.test:$port/Microsoft-Server-ActiveSync
    cas: [ "http://127.0.0.1:18081" ]
  - name: site2
    external_url: https://site2-eas.contoso.test:$port/Microsoft-Server-ActiveSync
    cas: [ "http://127.0.0.1:18082" ]
sitemap:
  file: $work/sitemap.tsv
pid_file: $work/easfront.pid
log:
  access: $work/access.log
CONF
"$top/build/src/easfront" check -c "$work/easfront.yaml"
"$top/build/src/easfront" run -c "$work/easfront.yaml" 2>"$work/easfront.log" &
pids+=($!)
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  sleep 0.1
done

c="curl -i --cacert $work/ca.pem --resolve eas.contoso.test:$port:127.0.0.1"
u="https://eas.contoso.test:$port/Microsoft-Server-ActiveSync"
cat <<MSG

easfront is serving on 127.0.0.1:$port (files in $work). Try:

  # bob's mailbox is in this site (site1): proxied to its CAS
  $c -u bob@contoso.test:secret -X OPTIONS -H 'MS-ASProtocolVersion: 14.1' $u

  # alice's mailbox is in site2: an EAS 14.1 client is sent there with a 451
  $c -u alice@contoso.test:secret -X OPTIONS -H 'MS-ASProtocolVersion: 14.1' $u

  # the same user with EAS 12.1 cannot follow a 451: proxied to site2's CAS
  $c -u alice@contoso.test:secret -X OPTIONS -H 'MS-ASProtocolVersion: 12.1' $u

  # why: $top/build/src/easfront route -c $work/easfront.yaml alice@contoso.test --version 14.1
  # access log: $work/access.log

Ctrl-C stops the demo.
MSG
wait
