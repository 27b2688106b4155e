//! When the daemon acts: observations and the clock in, a decision out.
//!
//! Two failure modes of self-healing systems shape every rule here: repairs that never
//! happen, and repairs that happen too eagerly (on a member that is only restarting, being
//! upgraded or worked on by a person), flap, or run twice at once. So:
//! - a *definitive* class (the member's own data or identity is bad, as etcd itself says)
//!   heals at once, once the peers corroborate it;
//! - an *ambiguous* one (removed, not running) must last `grace` first;
//! - quorum loss, partitions, NOSPACE and the unknown only alert: no automatic playbook is
//!   safe for them;
//! - a person's hand (a parked manifest, a CLI run holding the lock, pause, observe mode)
//!   always wins;
//! - repairs are budgeted, backed off after failures, and a circuit breaker stops a member
//!   that breaks again after every heal from being healed forever. A resumed repair (an
//!   unfinished journal) is a repair like any other here: it goes through the same budget,
//!   backoff and breaker, or one that fails at a step would be retried every probe;
//! - a repair stopped by this host's own layout or sandbox (a read-only path, a move across
//!   mounts, no room on the etcd disk) is not retried at all: retrying cannot change the
//!   host, so it alerts with the remedy until a person runs `resume`.
//!
//! Time is a `Duration` on a monotonic clock the caller owns, so tests drive it by hand.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::diagnose::{Class, Playbook};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Decide, report and act.
    Heal,
    /// Decide and report exactly as `heal` does, but never act.
    Observe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    pub mode: Mode,
    /// How long an ambiguous condition must last before it is healed.
    pub grace: Duration,
    pub max_repairs: u32,
    pub repair_window: Duration,
    /// How long the peers must show the same leader before they corroborate a diagnosis.
    pub corroborate: Duration,
    /// The first wait after a failed repair; it doubles with each further failure.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long an alerting class must last before it is alerted: one `kill -9` reads as a
    /// crash with no known cause for a second or two, until the member is back.
    pub alert_after: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            mode: Mode::Heal,
            grace: Duration::from_secs(300),
            max_repairs: 3,
            repair_window: Duration::from_secs(3600),
            corroborate: Duration::from_secs(2),
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(1800),
            alert_after: Duration::from_secs(15),
        }
    }
}

/// Where the local member's manifest or container is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// Where the runtime runs it from (`manifests/etcd.yaml`, or the container exists).
    InPlace,
    /// Parked by etcd-hostfix itself (an unfinished repair).
    ParkedByUs,
    /// Gone from where it belongs, not by us: a person took it out (seed 002's first step),
    /// or stopped the container.
    MovedOut,
}

/// What the watchers and probes saw, at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observation {
    pub member: String,
    /// `diagnose`'s class for the local member.
    pub class: Class,
    /// An etcd process with this member's configuration runs.
    pub etcd_running: bool,
    pub placement: Placement,
    /// The other voters have a quorum without this member.
    pub peers_quorum: bool,
    /// The leader the peers agree on, if they agree.
    pub peers_leader: Option<String>,
    /// The peers see the local member as not serving (not a healthy voter).
    pub peers_see_local_down: bool,
    /// The member was removed by another master's rejoin (recorded in etcd), not by a person.
    pub removed_by_hostfix: bool,
    /// Another master holds the cluster-wide repair lock (its name).
    pub cluster_lock_holder: Option<String>,
    /// Another process on this master (a CLI run) holds the local repair lock (its pid).
    pub local_lock_holder: Option<String>,
    /// An unfinished rejoin journal is in the state dir.
    pub unfinished_journal: bool,
    /// Paused by `etcd-hostfix pause`, with the reason given.
    pub paused: Option<String>,
    /// The class comes from the run before the newest: the member restarted and its newest
    /// run has not failed yet.
    pub previous_run_only: bool,
    /// For quorum loss: the reachable member with the highest raft index, and the exact
    /// `rebuild` command for its master. `None` when the missing peers only time out.
    pub progenitor: Option<(String, String)>,
}

impl Observation {
    /// Nothing to watch closely: the member is healthy and in place, nobody paused the daemon
    /// or holds a lock, and no repair is unfinished. Only then may the next probes be light
    /// (the local member alone), since nothing the peers show could make the policy act.
    pub fn calm(&self) -> bool {
        self.class == Class::Healthy
            && self.placement == Placement::InPlace
            && self.paused.is_none()
            && self.local_lock_holder.is_none()
            && self.cluster_lock_holder.is_none()
            && !self.unfinished_journal
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// Nothing to do; the reason says why (healthy, a person's hand, a repair elsewhere).
    Nothing { reason: String },
    /// Not yet: the reason, and when the condition will be judged again (monotonic).
    Wait { reason: String, #[serde(with = "secs")] deadline: Duration },
    /// Run this playbook now.
    Heal { playbook: Playbook, reason: String, resume: bool },
    /// No automatic playbook is safe: tell a person, with what to run where, if known.
    Alert { class: Class, reason: String, command: Option<String> },
    /// Would heal, but observe mode or pause holds it back.
    Withheld { would: Box<Decision>, reason: String },
}

impl Decision {
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Nothing { .. } => "nothing",
            Decision::Wait { .. } => "wait",
            Decision::Heal { .. } => "heal",
            Decision::Alert { .. } => "alert",
            Decision::Withheld { .. } => "withheld",
        }
    }

    /// One line for a person: what, and why.
    pub fn summary(&self) -> String {
        match self {
            Decision::Nothing { reason } => format!("no action: {reason}"),
            Decision::Wait { reason, .. } => format!("waiting: {reason}"),
            Decision::Heal { playbook, reason, .. } => format!("healing with {}: {reason}", playbook.as_str()),
            Decision::Alert { reason, command, .. } => match command {
                Some(c) => format!("alert: {reason}; run: {c}"),
                None => format!("alert: {reason}"),
            },
            Decision::Withheld { would, reason } => format!("not acting ({reason}); would be {}", would.summary()),
        }
    }
}

mod secs {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// What the policy remembers between observations. Plain data, persisted by the daemon so
/// that a restart does not reset the budget or the circuit breaker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyState {
    /// Since when the member has been unhealthy, on the caller's clock.
    pub unhealthy_since: Option<Duration>,
    /// The class last seen, and since when.
    pub class_since: Option<(Class, Duration)>,
    /// The leader the peers agree on, and since when they have.
    pub leader_since: Option<(String, Duration)>,
    /// When each recent repair started.
    pub repairs: Vec<Duration>,
    /// Failed repairs in a row, and when the last one ended.
    pub failures: u32,
    pub last_failure: Option<Duration>,
    /// Open: stop acting and alert until `resume`.
    pub circuit_open: bool,
    /// The last repair was stopped by this host's layout or config, not by the cluster's
    /// state: what stopped it, with the remedy. Alerted until `resume`, never retried.
    #[serde(default)]
    pub host_blocked: Option<String>,
}

/// How a repair ended, as far as the policy cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairEnd {
    Healed,
    /// Failed at a step, or refused for the cluster's state: worth another try, later.
    Failed,
    /// Stopped by this host's own layout, sandbox or config (the reason and the remedy):
    /// the same host gives the same answer however often it is asked.
    HostBlocked(String),
}

impl PolicyState {
    /// A repair started at `now`.
    pub fn repair_started(&mut self, now: Duration) {
        self.repairs.push(now);
    }

    /// A repair ended; a failure backs the next one off; a host-caused one blocks.
    pub fn repair_ended(&mut self, now: Duration, end: RepairEnd) {
        match end {
            RepairEnd::Healed => {
                self.failures = 0;
                self.last_failure = None;
            }
            RepairEnd::Failed => {
                self.failures += 1;
                self.last_failure = Some(now);
            }
            RepairEnd::HostBlocked(why) => {
                self.failures += 1;
                self.last_failure = Some(now);
                self.host_blocked = Some(why);
            }
        }
        // What was seen before the repair is no longer the current condition.
        self.unhealthy_since = None;
        self.class_since = None;
    }

    /// `etcd-hostfix resume`: close the circuit, forget the failures.
    pub fn reset(&mut self) {
        self.circuit_open = false;
        self.host_blocked = None;
        self.failures = 0;
        self.last_failure = None;
        self.repairs.clear();
    }

    pub fn repairs_in_window(&self, now: Duration, window: Duration) -> usize {
        self.repairs.iter().filter(|t| now.saturating_sub(**t) < window).count()
    }

    pub fn budget_left(&self, cfg: &PolicyConfig, now: Duration) -> u32 {
        cfg.max_repairs.saturating_sub(self.repairs_in_window(now, cfg.repair_window) as u32)
    }
}

/// Classes where etcd itself says the member's data or identity is bad: a restart will not
/// fix them, and replacing the member from its peers will.
pub fn definitive(c: Class) -> bool {
    matches!(
        c,
        Class::AlreadyBootstrapped
            | Class::DataLost
            | Class::ClusterIdMismatch
            | Class::DbCorrupt
            | Class::WalCorrupt
            | Class::MembershipMismatch
    )
}

fn alerting(c: Class) -> bool {
    matches!(c, Class::Unknown | Class::Nospace | Class::QuorumLost | Class::Partitioned | Class::VersionIncompatible)
}

/// Fold one observation into the state and decide. Pure: the same state, observation and
/// time always give the same decision.
pub fn decide(cfg: &PolicyConfig, st: &mut PolicyState, o: &Observation, now: Duration) -> Decision {
    track(st, o, now);
    let d = decide_inner(cfg, st, o, now);
    match d {
        Decision::Heal { .. } => {
            if let Some(why) = &o.paused {
                Decision::Withheld { would: Box::new(d), reason: format!("paused: {why}") }
            } else if cfg.mode == Mode::Observe {
                Decision::Withheld { would: Box::new(d), reason: "observe mode".into() }
            } else {
                d
            }
        }
        d => d,
    }
}

fn track(st: &mut PolicyState, o: &Observation, now: Duration) {
    if o.class == Class::Healthy {
        st.unhealthy_since = None;
        st.class_since = None;
    } else {
        st.unhealthy_since.get_or_insert(now);
        if st.class_since.map(|(c, _)| c) != Some(o.class) {
            st.class_since = Some((o.class, now));
        }
    }
    // With the manifest moved out the daemon knows nothing of the peers: that is not
    // news of a leader change, so the leader's steadiness is left as it was.
    if o.placement == Placement::MovedOut {
        return;
    }
    match (o.peers_quorum, &o.peers_leader) {
        (true, Some(l)) if st.leader_since.as_ref().map(|(x, _)| x) == Some(l) => {}
        (true, Some(l)) => st.leader_since = Some((l.clone(), now)),
        _ => st.leader_since = None,
    }
}

fn decide_inner(cfg: &PolicyConfig, st: &mut PolicyState, o: &Observation, now: Duration) -> Decision {
    let m = &o.member;
    // A repair that was cut short is finished first, whatever the member looks like now:
    // its journal knows what is already done, and a half-done membership change is worse
    // than either end.
    // It still waits its turn like any repair: blocked by the host, the circuit, the budget
    // or a backoff, it is not resumed now (and its journal waits, intact).
    if o.unfinished_journal && o.local_lock_holder.is_none() {
        if let Some(d) = held_back(cfg, st, o, now) {
            return d;
        }
        return Decision::Heal { playbook: Playbook::Rejoin, reason: "an unfinished rejoin journal is in the state dir".into(), resume: true };
    }
    if o.class == Class::Healthy {
        return Decision::Nothing { reason: format!("{m} is healthy") };
    }
    if let Some(pid) = &o.local_lock_holder {
        return Decision::Nothing { reason: format!("another etcd-hostfix run on this master (pid {pid}) holds the repair lock") };
    }
    if o.placement == Placement::MovedOut {
        return Decision::Nothing {
            reason: format!(
                "{m} was taken out of service by someone else (its manifest moved out of the manifests directory, or its container stopped); a person is at work"
            ),
        };
    }
    let since = st.class_since.map(|(_, t)| t).unwrap_or(now);
    if alerting(o.class) {
        let settle = since + cfg.alert_after;
        if now < settle && o.class == Class::Unknown {
            return Decision::Wait { reason: format!("{m} fails for a cause not yet known; a restart may clear it"), deadline: settle };
        }
        return alert(o);
    }
    if let Some(holder) = &o.cluster_lock_holder {
        return Decision::Wait {
            reason: format!("member {holder} holds the cluster-wide repair lock; one repair at a time"),
            deadline: now + Duration::from_secs(1),
        };
    }
    if definitive(o.class) && o.previous_run_only {
        return Decision::Wait {
            reason: format!("{m} restarted after dying of {}; its newest run has not failed yet", o.class.as_str()),
            deadline: now + Duration::from_secs(1),
        };
    }
    let immediate = definitive(o.class) || (o.class == Class::MemberRemoved && o.removed_by_hostfix);
    let ambiguous = matches!(o.class, Class::MemberRemoved | Class::NotRunning);
    if !immediate && !ambiguous {
        return Decision::Nothing { reason: format!("{m} is {}; no playbook applies", o.class.as_str()) };
    }
    if !immediate {
        let unhealthy = st.unhealthy_since.unwrap_or(now);
        let deadline = unhealthy + cfg.grace;
        if now < deadline {
            let what = match o.class {
                Class::MemberRemoved if o.etcd_running => "is not in the member list but still runs etcd",
                Class::MemberRemoved => "is not in the member list",
                _ => "is not running and nothing says why",
            };
            return Decision::Wait {
                reason: format!("{m} {what}; a restart, a reboot or a person can cause that, so it must last the grace of {:?}", cfg.grace),
                deadline,
            };
        }
    }
    // The peers must corroborate: a quorum with a steady leader, that sees this member down.
    if !o.peers_quorum {
        return Decision::Wait { reason: "the other voters have no quorum to rejoin through".into(), deadline: now + Duration::from_secs(1) };
    }
    match st.leader_since.as_ref().map(|(_, t)| *t) {
        Some(t) if now >= t + cfg.corroborate => {}
        Some(t) => {
            return Decision::Wait {
                reason: format!("the peers' leader must hold for {:?} before they corroborate", cfg.corroborate),
                deadline: t + cfg.corroborate,
            }
        }
        None => {
            return Decision::Wait { reason: "the peers do not agree on a leader yet".into(), deadline: now + Duration::from_secs(1) }
        }
    }
    if !o.peers_see_local_down {
        return Decision::Nothing { reason: format!("the peers see {m} serving; not repairing a member they rely on") };
    }
    if let Some(d) = held_back(cfg, st, o, now) {
        return d;
    }
    let why = if immediate {
        format!("{m} is {}, the peers have a steady leader and see it down", o.class.as_str())
    } else {
        format!("{m} has been {} for the whole grace of {:?}", o.class.as_str(), cfg.grace)
    };
    Decision::Heal { playbook: Playbook::Rejoin, reason: why, resume: false }
}

/// What holds any repair back, a new one or a resumed one: a host that blocked the last
/// one, the circuit breaker, the budget, the backoff after a failure. `None`: it may run.
fn held_back(cfg: &PolicyConfig, st: &mut PolicyState, o: &Observation, now: Duration) -> Option<Decision> {
    let m = &o.member;
    let what = if o.unfinished_journal { "its unfinished repair".to_string() } else { o.class.as_str().to_string() };
    if let Some(why) = &st.host_blocked {
        return Some(Decision::Alert {
            class: o.class,
            reason: format!(
                "the last repair of {m} was stopped by this host, not by the cluster: {why}. Retrying cannot change that, so {what} is not retried until `etcd-hostfix resume`"
            ),
            command: Some("etcd-hostfix resume".into()),
        });
    }
    if st.circuit_open || st.budget_left(cfg, now) == 0 {
        st.circuit_open = true;
        return Some(Decision::Alert {
            class: o.class,
            reason: format!(
                "circuit open: {m} needed {} repairs within {:?} and {what} is still due; not healing until `etcd-hostfix resume`",
                st.repairs_in_window(now, cfg.repair_window).max(cfg.max_repairs as usize),
                cfg.repair_window,
            ),
            command: Some("etcd-hostfix resume".into()),
        });
    }
    if let Some(t) = st.last_failure {
        let wait = backoff(cfg, st.failures);
        if now < t + wait {
            return Some(Decision::Wait {
                reason: format!("the last repair failed ({} in a row); backing off {:?} before {what} is tried again", st.failures, wait),
                deadline: t + wait,
            });
        }
    }
    None
}

fn backoff(cfg: &PolicyConfig, failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    cfg.backoff_base.saturating_mul(factor).min(cfg.backoff_max)
}

fn alert(o: &Observation) -> Decision {
    let m = &o.member;
    let (reason, command) = match o.class {
        Class::QuorumLost => match &o.progenitor {
            Some((name, cmd)) => (
                format!("quorum is lost: the missing voters refuse connections (down). {name} has the newest data; rebuild there"),
                Some(cmd.clone()),
            ),
            None => ("quorum is lost and no member that answers can be named as progenitor".into(), None),
        },
        Class::Partitioned => (
            format!("{m} cannot reach a quorum and its peers time out: either they are down or this host is cut off. No rebuild is offered: it could split the cluster"),
            None,
        ),
        Class::Nospace => (
            "the NOSPACE alarm is raised; run `etcd-hostfix defrag` from any master (compact, defragment each member in turn, disarm); never automatic".into(),
            None,
        ),
        Class::VersionIncompatible => (
            format!("{m}'s etcd version refuses its data (v2store content, or a storage schema from a newer etcd); not rejoined, since its peers hold the same data. `etcd-hostfix diagnose` on {m} says what to do"),
            Some("etcd-hostfix diagnose".into()),
        ),
        _ => (format!("{m} fails for a cause no playbook covers; read `etcd-hostfix diagnose`"), None),
    };
    Decision::Alert { class: o.class, reason, command }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn obs(class: Class) -> Observation {
        Observation {
            member: "m3".into(),
            class,
            etcd_running: false,
            placement: Placement::InPlace,
            peers_quorum: true,
            peers_leader: Some("7".into()),
            peers_see_local_down: true,
            removed_by_hostfix: false,
            cluster_lock_holder: None,
            local_lock_holder: None,
            unfinished_journal: false,
            paused: None,
            progenitor: None,
            previous_run_only: false,
        }
    }

    #[test]
    fn only_a_healthy_member_with_nothing_going_on_is_calm() {
        assert!(obs(Class::Healthy).calm());
        assert!(!obs(Class::DataLost).calm());
        let changes: [fn(&mut Observation); 5] = [
            |o| o.placement = Placement::ParkedByUs,
            |o| o.paused = Some("maintenance".into()),
            |o| o.local_lock_holder = Some("42".into()),
            |o| o.cluster_lock_holder = Some("m1".into()),
            |o| o.unfinished_journal = true,
        ];
        for change in changes {
            let mut o = obs(Class::Healthy);
            change(&mut o);
            assert!(!o.calm(), "{o:?}");
        }
    }

    /// Healthy for a while (the leader settles), then `o` from `t` on.
    fn after_healthy(cfg: &PolicyConfig) -> PolicyState {
        let mut st = PolicyState::default();
        for t in 0..10 {
            decide(cfg, &mut st, &obs(Class::Healthy), t * S);
        }
        st
    }

    fn is_heal(d: &Decision) -> bool {
        matches!(d, Decision::Heal { playbook: Playbook::Rejoin, .. })
    }

    #[test]
    fn definitive_classes_heal_at_once_when_peers_corroborate() {
        let cfg = PolicyConfig::default();
        for c in [Class::AlreadyBootstrapped, Class::DataLost, Class::ClusterIdMismatch, Class::DbCorrupt, Class::WalCorrupt, Class::MembershipMismatch] {
            let mut st = after_healthy(&cfg);
            let d = decide(&cfg, &mut st, &obs(c), 10 * S);
            assert!(is_heal(&d), "{c:?}: {d:?}");
        }
    }

    #[test]
    fn a_fresh_leader_must_hold_before_it_corroborates() {
        let cfg = PolicyConfig::default();
        let mut st = PolicyState::default();
        let d = decide(&cfg, &mut st, &obs(Class::DataLost), 100 * S);
        assert!(matches!(d, Decision::Wait { deadline, .. } if deadline == 102 * S), "{d:?}");
        assert!(is_heal(&decide(&cfg, &mut st, &obs(Class::DataLost), 102 * S)));
        // A leader change starts the wait again.
        let mut o = obs(Class::DataLost);
        o.peers_leader = Some("8".into());
        assert!(matches!(decide(&cfg, &mut st, &o, 103 * S), Decision::Wait { .. }));
        // No quorum among the peers: nothing to rejoin through.
        o.peers_quorum = false;
        assert!(matches!(decide(&cfg, &mut st, &o, 200 * S), Decision::Wait { .. }));
    }

    #[test]
    fn peers_that_see_the_member_serving_veto() {
        let cfg = PolicyConfig::default();
        let mut st = after_healthy(&cfg);
        let mut o = obs(Class::DbCorrupt);
        o.peers_see_local_down = false;
        assert!(matches!(decide(&cfg, &mut st, &o, 10 * S), Decision::Nothing { .. }));
    }

    #[test]
    fn ambiguous_classes_wait_out_the_grace() {
        let cfg = PolicyConfig::default();
        for c in [Class::MemberRemoved, Class::NotRunning] {
            let mut st = after_healthy(&cfg);
            let mut o = obs(c);
            o.etcd_running = c == Class::MemberRemoved;
            let d = decide(&cfg, &mut st, &o, 10 * S);
            match &d {
                Decision::Wait { deadline, reason } => {
                    assert_eq!(*deadline, 310 * S);
                    assert!(reason.contains("grace"), "{reason}");
                }
                other => panic!("{c:?}: {other:?}"),
            }
            assert!(matches!(decide(&cfg, &mut st, &o, 309 * S), Decision::Wait { .. }));
            assert!(is_heal(&decide(&cfg, &mut st, &o, 310 * S)), "{c:?}");
        }
    }

    #[test]
    fn a_removal_by_another_masters_rejoin_heals_at_once() {
        let cfg = PolicyConfig::default();
        let mut st = after_healthy(&cfg);
        let mut o = obs(Class::MemberRemoved);
        o.removed_by_hostfix = true;
        assert!(is_heal(&decide(&cfg, &mut st, &o, 10 * S)));
    }

    #[test]
    fn a_restart_that_comes_back_healthy_is_never_healed() {
        let cfg = PolicyConfig::default();
        let mut st = after_healthy(&cfg);
        // kill -9 or a manifest edit: a few seconds down, no signature, then healthy.
        for t in 10..14 {
            let d = decide(&cfg, &mut st, &obs(Class::NotRunning), t * S);
            assert!(matches!(d, Decision::Wait { .. }), "{d:?}");
        }
        let d = decide(&cfg, &mut st, &obs(Class::Unknown), 14 * S);
        assert!(matches!(d, Decision::Wait { .. }), "an unknown crash settles before it alerts: {d:?}");
        assert!(matches!(decide(&cfg, &mut st, &obs(Class::Healthy), 15 * S), Decision::Nothing { .. }));
        // The grace starts again from the next fault, not from the first.
        let d = decide(&cfg, &mut st, &obs(Class::NotRunning), 400 * S);
        assert!(matches!(d, Decision::Wait { deadline, .. } if deadline == 700 * S), "{d:?}");
    }

    #[test]
    fn a_restarted_member_is_judged_by_its_newest_run() {
        let cfg = PolicyConfig::default();
        let mut st = after_healthy(&cfg);
        let mut o = obs(Class::DbCorrupt);
        o.previous_run_only = true;
        assert!(matches!(decide(&cfg, &mut st, &o, 10 * S), Decision::Wait { reason, .. } if reason.contains("newest run")));
        o.previous_run_only = false;
        assert!(is_heal(&decide(&cfg, &mut st, &o, 11 * S)));
    }

    #[test]
    fn a_persons_hand_wins() {
        let cfg = PolicyConfig::default();
        let mut st = after_healthy(&cfg);
        let mut o = obs(Class::DataLost);
        o.placement = Placement::MovedOut;
        assert!(matches!(decide(&cfg, &mut st, &o, 10 * S), Decision::Nothing { reason } if reason.contains("taken out of service")));
        let mut o = obs(Class::DataLost);
        o.local_lock_holder = Some("4242".into());
        assert!(matches!(decide(&cfg, &mut st, &o, 10 * S), Decision::Nothing { reason } if reason.contains("4242")));
        let mut o = obs(Class::DataLost);
        o.cluster_lock_holder = Some("m1".into());
        assert!(matches!(decide(&cfg, &mut st, &o, 10 * S), Decision::Wait { reason, .. } if reason.contains("m1")));
    }

    #[test]
    fn observe_and_pause_withhold_but_still_decide() {
        let mut cfg = PolicyConfig::default();
        let mut st = after_healthy(&cfg);
        let mut o = obs(Class::WalCorrupt);
        o.paused = Some("kubeadm upgrade".into());
        match decide(&cfg, &mut st, &o, 10 * S) {
            Decision::Withheld { would, reason } => {
                assert!(is_heal(&would));
                assert_eq!(reason, "paused: kubeadm upgrade");
            }
            d => panic!("{d:?}"),
        }
        cfg.mode = Mode::Observe;
        let d = decide(&cfg, &mut st, &obs(Class::WalCorrupt), 11 * S);
        assert!(matches!(&d, Decision::Withheld { reason, .. } if reason == "observe mode"), "{d:?}");
        assert!(d.summary().contains("would be healing with rejoin"), "{}", d.summary());
        // Alerts are reports, not actions: paused or not, they go out.
        let mut o = obs(Class::Nospace);
        o.paused = Some("x".into());
        assert!(matches!(decide(&cfg, &mut st, &o, 12 * S), Decision::Alert { .. }));
    }

    #[test]
    fn never_healed_automatically() {
        let cfg = PolicyConfig::default();
        for c in [Class::Unknown, Class::Nospace, Class::QuorumLost, Class::Partitioned, Class::VersionIncompatible] {
            let mut st = after_healthy(&cfg);
            let d = decide(&cfg, &mut st, &obs(c), 100 * S);
            let d = if matches!(d, Decision::Wait { .. }) { decide(&cfg, &mut st, &obs(c), 200 * S) } else { d };
            assert!(matches!(d, Decision::Alert { class, .. } if class == c), "{c:?}: {d:?}");
        }
    }

    #[test]
    fn quorum_loss_names_the_progenitor_only_when_peers_are_positively_down() {
        let cfg = PolicyConfig::default();
        let mut st = after_healthy(&cfg);
        let mut o = obs(Class::QuorumLost);
        o.progenitor = Some(("m1".into(), "sudo etcd-hostfix rebuild".into()));
        match decide(&cfg, &mut st, &o, 10 * S) {
            Decision::Alert { reason, command, .. } => {
                assert!(reason.contains("m1"), "{reason}");
                assert_eq!(command.as_deref(), Some("sudo etcd-hostfix rebuild"));
            }
            d => panic!("{d:?}"),
        }
        match decide(&cfg, &mut st, &obs(Class::Partitioned), 11 * S) {
            Decision::Alert { reason, command: None, .. } => assert!(reason.contains("cut off"), "{reason}"),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn budget_then_circuit_breaker_until_resume() {
        let cfg = PolicyConfig::default();
        let mut st = after_healthy(&cfg);
        let mut t = 10 * S;
        for _ in 0..3 {
            let d = decide(&cfg, &mut st, &obs(Class::DataLost), t);
            assert!(is_heal(&d), "{d:?}");
            st.repair_started(t);
            t += 20 * S;
            st.repair_ended(t, RepairEnd::Healed);
            decide(&cfg, &mut st, &obs(Class::Healthy), t);
            t += S;
        }
        assert_eq!(st.budget_left(&cfg, t), 0);
        let d = decide(&cfg, &mut st, &obs(Class::DataLost), t);
        assert!(matches!(&d, Decision::Alert { reason, .. } if reason.contains("circuit open")), "{d:?}");
        assert!(st.circuit_open);
        // It stays open after the window passes, until resume.
        assert!(matches!(decide(&cfg, &mut st, &obs(Class::DataLost), t + 7200 * S), Decision::Alert { .. }));
        st.reset();
        assert!(is_heal(&decide(&cfg, &mut st, &obs(Class::DataLost), t + 7201 * S)));
    }

    #[test]
    fn failed_repairs_back_off_exponentially() {
        let cfg = PolicyConfig::default();
        let mut st = after_healthy(&cfg);
        st.repair_started(10 * S);
        st.repair_ended(20 * S, RepairEnd::Failed);
        let d = decide(&cfg, &mut st, &obs(Class::DataLost), 21 * S);
        assert!(matches!(d, Decision::Wait { deadline, .. } if deadline == 50 * S), "{d:?}");
        assert!(is_heal(&decide(&cfg, &mut st, &obs(Class::DataLost), 50 * S)));
        st.repair_started(50 * S);
        st.repair_ended(60 * S, RepairEnd::Failed);
        assert!(matches!(decide(&cfg, &mut st, &obs(Class::DataLost), 61 * S), Decision::Wait { deadline, .. } if deadline == 120 * S));
        assert_eq!(backoff(&cfg, 20), cfg.backoff_max);
    }

    #[test]
    fn an_unfinished_journal_is_resumed_first() {
        let cfg = PolicyConfig::default();
        let mut st = PolicyState::default();
        let mut o = obs(Class::Healthy);
        o.unfinished_journal = true;
        assert!(matches!(decide(&cfg, &mut st, &o, S), Decision::Heal { resume: true, .. }));
        // ...unless a CLI run is at it right now.
        o.local_lock_holder = Some("99".into());
        assert!(!matches!(decide(&cfg, &mut st, &o, S), Decision::Heal { .. }));
    }

    /// A resumed repair that keeps failing at a step is not resumed every probe (it was:
    /// 135 tries in 120 s): it backs off like a new repair, spends the same budget, and the
    /// circuit opens after `max_repairs`; `resume` closes it and it is resumed again.
    #[test]
    fn a_failing_resume_backs_off_spends_the_budget_and_opens_the_circuit() {
        let cfg = PolicyConfig::default();
        let mut st = PolicyState::default();
        let mut o = obs(Class::NotRunning);
        o.unfinished_journal = true;
        let mut t = S;
        let mut tries = 0;
        // Probe every second for two hours; every resumed repair fails after 5 s.
        while t < 7200 * S {
            match decide(&cfg, &mut st, &o, t) {
                Decision::Heal { resume: true, .. } => {
                    tries += 1;
                    st.repair_started(t);
                    st.repair_ended(t + 5 * S, RepairEnd::Failed);
                    t += 5 * S;
                }
                Decision::Wait { reason, deadline } => {
                    assert!(reason.contains("backing off") && reason.contains("unfinished repair"), "{reason}");
                    assert!(deadline > t);
                }
                Decision::Alert { reason, command, .. } => {
                    assert!(reason.contains("circuit open"), "{reason}");
                    assert_eq!(command.as_deref(), Some("etcd-hostfix resume"));
                }
                d => panic!("{d:?}"),
            }
            t += S;
        }
        assert_eq!(tries, cfg.max_repairs, "tried exactly max_repairs times");
        assert!(st.circuit_open);
        // The first retry waited the base backoff, not a second.
        let mut st2 = PolicyState::default();
        st2.repair_started(S);
        st2.repair_ended(2 * S, RepairEnd::Failed);
        assert!(matches!(decide(&cfg, &mut st2, &o, 3 * S), Decision::Wait { deadline, .. } if deadline == 32 * S));
        // The cause is gone and a person runs resume: it is resumed again.
        st.reset();
        assert!(matches!(decide(&cfg, &mut st, &o, t), Decision::Heal { resume: true, .. }));
    }

    /// Stopped by the host (a rename across the sandbox's mounts, no room on the etcd disk):
    /// alerted at once with the reason, not retried after any backoff, new or resumed, until
    /// `resume`.
    #[test]
    fn a_host_caused_refusal_alerts_at_once_and_is_never_retried() {
        let cfg = PolicyConfig::default();
        let mut st = after_healthy(&cfg);
        let d = decide(&cfg, &mut st, &obs(Class::DataLost), 10 * S);
        assert!(is_heal(&d), "{d:?}");
        st.repair_started(10 * S);
        st.repair_ended(11 * S, RepairEnd::HostBlocked("no room on /var/lib/etcd: 10 MB free, 80 MB needed".into()));
        for t in [12, 100, 5000, 100_000] {
            for unfinished in [false, true] {
                let mut o = obs(Class::DataLost);
                o.unfinished_journal = unfinished;
                match decide(&cfg, &mut st, &o, t * S) {
                    Decision::Alert { reason, command, .. } => {
                        assert!(reason.contains("stopped by this host") && reason.contains("80 MB needed"), "{reason}");
                        assert_eq!(command.as_deref(), Some("etcd-hostfix resume"));
                    }
                    d => panic!("{d:?}"),
                }
            }
        }
        assert_eq!(st.repairs.len(), 1);
        st.reset();
        assert!(is_heal(&decide(&cfg, &mut st, &obs(Class::DataLost), 100_001 * S)));
    }
}
