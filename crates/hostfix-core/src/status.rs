//! The merged view of `member list`, `endpoint health` and `endpoint status`, plus the local
//! member's runtime state. The JSON field names are a stable interface (see README).

use serde::{Deserialize, Serialize};

use crate::exit;

/// One member as the cluster lists it, merged with what its own endpoint said.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Member ID in etcdctl's hex form.
    pub id: String,
    /// Empty for a member that was added but has not started yet.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
    /// Its client URL answered a status call.
    pub reachable: bool,
    /// It answered a quorum read (etcdctl's `endpoint health`) and has no alarm or error.
    pub healthy: bool,
    /// It answered a quorum read, whatever its alarms: the measure of quorum.
    pub quorum_read: bool,
    pub is_leader: bool,
    /// It reports a leader (any member).
    pub has_leader: bool,
    pub version: Option<String>,
    pub db_size: Option<i64>,
    pub db_size_in_use: Option<i64>,
    pub raft_term: Option<u64>,
    pub raft_index: Option<u64>,
    pub raft_applied_index: Option<u64>,
    pub revision: Option<i64>,
    pub cluster_id: Option<String>,
    pub alarms: Vec<String>,
    /// Why it is unreachable or unhealthy, verbatim from the client.
    pub error: Option<String>,
    /// How it answered, or how it failed to: what quorum reasoning may conclude from it.
    #[serde(default)]
    pub reach: Reach,
}

/// How a member answered a probe, or how it failed to. From one master, "unreachable" has
/// two causes that look alike: the peer is down, or this master is cut off. Only some
/// failures say which.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reach {
    /// It answered and sees a leader.
    Answers,
    /// It answered but has no leader: it is up and itself cut off from a quorum.
    NoLeader,
    /// Connection refused: its host answers but nothing listens. Its etcd is down.
    Refused,
    /// The member list has it, but it never started (no client URL published).
    NotStarted,
    /// Timed out: a partition, or a host that is off. Nobody can tell which from here.
    TimedOut,
    /// TLS failed: something answers, but it cannot be asked.
    Tls,
    /// Any other failure (no route, reset, a failed call): nothing can be concluded.
    #[default]
    Unknown,
}

impl Reach {
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Answers => "answers",
            Reach::NoLeader => "answers without a leader",
            Reach::Refused => "connection refused",
            Reach::NotStarted => "never started",
            Reach::TimedOut => "timed out",
            Reach::Tls => "TLS error",
            Reach::Unknown => "failed",
        }
    }

    /// The member is known not to be part of any quorum: either it is down for certain
    /// (refused, never started) or it says itself that it has no leader.
    pub fn positively_down(self) -> bool {
        matches!(self, Reach::Refused | Reach::NoLeader | Reach::NotStarted)
    }

    /// It did not answer, and from here it cannot be told whether it is down or this
    /// master is cut off from it.
    pub fn ambiguous(self) -> bool {
        matches!(self, Reach::TimedOut | Reach::Tls | Reach::Unknown)
    }
}

/// Where the local member's manifest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManifestState {
    /// In `manifests/`: the kubelet runs it.
    Present,
    /// Moved aside into the state dir by etcd-hostfix: the kubelet has stopped it.
    Parked,
    Missing,
}

/// What the runtime says about the local member's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Running,
    /// Exited and being restarted with back-off; the endpoint does not answer.
    Crashlooping,
    Stopped,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalStatus {
    /// `static-pod` or `docker`.
    pub runtime: String,
    pub name: String,
    pub client_url: Option<String>,
    pub peer_url: Option<String>,
    /// Host path of the data dir (under the host root for a static pod).
    pub data_dir: Option<String>,
    pub manifest: Option<String>,
    pub manifest_state: Option<ManifestState>,
    pub container: Option<String>,
    /// Docker's own state string (`running`, `restarting`, `exited`, ...).
    pub container_state: Option<String>,
    pub state: RunState,
    pub restarts: u32,
    /// The newest log file read for this verdict.
    pub log: Option<String>,
    /// The last line the member logged, to show why it is down.
    pub last_log_line: Option<String>,
    /// Its ID, when it is in the member list.
    pub member_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub cluster_id: Option<String>,
    pub leader: Option<String>,
    pub healthy: bool,
    pub members: Vec<MemberStatus>,
    pub local: LocalStatus,
    /// The endpoint whose member list this report is built on.
    pub source_endpoint: Option<String>,
    /// Human-readable findings behind `healthy: false`.
    pub problems: Vec<String>,
}

impl StatusReport {
    /// Decide overall health and collect the reasons. Pure, so every rule is unit-tested.
    pub fn assess(mut self) -> Self {
        let mut problems = Vec::new();
        if self.members.is_empty() {
            problems.push("no member list".to_string());
        }
        for m in &self.members {
            let who = if m.name.is_empty() { format!("{} (unstarted)", m.id) } else { m.name.clone() };
            if !m.reachable {
                problems.push(format!("{who}: unreachable{}", suffix(&m.error)));
            } else if !m.healthy {
                problems.push(format!("{who}: unhealthy{}", suffix(&m.error)));
            }
            if !m.alarms.is_empty() {
                problems.push(format!("{who}: alarms {}", m.alarms.join(",")));
            }
            if let (Some(c), Some(cluster)) = (&m.cluster_id, &self.cluster_id) {
                if c != cluster {
                    problems.push(format!("{who}: cluster ID {c} differs from {cluster}"));
                }
            }
        }
        if self.leader.is_none() && !self.members.is_empty() {
            problems.push("no leader".to_string());
        }
        match self.local.state {
            RunState::Crashlooping => problems.push(format!(
                "local member {} is crashlooping ({} restarts)",
                self.local.name, self.local.restarts
            )),
            RunState::Stopped => problems.push(format!("local member {} is stopped", self.local.name)),
            _ => {}
        }
        if self.local.member_id.is_none() && !self.members.is_empty() {
            problems.push(format!("local member {} is not in the member list", self.local.name));
        }
        self.healthy = problems.is_empty();
        self.problems = problems;
        self
    }

    pub fn exit_code(&self) -> i32 {
        if self.healthy {
            exit::OK
        } else {
            exit::UNHEALTHY
        }
    }

    /// The default `-o table` rendering.
    pub fn render_table(&self) -> String {
        let headers = [
            "ID", "NAME", "PEER URL", "CLIENT URL", "ROLE", "HEALTH", "LEADER", "VERSION", "DB SIZE", "TERM", "INDEX",
            "APPLIED", "REVISION", "ALARMS",
        ];
        let opt = |v: &Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        let rows: Vec<Vec<String>> = self
            .members
            .iter()
            .map(|m| {
                vec![
                    m.id.clone(),
                    if m.name.is_empty() { "(unstarted)".into() } else { m.name.clone() },
                    m.peer_urls.join(","),
                    m.client_urls.join(","),
                    if m.is_learner { "learner".into() } else { "voter".into() },
                    if m.healthy {
                        "healthy".into()
                    } else if m.reachable {
                        "unhealthy".into()
                    } else {
                        "unreachable".into()
                    },
                    if m.is_leader { "*".into() } else { "".into() },
                    m.version.clone().unwrap_or_else(|| "-".into()),
                    m.db_size.map(human_bytes).unwrap_or_else(|| "-".into()),
                    opt(&m.raft_term),
                    opt(&m.raft_index),
                    opt(&m.raft_applied_index),
                    m.revision.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
                    m.alarms.join(","),
                ]
            })
            .collect();
        let mut out = render_grid(&headers, &rows);
        let l = &self.local;
        out.push_str(&format!(
            "\nlocal: {} via {} — {}{}{}\n",
            l.name,
            l.runtime,
            format!("{:?}", l.state).to_lowercase(),
            l.manifest_state.map(|s| format!(", manifest {}", format!("{s:?}").to_lowercase())).unwrap_or_default(),
            l.container_state.as_ref().map(|s| format!(", container {s}")).unwrap_or_default(),
        ));
        if l.restarts > 0 {
            out.push_str(&format!("  restarts: {}\n", l.restarts));
        }
        if let Some(line) = &l.last_log_line {
            out.push_str(&format!("  last log: {line}\n"));
        }
        if self.healthy {
            out.push_str("cluster: healthy\n");
        } else {
            out.push_str("cluster: DEGRADED\n");
            for p in &self.problems {
                out.push_str(&format!("  - {p}\n"));
            }
        }
        out
    }
}

fn suffix(e: &Option<String>) -> String {
    e.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
}

pub fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn render_grid(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let s: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        format!("{}\n", s.join("  ").trim_end())
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, healthy: bool) -> MemberStatus {
        MemberStatus {
            id: format!("id-{name}"),
            name: name.into(),
            reachable: healthy,
            healthy,
            cluster_id: Some("c1".into()),
            ..Default::default()
        }
    }

    fn report(members: Vec<MemberStatus>, state: RunState) -> StatusReport {
        StatusReport {
            cluster_id: Some("c1".into()),
            leader: Some("id-a".into()),
            healthy: false,
            members,
            local: LocalStatus {
                runtime: "static-pod".into(),
                name: "a".into(),
                client_url: None,
                peer_url: None,
                data_dir: None,
                manifest: None,
                manifest_state: Some(ManifestState::Present),
                container: None,
                container_state: None,
                state,
                restarts: 3,
                log: None,
                last_log_line: None,
                member_id: Some("id-a".into()),
            },
            source_endpoint: None,
            problems: vec![],
        }
    }

    #[test]
    fn all_healthy_exits_zero() {
        let r = report(vec![member("a", true), member("b", true)], RunState::Running).assess();
        assert!(r.healthy, "{:?}", r.problems);
        assert_eq!(r.exit_code(), 0);
        assert!(r.render_table().contains("cluster: healthy"));
    }

    #[test]
    fn unreachable_or_crashlooping_is_degraded() {
        let r = report(vec![member("a", true), member("b", false)], RunState::Running).assess();
        assert_eq!(r.exit_code(), 4);
        assert_eq!(r.problems, vec!["b: unreachable"]);
        let r = report(vec![member("a", true)], RunState::Crashlooping).assess();
        assert!(r.problems[0].contains("crashlooping (3 restarts)"));
    }

    #[test]
    fn foreign_cluster_id_and_alarm_are_problems() {
        let mut b = member("b", true);
        b.cluster_id = Some("other".into());
        b.alarms = vec!["NOSPACE".into()];
        let r = report(vec![member("a", true), b], RunState::Running).assess();
        assert_eq!(r.problems.len(), 2);
    }

    #[test]
    fn json_field_names_are_stable() {
        let r = report(vec![member("a", true)], RunState::Running).assess();
        let v = serde_json::to_value(&r).unwrap();
        for k in ["members", "local", "healthy", "leader", "cluster_id", "problems"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["members"][0]["name"], "a");
        assert_eq!(v["members"][0]["healthy"], true);
        assert_eq!(v["local"]["state"], "running");
        assert_eq!(v["local"]["manifest_state"], "present");
    }
}
