#!/usr/bin/env bash
# Build and install etcd-hostfix and its systemd units on a master.
#   packaging/install.sh [PREFIX]      (default /usr/local)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${1:-/usr/local}
command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin etcd-hostfix
install -D -m 0755 "$ROOT/target/release/etcd-hostfix" "$PREFIX/bin/etcd-hostfix"
install -D -m 0644 "$ROOT/systemd/etcd-hostfix.service" /etc/systemd/system/etcd-hostfix.service
# The example spells out every default; an existing config is never overwritten.
[ -e /etc/etcd-hostfix/config.yaml ] || install -D -m 0644 "$ROOT/packaging/config.yaml" /etc/etcd-hostfix/config.yaml
echo "installed; start with: systemctl enable --now etcd-hostfix (try 'mode: observe' in /etc/etcd-hostfix/config.yaml first)"
