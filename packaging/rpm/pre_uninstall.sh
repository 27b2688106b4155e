# Final removal (not an upgrade): stop the daemon if systemd runs it, and disable it.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl stop etcd-hostfix.service >/dev/null 2>&1 || :
    fi
    systemctl --root=/ disable etcd-hostfix.service >/dev/null 2>&1 || :
fi
exit 0
