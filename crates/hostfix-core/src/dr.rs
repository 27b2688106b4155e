//! Disaster recovery, decided: `rebuild` (a survivor becomes a one-member cluster with
//! `--force-new-cluster`, seed 002) and `restore` (a one-member cluster from a snapshot,
//! seed 003). Facts in, a plan of idempotent steps or a refusal out; the other masters then
//! come back with `rejoin`, as learners first, so the cluster never has seed 002's
//! two-member window without quorum.

use serde::{Deserialize, Serialize};

use crate::status::Reach;

/// One other member as the local configuration names it, and what probing it showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerFact {
    pub name: String,
    pub client_url: String,
    pub reachable: bool,
    /// It answered a quorum read (it is part of a cluster that has quorum).
    pub quorum_read: bool,
    pub raft_index: Option<u64>,
    pub revision: Option<i64>,
    /// How it answered, or how it failed to.
    #[serde(default)]
    pub reach: Reach,
    /// The operator vouched that it is down (`--peers-down`), although it may only time out.
    #[serde(default)]
    pub vouched_down: bool,
}

impl PeerFact {
    /// Whether it may be part of a quorum that this master cannot see.
    fn may_be_up(&self) -> bool {
        self.quorum_read || !(self.reach.positively_down() || self.vouched_down)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveryFacts {
    pub name: String,
    pub peer_url: String,
    /// Voters in the cluster as last known (the member list, else `--initial-cluster`).
    pub voters: usize,
    pub peers: Vec<PeerFact>,
    /// The local member answers a quorum read: the cluster it is in has quorum.
    pub local_quorum_read: bool,
    pub local_raft_index: Option<u64>,
    pub local_revision: Option<i64>,
    /// The local data dir holds a member (`<data-dir>/member` exists).
    pub local_has_data: bool,
    pub container: Option<String>,
    /// `--force`: act although the cluster has quorum or a peer is ahead.
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryRefusal {
    #[error("the cluster still has quorum ({healthy} of {voters} voters answer quorum reads); rebuilding or restoring would throw away a working cluster. Use `etcd-hostfix rejoin` for a broken member, or --force if you mean it")]
    HasQuorum { healthy: usize, voters: usize },
    #[error("member {name} ({client_url}) is ahead of the local data (its raft index {index:?}, revision {revision:?}; local {local_index:?}, {local_revision:?}): it is the better progenitor. Run `etcd-hostfix rebuild` on {name}'s master instead, or --force to rebuild from here and lose what only {name} has")]
    PeerAhead {
        name: String,
        client_url: String,
        index: Option<u64>,
        revision: Option<i64>,
        local_index: Option<u64>,
        local_revision: Option<i64>,
    },
    #[error("{} of the other voters may still form a quorum that this master cannot see: {}. A timeout is either a host that is off or this master cut off by a partition, and rebuilding or restoring here while the others have quorum splits the cluster in two. Check from another master whether they answer; if you know they are down, say so with --peers-down {} (--force does not cover this)", .could, .peers.join("; "), .names.join(","))]
    PeersUnreachable { could: usize, peers: Vec<String>, names: Vec<String> },
    #[error("there is no local data to rebuild from ({path} does not exist); restore from a snapshot instead (`etcd-hostfix restore --snapshot FILE`)")]
    NoLocalData { path: String },
}

/// A step of `rebuild` or `restore`. Each is idempotent, as for rejoin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum RecoveryStep {
    /// Check the snapshot's SHA-256 trailer and read its status with etcdutl/etcdctl.
    VerifySnapshot,
    /// Park the manifest or stop the container; wait until etcd has exited.
    Stop,
    /// Copy `<data dir>/member` into the archive; the original stays in use.
    ArchiveCopy,
    /// Move `<data dir>/member` into the archive (restore replaces it).
    Archive,
    /// Restore the snapshot into a fresh data dir as a new one-member cluster with a new
    /// cluster token, then move it into place.
    RestoreSnapshot,
    /// Start with `--force-new-cluster` added.
    StartForced,
    /// Start with the one-member `--initial-cluster` (restore).
    StartSingle,
    /// Wait until the member serves quorum reads as the only member.
    WaitSingle,
    /// Remove `--force-new-cluster` and restart: left in place, every restart would cut the
    /// other members off again.
    Unforce,
    /// Docker only: remove the containers the recreates renamed aside.
    RemoveOldContainers,
    /// Park the local kube-apiserver's manifest, wait until it has stopped, move it back:
    /// its watch cache holds revisions the restored data does not (kubernetes#107457).
    BounceApiserver,
}

/// What a run that moved the data back in time does about the API servers' watch caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiserverAfter {
    /// Nothing went back in time, or the revision was bumped past every watcher's.
    NotNeeded,
    /// Bounce the local kube-apiserver static pod once etcd is up.
    Bounce,
    /// Needed but not done here, and why: the plan says so, with the command.
    Skip(&'static str),
}

/// `rolled_back`: the data now served is older than what the API servers may have watched
/// (a restore; a `rejoin --force` over newer local data). `bumped`: the restore moved the
/// revision past anything seen before, so watchers re-list by themselves.
pub fn apiserver_after(rolled_back: bool, bumped: bool, has_local_apiserver: bool, opted_out: bool) -> ApiserverAfter {
    if !rolled_back || bumped {
        ApiserverAfter::NotNeeded
    } else if opted_out {
        ApiserverAfter::Skip("--no-apiserver-restart was given")
    } else if !has_local_apiserver {
        ApiserverAfter::Skip("this master has no kube-apiserver static pod manifest")
    } else {
        ApiserverAfter::Bounce
    }
}

impl RecoveryStep {
    pub fn name(&self) -> &'static str {
        match self {
            RecoveryStep::VerifySnapshot => "verify-snapshot",
            RecoveryStep::Stop => "stop",
            RecoveryStep::ArchiveCopy => "archive-copy",
            RecoveryStep::Archive => "archive",
            RecoveryStep::RestoreSnapshot => "restore",
            RecoveryStep::StartForced => "start-forced",
            RecoveryStep::StartSingle => "start",
            RecoveryStep::WaitSingle => "wait-single",
            RecoveryStep::Unforce => "unforce",
            RecoveryStep::RemoveOldContainers => "remove-old",
            RecoveryStep::BounceApiserver => "bounce-apiserver",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecoveryKind {
    Rebuild,
    Restore,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryPlan {
    pub kind: RecoveryKind,
    pub name: String,
    pub peer_url: String,
    pub steps: Vec<RecoveryStep>,
    /// The other masters, to be brought back with `rejoin`.
    pub others: Vec<String>,
    /// What `--force` overrode, said again in the plan.
    pub overridden: Vec<String>,
    /// Peers the operator vouched are down (`--peers-down`), said again in the plan.
    #[serde(default)]
    pub vouched_down: Vec<String>,
}

fn has_quorum(f: &RecoveryFacts) -> Result<(), RecoveryRefusal> {
    let healthy = f.peers.iter().filter(|p| p.quorum_read).count() + usize::from(f.local_quorum_read);
    if f.voters > 0 && healthy >= crate::rejoin::quorum(f.voters) {
        return Err(RecoveryRefusal::HasQuorum { healthy, voters: f.voters });
    }
    Ok(())
}

/// No quorum answers here, but could one exist where this master cannot see it? Only peers
/// that are positively down (refused, never started, no leader) or vouched down by the
/// operator are ruled out; voters the local configuration does not name were not probed
/// and may be up too. Never covered by `--force`: that is how split brain is made.
fn quorum_ruled_out(f: &RecoveryFacts) -> Result<(), RecoveryRefusal> {
    let unprobed = f.voters.saturating_sub(f.peers.len() + 1);
    let could = f.peers.iter().filter(|p| p.may_be_up()).count() + unprobed;
    if f.voters == 0 || could < crate::rejoin::quorum(f.voters) {
        return Ok(());
    }
    let suspects: Vec<&PeerFact> = f.peers.iter().filter(|p| p.may_be_up() && !p.quorum_read).collect();
    let mut peers: Vec<String> = suspects
        .iter()
        .map(|p| {
            let how = if p.reach == Reach::Answers { "answers with a leader but serves no quorum read" } else { p.reach.as_str() };
            format!("{} ({}) {how}", p.name, p.client_url)
        })
        .collect();
    if unprobed > 0 {
        peers.push(format!("{unprobed} voter(s) not named in --initial-cluster, not probed"));
    }
    Err(RecoveryRefusal::PeersUnreachable { could, peers, names: suspects.iter().map(|p| p.name.clone()).collect() })
}

/// The quorum checks both playbooks share: refuse while a quorum answers (unless
/// `--force`) or may exist out of sight (unless the operator vouched for those peers).
fn quorum_checks(f: &RecoveryFacts, overridden: &mut Vec<String>) -> Result<(), RecoveryRefusal> {
    match has_quorum(f) {
        Err(r) if f.force => overridden.push(r.to_string()),
        r => r?,
    }
    if overridden.is_empty() {
        quorum_ruled_out(f)?;
    }
    Ok(())
}

fn finish(f: &RecoveryFacts, kind: RecoveryKind, mut steps: Vec<RecoveryStep>, overridden: Vec<String>) -> RecoveryPlan {
    if f.container.is_some() {
        steps.push(RecoveryStep::RemoveOldContainers);
    }
    RecoveryPlan {
        kind,
        name: f.name.clone(),
        peer_url: f.peer_url.clone(),
        steps,
        others: f.peers.iter().map(|p| p.name.clone()).collect(),
        overridden,
        vouched_down: f.peers.iter().filter(|p| p.vouched_down).map(|p| p.name.clone()).collect(),
    }
}

/// `rebuild` on the chosen survivor.
pub fn plan_rebuild(f: &RecoveryFacts, data_path: &str) -> Result<RecoveryPlan, RecoveryRefusal> {
    let mut overridden = vec![];
    if !f.local_has_data {
        return Err(RecoveryRefusal::NoLocalData { path: data_path.into() });
    }
    quorum_checks(f, &mut overridden)?;
    // The progenitor must hold the newest data of everyone reachable: compare the raft
    // index first (it counts every committed entry), then the revision. A stopped local
    // member has no raft index to show (only its db file's revision), so then revisions
    // alone are compared.
    let by_index = f.local_raft_index.is_some();
    let key = |i: Option<u64>, r: Option<i64>| (if by_index { i.unwrap_or(0) } else { 0 }, r.unwrap_or(0));
    let local = key(f.local_raft_index, f.local_revision);
    if let Some(p) = f.peers.iter().filter(|p| p.reachable).max_by_key(|p| key(p.raft_index, p.revision)) {
        if key(p.raft_index, p.revision) > local {
            let r = RecoveryRefusal::PeerAhead {
                name: p.name.clone(),
                client_url: p.client_url.clone(),
                index: p.raft_index,
                revision: p.revision,
                local_index: f.local_raft_index,
                local_revision: f.local_revision,
            };
            if !f.force {
                return Err(r);
            }
            overridden.push(r.to_string());
        }
    }
    let steps = vec![
        RecoveryStep::Stop,
        RecoveryStep::ArchiveCopy,
        RecoveryStep::StartForced,
        RecoveryStep::WaitSingle,
        RecoveryStep::Unforce,
        RecoveryStep::WaitSingle,
    ];
    Ok(finish(f, RecoveryKind::Rebuild, steps, overridden))
}

/// `restore --snapshot FILE` on the chosen master.
pub fn plan_restore(f: &RecoveryFacts) -> Result<RecoveryPlan, RecoveryRefusal> {
    let mut overridden = vec![];
    quorum_checks(f, &mut overridden)?;
    let steps = vec![
        RecoveryStep::VerifySnapshot,
        RecoveryStep::Stop,
        RecoveryStep::Archive,
        RecoveryStep::RestoreSnapshot,
        RecoveryStep::StartSingle,
        RecoveryStep::WaitSingle,
    ];
    Ok(finish(f, RecoveryKind::Restore, steps, overridden))
}

/// The flag edits that make the local member a cluster of one: `--force-new-cluster` on or
/// off, and for a restore the new `--initial-cluster` with this member alone.
pub fn single_member_edits(name: &str, peer_url: &str, force: bool) -> Vec<(String, Option<String>)> {
    let mut e = vec![("force-new-cluster".to_string(), force.then(|| "true".to_string()))];
    if !force {
        e.push(("initial-cluster".into(), Some(format!("{name}={peer_url}"))));
        e.push(("initial-cluster-state".into(), Some("new".into())));
    }
    e
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_apiserver_is_bounced_only_after_a_step_back_in_time_it_cannot_see() {
        use super::{apiserver_after, ApiserverAfter::*};
        assert_eq!(apiserver_after(false, false, true, false), NotNeeded);
        assert_eq!(apiserver_after(true, true, true, false), NotNeeded, "a bumped revision re-lists by itself");
        assert_eq!(apiserver_after(true, false, true, false), Bounce);
        assert!(matches!(apiserver_after(true, false, true, true), Skip(w) if w.contains("--no-apiserver-restart")));
        assert!(matches!(apiserver_after(true, false, false, false), Skip(w) if w.contains("no kube-apiserver")));
    }

    use super::*;

    fn peer(name: &str, reachable: bool, quorum: bool, index: u64, rev: i64) -> PeerFact {
        PeerFact {
            name: name.into(),
            client_url: format!("https://{name}:2379"),
            reachable,
            quorum_read: quorum,
            raft_index: reachable.then_some(index),
            revision: reachable.then_some(rev),
            // A lost master refuses connections; a survivor without quorum has no leader.
            reach: match (reachable, quorum) {
                (false, _) => Reach::Refused,
                (true, true) => Reach::Answers,
                (true, false) => Reach::NoLeader,
            },
            vouched_down: false,
        }
    }

    fn timing_out(name: &str) -> PeerFact {
        PeerFact { reach: Reach::TimedOut, ..peer(name, false, false, 0, 0) }
    }

    fn facts(peers: Vec<PeerFact>) -> RecoveryFacts {
        RecoveryFacts {
            name: "m1".into(),
            peer_url: "https://m1:2380".into(),
            voters: 3,
            peers,
            local_quorum_read: false,
            local_raft_index: Some(100),
            local_revision: Some(50),
            local_has_data: true,
            container: None,
            force: false,
        }
    }

    #[test]
    fn two_of_three_lost_rebuilds_from_the_survivor() {
        let p = plan_rebuild(&facts(vec![peer("m2", false, false, 0, 0), peer("m3", false, false, 0, 0)]), "/d").unwrap();
        let names: Vec<&str> = p.steps.iter().map(RecoveryStep::name).collect();
        assert_eq!(names, ["stop", "archive-copy", "start-forced", "wait-single", "unforce", "wait-single"]);
        assert_eq!(p.others, ["m2", "m3"]);
    }

    #[test]
    fn quorum_refuses_unless_forced() {
        let mut f = facts(vec![peer("m2", true, true, 100, 50), peer("m3", true, true, 100, 50)]);
        assert!(matches!(plan_rebuild(&f, "/d"), Err(RecoveryRefusal::HasQuorum { healthy: 2, voters: 3 })));
        assert!(matches!(plan_restore(&f), Err(RecoveryRefusal::HasQuorum { .. })));
        f.force = true;
        assert_eq!(plan_rebuild(&f, "/d").unwrap().overridden.len(), 1);
    }

    #[test]
    fn a_survivor_that_is_behind_is_refused_and_the_better_one_named() {
        let f = facts(vec![peer("m2", true, false, 120, 60), peer("m3", false, false, 0, 0)]);
        match plan_rebuild(&f, "/d") {
            Err(RecoveryRefusal::PeerAhead { name, .. }) => assert_eq!(name, "m2"),
            other => panic!("{other:?}"),
        }
        // Same index, higher revision: still ahead.
        let f = facts(vec![peer("m2", true, false, 100, 51)]);
        assert!(matches!(plan_rebuild(&f, "/d"), Err(RecoveryRefusal::PeerAhead { .. })));
        // A stopped local member shows only its revision; a peer's higher index alone is
        // then no reason to refuse.
        let mut f = facts(vec![peer("m2", true, false, 500, 50)]);
        f.local_raft_index = None;
        assert!(plan_rebuild(&f, "/d").is_ok());
        // Behind or equal: fine.
        let f = facts(vec![peer("m2", true, false, 100, 50), peer("m3", true, false, 90, 40)]);
        assert!(plan_rebuild(&f, "/d").is_ok());
    }

    /// A master cut off from two healthy peers sees them time out: rebuilding it would
    /// make a second cluster. Refused for both playbooks, and `--force` does not cover it.
    #[test]
    fn peers_that_time_out_refuse_even_with_force() {
        let mut f = facts(vec![timing_out("m2"), timing_out("m3")]);
        for forced in [false, true] {
            f.force = forced;
            match plan_rebuild(&f, "/d") {
                Err(RecoveryRefusal::PeersUnreachable { names, peers, .. }) => {
                    assert_eq!(names, ["m2", "m3"]);
                    assert!(peers[0].contains("m2") && peers[0].contains("timed out"), "{peers:?}");
                }
                other => panic!("{other:?}"),
            }
            assert!(matches!(plan_restore(&f), Err(RecoveryRefusal::PeersUnreachable { .. })));
        }
        let msg = plan_rebuild(&f, "/d").unwrap_err().to_string();
        assert!(msg.contains("--peers-down m2,m3"), "{msg}");
    }

    #[test]
    fn the_operator_may_vouch_for_peers_that_time_out() {
        let mut f = facts(vec![timing_out("m2"), timing_out("m3")]);
        f.peers[0].vouched_down = true;
        // One vouched, one still ambiguous: m3 alone is no quorum of 3 without this member.
        let p = plan_rebuild(&f, "/d").unwrap();
        assert_eq!(p.vouched_down, ["m2"]);
        f.peers[1].vouched_down = true;
        assert_eq!(plan_restore(&f).unwrap().vouched_down, ["m2", "m3"]);
        // Five voters: one refused, three timing out may be a majority behind a partition.
        let mut f = facts(vec![peer("m2", false, false, 0, 0), timing_out("m3"), timing_out("m4"), timing_out("m5")]);
        f.voters = 5;
        match plan_rebuild(&f, "/d") {
            Err(RecoveryRefusal::PeersUnreachable { names, .. }) => assert_eq!(names, ["m3", "m4", "m5"]),
            other => panic!("{other:?}"),
        }
        // Two refused, two timing out: those two are no majority of five.
        f.peers[1] = peer("m3", false, false, 0, 0);
        assert!(plan_rebuild(&f, "/d").is_ok());
    }

    #[test]
    fn voters_not_in_the_configuration_count_as_possibly_up() {
        // The member list says 5 voters but --initial-cluster names only 2 others.
        let mut f = facts(vec![peer("m2", false, false, 0, 0), timing_out("m3")]);
        f.voters = 5;
        match plan_rebuild(&f, "/d") {
            Err(RecoveryRefusal::PeersUnreachable { peers, .. }) => {
                assert!(peers.iter().any(|p| p.contains("2 voter(s) not named")), "{peers:?}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_data_means_restore() {
        let mut f = facts(vec![]);
        f.local_has_data = false;
        assert!(matches!(plan_rebuild(&f, "/var/lib/etcd/member"), Err(RecoveryRefusal::NoLocalData { .. })));
    }

    #[test]
    fn containers_get_their_old_selves_removed_last() {
        let mut f = facts(vec![peer("m2", false, false, 0, 0)]);
        f.container = Some("etcd".into());
        assert_eq!(plan_restore(&f).unwrap().steps.last(), Some(&RecoveryStep::RemoveOldContainers));
        assert_eq!(plan_rebuild(&f, "/d").unwrap().steps.last(), Some(&RecoveryStep::RemoveOldContainers));
    }

    #[test]
    fn edits() {
        assert_eq!(single_member_edits("m1", "https://m1:2380", true), vec![("force-new-cluster".to_string(), Some("true".to_string()))]);
        let e = single_member_edits("m1", "https://m1:2380", false);
        assert_eq!(e[0], ("force-new-cluster".to_string(), None));
        assert_eq!(e[1].1.as_deref(), Some("m1=https://m1:2380"));
    }
}
