//! etcd's configuration as it is written on a real master: command-line flags in either
//! `--flag=value` or `--flag value` form (Go's `flag` package also accepts a single dash),
//! plus `ETCD_*` environment variables, which etcd consults only for flags the command line
//! did not set.

use std::collections::BTreeMap;

use serde::Serialize;

/// Flags that Go's flag package treats as booleans. A boolean flag never consumes the next
/// argument, so `--client-cert-auth --data-dir x` must not read `--data-dir` as its value.
const BOOL_FLAGS: &[&str] = &[
    "auto-compaction-retention-bool-never-used",
    "auto-tls",
    "client-cert-auth",
    "debug",
    "enable-grpc-gateway",
    "enable-pprof",
    "enable-v2",
    "experimental-enable-lease-checkpoint",
    "experimental-enable-v2v3",
    "experimental-initial-corrupt-check",
    "experimental-memory-mlock",
    "experimental-txn-mode-write-with-shared-buffer",
    "force-new-cluster",
    "log-rotation-config-json-bool-never-used",
    "peer-auto-tls",
    "peer-client-cert-auth",
    "strict-reconfig-check",
    "version",
];

fn is_bool_flag(name: &str) -> bool {
    BOOL_FLAGS.contains(&name)
}

/// Where a flag's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlagSource {
    /// Index into the argv the flag was read from (the flag's own token).
    Arg(usize),
    Env(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub name: String,
    /// `None` for a bare boolean flag (`--force-new-cluster`).
    pub value: Option<String>,
    pub source: FlagSource,
}

/// The effective etcd configuration of one member, as etcd itself would resolve it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EtcdFlags {
    flags: BTreeMap<String, Flag>,
    /// Non-flag tokens, in order (the binary name, stray positionals).
    pub positionals: Vec<String>,
}

/// One `name=peerURL` entry of `--initial-cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerEntry {
    pub name: String,
    pub peer_url: String,
}

impl EtcdFlags {
    /// Parse argv (including the program name if present) and an environment.
    pub fn parse<S: AsRef<str>>(argv: &[S], env: &[(String, String)]) -> Self {
        let mut out = EtcdFlags::default();
        let mut i = 0;
        while i < argv.len() {
            let tok = argv[i].as_ref();
            let stripped = tok.strip_prefix("--").or_else(|| tok.strip_prefix('-'));
            match stripped {
                Some(body) if !body.is_empty() && tok != "--" => {
                    let (name, value, consumed_next) = match body.split_once('=') {
                        Some((n, v)) => (n.to_string(), Some(v.to_string()), false),
                        None if is_bool_flag(body) => (body.to_string(), None, false),
                        None => match argv.get(i + 1) {
                            Some(v) => (body.to_string(), Some(v.as_ref().to_string()), true),
                            None => (body.to_string(), None, false),
                        },
                    };
                    out.flags.insert(
                        name.clone(),
                        Flag { name, value, source: FlagSource::Arg(i) },
                    );
                    i += if consumed_next { 2 } else { 1 };
                }
                _ => {
                    out.positionals.push(tok.to_string());
                    i += 1;
                }
            }
        }
        for (k, v) in env {
            let Some(rest) = k.strip_prefix("ETCD_") else { continue };
            // ETCDCTL_* belong to the client, not the server.
            if k.starts_with("ETCDCTL_") {
                continue;
            }
            let name = rest.to_ascii_lowercase().replace('_', "-");
            out.flags.entry(name.clone()).or_insert(Flag {
                name,
                value: Some(v.clone()),
                source: FlagSource::Env(k.clone()),
            });
        }
        out
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.flags.get(name).and_then(|f| f.value.as_deref())
    }

    pub fn flag(&self, name: &str) -> Option<&Flag> {
        self.flags.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Flag> {
        self.flags.values()
    }

    /// True when a boolean flag is set: bare, or `=true`.
    pub fn is_true(&self, name: &str) -> bool {
        match self.flags.get(name) {
            Some(f) => f.value.as_deref().map(|v| v.eq_ignore_ascii_case("true")).unwrap_or(true),
            None => false,
        }
    }

    pub fn name(&self) -> &str {
        self.get("name").unwrap_or("default")
    }

    /// The data dir as the member sees it (a container path on a static pod).
    pub fn data_dir(&self) -> String {
        self.get("data-dir").map(str::to_string).unwrap_or_else(|| format!("{}.etcd", self.name()))
    }

    pub fn list(&self, name: &str) -> Vec<String> {
        split_list(self.get(name).unwrap_or(""))
    }

    pub fn advertise_client_urls(&self) -> Vec<String> {
        self.list("advertise-client-urls")
    }

    pub fn initial_advertise_peer_urls(&self) -> Vec<String> {
        self.list("initial-advertise-peer-urls")
    }

    pub fn initial_cluster(&self) -> Vec<PeerEntry> {
        parse_initial_cluster(self.get("initial-cluster").unwrap_or(""))
    }

    pub fn initial_cluster_state(&self) -> &str {
        self.get("initial-cluster-state").unwrap_or("new")
    }

    /// Client TLS files a health checker would use, in the seeds' order of preference:
    /// the server pair (what the seeds' etcdctl calls use) unless a caller finds a better one.
    pub fn server_tls(&self) -> TlsFiles {
        TlsFiles {
            ca: self.get("trusted-ca-file").map(str::to_string),
            cert: self.get("cert-file").map(str::to_string),
            key: self.get("key-file").map(str::to_string),
        }
    }

    pub fn client_cert_auth(&self) -> bool {
        self.is_true("client-cert-auth")
    }
}

/// Paths of a CA, certificate and key, as written in the member's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TlsFiles {
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

pub fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect()
}

pub fn parse_initial_cluster(s: &str) -> Vec<PeerEntry> {
    split_list(s)
        .into_iter()
        .filter_map(|e| {
            let (n, u) = e.split_once('=')?;
            Some(PeerEntry { name: n.to_string(), peer_url: u.to_string() })
        })
        .collect()
}

pub fn format_initial_cluster(entries: &[PeerEntry]) -> String {
    entries.iter().map(|e| format!("{}={}", e.name, e.peer_url)).collect::<Vec<_>>().join(",")
}

/// Rewrite an argv so that `edits` hold, touching only the tokens of the edited flags.
/// `Some(v)` sets `--name=v` (in place if present, appended otherwise); `None` removes it.
/// Used for container runtimes, where argv is the source of truth.
pub fn edit_argv(argv: &[String], edits: &[(String, Option<String>)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(argv.len() + edits.len());
    let mut done = vec![false; edits.len()];
    let mut i = 0;
    while i < argv.len() {
        let tok = &argv[i];
        let body = tok.strip_prefix("--").or_else(|| tok.strip_prefix('-'));
        let (name, consumes_next) = match body {
            Some(b) if !b.is_empty() && tok != "--" => match b.split_once('=') {
                Some((n, _)) => (Some(n.to_string()), false),
                None => (Some(b.to_string()), !is_bool_flag(b) && i + 1 < argv.len()),
            },
            _ => (None, false),
        };
        let hit = name.as_ref().and_then(|n| edits.iter().position(|(e, _)| e == n));
        match hit {
            Some(k) => {
                if let (Some(v), false) = (&edits[k].1, done[k]) {
                    out.push(format!("--{}={}", edits[k].0, v));
                }
                done[k] = true;
            }
            None => {
                out.push(tok.clone());
                if consumes_next {
                    out.push(argv[i + 1].clone());
                }
            }
        }
        i += if consumes_next { 2 } else { 1 };
    }
    for (k, (n, v)) in edits.iter().enumerate() {
        if let (false, Some(v)) = (done[k], v) {
            out.push(format!("--{n}={v}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn equals_and_space_forms() {
        let f = EtcdFlags::parse(
            &argv("etcd --name m1 --data-dir=/var/lib/etcd --client-cert-auth --initial-cluster-state existing"),
            &[],
        );
        assert_eq!(f.name(), "m1");
        assert_eq!(f.data_dir(), "/var/lib/etcd");
        assert!(f.client_cert_auth());
        assert_eq!(f.initial_cluster_state(), "existing");
        assert_eq!(f.positionals, vec!["etcd"]);
    }

    #[test]
    fn bool_flag_does_not_swallow_next_flag() {
        let f = EtcdFlags::parse(&argv("etcd --force-new-cluster --name x"), &[]);
        assert!(f.is_true("force-new-cluster"));
        assert_eq!(f.name(), "x");
    }

    #[test]
    fn single_dash_and_explicit_false() {
        let f = EtcdFlags::parse(&argv("etcd -name=a -client-cert-auth=false"), &[]);
        assert_eq!(f.name(), "a");
        assert!(!f.client_cert_auth());
    }

    #[test]
    fn env_fills_gaps_but_flags_win() {
        let env = vec![
            ("ETCD_NAME".to_string(), "from-env".to_string()),
            ("ETCD_INITIAL_CLUSTER".to_string(), "a=https://1:2380,b=https://2:2380".to_string()),
            ("ETCDCTL_API".to_string(), "3".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let f = EtcdFlags::parse(&argv("etcd --name=from-flag"), &env);
        assert_eq!(f.name(), "from-flag");
        assert_eq!(f.initial_cluster().len(), 2);
        assert_eq!(f.initial_cluster()[1], PeerEntry { name: "b".into(), peer_url: "https://2:2380".into() });
        assert!(f.get("ctl-api").is_none() && f.get("api").is_none());
        assert!(matches!(f.flag("initial-cluster").unwrap().source, FlagSource::Env(_)));
    }

    #[test]
    fn defaults_follow_etcd() {
        let f = EtcdFlags::parse(&argv("etcd"), &[]);
        assert_eq!(f.name(), "default");
        assert_eq!(f.data_dir(), "default.etcd");
        assert_eq!(f.initial_cluster_state(), "new");
    }

    #[test]
    fn edit_argv_touches_only_edited_flags() {
        let a = argv("/usr/local/bin/etcd --name x --initial-cluster-state=new --data-dir /d --force-new-cluster");
        let out = edit_argv(
            &a,
            &[
                ("initial-cluster-state".into(), Some("existing".into())),
                ("force-new-cluster".into(), None),
                ("initial-cluster".into(), Some("x=https://1:2380".into())),
            ],
        );
        assert_eq!(
            out,
            argv("/usr/local/bin/etcd --name x --initial-cluster-state=existing --data-dir /d --initial-cluster=x=https://1:2380")
        );
    }

    #[test]
    fn initial_cluster_roundtrip() {
        let s = "m1=https://127.0.0.1:2380,m2=https://127.0.0.2:2380";
        assert_eq!(format_initial_cluster(&parse_initial_cluster(s)), s);
    }
}
