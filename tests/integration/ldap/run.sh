#!/bin/bash
# Runs the ldap/ client against a real OpenLDAP slapd on 127.0.0.1.
#
#   run.sh DRIVER          install slapd if missing, build a directory of
#                          3,000 users in a temp dir, serve it on ports picked
#                          now, run DRIVER against it, kill slapd
#   run.sh ctl DIR CMD     called by DRIVER:
#       modify USER DB     set USER's homeMDB to CN=DB,... (ldapmodify)
#       stop | start       stop slapd (and wait until it is gone) | start it
#                          again on the same ports (and wait until it answers)
#       pause | resume     SIGSTOP | SIGCONT slapd
#       searches USER      print how many searches slapd logged for USER
#
# EF_LDAP_KEEP=1 keeps the temp dir (slapd.conf, slapd.log) for a post-mortem.
# slapd runs from its own slapd.conf (mdb backend, a test schema with a
# homeMDB attribute and an auxiliary class), never from Debian's set-up: the
# package is installed with slapd/no_configuration preseeded. Never skips.
set -euo pipefail

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
SUFFIX="dc=contoso,dc=test"
ADMIN="cn=admin,$SUFFIX"
EXCH="CN=Databases,CN=Exchange Administrative Group (FYDIBOHF23SPDLT),CN=Administrative Groups,CN=Contoso,CN=Microsoft Exchange,CN=Services,CN=Configuration,$SUFFIX"
USERS=3000

# True once pid has exited (a zombie counts: its parent reaps it later).
gone() {
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
	[ -z "$st" ] || [ "$st" = Z ]
}

slapd_start() {
	local ldapi=${dir//\//%2F}%2Fldapi
	slapd -f "$dir/slapd.conf" -d 256 \
		-h "ldap://127.0.0.1:$port/ ldaps://127.0.0.1:$sport/ ldapi://$ldapi" \
		</dev/null >>"$dir/slapd.log" 2>&1 &
	echo $! > "$dir/slapd.mypid"
	for _ in $(seq 1 200); do
		gone "$(cat "$dir/slapd.mypid")" && return 1
		if timeout 5 ldapwhoami -x -H "ldap://127.0.0.1:$port" \
			>/dev/null 2>&1; then
			return 0
		fi
		sleep 0.025
	done
	return 1
}

slapd_stop() {
	local pid
	pid=$(cat "$dir/slapd.mypid" 2>/dev/null) || return 0
	[ -n "$pid" ] || return 0
	kill -CONT "$pid" 2>/dev/null || true
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 200); do
		gone "$pid" && break
		sleep 0.025
	done
	kill -9 "$pid" 2>/dev/null || true
	: > "$dir/slapd.mypid"
}

if [ "${1:-}" = ctl ]; then
	dir=$2
	# shellcheck source=/dev/null
	. "$dir/ports"
	case $3 in
	modify)
		timeout 20 ldapmodify -x -H "ldap://127.0.0.1:$port" -D "$ADMIN" \
			-w secret >/dev/null <<LDIF
dn: uid=$4,ou=people,$SUFFIX
changetype: modify
replace: homeMDB
homeMDB: CN=$5,$EXCH
LDIF
		exit 0 ;;
	stop)
		slapd_stop
		exit 0 ;;
	start)
		slapd_start
		exit $? ;;
	pause)
		pid=$(cat "$dir/slapd.mypid")
		kill -STOP "$pid"
		# kill returns before every thread has stopped.
		for _ in $(seq 1 200); do
			[ "$(awk '{print $3}' "/proc/$pid/stat")" = T ] && exit 0
			sleep 0.01
		done
		echo "run.sh: slapd $pid did not stop" >&2
		exit 1 ;;
	resume)
		kill -CONT "$(cat "$dir/slapd.mypid")"
		exit 0 ;;
	searches)
		# conn=N op=M SRCH base="..." scope=2 deref=0 filter="(...USER...)"
		grep " SRCH base=" "$dir/slapd.log" | grep -cF "=$4" || true
		exit 0 ;;
	esac
	echo "run.sh: unknown ctl command $3" >&2
	exit 2
fi

driver=${1:?usage: run.sh DRIVER}

if ! command -v slapd >/dev/null || ! command -v ldapmodify >/dev/null ||
	! command -v openssl >/dev/null; then
	echo "run.sh: installing slapd and ldap-utils from Debian's packages"
	export DEBIAN_FRONTEND=noninteractive
	# Only the binaries: Debian's own database and service stay out.
	echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
	apt_get() {
		timeout 600 apt-get -o DPkg::Lock::Timeout=300 "$@"
	}
	if ! apt_get install -y --no-install-recommends slapd ldap-utils openssl; then
		apt_get update
		apt_get install -y --no-install-recommends slapd ldap-utils openssl
	fi
fi

dir=$(mktemp -d /tmp/ef-ldap.XXXXXX)
cleanup() {
	local rc=$?
	slapd_stop
	if [ $rc -ne 0 ] && [ -f "$dir/slapd.log" ]; then
		echo "--- slapd.log (last lines)" >&2
		grep -v " SRCH \| SEARCH RESULT\| ACCEPT\| closed\| BIND\| UNBIND\| EXT \| RESULT " \
			"$dir/slapd.log" | tail -n 20 >&2 || true
	fi
	if [ -n "${EF_LDAP_KEEP:-}" ]; then
		echo "run.sh: kept $dir" >&2
	else
		rm -rf "$dir"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM
t0=$(date +%s%N)

# A CA and a certificate for 127.0.0.1, made now.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$dir/ca.key" -out "$dir/ca.pem" -days 2 \
	-subj "/CN=easfront test CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$dir/server.key" -out "$dir/server.csr" \
	-subj "/CN=127.0.0.1" 2>/dev/null
printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
	"basicConstraints=CA:FALSE" "extendedKeyUsage=serverAuth" > "$dir/ext.cnf"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" \
	-CAkey "$dir/ca.key" -CAcreateserial -out "$dir/server.pem" -days 2 \
	-extfile "$dir/ext.cnf" 2>/dev/null
printf 'svc-secret\n' > "$dir/svc.pw"
printf 'wrong-secret\n' > "$dir/bad.pw"

# The schema: a home database DN, the three attributes that tell a mailbox
# moved to Exchange Online, and an auxiliary class that carries them, under
# the documentation OID arc of RFC 5612.
cat > "$dir/easfront.schema" <<'SCHEMA'
attributetype ( 1.3.6.1.4.1.32473.1.1.1 NAME 'userPrincipalName'
	EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.32473.1.1.2 NAME 'homeMDB'
	EQUALITY distinguishedNameMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.32473.1.1.3 NAME 'msExchRecipientTypeDetails'
	EQUALITY integerMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.32473.1.1.4 NAME 'msExchRemoteRecipientType'
	EQUALITY integerMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.32473.1.1.5 NAME 'targetAddress'
	EQUALITY caseIgnoreMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.32473.1.2.1 NAME 'efMailboxUser' AUXILIARY
	MAY ( userPrincipalName $ homeMDB $ msExchRecipientTypeDetails $
	      msExchRemoteRecipientType $ targetAddress ) )
SCHEMA

cat > "$dir/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include $dir/easfront.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $dir/slapd.pid
argsfile $dir/slapd.args
TLSCACertificateFile $dir/ca.pem
TLSCertificateFile $dir/server.pem
TLSCertificateKeyFile $dir/server.key
database mdb
maxsize 268435456
suffix "$SUFFIX"
rootdn "$ADMIN"
rootpw secret
directory $dir/db
index objectClass eq
index uid,mail,userPrincipalName eq
access to attrs=userPassword by anonymous auth by * none
access to * by dn.exact="cn=svc,$SUFFIX" read
	by dn.exact="gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth" read
	by * none
CONF

# The directory: USERS users on DB01..DB05 (user i on DB0(i%5+1)), and a few
# with something special.
{
	cat <<LDIF
dn: $SUFFIX
objectClass: dcObject
objectClass: organization
o: Contoso
dc: contoso

dn: cn=svc,$SUFFIX
objectClass: person
cn: svc
sn: svc
userPassword: svc-secret

dn: ou=people,$SUFFIX
objectClass: organizationalUnit
ou: people

dn: uid=nomailbox,ou=people,$SUFFIX
objectClass: inetOrgPerson
objectClass: efMailboxUser
uid: nomailbox
cn: No Mailbox
sn: Mailbox
userPrincipalName: nomailbox@contoso.test

dn: uid=alias,ou=people,$SUFFIX
objectClass: inetOrgPerson
objectClass: efMailboxUser
uid: alias
cn: Alias
sn: Alias
mail: a.lias@contoso.test
userPrincipalName: alias@contoso.test
homeMDB: CN=DB03,$EXCH

dn: uid=star,ou=people,$SUFFIX
objectClass: inetOrgPerson
objectClass: efMailboxUser
uid: star
cn: Star
sn: Star
userPrincipalName: st*r@contoso.test
homeMDB: CN=DB04,$EXCH

LDIF
	# Mailboxes moved to Exchange Online (test_cloud.py), and their
	# look-alikes that stay on premises.
	cloud_user() { # uid, then "attribute: value" lines
		local uid=$1
		shift
		printf 'dn: uid=%s,ou=people,%s\n' "$uid" "$SUFFIX"
		printf 'objectClass: inetOrgPerson\nobjectClass: efMailboxUser\n'
		printf 'uid: %s\ncn: %s\nsn: %s\n' "$uid" "$uid" "$uid"
		printf 'userPrincipalName: %s@contoso.test\n' "$uid"
		printf '%s\n' "$@"
		printf '\n'
	}
	cloud_user moved "msExchRecipientTypeDetails: 2147483648" \
		"msExchRemoteRecipientType: 4" \
		"targetAddress: SMTP:moved@contoso.mail.onmicrosoft.com"
	cloud_user tenant "targetAddress: smtp:tenant@Contoso.mail.onmicrosoft.com"
	cloud_user sharedmoved "msExchRecipientTypeDetails: 34359738368" \
		"msExchRemoteRecipientType: 100"
	cloud_user onprem "homeMDB: CN=DB01,$EXCH" \
		"msExchRecipientTypeDetails: 2147483648" \
		"targetAddress: SMTP:onprem@contoso.mail.onmicrosoft.com"
	cloud_user elsewhere "targetAddress: SMTP:elsewhere@fabrikam.test"
	awk -v n="$USERS" -v suffix="$SUFFIX" -v exch="$EXCH" 'BEGIN {
		for (i = 1; i <= n; i++) {
			u = sprintf("user%04d", i)
			db = sprintf("CN=DB%02d", i % 5 + 1)
			if (i == 7) db = "CN=DB\\2C07"
			if (i == 8) db = "cn=db08"
			printf "dn: uid=%s,ou=people,%s\n", u, suffix
			printf "objectClass: inetOrgPerson\nobjectClass: efMailboxUser\n"
			printf "uid: %s\ncn: User %04d\nsn: %04d\n", u, i, i
			printf "mail: %s@contoso.test\n", u
			printf "userPrincipalName: %s@contoso.test\n", u
			printf "homeMDB: %s,%s\n\n", db, exch
		}
	}'
} > "$dir/users.ldif"
mkdir -p "$dir/db"
slapadd -q -f "$dir/slapd.conf" -l "$dir/users.ldif"
t1=$(date +%s%N)

# Two ports free right now; picked again if slapd loses the race for them.
started=
for attempt in 1 2 3 4 5; do
	port=$("$driver" --free-port)
	sport=$("$driver" --free-port)
	[ "$port" != "$sport" ] || continue
	printf 'port=%s\nsport=%s\n' "$port" "$sport" > "$dir/ports"
	if slapd_start; then
		started=1
		break
	fi
	slapd_stop
done
if [ -z "$started" ]; then
	echo "run.sh: slapd did not start" >&2
	exit 1
fi
t2=$(date +%s%N)
echo "run.sh: $(slapd -VV 2>&1 | head -1 | sed 's/.*slapd/slapd/;s/ (.*//')" \
	"serving $USERS users on 127.0.0.1:$port (StartTLS) and :$sport (ldaps)," \
	"directory built in $(( (t1 - t0) / 1000000 )) ms," \
	"ready in $(( (t2 - t1) / 1000000 )) ms"

EF_LDAP_DIR="$dir" EF_LDAP_PORT="$port" EF_LDAPS_PORT="$sport" \
	EF_LDAP_CTL="bash $(printf %q "$0") ctl $(printf %q "$dir")" \
	"$driver"
