//! etcd's own offline tools, run from the host: `etcdutl` (3.5+) or `etcdctl` (3.4) for
//! `snapshot status` and `snapshot restore`. Which one depends on the member's etcd version:
//! data restored by a newer tool is not promised to open in an older etcd.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("no etcdutl or etcdctl {want} found on this host (looked in {looked}); install the etcd client tools of the member's version")]
    NotFound { want: String, looked: String },
    #[error("{tool} {args}: {reason}")]
    Failed { tool: PathBuf, args: String, reason: String },
}

#[derive(Debug, Clone)]
pub struct EtcdTool {
    pub path: PathBuf,
    /// `etcdutl` has the offline commands at the top level; `etcdctl` needs ETCDCTL_API=3.
    pub is_etcdutl: bool,
    pub version: (u32, u32),
}

/// `3.4` from `3.4.23`, `registry.k8s.io/etcd:3.5.1-0`, `etcdctl version: 3.4.23`.
pub fn parse_version(s: &str) -> Option<(u32, u32)> {
    // An image's tag follows its last colon; a registry host may hold digits ("k8s").
    let s = s.rsplit(':').next().unwrap_or(s);
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let rest = &s[start..];
    let mut it = rest.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn dirs() -> Vec<PathBuf> {
    let mut d: Vec<PathBuf> = ["HOSTFIX_ETCD37_DIR", "HOSTFIX_ETCD36_DIR", "HOSTFIX_ETCD35_DIR", "HOSTFIX_ETCD34_DIR"]
        .iter()
        .filter_map(|v| std::env::var_os(v).map(PathBuf::from))
        .collect();
    d.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    d
}

fn probe(path: &Path) -> Option<(u32, u32)> {
    let out = Command::new(path).arg("version").env("ETCDCTL_API", "3").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_version(text.lines().next()?)
}

impl EtcdTool {
    /// The tool for `want` (major, minor): same version first, `etcdutl` preferred from
    /// 3.5 on. `None` takes whatever is found.
    pub fn find(want: Option<(u32, u32)>) -> Result<EtcdTool, ToolError> {
        match Self::best(want) {
            Some(t) if want.is_none() || Some(t.version) == want => Ok(t),
            _ => Err(ToolError::NotFound {
                want: want.map(|(a, b)| format!("{a}.{b}")).unwrap_or_default(),
                looked: dirs().iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":"),
            }),
        }
    }

    /// For reading a db's status any version will do: `want` first, else whatever is found.
    pub fn for_reading(want: Option<(u32, u32)>) -> Result<EtcdTool, ToolError> {
        Self::best(want).ok_or_else(|| ToolError::NotFound {
            want: String::new(),
            looked: dirs().iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":"),
        })
    }

    /// Every tool found, probed once, the best for `want` first.
    fn best(want: Option<(u32, u32)>) -> Option<EtcdTool> {
        let mut found = vec![];
        for d in dirs() {
            for (name, is_etcdutl) in [("etcdutl", true), ("etcdctl", false)] {
                let p = d.join(name);
                if p.is_file() && !found.iter().any(|t: &EtcdTool| t.path == p) {
                    if let Some(v) = probe(&p) {
                        found.push(EtcdTool { path: p, is_etcdutl, version: v });
                    }
                }
            }
        }
        let rank = |t: &EtcdTool| (Some(t.version) == want, t.is_etcdutl == (t.version >= (3, 5)), t.version);
        found.sort_by_key(|t| std::cmp::Reverse(rank(t)));
        found.into_iter().next()
    }

    fn run(&self, args: &[String]) -> Result<String, ToolError> {
        let out = Command::new(&self.path).args(args).env("ETCDCTL_API", "3").output().map_err(|e| ToolError::Failed {
            tool: self.path.clone(),
            args: args.join(" "),
            reason: e.to_string(),
        })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(ToolError::Failed {
                tool: self.path.clone(),
                args: args.join(" "),
                reason: err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("failed").trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `snapshot status -w json` of a file: hash, revision, totalKey, totalSize.
    pub fn status(&self, file: &Path) -> Result<serde_json::Value, ToolError> {
        let args = vec!["snapshot".into(), "status".into(), file.display().to_string(), "-w".into(), "json".into()];
        let out = self.run(&args)?;
        serde_json::from_str(out.trim()).map_err(|e| ToolError::Failed {
            tool: self.path.clone(),
            args: args.join(" "),
            reason: format!("unexpected output ({e}): {out}"),
        })
    }

    /// Whether `snapshot restore` can bump the revision and mark it compacted (etcd 3.5.8+
    /// backported it; 3.4 cannot).
    pub fn can_bump_revision(&self) -> bool {
        self.is_etcdutl
            && self.run(&["snapshot".into(), "restore".into(), "--help".into()]).map(|h| h.contains("--bump-revision")).unwrap_or(false)
    }

    /// Restore `file` into `data_dir` (which must not exist) as a new one-member cluster.
    pub fn restore(&self, file: &Path, data_dir: &Path, name: &str, peer_url: &str, token: &str, bump: Option<u64>) -> Result<(), ToolError> {
        let mut args: Vec<String> = vec![
            "snapshot".into(),
            "restore".into(),
            file.display().to_string(),
            format!("--data-dir={}", data_dir.display()),
            format!("--name={name}"),
            format!("--initial-cluster={name}={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster-token={token}"),
        ];
        if let Some(b) = bump {
            args.push(format!("--bump-revision={b}"));
            args.push("--mark-compacted".into());
        }
        self.run(&args).map(|_| ())
    }
}

/// A file's SHA-256, hex, as `sha256sum` prints it.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

/// The revision in a db file (a member's `snap/db` or a snapshot), read from a copy so the
/// original is never opened by another process.
pub fn db_revision(tool: &EtcdTool, db: &Path) -> Option<i64> {
    let tmp = std::env::temp_dir().join(format!("etcd-hostfix-db-{}-{}.db", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)));
    std::fs::copy(db, &tmp).ok()?;
    let r = tool.status(&tmp).ok().and_then(|v| v["revision"].as_i64());
    let _ = std::fs::remove_file(&tmp);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("registry.k8s.io/etcd:3.5.1-0"), Some((3, 5)));
        assert_eq!(parse_version("hostfix-lab/etcd:3.4.23"), Some((3, 4)));
        assert_eq!(parse_version(" 3.4.23"), Some((3, 4)));
        assert_eq!(parse_version("latest"), None);
    }
}
