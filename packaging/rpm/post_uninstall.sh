# The state dir /var/lib/etcd-hostfix (archived data dirs, snapshots) is never deleted.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
