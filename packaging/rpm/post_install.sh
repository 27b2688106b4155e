# Enable etcd-hostfix.service at first install; it starts only when the operator says so.
# Offline (`systemctl --root=/`), so it works, and never fails, without a running systemd.
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
    systemctl --root=/ enable etcd-hostfix.service >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
