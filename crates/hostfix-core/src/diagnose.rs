//! Crashloop triage: what is wrong with the local member, from etcd's own last words and
//! from live probes, and which playbook fixes it.
//!
//! Logs say *why* a member dies; probes say *what is true now*. When probes positively show
//! a healthy, correctly clustered member, they win (a healthy member's log can carry another
//! member's "cluster ID mismatch"). When the two point at different playbooks, the finding
//! says so and recommends `manual`, the safest.

use serde::{Deserialize, Serialize};

use crate::logs::LogLine;
use crate::status::Reach;

/// Another voter that did not answer with a leader, and how it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerFailure {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub reach: Reach,
}

impl PeerFailure {
    fn describe(&self) -> String {
        format!("{} ({}) {}", self.name, self.client_url, self.reach.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    Healthy,
    NotRunning,
    AlreadyBootstrapped,
    DataLost,
    ClusterIdMismatch,
    MemberRemoved,
    DbCorrupt,
    WalCorrupt,
    MembershipMismatch,
    Nospace,
    QuorumLost,
    /// This member cannot reach a quorum, but the peers that would make one only time out:
    /// either those hosts are down or this one is cut off, and nobody can tell from here.
    Partitioned,
    /// This etcd version refuses the member's data as it is: custom v2store content (etcd
    /// 3.6 and later start only on v2 data that holds membership alone), or a storage schema
    /// written by a newer etcd (a downgrade without etcd's downgrade procedure). The data is
    /// not broken and the peers hold the same, so replacing this member from them is no cure.
    VersionIncompatible,
    Unknown,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Healthy => "healthy",
            Class::NotRunning => "not-running",
            Class::AlreadyBootstrapped => "already-bootstrapped",
            Class::DataLost => "data-lost",
            Class::ClusterIdMismatch => "cluster-id-mismatch",
            Class::MemberRemoved => "member-removed",
            Class::DbCorrupt => "db-corrupt",
            Class::WalCorrupt => "wal-corrupt",
            Class::MembershipMismatch => "membership-mismatch",
            Class::Nospace => "nospace",
            Class::QuorumLost => "quorum-lost",
            Class::Partitioned => "partitioned",
            Class::VersionIncompatible => "version-incompatible",
            Class::Unknown => "unknown",
        }
    }

    /// Classes where the member's own data or identity is bad and the cure is to replace it
    /// from the rest of the cluster.
    fn wants_rejoin(self) -> bool {
        matches!(
            self,
            Class::AlreadyBootstrapped
                | Class::DataLost
                | Class::ClusterIdMismatch
                | Class::MemberRemoved
                | Class::DbCorrupt
                | Class::WalCorrupt
                | Class::MembershipMismatch
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Playbook {
    Rejoin,
    Rebuild,
    Defrag,
    None,
    Manual,
}

impl Playbook {
    pub fn as_str(self) -> &'static str {
        match self {
            Playbook::Rejoin => "rejoin",
            Playbook::Rebuild => "rebuild",
            Playbook::Defrag => "defrag",
            Playbook::None => "none",
            Playbook::Manual => "manual",
        }
    }
}

/// What the live probes found. Every field is optional: with `--log` there are none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Probes {
    /// An etcd process with this member's configuration is running.
    pub process_up: Option<bool>,
    /// The runtime keeps restarting it (CrashLoopBackOff, Docker's `restarting`).
    pub crashlooping: Option<bool>,
    /// The member's client URL answered a status call.
    pub endpoint_answers: Option<bool>,
    /// The member answered a quorum read.
    pub endpoint_healthy: Option<bool>,
    /// Whether a member list could be had from anyone.
    pub member_list: Option<bool>,
    pub listed_by_name: Option<bool>,
    pub listed_by_peer_url: Option<bool>,
    /// The ID (hex) the member list gives this member, found by name or peer URL.
    pub listed_id: Option<String>,
    /// Voting members other than this one, and how many of them answer a quorum read.
    pub peer_voters: usize,
    pub peer_voters_healthy: usize,
    /// This member is a voter (false for a learner or an unlisted member).
    pub local_is_voter: bool,
    /// The other voters that did not answer a quorum read, with how each failed. A voter
    /// missing from here and from `peer_voters_healthy` answered without serving.
    pub peer_voters_failed: Vec<PeerFailure>,
    pub alarms: Vec<String>,
    pub local_cluster_id: Option<String>,
    pub peer_cluster_ids: Vec<String>,
}

impl Probes {
    /// Whether the rest of the cluster has a quorum without this member.
    pub fn rest_has_quorum(&self) -> Option<bool> {
        self.member_list?;
        let voters = self.peer_voters + usize::from(self.local_is_voter);
        if voters == 0 {
            return None;
        }
        Some(self.peer_voters_healthy > voters / 2)
    }

    /// Whether no quorum can exist anywhere: so many other voters are positively down
    /// (refused, never started, or answering without a leader) that those left, even if
    /// every one of them is up behind a partition, are too few. A voter that only timed out
    /// might be in a working majority that this master cannot see.
    pub fn quorum_ruled_out(&self) -> bool {
        let voters = self.peer_voters + usize::from(self.local_is_voter);
        let down = self.peer_voters_failed.iter().filter(|f| f.reach.positively_down()).count();
        voters > 0 && self.peer_voters.saturating_sub(down) < crate::rejoin::quorum(voters)
    }

    /// The other voters that did not answer and may be up: the ones a partition hides.
    pub fn ambiguous_peers(&self) -> Vec<&PeerFailure> {
        self.peer_voters_failed.iter().filter(|f| !f.reach.positively_down()).collect()
    }

    fn cluster_id_differs(&self) -> Option<(String, String)> {
        let local = self.local_cluster_id.as_ref()?;
        let peer = self.peer_cluster_ids.iter().find(|p| *p != local)?;
        Some((local.clone(), peer.clone()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub class: Class,
    pub member: String,
    pub playbook: Playbook,
    /// The exact command to run next.
    pub command: String,
    /// Verbatim log lines and probe facts behind the verdict, capped.
    pub evidence: Vec<String>,
    /// Disagreements and caveats, in plain words.
    pub notes: Vec<String>,
    /// What the newest log run alone says, when it says anything.
    pub log_class: Option<Class>,
    /// The verdict rests on the run before the newest: the member restarted and has not
    /// failed (yet). A person may have fixed it; only its newest run can tell.
    pub from_previous_run: bool,
    /// When the first log line of the verdict's signature was written (RFC 3339), when the
    /// log says: what detection latency is measured from.
    pub signature_at: Option<String>,
}

pub const MAX_EVIDENCE: usize = 8;
pub const MAX_EVIDENCE_LEN: usize = 400;

struct Rule {
    class: Class,
    any: &'static [&'static str],
    /// All of these must also appear (in the same line).
    with: &'static [&'static str],
}

/// Ordered: the first rule that matches a line names that line's class.
const RULES: &[Rule] = &[
    Rule { class: Class::AlreadyBootstrapped, any: &["has already been bootstrapped"], with: &[] },
    Rule { class: Class::DataLost, any: &["tocommit("], with: &["out of range"] },
    // A member restarting under its existing ID with an empty log: its data went, its WAL's
    // identity stayed (3.4 capnslog, then 3.5 zap).
    Rule { class: Class::DataLost, any: &["at commit index 0"], with: &["restarting member"] },
    Rule { class: Class::DataLost, any: &["restarting local member"], with: &["commit-index=0 "] },
    // A joining member (no data, `existing`) that no peer in --initial-cluster answered:
    // the peers are down or cut off, or the flag names the wrong URLs (see `diagnose`).
    Rule { class: Class::QuorumLost, any: &["could not retrieve cluster information", "cannot fetch cluster info from peer urls"], with: &[] },
    Rule { class: Class::MemberRemoved, any: &["permanently removed from the cluster", "data-dir used by this member must be removed"], with: &[] },
    Rule { class: Class::MembershipMismatch, any: &["member count is unequal", "couldn't find local name", "error validating peerurls", "unmatched member while checking peurls", "has no corresponding entry in --initial-cluster", "--initial-cluster has"], with: &[] },
    Rule { class: Class::ClusterIdMismatch, any: &["cluster id mismatch"], with: &[] },
    // etcd 3.6+ at start: `illegal v2store content` (its error: "detected disallowed custom
    // content in v2store"; v2 data in the last snapshot), `detected disallowed v2 WAL for
    // stage --v2-deprecation=write-only` (a panic while replaying a v2 write the WAL holds
    // after that snapshot; captured from real 3.6.16, more likely than the first, since
    // snapshots are 10 000 entries apart), or `Failed to validate schema` (a db from a newer
    // etcd; 3.6.16's error says `version "3.7.0" is not supported`). Matched on `msg` and
    // `error` text, never on `caller` paths, which 3.6 moved.
    Rule {
        class: Class::VersionIncompatible,
        any: &["illegal v2store content", "disallowed custom content in v2store", "disallowed v2 wal", "failed to validate schema"],
        with: &[],
    },
    Rule {
        class: Class::DbCorrupt,
        any: &[
            "freepages: failed to get all reachable pages",
            "invalid database",
            "invalid meta pages",
            "cannot open database",
            "failed to open database",
            "data inconsistency",
            "database file size too small",
            "unexpected fault address",
            "signal sigbus",
            "alarm:corrupt",
            "alarm corrupt",
            "already freed",
            "unreachable unfreed",
        ],
        with: &[],
    },
    Rule {
        class: Class::WalCorrupt,
        // "cannot use none as id": the WAL's metadata decoded to member ID 0.
        any: &["crc mismatch", "walpb:", "failed to read wal", "illegal wiretype", "proto: ", "wal: max entry size", "cannot use none as id"],
        with: &[],
    },
    Rule { class: Class::Nospace, any: &["database space exceeded", "exceeded backend quota", "etcdserver: no space", "alarm nospace", "alarm=nospace", "alarm:nospace"], with: &[] },
];

fn line_class(l: &LogLine) -> Option<Class> {
    RULES.iter().find_map(|r| {
        let hit = r.any.iter().any(|p| l.text.contains(p)) && r.with.iter().all(|p| l.text.contains(p));
        hit.then_some(r.class)
    })
}

fn severity(l: &LogLine) -> u8 {
    match l.level.as_deref() {
        Some("panic" | "fatal" | "dpanic") => 3,
        Some("error") => 2,
        Some("warn") => 1,
        _ => 0,
    }
}

/// The class the newest log run points at, and the lines that show it. A fatal or panic line
/// outranks errors and warnings; among equals, the one closest to the end (the member's
/// last words) wins. A Go panic whose stack runs through bbolt or the WAL is classed by where
/// it happened even when the panic message itself is generic.
pub fn classify_log(run: &[LogLine]) -> Option<(Class, Vec<&LogLine>)> {
    let mut best: Option<(u8, usize, Class)> = None;
    for (i, l) in run.iter().enumerate() {
        let class = line_class(l).or_else(|| generic_panic_class(run, i));
        if let Some(c) = class {
            let s = severity(l).max(if l.text.starts_with("panic:") { 3 } else { 0 });
            if best.map(|(bs, _, _)| s >= bs).unwrap_or(true) {
                best = Some((s, i, c));
            }
        }
    }
    let Some((_, _, class)) = best else { return quorum_signal(run) };
    let mut lines: Vec<&LogLine> = run.iter().filter(|l| line_class(l) == Some(class)).collect();
    if lines.is_empty() {
        lines = run.iter().filter(|l| l.text.starts_with("panic:") || l.text.contains("fatal error")).collect();
    }
    // Keep the last few: repeated warnings say nothing new.
    let keep = lines.len().saturating_sub(MAX_EVIDENCE / 2);
    Some((class, lines.split_off(keep)))
}

/// Quorum lost, as a surviving member's log shows it without saying so: elections that never
/// end (three or more since a leader was last elected), or reads that time out waiting for a
/// leader's ReadIndex. One election or one slow read is a normal hiccup; a run that ends
/// that way is not.
fn quorum_signal(run: &[LogLine]) -> Option<(Class, Vec<&LogLine>)> {
    let since = run.iter().rposition(|l| l.text.contains("elected leader") || l.text.contains("became leader")).map(|i| i + 1).unwrap_or(0);
    let tail = &run[since..];
    let elections: Vec<&LogLine> = tail.iter().filter(|l| l.text.contains("is starting a new election")).collect();
    let read_index: Vec<&LogLine> = tail
        .iter()
        .filter(|l| l.text.contains("waiting for readindex response took too long") || l.text.contains("timed out waiting for read index response"))
        .collect();
    if elections.len() < 3 && read_index.len() < 2 {
        return None;
    }
    // Peers that refuse or cannot be reached are the why; keep the newest of each kind.
    let refused = tail.iter().rfind(|l| l.text.contains("connection refused") || l.text.contains("i/o timeout"));
    let mut lines: Vec<&LogLine> = elections.iter().rev().take(2).rev().copied().collect();
    lines.extend(read_index.iter().last().copied());
    lines.extend(refused);
    Some((Class::QuorumLost, lines))
}

fn generic_panic_class(run: &[LogLine], i: usize) -> Option<Class> {
    let l = &run[i];
    let generic = ["slice bounds out of range", "index out of range", "nil pointer dereference", "unexpected fault address", "fatal error: fault"];
    if !(l.text.starts_with("panic:") || l.text.starts_with("fatal error") || l.text.starts_with("unexpected fault"))
        || !generic.iter().any(|g| l.text.contains(g))
    {
        return None;
    }
    let stack: String = run[i..].iter().take(40).map(|x| x.text.as_str()).collect::<Vec<_>>().join("\n");
    if stack.contains("/wal.") || stack.contains("wal.(*") || stack.contains("/wal/") {
        Some(Class::WalCorrupt)
    } else {
        // etcd mmaps its bbolt file; a fault or bounds panic outside the WAL is the db.
        Some(Class::DbCorrupt)
    }
}

/// The member ID the local etcd runs as, from its own newest log lines (zap's
/// `local-member-id`, etcd 3.5 and later).
fn local_member_id(run: &[LogLine]) -> Option<String> {
    run.iter().rev().find_map(|l| {
        let at = l.raw.find("\"local-member-id\":\"")? + "\"local-member-id\":\"".len();
        let id: String = l.raw[at..].chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        (!id.is_empty()).then_some(id)
    })
}

fn same_id(a: &str, b: &str) -> bool {
    match (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// What to do when this etcd version refuses the data, by which refusal it is. No rejoin:
/// the data is intact and every peer has the same, so a new member would be refused the
/// same way once its first snapshot arrives (v2store) or the cluster is left on a version
/// that cannot read its own schema; and the archive would hide the evidence.
fn version_incompatible_notes(lines: &[&LogLine]) -> Vec<String> {
    let v2 = lines.iter().any(|l| l.text.contains("v2store") || l.text.contains("v2 wal"));
    let mut notes = vec![];
    if v2 {
        notes.push(
            "etcd 3.6 and later refuse v2 data other than membership. Put this member's image back to the newest 3.5 (3.5.26 or later), remove the v2 data through the v2 API or start 3.5 once with --v2-deprecation=write-only-drop-data, let it take a snapshot, then upgrade again; every member holds the same v2 data, so do this before upgrading the others".into(),
        );
    } else {
        notes.push(
            "the db's storage schema is newer than this etcd binary: it was written by a newer etcd, and etcd only goes back through its downgrade procedure (`etcdctl downgrade validate|enable`, then the older binary). Run the version that wrote it (the previous image in the manifest) until the cluster is downgraded".into(),
        );
    }
    notes.push("no rejoin is offered: the data is not broken, and the peers hold the same".into());
    notes
}

fn clip(s: &str) -> String {
    if s.chars().count() > MAX_EVIDENCE_LEN {
        let mut t: String = s.chars().take(MAX_EVIDENCE_LEN).collect();
        t.push('…');
        t
    } else {
        s.to_string()
    }
}

/// The host of a `scheme://host:port` URL.
fn host_of(url: &str) -> Option<&str> {
    let hostport = url.split_once("://")?.1.split('/').next()?;
    Some(hostport.rsplit_once(':').map(|x| x.0).unwrap_or(hostport).trim_matches(['[', ']']))
}

fn base_playbook(c: Class, quorum: Option<bool>) -> Playbook {
    match c {
        Class::Healthy => Playbook::None,
        Class::Nospace => Playbook::Defrag,
        Class::QuorumLost => Playbook::Rebuild,
        c if c.wants_rejoin() => match quorum {
            Some(false) => Playbook::Manual,
            _ => Playbook::Rejoin,
        },
        _ => Playbook::Manual,
    }
}

/// Where the finding's exact command comes from: the CLI knows the options it was run with.
pub trait CommandFor {
    fn command(&self, playbook: Playbook, class: Class) -> String;
}

/// Diagnose from the whole log read: its newest run decides, unless that run has not said
/// anything yet (a pod that just restarted) while the member is not serving; then the run
/// before it speaks.
pub fn diagnose_log(member: &str, lines: &[LogLine], p: &Probes, cmds: &dyn CommandFor) -> Finding {
    let runs = crate::logs::runs(lines);
    let newest = runs.last().copied().unwrap_or(&[]);
    let mut f = diagnose(member, newest, p, cmds);
    let not_serving = p.endpoint_healthy == Some(false);
    if f.log_class.is_none() && not_serving && runs.len() >= 2 {
        let prev = runs[runs.len() - 2];
        if classify_log(prev).is_some() {
            f = diagnose(member, prev, p, cmds);
            f.from_previous_run = true;
            f.notes.push("the newest run has not failed yet; this is what the previous run died of".into());
        }
    }
    f
}

pub fn diagnose(member: &str, run: &[LogLine], p: &Probes, cmds: &dyn CommandFor) -> Finding {
    let log = classify_log(run);
    let log_class = log.as_ref().map(|(c, _)| *c);
    let mut evidence: Vec<String> =
        log.as_ref().map(|(_, ls)| ls.iter().map(|l| clip(&l.raw)).collect()).unwrap_or_default();
    let signature_at = log.as_ref().and_then(|(_, ls)| ls.iter().find_map(|l| l.ts.clone()));
    let mut notes = vec![];
    let quorum = p.rest_has_quorum();
    let listed = match (p.listed_by_name, p.listed_by_peer_url) {
        (Some(a), Some(b)) => Some(a || b),
        (a, b) => a.or(b),
    };

    // What the probes alone establish, strongest first.
    let probe_class = if p.alarms.iter().any(|a| a == "CORRUPT") {
        evidence.push("probe: alarm CORRUPT is raised for this member".into());
        Some(Class::DbCorrupt)
    } else if let Some((local, peer)) = p.cluster_id_differs() {
        evidence.push(format!("probe: this member reports cluster ID {local}, its peers {peer}"));
        Some(Class::ClusterIdMismatch)
    } else if p.alarms.iter().any(|a| a == "NOSPACE") {
        evidence.push("probe: alarm NOSPACE is raised for this member".into());
        Some(Class::Nospace)
    } else if p.member_list == Some(true) && quorum == Some(false) && p.endpoint_healthy != Some(true)
        || p.member_list == Some(false) && p.endpoint_answers == Some(true) && p.endpoint_healthy == Some(false)
    {
        let failed: Vec<String> = p.peer_voters_failed.iter().map(PeerFailure::describe).collect();
        if !failed.is_empty() {
            evidence.push(format!("probe: {}", failed.join("; ")));
        }
        if p.quorum_ruled_out() {
            evidence.push(format!(
                "probe: {} of {} other voting members answer, and enough of the rest are positively down that no quorum exists anywhere",
                p.peer_voters_healthy, p.peer_voters
            ));
            Some(Class::QuorumLost)
        } else {
            evidence.push(format!(
                "probe: {} of {} other voting members answer; the ones that would make a quorum do not refuse, they time out or fail",
                p.peer_voters_healthy, p.peer_voters
            ));
            Some(Class::Partitioned)
        }
    } else if p.endpoint_healthy == Some(true) && listed == Some(true) {
        evidence.push("probe: this member is listed and serves quorum reads".into());
        Some(Class::Healthy)
    } else if p.member_list == Some(true) && listed == Some(false) {
        evidence.push(format!("probe: no member named {member} or with this member's peer URL is in the member list"));
        Some(Class::MemberRemoved)
    } else {
        None
    };

    // "Removed", says the local etcd, while the cluster lists this member, under another ID:
    // the local etcd runs as a member the cluster never had. That is a data dir wiped and
    // restarted with `--initial-cluster-state=new` after an earlier rejoin gave the member a
    // new ID (so etcd cannot say "already bootstrapped": it computes the old one). Its
    // identity is wrong, not its place in the cluster: definitive, and a rejoin fixes it.
    let stranger = match (log_class, listed, &p.listed_id, log.as_ref().and_then(|(_, _)| local_member_id(run))) {
        (Some(Class::MemberRemoved), Some(true), Some(listed_id), Some(running)) if !same_id(listed_id, &running) => Some((listed_id.clone(), running)),
        _ => None,
    };
    let log_class = match &stranger {
        Some((listed_id, running)) => {
            evidence.push(format!("probe: the cluster lists {member} as {listed_id}, but the local etcd runs as {running}, a member it does not know"));
            notes.push(format!(
                "{member}'s etcd started as a new member ({running}) instead of the listed {listed_id}: its data dir was lost and it was started with --initial-cluster-state=new after an earlier rejoin had given it a new ID"
            ));
            Some(Class::MembershipMismatch)
        }
        None => log_class,
    };
    let probe_class = if stranger.is_some() && probe_class == Some(Class::MemberRemoved) { None } else { probe_class };

    let class = match (probe_class, log_class) {
        (Some(Class::Healthy), Some(l)) => {
            notes.push(format!(
                "the newest log run shows {} but the member is healthy now; the log lines may concern a peer",
                l.as_str()
            ));
            Class::Healthy
        }
        // A log without a leader (elections, ReadIndex timeouts) is what a partition and a
        // quorum loss both write; the probes tell them apart, and they do not disagree.
        (Some(pc @ (Class::Partitioned | Class::QuorumLost)), Some(Class::QuorumLost)) => pc,
        (Some(pc), Some(lc)) if pc != lc => {
            if base_playbook(pc, quorum) != base_playbook(lc, quorum) {
                notes.push(format!(
                    "signs disagree: the log says {} but the probes say {}; recommending the safest playbook",
                    lc.as_str(),
                    pc.as_str()
                ));
            } else {
                notes.push(format!("the log says {}; the probes say {}", lc.as_str(), pc.as_str()));
            }
            // The log names the cause; the probe describes the state. For the class, the
            // member's own last words are the more specific.
            if matches!(pc, Class::QuorumLost | Class::Partitioned | Class::Nospace | Class::ClusterIdMismatch) {
                pc
            } else {
                lc
            }
        }
        (Some(pc), _) => pc,
        (None, Some(lc)) => lc,
        // It keeps dying, and its last words match nothing we know: say so rather than
        // pretend it is merely stopped.
        (None, None) if p.crashlooping == Some(true) => {
            evidence.extend(run.iter().rev().take(3).rev().map(|l| clip(&l.raw)));
            Class::Unknown
        }
        (None, None) if p.process_up == Some(false) || p.endpoint_answers == Some(false) => {
            evidence.push("probe: no etcd process with this member's configuration is running".into());
            Class::NotRunning
        }
        (None, None) => Class::Unknown,
    };

    // A joiner that no peer answered, while the probes see peers that answer: they do not
    // know this member by the URLs it was given.
    let cluster_info = log.as_ref().is_some_and(|(_, ls)| ls.iter().any(|l| l.text.contains("cluster info")));
    let class = if cluster_info && class == Class::QuorumLost && p.member_list == Some(true) {
        notes.push("the peers answer here, but not to this member's --initial-cluster URLs as it was started: its configuration names the wrong peers or this member's own URL is not in the member list".into());
        Class::MembershipMismatch
    } else {
        class
    };
    let log_only_quorum = class == Class::QuorumLost && probe_class.is_none();
    if log_only_quorum {
        notes.push(if cluster_info {
            "from the log alone: no peer in --initial-cluster answered. Either they are down or this host is cut off (quorum lost), or the flag names the wrong peer URLs (membership-mismatch); the probes tell which (run diagnose on the master itself)".into()
        } else {
            "from the log alone: this member keeps electing and never finds a leader. Lost peers and a partition of this host look the same here; the probes tell which (run diagnose on the master itself)".into()
        });
    }
    let mut playbook = base_playbook(class, quorum);
    if log_only_quorum {
        // Never a rebuild on the log's word: a cut-off master sees exactly these lines.
        playbook = Playbook::Manual;
    }
    if notes.iter().any(|n| n.starts_with("signs disagree")) {
        playbook = Playbook::Manual;
    }
    if class.wants_rejoin() && quorum == Some(false) {
        notes.push("the rest of the cluster has no quorum, so rejoin cannot work; rebuild on the best survivor or restore a snapshot".into());
    }
    if class == Class::QuorumLost {
        notes.push("run rebuild only on the survivor with the newest data (highest raft index); it refuses otherwise".into());
    }
    if class == Class::VersionIncompatible {
        notes.extend(version_incompatible_notes(log.as_ref().map(|(_, ls)| ls.as_slice()).unwrap_or(&[])));
    }
    if class == Class::Partitioned {
        notes.push("this member cannot reach a quorum; peers time out, so either those hosts are down or this host is cut off. Do not rebuild or restore from here: if the others still have a quorum, that splits the cluster in two".into());
        for f in p.ambiguous_peers() {
            let host = host_of(&f.peer_url).unwrap_or(&f.peer_url);
            notes.push(format!(
                "check {}: `ping -c 3 {host}` from here, and from another master `curl -sk {}/version` (its peer port): if it answers there, this host is the one cut off",
                f.name, f.peer_url
            ));
        }
    }
    evidence.truncate(MAX_EVIDENCE);
    Finding {
        class,
        member: member.to_string(),
        playbook,
        command: cmds.command(playbook, class),
        evidence,
        notes,
        log_class,
        from_previous_run: false,
        signature_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{newest_run, parse_text};

    struct Cmd;
    impl CommandFor for Cmd {
        fn command(&self, p: Playbook, _: Class) -> String {
            format!("etcd-hostfix {}", p.as_str())
        }
    }

    fn fixture(version: &str, class: &str) -> String {
        let p = format!("{}/testdata/logs/{version}/{class}.log", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    fn from_log(text: &str) -> Finding {
        let lines = parse_text(text);
        diagnose("m3", newest_run(&lines), &Probes::default(), &Cmd)
    }

    /// Logs captured from real etcd (tests/capture_logs.rs) classify on their own, without
    /// probes, for every class a log can show.
    #[test]
    fn captured_logs_classify() {
        let cases = [
            ("already-bootstrapped", Class::AlreadyBootstrapped, Playbook::Rejoin),
            ("data-lost", Class::DataLost, Playbook::Rejoin),
            ("member-removed", Class::MemberRemoved, Playbook::Rejoin),
            ("db-corrupt", Class::DbCorrupt, Playbook::Rejoin),
            ("wal-corrupt", Class::WalCorrupt, Playbook::Rejoin),
            // Well-formed WAL records whose metadata says member ID 0: raft panics with
            // `cannot use none as id` (a real capture, tests/failures `wal_no_member_id`).
            ("wal-no-member-id", Class::WalCorrupt, Playbook::Rejoin),
            ("nospace", Class::Nospace, Playbook::Defrag),
            ("membership-mismatch", Class::MembershipMismatch, Playbook::Rejoin),
            ("cluster-id-mismatch", Class::ClusterIdMismatch, Playbook::Rejoin),
            ("unknown", Class::Unknown, Playbook::Manual),
            // A surviving member after the other two stopped: elections that never end.
            ("quorum-lost", Class::QuorumLost, Playbook::Manual),
            ("cluster-info-unreachable", Class::QuorumLost, Playbook::Manual),
        ];
        for v in ["3.4.23", "3.5.1", "3.6.16", "3.7.3"] {
            for (name, class, playbook) in cases {
                let f = from_log(&fixture(v, name));
                assert_eq!(f.class, class, "{v}/{name}: {f:#?}");
                assert_eq!(f.playbook, playbook, "{v}/{name}");
                if class != Class::Unknown {
                    assert!(!f.evidence.is_empty(), "{v}/{name}");
                }
                assert!(f.evidence.len() <= MAX_EVIDENCE);
                assert!(f.evidence.iter().all(|e| e.chars().count() <= MAX_EVIDENCE_LEN + 1));
            }
        }
    }

    /// Captured from etcd 3.6.16 (and 3.5.36 alike): m3 rejoined once (a new member ID),
    /// then lost its data and was started with `new` again. Its etcd runs as the ID
    /// `new` computes, the peers answer "removed". Listed under another ID, it is a stranger
    /// to its own cluster: membership-mismatch, definitive, rejoin.
    #[test]
    fn a_stranger_running_under_a_listed_members_name_is_membership_mismatch() {
        let run = r#"{"level":"info","ts":"2026-12-04T19:39:47.400000Z","caller":"etcdmain/etcd.go:64","msg":"Running: ","args":["etcd"]}
{"level":"warn","ts":"2026-12-04T19:39:47.456203Z","caller":"etcdserver/server.go:860","msg":"server error","error":"the member has been permanently removed from the cluster"}
{"level":"warn","ts":"2026-12-04T19:39:47.456276Z","caller":"etcdserver/server.go:861","msg":"data-dir used by this member must be removed"}
{"level":"warn","ts":"2026-12-04T19:39:47.459977Z","caller":"rafthttp/http.go:424","msg":"failed to find remote peer in cluster","local-member-id":"aa93264fe5c32a36","remote-peer-id-stream-handler":"aa93264fe5c32a36","remote-peer-id-from":"f59af7effd72c89d","cluster-id":"ab5ad7b2a5d1d5f0"}"#;
        let lines = parse_text(run);
        let mut p = Probes { member_list: Some(true), listed_by_name: Some(true), listed_by_peer_url: Some(true), ..Default::default() };
        p.listed_id = Some("d62465e74061a73a".into());
        let f = diagnose("m3", newest_run(&lines), &p, &Cmd);
        assert_eq!(f.class, Class::MembershipMismatch, "{f:#?}");
        assert_eq!(f.playbook, Playbook::Rejoin, "{f:#?}");
        assert!(f.evidence.iter().any(|e| e.contains("d62465e74061a73a") && e.contains("aa93264fe5c32a36")), "{f:#?}");
        // Listed under the ID it runs as: removed is what it is, and nothing is overridden.
        p.listed_id = Some("aa93264fe5c32a36".into());
        assert_eq!(diagnose("m3", newest_run(&lines), &p, &Cmd).class, Class::MemberRemoved);
        // Not listed at all: removed.
        let q = Probes { member_list: Some(true), listed_by_name: Some(false), listed_by_peer_url: Some(false), ..Default::default() };
        assert_eq!(diagnose("m3", newest_run(&lines), &q, &Cmd).class, Class::MemberRemoved);
    }

    /// etcd 3.6's two refusals of data it will not start on (server/etcdserver/bootstrap.go),
    /// as zap writes them: their own class, a manual playbook with what to do, never rejoin.
    #[test]
    fn a_version_that_refuses_the_data_is_version_incompatible() {
        let v2 = r#"{"level":"info","ts":"2026-12-04T19:00:00.000Z","caller":"etcdmain/etcd.go:64","msg":"Running: ","args":["etcd"]}
{"level":"error","ts":"2026-12-04T19:00:00.100Z","caller":"etcdserver/bootstrap.go:409","msg":"illegal v2store content","error":"detected disallowed custom content in v2store for stage --v2-deprecation=write-only"}
{"level":"fatal","ts":"2026-12-04T19:00:00.101Z","caller":"etcdmain/etcd.go:183","msg":"discovery failed","error":"detected disallowed custom content in v2store for stage --v2-deprecation=write-only"}"#;
        let schema = r#"{"level":"info","ts":"2026-12-04T19:00:00.000Z","caller":"etcdmain/etcd.go:64","msg":"Running: ","args":["etcd"]}
{"level":"error","ts":"2026-12-04T19:00:00.100Z","caller":"etcdserver/bootstrap.go:240","msg":"Failed to validate schema","error":"downgrades are not yet supported"}
{"level":"fatal","ts":"2026-12-04T19:00:00.101Z","caller":"etcdmain/etcd.go:183","msg":"discovery failed","error":"downgrades are not yet supported"}"#;
        for (text, what) in [(v2, "v2-deprecation=write-only-drop-data"), (schema, "downgrade procedure")] {
            let f = from_log(text);
            assert_eq!(f.class, Class::VersionIncompatible, "{f:#?}");
            assert_eq!(f.playbook, Playbook::Manual, "{f:#?}");
            assert!(!f.evidence.is_empty(), "{f:#?}");
            assert!(f.notes.iter().any(|n| n.contains(what)), "{f:#?}");
            assert!(f.notes.iter().any(|n| n.contains("no rejoin")), "{f:#?}");
        }
    }

    /// The refusals captured from real etcd 3.6.16 (tests/capture_logs.rs
    /// `capture_version_refusals`): a 3.5.36 cluster that used the v2 API, one member moved
    /// to 3.6 (the v2 write in its last snapshot, or only in its WAL after it); and a 3.7.3
    /// cluster, one member set back to 3.6 by hand.
    #[test]
    fn captured_version_refusals_are_version_incompatible() {
        for (name, what) in [
            ("v2store-content", "v2-deprecation=write-only-drop-data"),
            ("v2-wal", "v2-deprecation=write-only-drop-data"),
            ("schema-newer", "downgrade procedure"),
        ] {
            let f = from_log(&fixture("3.6.16", name));
            assert_eq!(f.class, Class::VersionIncompatible, "{name}: {f:#?}");
            assert_eq!(f.playbook, Playbook::Manual, "{name}");
            assert!(!f.evidence.is_empty(), "{name}: {f:#?}");
            assert!(f.notes.iter().any(|n| n.contains(what)), "{name}: {f:#?}");
            assert!(f.notes.iter().any(|n| n.contains("no rejoin")), "{name}: {f:#?}");
        }
    }

    /// The data-lost fixtures cut just after the member restarts under its old ID with an
    /// empty log, before the leader's first heartbeat makes it panic: the restart alone says
    /// the data went.
    #[test]
    fn restart_at_commit_index_zero_is_data_lost() {
        for v in ["3.4.23", "3.5.1", "3.6.16", "3.7.3"] {
            let text = fixture(v, "data-lost");
            let cut: Vec<&str> = text.lines().take_while(|l| !l.contains("tocommit(")).collect();
            let upto = cut.iter().rposition(|l| l.contains("restarting member") || l.contains("restarting local member")).expect("a restart line");
            let f = from_log(&cut[..=upto].join("\n"));
            assert_eq!(f.class, Class::DataLost, "{v}: {f:#?}");
            assert!(f.evidence.iter().any(|e| e.contains("commit index 0") || e.contains("\"commit-index\":0")), "{v}: {f:#?}");
        }
    }

    #[test]
    fn wal_metadata_without_an_id_is_wal_corrupt() {
        // raft's own panic when the WAL's metadata decodes to member ID 0, as real etcd
        // writes it (captured: tests/failures `wal_no_member_id` re-chains the WAL's CRCs
        // after zeroing the ID, so nothing but the ID is wrong).
        for v in ["3.4.23", "3.5.1", "3.6.16", "3.7.3"] {
            let f = from_log(&fixture(v, "wal-no-member-id"));
            assert_eq!(f.class, Class::WalCorrupt, "{v}: {f:#?}");
            assert!(f.evidence.iter().any(|e| e.contains("cannot use none as id")), "{v}: {f:#?}");
        }
    }

    /// A few elections or one slow read are hiccups, not quorum loss.
    #[test]
    fn a_single_election_is_not_quorum_lost() {
        let text = fixture("3.5.1", "quorum-lost");
        let first = text.lines().position(|l| l.contains("is starting a new election")).unwrap();
        let f = from_log(&text.lines().take(first + 1).collect::<Vec<_>>().join("\n"));
        assert_ne!(f.class, Class::QuorumLost, "{f:#?}");
    }

    /// With probes, a joiner nobody answered is membership-mismatch when the peers do answer.
    #[test]
    fn cluster_info_with_peers_that_answer_is_membership_mismatch() {
        for v in ["3.4.23", "3.5.1", "3.6.16", "3.7.3"] {
            let lines = parse_text(&fixture(v, "cluster-info-unreachable"));
            let p = Probes { member_list: Some(true), ..Default::default() };
            let f = diagnose("m3", newest_run(&lines), &p, &Cmd);
            assert_eq!(f.class, Class::MembershipMismatch, "{v}: {f:#?}");
        }
    }

    #[test]
    fn zap_discovery_failed_error_field() {
        let f = from_log(&fixture("3.5.1", "already-bootstrapped"));
        assert!(f.evidence.iter().any(|e| e.contains("\"msg\":\"discovery failed\"") && e.contains("already been bootstrapped")));
    }

    #[test]
    fn newest_restart_wins_over_older_ones() {
        // An older run died of a corrupt WAL; the newest one of a lost data dir.
        let text = format!("{}\n{}", fixture("3.4.23", "wal-corrupt"), fixture("3.4.23", "data-lost"));
        assert_eq!(from_log(&text).class, Class::DataLost);
        let text = format!("{}\n{}", fixture("3.5.1", "data-lost"), fixture("3.5.1", "membership-mismatch"));
        assert_eq!(from_log(&text).class, Class::MembershipMismatch);
    }

    #[test]
    fn a_run_that_has_not_failed_yet_defers_to_the_previous_one() {
        let just_started = r#"{"level":"info","ts":"x","caller":"etcdmain/etcd.go:73","msg":"Running: ","args":["etcd"]}
{"level":"info","ts":"x","caller":"embed/etcd.go:131","msg":"configuring peer listeners"}"#;
        let text = format!("{}\n{just_started}\n", fixture("3.5.1", "membership-mismatch"));
        let lines = parse_text(&text);
        let mut p = Probes::default();
        p.endpoint_healthy = Some(false);
        let f = diagnose_log("m3", &lines, &p, &Cmd);
        assert_eq!(f.class, Class::MembershipMismatch, "{f:#?}");
        assert!(f.notes.iter().any(|n| n.contains("previous run")));
        // With no probes at all (--log), the newest run still decides.
        assert_eq!(diagnose_log("m3", &lines, &Probes::default(), &Cmd).class, Class::Unknown);
    }

    #[test]
    fn several_errors_fatal_wins() {
        // Cluster ID mismatch warnings, then the member's fatal last words.
        let text = format!(
            "{}\n2026-11-21 06:17:20.618929 C | etcdmain: member d5 has already been bootstrapped\n",
            fixture("3.4.23", "cluster-id-mismatch")
        );
        let f = from_log(&text);
        assert_eq!(f.class, Class::AlreadyBootstrapped);
    }

    #[test]
    fn bare_go_panics() {
        let freepages = "panic: freepages: failed to get all reachable pages (page 6987: multiple references)\n\ngoroutine 126 [running]:\ngo.etcd.io/bbolt.(*DB).freepages.func2(0xc0001c64e0)\n";
        assert_eq!(from_log(freepages).class, Class::DbCorrupt);
        let bounds = "panic: runtime error: slice bounds out of range [:4096] with capacity 0\n\ngoroutine 1 [running]:\ngo.etcd.io/bbolt.(*Bucket).pageNode(...)\n";
        assert_eq!(from_log(bounds).class, Class::DbCorrupt);
        let sigbus = "unexpected fault address 0x7f3c2a1b2000\nfatal error: fault\n[signal SIGBUS: bus error code=0x2 addr=0x7f3c2a1b2000 pc=0x8a1e7e]\n";
        assert_eq!(from_log(sigbus).class, Class::DbCorrupt);
        let wal = "panic: runtime error: slice bounds out of range [:12] with capacity 8\n\ngoroutine 1 [running]:\ngo.etcd.io/etcd/server/v3/wal.(*decoder).decodeRecord(...)\n";
        assert_eq!(from_log(wal).class, Class::WalCorrupt);
    }

    #[test]
    fn seed_004_rke_logs() {
        let text = "2021-07-30 06:56:50.766417 E | rafthttp: request cluster ID mismatch (got 1df875ec16cdadc0 want 2aafb0f5f954d734)\n2021-07-30 06:56:50.798215 E | rafthttp: request sent was ignored (cluster ID mismatch: peer[55981658a5324937]=1df875ec16cdadc0, local=2aafb0f5f954d734)\n";
        assert_eq!(from_log(text).class, Class::ClusterIdMismatch);
    }

    #[test]
    fn tolerates_garbage_and_partial_lines() {
        let mut text = String::from("ial line cut by the tail\n");
        text.push_str("\u{0}\u{0}\u{7f}\u{1b}\u{0}\u{0}\n");
        text.push_str(&fixture("3.4.23", "data-lost"));
        assert_eq!(from_log(&text).class, Class::DataLost);
        assert_eq!(from_log("").class, Class::Unknown);
    }

    fn healthy_probes() -> Probes {
        Probes {
            process_up: Some(true),
            crashlooping: Some(false),
            endpoint_answers: Some(true),
            endpoint_healthy: Some(true),
            member_list: Some(true),
            listed_by_name: Some(true),
            listed_by_peer_url: Some(true),
            listed_id: None,
            peer_voters: 2,
            peer_voters_healthy: 2,
            local_is_voter: true,
            peer_voters_failed: vec![],
            alarms: vec![],
            local_cluster_id: Some("c1".into()),
            peer_cluster_ids: vec!["c1".into(), "c1".into()],
        }
    }

    #[test]
    fn probes_healthy_beat_a_peers_log_noise() {
        let lines = parse_text(&fixture("3.4.23", "cluster-id-mismatch"));
        let f = diagnose("m1", newest_run(&lines), &healthy_probes(), &Cmd);
        assert_eq!(f.class, Class::Healthy);
        assert_eq!(f.playbook, Playbook::None);
        assert!(f.notes[0].contains("cluster-id-mismatch"));
    }

    #[test]
    fn foreign_data_dir_that_looks_healthy() {
        let mut p = healthy_probes();
        p.local_cluster_id = Some("c2".into());
        let f = diagnose("m3", &[], &p, &Cmd);
        assert_eq!(f.class, Class::ClusterIdMismatch);
        assert_eq!(f.playbook, Playbook::Rejoin);
    }

    #[test]
    fn removed_member_exits_zero_but_is_unlisted() {
        let mut p = healthy_probes();
        p.endpoint_answers = Some(false);
        p.endpoint_healthy = Some(false);
        p.process_up = Some(false);
        p.listed_by_name = Some(false);
        p.listed_by_peer_url = Some(false);
        p.local_is_voter = false;
        let f = diagnose("m3", &[], &p, &Cmd);
        assert_eq!(f.class, Class::MemberRemoved);
        assert_eq!(f.playbook, Playbook::Rejoin);
    }

    fn failed(name: &str, reach: Reach) -> PeerFailure {
        PeerFailure {
            name: name.into(),
            client_url: format!("https://10.0.0.{}:2379", name.len()),
            peer_url: format!("https://{name}.example:2380"),
            reach,
        }
    }

    #[test]
    fn quorum_lost_recommends_rebuild() {
        let mut p = healthy_probes();
        p.endpoint_healthy = Some(false);
        p.peer_voters_healthy = 0;
        p.peer_voters_failed = vec![failed("m2", Reach::Refused), failed("m3", Reach::NoLeader)];
        let f = diagnose("m1", &[], &p, &Cmd);
        assert_eq!(f.class, Class::QuorumLost);
        assert_eq!(f.playbook, Playbook::Rebuild);
        assert_eq!(f.command, "etcd-hostfix rebuild");
        assert!(f.evidence.iter().any(|e| e.contains("m2") && e.contains("connection refused")), "{f:#?}");
    }

    /// The split-brain trap: a master cut off from two healthy peers sees them time out,
    /// exactly as it would see two hosts that are off. That is never `rebuild`.
    #[test]
    fn peers_that_time_out_are_a_partition_not_a_quorum_loss() {
        let mut p = healthy_probes();
        p.endpoint_healthy = Some(false);
        p.peer_voters_healthy = 0;
        p.peer_voters_failed = vec![failed("m2", Reach::TimedOut), failed("m3", Reach::TimedOut)];
        let f = diagnose("m1", &[], &p, &Cmd);
        assert_eq!(f.class, Class::Partitioned, "{f:#?}");
        assert_eq!(f.playbook, Playbook::Manual);
        assert!(!f.command.contains("rebuild"));
        assert!(f.notes.iter().any(|n| n.contains("ping -c 3 m2.example")), "{:#?}", f.notes);
        assert!(f.notes.iter().any(|n| n.contains("https://m3.example:2380/version")));
        // One refused, one timing out: a quorum of 3 without this member needs both
        // peers, and m2 is down for certain, so no quorum exists anywhere.
        p.peer_voters_failed = vec![failed("m2", Reach::Refused), failed("m3", Reach::TimedOut)];
        assert_eq!(diagnose("m1", &[], &p, &Cmd).class, Class::QuorumLost);
        // A TLS failure or an unexplained error proves nothing either.
        p.peer_voters_failed = vec![failed("m2", Reach::Tls), failed("m3", Reach::Unknown)];
        assert_eq!(diagnose("m1", &[], &p, &Cmd).class, Class::Partitioned);
    }

    #[test]
    fn five_voters_need_three_positively_down_peers() {
        let mut p = healthy_probes();
        p.endpoint_healthy = Some(false);
        p.peer_voters = 4;
        p.peer_voters_healthy = 0;
        // 2 refused, 2 timed out: the 2 that time out are 2 of 5 at best, no quorum.
        p.peer_voters_failed = vec![
            failed("m2", Reach::Refused),
            failed("m3", Reach::Refused),
            failed("m4", Reach::TimedOut),
            failed("m5", Reach::TimedOut),
        ];
        assert!(p.quorum_ruled_out());
        assert_eq!(diagnose("m1", &[], &p, &Cmd).class, Class::QuorumLost);
        // 1 refused, 3 timed out: those 3 may be a working majority behind a partition.
        p.peer_voters_failed[1].reach = Reach::TimedOut;
        assert!(!p.quorum_ruled_out());
        let f = diagnose("m1", &[], &p, &Cmd);
        assert_eq!(f.class, Class::Partitioned);
        assert_eq!(f.notes.iter().filter(|n| n.starts_with("check ")).count(), 3);
    }

    #[test]
    fn bad_data_without_quorum_is_manual() {
        let mut p = healthy_probes();
        p.endpoint_answers = Some(false);
        p.endpoint_healthy = Some(false);
        p.peer_voters_healthy = 1;
        p.peer_voters = 4;
        p.peer_voters_failed = vec![failed("m2", Reach::Refused), failed("m4", Reach::Refused), failed("m5", Reach::Refused)];
        let lines = parse_text(&fixture("3.5.1", "data-lost"));
        let f = diagnose("m3", newest_run(&lines), &p, &Cmd);
        assert_eq!(f.class, Class::QuorumLost);
        assert_eq!(f.log_class, Some(Class::DataLost));
        assert_eq!(f.playbook, Playbook::Manual, "{f:#?}");
        assert!(f.notes.iter().any(|n| n.contains("signs disagree")));
    }

    #[test]
    fn crashloop_with_unrecognised_words_is_unknown() {
        let mut p = healthy_probes();
        p.process_up = Some(false);
        p.crashlooping = Some(true);
        p.endpoint_answers = Some(false);
        p.endpoint_healthy = Some(false);
        let lines = parse_text(&fixture("3.5.1", "unknown"));
        let f = diagnose("m3", newest_run(&lines), &p, &Cmd);
        assert_eq!(f.class, Class::Unknown);
        assert_eq!(f.playbook, Playbook::Manual);
        assert!(!f.evidence.is_empty());
    }

    #[test]
    fn nothing_running_nothing_logged() {
        let mut p = healthy_probes();
        p.process_up = Some(false);
        p.endpoint_answers = Some(false);
        p.endpoint_healthy = Some(false);
        let lines = parse_text("2026-11-21 06:17:20.1 N | etcdserver: received signal; shutting down\n");
        let f = diagnose("m3", newest_run(&lines), &p, &Cmd);
        assert_eq!(f.class, Class::NotRunning);
        assert_eq!(f.playbook, Playbook::Manual);
    }
}
