#!/usr/bin/env bash
# Fails when a part of src/ includes a part on its own floor or above (see
# DESIGN.md "Parts"), or when a pure part includes libevent or sockets.
set -u
cd "$(dirname "$0")/../src" || exit 1

# part: the parts it may include
declare -A allowed=(
  [core]="core"
  [http]="core http"
  [conf]="core conf"
  [eas]="core http eas"
  [dns]="core dns"
  [ldap]="core ldap"
  [store]="core conf store"
  [site]="core conf site"
  [tls]="core conf tls"
  [guard]="core http conf eas guard"
  [net]="core net"
  [upstream]="core http conf dns site tls net upstream"
  [proxy]="core http conf eas dns ldap store site tls guard net upstream proxy"
  [admin]="core http conf eas dns ldap store site tls guard net upstream proxy admin"
  [daemon]="core http conf eas dns ldap store site tls guard net upstream proxy admin daemon"
)
pure="core http conf eas site guard"
bad=0
for part in "${!allowed[@]}"; do
  [ -d "$part" ] || continue
  while IFS= read -r line; do
    file=${line%%:*}
    inc=$(sed -E 's/.*#include[[:space:]]*"([a-z]+)\/.*/\1/' <<<"${line#*:}")
    if [[ " ${allowed[$part]} " != *" $inc "* ]]; then
      echo "layering: $file includes $inc/ (a $part file may include: ${allowed[$part]})"
      bad=1
    fi
  done < <(grep -H '#include "[a-z]*/' "$part"/*.[ch] 2>/dev/null)
  if [[ " $pure " == *" $part "* ]]; then
    if grep -l -E '#include <(event2/|pthread\.h)' "$part"/*.[ch] 2>/dev/null; then
      echo "layering: the files above are in the pure part $part but use libevent or threads"
      bad=1
    fi
  fi
done
[ "$bad" -eq 0 ] && echo "layering: every include respects the floors"
exit "$bad"
