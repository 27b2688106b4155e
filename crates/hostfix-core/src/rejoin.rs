//! The rejoin playbook, decided: replace the local member whose data is lost or bad with a
//! fresh learner fed by the rest of the cluster. Facts in, a plan of steps (or a refusal)
//! out. The adapters gather the facts and an interpreter runs the steps.

use serde::{Deserialize, Serialize};

use crate::backup::Backup;
use crate::flags::{format_initial_cluster, PeerEntry};

/// One member as the peers list it, with what probing it showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberFact {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
    /// It answered a quorum read.
    pub quorum_read: bool,
    /// It reports a leader.
    pub sees_leader: bool,
    pub revision: Option<i64>,
    /// It is the leader (a fresh backup is streamed from another voter when one is healthy:
    /// the leader is about to send the learner its own snapshot).
    #[serde(default)]
    pub is_leader: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejoinFacts {
    pub name: String,
    pub peer_url: String,
    /// The cluster as a healthy peer lists it.
    pub members: Vec<MemberFact>,
    /// The local member serves quorum reads as a voter and its revision equals the leader's.
    pub local_healthy_caught_up: bool,
    /// The newest revision in the local data dir, when it can be read.
    pub local_data_revision: Option<i64>,
    /// The Docker container running the member (RKE), if that is the runtime.
    pub container: Option<String>,
    /// The backup chosen for `--backup` (see [`crate::backup`]).
    pub backup: Backup,
    /// The cluster's ID as the peers report it, when any answers.
    pub cluster_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("member {name} is already a healthy, caught-up voter; nothing to rejoin")]
    AlreadyHealthy { name: String },
    #[error("the other members have no quorum: {healthy} of {voters} voters answer, {needed} are needed to change membership")]
    NoQuorum { healthy: usize, voters: usize, needed: usize },
    #[error("no healthy voting peer that sees a leader to work through")]
    NoHealthyPeer,
    #[error("peer URL {peer_url} belongs to member {other} ({id:x}), not {name}; refusing to remove or replace it")]
    PeerUrlClaimed { peer_url: String, other: String, id: u64, name: String },
    #[error("member {other} ({id:x}) is a learner already, and etcd allows one learner at a time (--max-learners, default 1): adding this member as a learner would fail with \"too many learner members in cluster\". Let that learner be promoted, or remove it (`etcdctl member remove {id:x}`), then run again")]
    OtherLearner { other: String, id: u64 },
    #[error("the local data is newer than the cluster's (local revision {local}, cluster {cluster}); the peers are behind. Run `etcd-hostfix rebuild` here instead, or move the data aside yourself")]
    LocalDataNewer { local: i64, cluster: i64 },
}

/// A step of the rejoin playbook. Each is idempotent: run again after a crash, it checks
/// what is already true and does only the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// Save a snapshot of the cluster from the peer into the state dir and verify its hash.
    Snapshot {
        peer: String,
        /// The peer's client URL (older journals lack it: then any healthy peer).
        #[serde(default)]
        url: Option<String>,
    },
    /// Rely on an existing snapshot, verified when the plan was made; the step checks it is
    /// still there, whole. Named `snapshot` too: it is the plan's backup step.
    UseSnapshot { path: String },
    /// Move the manifest out of `manifests/` (or stop the container) and wait until etcd exits.
    Stop,
    /// `member remove` the old local member, if it is still listed.
    Remove { id: u64 },
    /// `member remove` another voter that is down. etcd's strict reconfiguration check
    /// refuses any `member add` while a voter is unreachable, so, as seed 001's script does,
    /// every broken voter is removed before one is added back; its own master's rejoin
    /// re-adds it.
    RemoveDown { id: u64, name: String },
    /// Move `<data dir>/member` into the state dir's archive. Never deleted.
    Archive,
    /// `member add --learner` with the local peer URL, unless an unstarted entry for it exists.
    AddLearner { name: String, peer_url: String, reuse: Option<u64> },
    /// Set `--initial-cluster` (from the add response) and `--initial-cluster-state=existing`.
    Configure,
    /// Move the manifest back (or recreate and start the container).
    Start,
    /// Wait until the learner has caught up, then promote it.
    Promote,
    /// Wait until every member is healthy and the local revision equals the leader's.
    WaitHealthy,
    /// Docker only: remove the old container that `start` renamed aside, now that its
    /// replacement is healthy. Its volumes stay.
    RemoveOldContainer { name: String },
    /// After `--force` over newer local data: bounce the local kube-apiserver, whose watch
    /// cache saw revisions the cluster no longer has (see `dr::apiserver_after`).
    BounceApiserver,
}

impl Step {
    pub fn name(&self) -> &'static str {
        match self {
            Step::Snapshot { .. } | Step::UseSnapshot { .. } => "snapshot",
            Step::Stop => "stop",
            Step::Remove { .. } => "remove",
            Step::RemoveDown { .. } => "remove-down",
            Step::Archive => "archive",
            Step::AddLearner { .. } => "add-learner",
            Step::Configure => "configure",
            Step::Start => "start",
            Step::Promote => "promote",
            Step::WaitHealthy => "wait-healthy",
            Step::RemoveOldContainer { .. } => "remove-old",
            Step::BounceApiserver => "bounce-apiserver",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejoinPlan {
    pub name: String,
    pub peer_url: String,
    /// The peer every cluster call goes through.
    pub peer: MemberFact,
    pub steps: Vec<Step>,
    /// Peer URLs of the members that were healthy when the plan was made. The final wait
    /// requires these and the local member; members that were already broken are another
    /// master's repair, and waiting for them would deadlock two repairs on the lock.
    #[serde(default)]
    pub healthy_at_start: Vec<String>,
    /// The backup this plan relies on before any membership change.
    #[serde(default)]
    pub backup: Backup,
}

/// The votes a cluster of `voters` needs to make progress.
pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// Decide. Refuses when acting is unsafe; every refusal leaves everything as it was.
pub fn plan_rejoin(f: &RejoinFacts) -> Result<RejoinPlan, Refusal> {
    let is_me = |m: &MemberFact| m.peer_urls.contains(&f.peer_url) || (!m.name.is_empty() && m.name == f.name);
    if let Some(m) = f.members.iter().find(|m| m.peer_urls.contains(&f.peer_url) && !m.name.is_empty() && m.name != f.name) {
        return Err(Refusal::PeerUrlClaimed { peer_url: f.peer_url.clone(), other: m.name.clone(), id: m.id, name: f.name.clone() });
    }
    if f.local_healthy_caught_up {
        return Err(Refusal::AlreadyHealthy { name: f.name.clone() });
    }
    // Membership changes need a quorum of the current voters, and the local one is down.
    let voters: Vec<&MemberFact> = f.members.iter().filter(|m| !m.is_learner).collect();
    let healthy = voters.iter().filter(|m| !is_me(m) && m.quorum_read).count();
    let needed = quorum(voters.len().max(1));
    if healthy < needed {
        return Err(Refusal::NoQuorum { healthy, voters: voters.len(), needed });
    }
    // A peer that is listed here and sees a leader; seed 001's first running pod may not be
    // part of the cluster at all, so only listed voters qualify.
    let peer = voters
        .iter()
        .filter(|m| !is_me(m) && m.quorum_read && m.sees_leader && !m.client_urls.is_empty())
        .max_by_key(|m| m.revision.unwrap_or(0))
        .copied()
        .cloned()
        .ok_or(Refusal::NoHealthyPeer)?;
    // etcd 3.6 counts learners against --max-learners (default 1) and refuses the add with
    // "too many learner members in cluster"; 3.4 and 3.5 allow one too. Refused before
    // anything is stopped or removed, rather than failing at the add with the member gone.
    if let Some(m) = f.members.iter().find(|m| m.is_learner && !is_me(m)) {
        let other = if m.name.is_empty() { m.peer_urls.join(",") } else { m.name.clone() };
        return Err(Refusal::OtherLearner { other, id: m.id });
    }
    let cluster_rev = voters.iter().filter(|m| m.quorum_read).filter_map(|m| m.revision).max();
    if let (Some(local), Some(cluster)) = (f.local_data_revision, cluster_rev) {
        if local > cluster {
            return Err(Refusal::LocalDataNewer { local, cluster });
        }
    }
    let mine: Vec<&MemberFact> = f.members.iter().filter(|m| is_me(m)).collect();
    // An entry for our peer URL that never started (added by hand, or by a run that died
    // after `member add`) is reused rather than removed and added again.
    let unstarted = mine.iter().find(|m| m.name.is_empty() && m.peer_urls.contains(&f.peer_url)).map(|m| m.id);
    let mut steps = match &f.backup {
        Backup::Fresh { .. } => {
            // From a healthy voter that is not the leader, when there is one.
            let src = voters
                .iter()
                .filter(|m| !is_me(m) && m.quorum_read && m.sees_leader && !m.client_urls.is_empty())
                .max_by_key(|m| (!m.is_leader, m.revision.unwrap_or(0)))
                .copied()
                .unwrap_or(&peer);
            vec![Step::Snapshot { peer: src.name.clone(), url: src.client_urls.first().cloned() }, Step::Stop]
        }
        Backup::Reuse { path, .. } => vec![Step::UseSnapshot { path: path.clone() }, Step::Stop],
        Backup::None => vec![Step::Stop],
    };
    for m in mine.iter().filter(|m| Some(m.id) != unstarted) {
        steps.push(Step::Remove { id: m.id });
    }
    for m in voters.iter().filter(|m| !is_me(m) && !m.quorum_read) {
        steps.push(Step::RemoveDown { id: m.id, name: m.name.clone() });
    }
    steps.extend([
        Step::Archive,
        Step::AddLearner { name: f.name.clone(), peer_url: f.peer_url.clone(), reuse: unstarted },
        Step::Configure,
        Step::Start,
        Step::Promote,
        Step::WaitHealthy,
    ]);
    if let Some(c) = &f.container {
        steps.push(Step::RemoveOldContainer { name: c.clone() });
    }
    let healthy_at_start =
        f.members.iter().filter(|m| !is_me(m) && m.quorum_read).flat_map(|m| m.peer_urls.clone()).collect();
    Ok(RejoinPlan { name: f.name.clone(), peer_url: f.peer_url.clone(), peer, steps, healthy_at_start, backup: f.backup.clone() })
}

/// `--initial-cluster` for the new member, from the member list after the add: every
/// started member by name, and the new (unnamed) entry under our name.
pub fn initial_cluster_after_add(members: &[MemberFact], name: &str, peer_url: &str) -> String {
    let entries: Vec<PeerEntry> = members
        .iter()
        .flat_map(|m| {
            let n = if m.name.is_empty() && m.peer_urls.iter().any(|u| u == peer_url) { name.to_string() } else { m.name.clone() };
            m.peer_urls.iter().map(move |u| PeerEntry { name: n.clone(), peer_url: u.clone() })
        })
        .filter(|e| !e.name.is_empty())
        .collect();
    format_initial_cluster(&entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, name: &str, ip: u8, healthy: bool) -> MemberFact {
        MemberFact {
            id,
            name: name.into(),
            peer_urls: vec![format!("https://10.0.0.{ip}:2380")],
            client_urls: if name.is_empty() { vec![] } else { vec![format!("https://10.0.0.{ip}:2379")] },
            is_learner: false,
            quorum_read: healthy,
            sees_leader: healthy,
            revision: healthy.then_some(100),
            is_leader: false,
        }
    }

    fn facts(members: Vec<MemberFact>) -> RejoinFacts {
        RejoinFacts {
            name: "m3".into(),
            peer_url: "https://10.0.0.3:2380".into(),
            members,
            local_healthy_caught_up: false,
            local_data_revision: None,
            container: None,
            backup: Backup::default(),
            cluster_id: Some("c1".into()),
        }
    }

    #[test]
    fn crashlooping_member_is_replaced() {
        let p = plan_rejoin(&facts(vec![m(1, "m1", 1, true), m(2, "m2", 2, true), m(3, "m3", 3, false)])).unwrap();
        let names: Vec<&str> = p.steps.iter().map(Step::name).collect();
        assert_eq!(
            names,
            ["snapshot", "stop", "remove", "archive", "add-learner", "configure", "start", "promote", "wait-healthy"]
        );
        assert_eq!(p.steps[2], Step::Remove { id: 3 });
        assert!(p.peer.name == "m1" || p.peer.name == "m2");
    }

    #[test]
    fn a_fresh_backup_comes_from_a_voter_that_is_not_the_leader() {
        let mut ms = vec![m(1, "m1", 1, true), m(2, "m2", 2, true), m(3, "m3", 3, false)];
        ms[0].is_leader = true;
        ms[0].revision = Some(101);
        let p = plan_rejoin(&facts(ms.clone())).unwrap();
        assert_eq!(p.steps[0], Step::Snapshot { peer: "m2".into(), url: Some("https://10.0.0.2:2379".into()) });
        // Among several followers, the one with the newest data.
        let mut f = facts(vec![ms[0].clone(), ms[1].clone(), ms[2].clone(), m(4, "m4", 4, true), m(5, "m5", 5, true)]);
        f.members[3].revision = Some(102);
        let p = plan_rejoin(&f).unwrap();
        assert_eq!(p.steps[0], Step::Snapshot { peer: "m4".into(), url: Some("https://10.0.0.4:2379".into()) });
    }

    #[test]
    fn a_reused_backup_or_none_replaces_the_snapshot_step() {
        let mut f = facts(vec![m(1, "m1", 1, true), m(2, "m2", 2, true), m(3, "m3", 3, false)]);
        f.backup = Backup::Reuse { path: "/s/scheduled-1.db".into(), saved_at_unix: 1, bytes: 5, sha256: "ab".into(), verified_by: String::new() };
        let p = plan_rejoin(&f).unwrap();
        assert_eq!(p.steps[0], Step::UseSnapshot { path: "/s/scheduled-1.db".into() });
        assert_eq!(p.steps[0].name(), "snapshot");
        assert_eq!(p.backup, f.backup);
        f.backup = Backup::None;
        let p = plan_rejoin(&f).unwrap();
        assert_eq!(p.steps[0], Step::Stop);
        assert_eq!(p.backup, Backup::None);
    }

    #[test]
    fn a_container_is_replaced_and_its_old_self_removed_last() {
        let mut f = facts(vec![m(1, "m1", 1, true), m(2, "m2", 2, true), m(3, "m3", 3, false)]);
        f.container = Some("etcd".into());
        let p = plan_rejoin(&f).unwrap();
        assert_eq!(p.steps.last(), Some(&Step::RemoveOldContainer { name: "etcd".into() }));
        assert_eq!(p.steps[p.steps.len() - 2], Step::WaitHealthy);
    }

    #[test]
    fn already_removed_by_hand_skips_remove() {
        let p = plan_rejoin(&facts(vec![m(1, "m1", 1, true), m(2, "m2", 2, true)])).unwrap();
        assert!(!p.steps.iter().any(|s| matches!(s, Step::Remove { .. })));
    }

    #[test]
    fn unstarted_entry_is_reused() {
        let p = plan_rejoin(&facts(vec![m(1, "m1", 1, true), m(2, "m2", 2, true), m(9, "", 3, false)])).unwrap();
        assert!(p.steps.contains(&Step::AddLearner { name: "m3".into(), peer_url: "https://10.0.0.3:2380".into(), reuse: Some(9) }));
        assert!(!p.steps.iter().any(|s| matches!(s, Step::Remove { .. })));
    }

    #[test]
    fn refusals() {
        let mut f = facts(vec![m(1, "m1", 1, true), m(2, "m2", 2, true), m(3, "m3", 3, true)]);
        f.local_healthy_caught_up = true;
        assert!(matches!(plan_rejoin(&f), Err(Refusal::AlreadyHealthy { .. })));

        let f = facts(vec![m(1, "m1", 1, true), m(2, "m2", 2, false), m(3, "m3", 3, false)]);
        assert_eq!(plan_rejoin(&f), Err(Refusal::NoQuorum { healthy: 1, voters: 3, needed: 2 }));

        let f = facts(vec![m(1, "m1", 1, true), m(2, "m2", 2, true), m(3, "other", 3, true)]);
        assert!(matches!(plan_rejoin(&f), Err(Refusal::PeerUrlClaimed { .. })));

        let mut f = facts(vec![m(1, "m1", 1, true), m(2, "m2", 2, true), m(3, "m3", 3, false)]);
        f.local_data_revision = Some(500);
        assert_eq!(plan_rejoin(&f), Err(Refusal::LocalDataNewer { local: 500, cluster: 100 }));
        f.local_data_revision = Some(90);
        assert!(plan_rejoin(&f).is_ok());

        // Another member is a learner (a person's `member add --learner`, or another
        // master's repair that died after its add): etcd would refuse a second one.
        let mut l = m(4, "m4", 4, true);
        l.is_learner = true;
        let f = facts(vec![m(1, "m1", 1, true), m(2, "m2", 2, true), m(3, "m3", 3, false), l]);
        assert_eq!(plan_rejoin(&f), Err(Refusal::OtherLearner { other: "m4".into(), id: 4 }));
        assert!(plan_rejoin(&f).unwrap_err().to_string().contains("etcdctl member remove 4"));
        // Our own entry as a learner (a run of ours that died after its add) is ours to replace.
        let mut mine = m(3, "m3", 3, false);
        mine.is_learner = true;
        assert!(plan_rejoin(&facts(vec![m(1, "m1", 1, true), m(2, "m2", 2, true), mine])).is_ok());
    }

    #[test]
    fn five_members_two_bad_rejoin_one_at_a_time() {
        let f = facts(vec![m(1, "m1", 1, true), m(2, "m2", 2, false), m(3, "m3", 3, false), m(4, "m4", 4, true), m(5, "m5", 5, true)]);
        let p = plan_rejoin(&f).unwrap();
        assert!(p.steps.contains(&Step::RemoveDown { id: 2, name: "m2".into() }), "{:?}", p.steps);
        // The other broken member is not waited for: its own master repairs it.
        assert_eq!(p.healthy_at_start.len(), 3);
        assert!(!p.healthy_at_start.contains(&"https://10.0.0.2:2380".to_string()));
    }

    #[test]
    fn peer_must_see_a_leader_and_be_listed() {
        let mut a = m(1, "m1", 1, true);
        a.sees_leader = false;
        let mut b = m(2, "m2", 2, true);
        b.sees_leader = false;
        let f = facts(vec![a, b, m(3, "m3", 3, false)]);
        assert_eq!(plan_rejoin(&f), Err(Refusal::NoHealthyPeer));
    }

    #[test]
    fn initial_cluster_names_the_new_entry() {
        let ms = vec![m(1, "m1", 1, true), m(2, "m2", 2, true), m(9, "", 3, false)];
        assert_eq!(
            initial_cluster_after_add(&ms, "m3", "https://10.0.0.3:2380"),
            "m1=https://10.0.0.1:2380,m2=https://10.0.0.2:2380,m3=https://10.0.0.3:2380"
        );
    }
}
