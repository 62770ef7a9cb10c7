#!/usr/bin/env bash
# Writes a key and a certificate request (CSR) that covers every host name
# an easfront config serves: each site's external_url host, autodiscover.
# <domain> of each, and any names given as extra arguments (the round-robin
# name phones are set up with). Send the CSR to your CA; put the issued
# chain (leaf first, then intermediates) where tls.certificates points.
#
#   deploy/cert-request.sh /etc/easfront/easfront.yaml eas.contoso.com
#
# Writes easfront.key (ECDSA P-256) and easfront.csr in the current folder.
set -euo pipefail
conf=${1:?usage: $0 CONFIG [EXTRA-NAME...]}
shift
names=("$@")
# external_url: https://HOST[:port]/... -> HOST
while read -r host; do
  names+=("$host")
  domain=${host#*.}
  [[ "$domain" == *.* ]] && names+=("autodiscover.$domain")
done < <(sed -n 's/^[[:space:]]*external_url:[[:space:]]*"\{0,1\}https:\/\/\([^/:"]*\).*/\1/p' "$conf")
if [ ${#names[@]} -eq 0 ]; then
  echo "no external_url in $conf and no names given" >&2
  exit 1
fi
mapfile -t names < <(printf '%s\n' "${names[@]}" | tr 'A-Z' 'a-z' | sort -u)
san=$(printf 'DNS:%s,' "${names[@]}")
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout easfront.key -out easfront.csr -subj "/CN=${names[0]}" \
  -addext "subjectAltName=${san%,}"
chmod 600 easfront.key
echo "easfront.csr covers: ${names[*]}"
