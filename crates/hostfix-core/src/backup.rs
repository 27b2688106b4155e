//! Which backup a membership change relies on (`rejoin --backup auto|fresh|none`).
//!
//! A verified backup must exist before the membership changes, but it need not be taken
//! during the repair: removing a voter that is already down, or adding a learner, does not
//! lower the cluster's fault tolerance, so the backup is a restore point, not a guard on the
//! step. A recent verified snapshot of the same cluster (the daemon's schedule, or an earlier
//! `snapshot save`) is as good a restore point as one streamed now, and at 200 MB and more
//! streaming one is most of a rejoin's extra time.
//!
//! Pure: the playbook lists the snapshot records and checks hashes; this ranks them.

use serde::{Deserialize, Serialize};

/// `--backup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupMode {
    /// Reuse the newest verified snapshot of the same cluster no older than the maximum age;
    /// otherwise take a fresh one.
    #[default]
    Auto,
    /// Always take a fresh one.
    Fresh,
    /// Take none. The plan says so, and the journal and any incident record keep it.
    None,
}

impl BackupMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupMode::Auto => "auto",
            BackupMode::Fresh => "fresh",
            BackupMode::None => "none",
        }
    }
}

impl std::str::FromStr for BackupMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(BackupMode::Auto),
            "fresh" => Ok(BackupMode::Fresh),
            "none" => Ok(BackupMode::None),
            o => Err(format!("unknown backup mode {o:?}: expected auto, fresh or none")),
        }
    }
}

/// The backup a plan relies on, kept in the plan (and so in the journal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Backup {
    /// Streamed from a peer by the plan's `snapshot` step. `why`: why no snapshot was
    /// reused (empty under `--backup fresh`, which always takes one).
    Fresh {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        why: String,
    },
    /// An existing snapshot, verified when the plan was made; `verified_by` says against
    /// what (empty in journals written before it was kept: the SHA-256 trailer).
    Reuse {
        path: String,
        saved_at_unix: u64,
        bytes: u64,
        sha256: String,
        #[serde(default)]
        verified_by: String,
    },
    /// None, by the operator's choice.
    None,
}

impl Default for Backup {
    fn default() -> Self {
        Backup::Fresh { why: String::new() }
    }
}

/// One snapshot in the state dir, as its `.json` record describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub path: String,
    /// From the `.json` record; `None` when there is no readable record.
    pub cluster_id: Option<String>,
    pub saved_at_unix: Option<u64>,
    pub bytes: u64,
    /// The whole file's SHA-256 as recorded when it was saved.
    pub sha256: Option<String>,
    /// The SHA-256 of each piece, as recorded while it streamed (records written since the
    /// pieces were kept); checked on every core instead of one pass over the trailer.
    pub pieces: Option<Pieces>,
}

/// Per-piece digests of a snapshot: `sha256[i]` covers bytes `i * bytes ..` of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pieces {
    pub bytes: u64,
    pub sha256: Vec<String>,
}

/// What [`rank`] found: the candidates worth verifying, newest first, and why each other one
/// was passed over (for the plan, so a person sees why a fresh backup is taken).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ranked {
    pub usable: Vec<Candidate>,
    pub ignored: Vec<(String, String)>,
}

/// The candidate a caller may start verifying before it knows the cluster's ID: the newest
/// one with a record. Usually the only one that matters; [`rank`] still decides.
pub fn likely(candidates: &[Candidate]) -> Option<&Candidate> {
    candidates.iter().filter(|c| c.cluster_id.is_some()).max_by_key(|c| c.saved_at_unix)
}

/// Rank the snapshots for `--backup auto`: the same cluster, no older than `max_age_secs`,
/// newest first. The hash is checked by the caller, in this order, and the first that
/// verifies wins.
pub fn rank(candidates: &[Candidate], cluster_id: &str, now_unix: u64, max_age_secs: u64) -> Ranked {
    let mut r = Ranked::default();
    for c in candidates {
        match (&c.cluster_id, c.saved_at_unix) {
            (None, _) | (_, None) => r.ignored.push((c.path.clone(), "no readable .json record (cluster and age unknown)".into())),
            (Some(id), _) if id != cluster_id => {
                r.ignored.push((c.path.clone(), format!("from another cluster ({id}, this one is {cluster_id})")))
            }
            (_, Some(t)) if t > now_unix + 60 => r.ignored.push((c.path.clone(), "saved in the future: the clock or the record is wrong".into())),
            (_, Some(t)) if now_unix.saturating_sub(t) > max_age_secs => r.ignored.push((
                c.path.clone(),
                format!("too old ({} > {})", age_words(now_unix.saturating_sub(t)), age_words(max_age_secs)),
            )),
            _ => r.usable.push(c.clone()),
        }
    }
    r.usable.sort_by_key(|c| std::cmp::Reverse(c.saved_at_unix));
    r
}

/// `42 s`, `12 min`, `3 h 5 min`: how old a backup is, in the plan.
pub fn age_words(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(path: &str, id: Option<&str>, at: Option<u64>) -> Candidate {
        Candidate { path: path.into(), cluster_id: id.map(Into::into), saved_at_unix: at, bytes: 1, sha256: None, pieces: None }
    }

    #[test]
    fn newest_of_the_same_cluster_within_age_comes_first() {
        let r = rank(
            &[c("a", Some("c1"), Some(9_000)), c("b", Some("c1"), Some(9_500)), c("old", Some("c1"), Some(1_000))],
            "c1",
            10_000,
            3600,
        );
        assert_eq!(r.usable.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(r.ignored.len(), 1);
        assert!(r.ignored[0].1.starts_with("too old (2 h 30 min > 60 min)"), "{:?}", r.ignored);
    }

    #[test]
    fn another_cluster_a_missing_record_and_the_future_are_ignored() {
        let r = rank(
            &[c("x", Some("c2"), Some(9_900)), c("y", None, None), c("z", Some("c1"), Some(20_000))],
            "c1",
            10_000,
            3600,
        );
        assert!(r.usable.is_empty());
        let why: Vec<&str> = r.ignored.iter().map(|(_, w)| w.as_str()).collect();
        assert!(why[0].contains("another cluster (c2"), "{why:?}");
        assert!(why[1].contains("no readable .json"), "{why:?}");
        assert!(why[2].contains("future"), "{why:?}");
    }

    #[test]
    fn modes_parse_and_print() {
        for m in [BackupMode::Auto, BackupMode::Fresh, BackupMode::None] {
            assert_eq!(m.as_str().parse::<BackupMode>().unwrap(), m);
        }
        assert!("sometimes".parse::<BackupMode>().unwrap_err().contains("auto, fresh or none"));
    }
}
