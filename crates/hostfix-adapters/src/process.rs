//! Finding etcd processes on this host from `/proc`, for "is the member's process up?".
//! A static pod's etcd is not our child and the kubelet is not asked, so the member is
//! recognised by its own configuration: an `etcd` binary whose client URLs include ours.

use hostfix_core::EtcdFlags;

/// PIDs of etcd processes serving `client_url` (matched against `--advertise-client-urls`
/// and `--listen-client-urls`, from argv or `ETCD_*` in the environment).
pub fn etcd_pids(client_url: &str) -> Vec<u32> {
    pids_where(|dir, argv| {
        if argv.first().map(|a| a.rsplit('/').next() != Some("etcd")).unwrap_or(true) {
            return false;
        }
        let f = EtcdFlags::parse(argv, &etcd_env_of(dir));
        f.advertise_client_urls().iter().chain(f.list("listen-client-urls").iter()).any(|u| u == client_url)
    })
}

/// PIDs of kube-apiserver processes started with exactly `etcd_servers_arg` (the
/// `--etcd-servers=...` of the local kube-apiserver manifest): the local master's, told
/// apart from any other by the etcd it uses. A script interpreter running a file named
/// `kube-apiserver` counts too (argv[1]).
pub fn apiserver_pids(etcd_servers_arg: &str) -> Vec<u32> {
    pids_where(|_, argv| {
        let named = argv.iter().take(2).any(|a| a.rsplit('/').next() == Some("kube-apiserver"));
        named && argv.iter().any(|a| a == etcd_servers_arg)
    })
}

/// The PIDs in /proc whose argv (given with the process's /proc dir) passes `pred`.
/// Processes that exit mid-walk, or whose cmdline cannot be read, are skipped.
fn pids_where(pred: impl Fn(&std::path::Path, &[String]) -> bool) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return vec![] };
    rd.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let dir = e.path();
            pred(&dir, &argv_of(&dir)?).then_some(pid)
        })
        .collect()
}

fn argv_of(pid_dir: &std::path::Path) -> Option<Vec<String>> {
    let cmdline = std::fs::read(pid_dir.join("cmdline")).ok()?;
    Some(cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
}

/// The `ETCD_*` variables of a process's environment, which etcd reads as flags.
fn etcd_env_of(pid_dir: &std::path::Path) -> Vec<(String, String)> {
    std::fs::read(pid_dir.join("environ"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter_map(|kv| {
                    let kv = String::from_utf8_lossy(kv);
                    kv.split_once('=').filter(|(k, _)| k.starts_with("ETCD_")).map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_etcd_on_an_unused_url() {
        assert!(super::etcd_pids("https://127.254.254.254:1").is_empty());
    }
}
