#!/bin/bash
# Fails when the static library $1 defines a symbol that libldap or liblber
# also exports: ef_ldap keeps libldap's `ldap_` prefix, and a clash would
# silently replace the library's function with ours.
set -euo pipefail
lib=${1:?usage: symbols.sh LIBRARY}
libdir=$(pkg-config --variable=libdir ldap)
ours=$(nm -g --defined-only "$lib" | awk 'NF == 3 {print $3}' | sort -u)
theirs=$(for l in "$libdir/libldap.so" "$libdir/liblber.so"; do
	nm -D --defined-only "$(readlink -f "$l")"
done | awk '{sub(/@.*/, "", $3); print $3}' | sort -u)
clash=$(comm -12 <(echo "$ours") <(echo "$theirs"))
if [ -n "$clash" ]; then
	echo "symbols: $lib clashes with libldap: $clash"
	exit 1
fi
echo "symbols: $(echo "$ours" | wc -l) symbols of $(basename "$lib"), none of libldap's"
