//! The fleet: every master's daemon (its "agent") publishes what it is doing in etcd, so that
//! `status` on any master shows every agent, with the Kubernetes API down and any one member
//! down too.
//!
//! - `/etcd-hostfix/agents/<member>` holds an [`AgentRecord`] as JSON, under a lease of
//!   [`lease_ttl`]: written when the record changes ([`worth_writing`]), kept alive otherwise.
//!   When the daemon dies the lease expires and etcd deletes the key.
//! - `/etcd-hostfix/known/<member>` (no lease) says that this member has had an agent, since
//!   when: written once, when the agent first publishes. A member that had one and has no
//!   record now is silent, from the moment its lease expires.
//! - `/etcd-hostfix/silent/<member>` says since when an agent has been silent: written (only if
//!   absent) by another agent that saw the record go, deleted by the agent when it publishes
//!   again. It is the only thing one agent writes about another, and it decides nothing.
//!
//! Nothing here feeds the policy: a silent agent is news for a person, never a trigger for
//! another master to act. Nothing secret goes in a record (no paths to keys, no endpoints'
//! credentials): the state and the words the daemon already logs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const AGENTS_PREFIX: &str = "/etcd-hostfix/agents/";
pub const SILENT_PREFIX: &str = "/etcd-hostfix/silent/";
pub const KNOWN_PREFIX: &str = "/etcd-hostfix/known/";

pub fn known_key(member: &str) -> String {
    format!("{KNOWN_PREFIX}{member}")
}

pub fn agent_key(member: &str) -> String {
    format!("{AGENTS_PREFIX}{member}")
}

pub fn silent_key(member: &str) -> String {
    format!("{SILENT_PREFIX}{member}")
}

/// The record's lease: a few probe intervals, and never under 10 s, so that one slow probe
/// (each part is bounded by a few 3 s timeouts) or a leader election does not make a live
/// agent look silent. A dead agent is seen silent within this: its record goes when the
/// lease expires.
pub fn lease_ttl(probe_interval: Duration) -> Duration {
    (probe_interval * 5).max(Duration::from_secs(10))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentPause {
    pub reason: String,
    pub since: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRepair {
    pub playbook: String,
    pub result: String,
    pub ended_at: String,
}

/// What one agent publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub member: String,
    /// The etcd-hostfix version.
    pub version: String,
    /// `heal` or `observe`.
    pub mode: String,
    pub paused: Option<AgentPause>,
    pub circuit_open: bool,
    pub budget_left: u32,
    /// The member's condition, as `diagnose` classifies it.
    pub class: String,
    /// The decision's kind (`nothing`, `wait`, `heal`, `alert`, `withheld`) and, in words,
    /// why: above all, why it is not acting.
    pub decision: String,
    pub why: String,
    pub last_repair: Option<AgentRepair>,
    /// When the newest snapshot of the member was taken (Unix seconds); its age is computed
    /// by the reader, so that the record does not change every second.
    pub newest_snapshot_unix: Option<u64>,
    /// When this record last changed (Unix seconds, and RFC 3339 for people).
    pub updated_unix: u64,
    pub updated_at: String,
}

/// Write only when something but the time changed: beyond that, only the lease keepalive.
pub fn worth_writing(prev: Option<&AgentRecord>, next: &AgentRecord) -> bool {
    match prev {
        None => true,
        Some(p) => {
            let strip = |r: &AgentRecord| AgentRecord { updated_unix: 0, updated_at: String::new(), ..r.clone() };
            strip(p) != strip(next)
        }
    }
}

/// Silence marks to write: members whose record this agent saw in its last look and no
/// longer sees (their lease expired), and that are not marked yet. Never itself.
pub fn newly_silent<'a>(me: &str, before: &'a [String], now: &[String], marked: &[String]) -> Vec<&'a String> {
    before.iter().filter(|m| m.as_str() != me && !now.contains(m) && !marked.contains(m)).collect()
}

/// One master's line in `status`'s fleet section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetRow {
    pub member: String,
    /// `active`, `paused`, `circuit-open`, `silent` or `absent`.
    pub state: String,
    pub agent: Option<AgentRecord>,
    /// For a silent agent: since when (RFC 3339), when another agent saw it go.
    pub silent_since: Option<String>,
    pub snapshot_age_s: Option<u64>,
    /// In words: what it is doing, or why it is not acting.
    pub why: String,
}

/// The fleet as `status` shows it: one row per member of the cluster (by name; a member
/// not yet started has no name and no agent), then any agent, live or silent, whose member
/// is not listed. `known`: the members that have had an agent.
pub fn fleet(
    members: &[String],
    records: &BTreeMap<String, AgentRecord>,
    silent: &BTreeMap<String, String>,
    known: &[String],
    now_unix: u64,
) -> Vec<FleetRow> {
    let mut names: Vec<&String> = members.iter().filter(|m| !m.is_empty()).collect();
    for k in records.keys().chain(known.iter()) {
        if !names.contains(&k) {
            names.push(k);
        }
    }
    names
        .into_iter()
        .map(|m| match records.get(m) {
            Some(r) => {
                let state = if r.circuit_open {
                    "circuit-open"
                } else if r.paused.is_some() {
                    "paused"
                } else {
                    "active"
                };
                let why = match &r.paused {
                    Some(p) => format!("paused since {}: {}; {}", p.since, p.reason, r.why),
                    None => r.why.clone(),
                };
                FleetRow {
                    member: m.clone(),
                    state: state.into(),
                    agent: Some(r.clone()),
                    silent_since: None,
                    snapshot_age_s: r.newest_snapshot_unix.map(|t| now_unix.saturating_sub(t)),
                    why,
                }
            }
            None => match silent.get(m) {
                Some(since) => FleetRow {
                    member: m.clone(),
                    state: "silent".into(),
                    agent: None,
                    silent_since: Some(since.clone()),
                    snapshot_age_s: None,
                    why: format!("no word from its agent since {since} (its lease expired): the daemon on that master is stopped, dead or cut off; nothing acts for it"),
                },
                None if known.contains(m) => FleetRow {
                    member: m.clone(),
                    state: "silent".into(),
                    agent: None,
                    silent_since: None,
                    snapshot_age_s: None,
                    why: "no word from its agent: its lease expired moments ago (no live agent has noted the time yet): the daemon on that master is stopped, dead or cut off; nothing acts for it".into(),
                },
                None => FleetRow {
                    member: m.clone(),
                    state: "absent".into(),
                    agent: None,
                    silent_since: None,
                    snapshot_age_s: None,
                    why: "no agent record: no daemon runs for this member, or it has not published since it stopped".into(),
                },
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(member: &str) -> AgentRecord {
        AgentRecord {
            member: member.into(),
            version: "0.1.0".into(),
            mode: "heal".into(),
            paused: None,
            circuit_open: false,
            budget_left: 3,
            class: "healthy".into(),
            decision: "nothing".into(),
            why: "no action: healthy".into(),
            last_repair: None,
            newest_snapshot_unix: Some(1000),
            updated_unix: 1000,
            updated_at: "t".into(),
        }
    }

    #[test]
    fn only_changes_are_written() {
        let a = rec("m1");
        assert!(worth_writing(None, &a));
        let mut later = a.clone();
        later.updated_unix = 2000;
        later.updated_at = "t2".into();
        assert!(!worth_writing(Some(&a), &later), "the time alone is no change");
        later.decision = "heal".into();
        assert!(worth_writing(Some(&a), &later));
    }

    #[test]
    fn ttl_is_a_few_probes_and_never_tiny() {
        assert_eq!(lease_ttl(Duration::from_secs(1)), Duration::from_secs(10));
        assert_eq!(lease_ttl(Duration::from_secs(5)), Duration::from_secs(25));
    }

    #[test]
    fn silence_is_marked_once_and_never_for_oneself() {
        let before = vec!["m1".to_string(), "m2".into(), "m3".into()];
        let now = vec!["m1".to_string()];
        assert_eq!(newly_silent("m1", &before, &now, &[]), vec!["m2", "m3"]);
        assert_eq!(newly_silent("m1", &before, &now, &["m2".into()]), vec!["m3"]);
        assert!(newly_silent("m2", &before, &[], &[]).iter().all(|m| m.as_str() != "m2"));
    }

    #[test]
    fn the_fleet_has_a_row_per_member() {
        let members = vec!["m1".to_string(), "m2".into(), "m3".into(), "".into()];
        let mut records = BTreeMap::new();
        records.insert("m1".to_string(), rec("m1"));
        let mut paused = rec("m2");
        paused.paused = Some(AgentPause { reason: "maintenance".into(), since: "s".into() });
        records.insert("m2".to_string(), paused);
        let mut silent = BTreeMap::new();
        silent.insert("m3".to_string(), "2026-12-04T22:00:00Z".to_string());
        let rows = fleet(&members, &records, &silent, &[], 1600);
        let states: Vec<(&str, &str)> = rows.iter().map(|r| (r.member.as_str(), r.state.as_str())).collect();
        assert_eq!(states, vec![("m1", "active"), ("m2", "paused"), ("m3", "silent")]);
        assert_eq!(rows[0].snapshot_age_s, Some(600));
        assert!(rows[1].why.contains("maintenance"));
        assert!(rows[2].why.contains("2026-12-04T22:00:00Z"));
        // Without a silence mark: absent. An agent of a member no longer listed still shows.
        let mut records = BTreeMap::new();
        records.insert("old".to_string(), rec("old"));
        let rows = fleet(&["m1".to_string()], &records, &BTreeMap::new(), &[], 0);
        assert_eq!(rows.iter().map(|r| (r.member.as_str(), r.state.as_str())).collect::<Vec<_>>(), vec![("m1", "absent"), ("old", "active")]);
        // A member that had an agent and has no record: silent at once, before any mark.
        let rows = fleet(&["m1".to_string(), "m2".into()], &BTreeMap::new(), &BTreeMap::new(), &["m2".to_string(), "gone".into()], 0);
        let states: Vec<(&str, &str)> = rows.iter().map(|r| (r.member.as_str(), r.state.as_str())).collect();
        assert_eq!(states, vec![("m1", "absent"), ("m2", "silent"), ("gone", "silent")]);
        assert!(rows[1].silent_since.is_none() && rows[1].why.contains("lease expired"));
    }
}
