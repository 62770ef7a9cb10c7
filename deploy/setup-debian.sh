#!/usr/bin/env bash
# Installs easfront on a Debian 12 host as a systemd service, the way an
# operator installs a daemon: build dependencies, the Debian package
# (deploy/debian/build-deb.sh), then apt-get installs it, which makes the
# easfront user and /etc/easfront. Run as root from a checkout. Edit
# /etc/easfront/easfront.yaml, then: systemctl enable --now easfront
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends build-essential cmake ninja-build \
  pkg-config libevent-dev libssl-dev libxml2-dev libldns-dev libcyaml-dev \
  libldap2-dev libcmocka-dev dpkg-dev file >/dev/null
deb=$(deploy/debian/build-deb.sh build-release | tail -1)
apt-get install -y -qq "$deb" >/dev/null
echo "installed $deb; edit /etc/easfront/easfront.yaml (man 5 easfront.yaml), run 'easfront check -c /etc/easfront/easfront.yaml', then 'systemctl enable --now easfront'"
