#!/usr/bin/env bash
# Install etcd-hostfix on a master from a package built by `scripts/dev package`
# (target/package/): apt for a .deb, dnf (or rpm) for an .rpm. No compiler is needed on
# the master. The package enables etcd-hostfix.service; it starts when you say so:
#   systemctl start etcd-hostfix     (try `mode: observe` in /etc/etcd-hostfix/config.yaml first)
#   packaging/install.sh PACKAGE_FILE
set -euo pipefail
pkg=${1:?usage: packaging/install.sh etcd-hostfix_*.deb | etcd-hostfix-*.rpm}
case "$pkg" in
  *.deb) apt-get install -y "$(realpath "$pkg")" ;;
  *.rpm) if command -v dnf >/dev/null; then dnf install -y "$(realpath "$pkg")"; else rpm -Uvh "$pkg"; fi ;;
  *) echo "not a .deb or .rpm: $pkg" >&2; exit 2 ;;
esac
echo "installed and enabled; start it with: systemctl start etcd-hostfix"
