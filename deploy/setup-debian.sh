#!/usr/bin/env bash
# Installs easfront on a Debian 12 host as a systemd service: build
# dependencies, the build, `cmake --install`, a system user, the config
# directory. Run as root from a checkout. Edit /etc/easfront/easfront.yaml,
# then: systemctl enable --now easfront
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends build-essential cmake ninja-build \
  pkg-config libevent-dev libssl-dev libxml2-dev libldns-dev libcyaml-dev \
  libldap2-dev libcmocka-dev >/dev/null
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr
cmake --build build-release --target easfront
cmake --install build-release
id easfront >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin easfront
install -d -m 0750 -o root -g easfront /etc/easfront /etc/easfront/tls
[ -e /etc/easfront/easfront.yaml ] || install -m 0640 -o root -g easfront conf/easfront.yaml /etc/easfront/easfront.yaml
[ -e /etc/easfront/sitemap.tsv ] || install -m 0640 -o root -g easfront conf/sitemap.tsv /etc/easfront/sitemap.tsv
install -d -m 0750 -o easfront -g adm /var/log/easfront
systemctl daemon-reload
echo "installed; edit /etc/easfront/easfront.yaml, run 'easfront check -c /etc/easfront/easfront.yaml', then 'systemctl enable --now easfront'"
