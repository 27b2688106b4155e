#!/usr/bin/env bash
# Build and install etcd-hostfix and its systemd units on a master.
#   packaging/install.sh [PREFIX]      (default /usr/local)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${1:-/usr/local}
command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin etcd-hostfix
install -D -m 0755 "$ROOT/target/release/etcd-hostfix" "$PREFIX/bin/etcd-hostfix"
install -D -m 0644 "$ROOT/systemd/etcd-hostfix-status.service" /etc/systemd/system/etcd-hostfix-status.service
install -D -m 0644 "$ROOT/systemd/etcd-hostfix-status.timer" /etc/systemd/system/etcd-hostfix-status.timer
echo "installed; enable with: systemctl enable --now etcd-hostfix-status.timer"
