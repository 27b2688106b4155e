//! The NOSPACE playbook's planner: `defrag`. Cluster-wide, safe from any master.
//!
//! Defragmenting a member blocks its reads and writes while it runs. So every member must
//! be up, and the cluster must keep quorum with one member blocked: three voters at least.
//! The leader goes last, so that leadership is not moved by a blocked leader more than once.

use serde::Serialize;

use crate::status::MemberStatus;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum DefragStep {
    /// Compact the keyspace to this revision (skipped at run time if a newer compaction
    /// already happened), physically, so the space is free before the defrag.
    Compact { revision: i64 },
    /// Defragment one member, then wait until it serves quorum reads again.
    Defrag { name: String, url: String },
    /// Disarm the NOSPACE alarms, only if every member's db is below the quota by then.
    Disarm,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefragPlan {
    pub steps: Vec<DefragStep>,
    pub quota: i64,
    /// (name, db size, in use) before, in plan order.
    pub before: Vec<(String, i64, i64)>,
}

impl DefragPlan {
    /// The members to defragment, `(name, client URL)`, in plan order.
    pub fn members(&self) -> Vec<(&str, &str)> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                DefragStep::Defrag { name, url } => Some((name.as_str(), url.as_str())),
                _ => None,
            })
            .collect()
    }
}

/// The plan, or why not. `members` are the probed members, `revision` the cluster's, and
/// `quota` the members' `--quota-backend-bytes` (etcd's default when unset).
pub fn plan_defrag(members: &[MemberStatus], revision: i64, quota: i64) -> Result<DefragPlan, String> {
    if members.is_empty() {
        return Err("no member answers".into());
    }
    let down: Vec<String> = members
        .iter()
        .filter(|m| !m.quorum_read || m.client_urls.is_empty())
        .map(|m| {
            let name = if m.name.is_empty() { m.id.clone() } else { m.name.clone() };
            format!("{name} ({})", m.error.as_deref().unwrap_or("does not serve quorum reads"))
        })
        .collect();
    if !down.is_empty() {
        return Err(format!(
            "the cluster cannot spare a member: defrag blocks each member in turn, and {} {} not up. Heal {} first (etcd-hostfix status, diagnose)",
            down.join(", "),
            if down.len() == 1 { "is" } else { "are" },
            if down.len() == 1 { "it" } else { "them" }
        ));
    }
    let voters = members.iter().filter(|m| !m.is_learner).count();
    if voters < 3 {
        return Err(format!(
            "the cluster cannot spare a member: with {voters} voter{}, a member blocked by defrag takes quorum with it (writes and reads stop until it is done)",
            if voters == 1 { "" } else { "s" }
        ));
    }
    // Learners first (no vote to lose), then followers, the leader last.
    let mut order: Vec<&MemberStatus> = members.iter().collect();
    order.sort_by_key(|m| (m.is_leader, !m.is_learner));
    let mut steps = vec![DefragStep::Compact { revision }];
    steps.extend(order.iter().map(|m| DefragStep::Defrag { name: m.name.clone(), url: m.client_urls[0].clone() }));
    let alarmed = members.iter().any(|m| m.alarms.iter().any(|a| a == "NOSPACE"));
    if alarmed {
        steps.push(DefragStep::Disarm);
    }
    let before = order.iter().map(|m| (m.name.clone(), m.db_size.unwrap_or(0), m.db_size_in_use.unwrap_or(0))).collect();
    Ok(DefragPlan { steps, quota, before })
}

/// etcd's `--quota-backend-bytes` default (3.4 and 3.5): 2 GiB.
pub const DEFAULT_QUOTA: i64 = 2 << 30;

/// The quota from a flag's value; etcd takes 0 (and unset) as its default.
pub fn quota_from_flag(v: Option<&str>) -> Result<i64, String> {
    match v.map(str::trim) {
        None | Some("") | Some("0") => Ok(DEFAULT_QUOTA),
        Some(s) => s.parse::<i64>().ok().filter(|q| *q > 0).ok_or_else(|| format!("--quota-backend-bytes={s} is not a byte count")),
    }
}

/// Whether the alarm may be disarmed: every member's db is below the quota.
pub fn may_disarm(sizes: &[(String, i64)], quota: i64) -> Result<(), String> {
    let over: Vec<String> = sizes.iter().filter(|(_, s)| *s >= quota).map(|(n, s)| format!("{n} ({s} bytes)")).collect();
    if over.is_empty() {
        Ok(())
    } else {
        Err(format!("still at or above the quota of {quota} bytes: {}; the NOSPACE alarm stays armed", over.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, up: bool, leader: bool, learner: bool) -> MemberStatus {
        MemberStatus {
            id: format!("id-{name}"),
            name: name.into(),
            client_urls: vec![format!("https://{name}:2379")],
            quorum_read: up,
            is_leader: leader,
            is_learner: learner,
            db_size: Some(100),
            db_size_in_use: Some(10),
            error: (!up).then(|| "connection refused".into()),
            ..Default::default()
        }
    }

    #[test]
    fn leader_last_learners_first() {
        let mut ms = vec![m("m1", true, true, false), m("m2", true, false, false), m("m3", true, false, false), m("m4", true, false, true)];
        ms[0].alarms = vec!["NOSPACE".into()];
        let p = plan_defrag(&ms, 42, DEFAULT_QUOTA).unwrap();
        let names: Vec<&str> = p
            .steps
            .iter()
            .filter_map(|s| match s {
                DefragStep::Defrag { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["m4", "m2", "m3", "m1"]);
        assert_eq!(p.members().iter().map(|m| m.0).collect::<Vec<_>>(), names);
        assert_eq!(p.steps[0], DefragStep::Compact { revision: 42 });
        assert_eq!(p.steps.last(), Some(&DefragStep::Disarm));
    }

    #[test]
    fn no_disarm_without_an_alarm() {
        let ms = vec![m("m1", true, true, false), m("m2", true, false, false), m("m3", true, false, false)];
        assert!(!plan_defrag(&ms, 1, DEFAULT_QUOTA).unwrap().steps.contains(&DefragStep::Disarm));
    }

    #[test]
    fn refuses_when_a_member_is_down_or_too_few_voters() {
        let ms = vec![m("m1", true, true, false), m("m2", false, false, false), m("m3", true, false, false)];
        let e = plan_defrag(&ms, 1, DEFAULT_QUOTA).unwrap_err();
        assert!(e.contains("m2 (connection refused) is not up"), "{e}");
        let e = plan_defrag(&[m("m1", true, true, false)], 1, DEFAULT_QUOTA).unwrap_err();
        assert!(e.contains("with 1 voter, a member blocked"), "{e}");
        let e = plan_defrag(&[m("m1", true, true, false), m("m2", true, false, false), m("m3", true, false, true)], 1, DEFAULT_QUOTA).unwrap_err();
        assert!(e.contains("with 2 voters"), "{e}");
    }

    #[test]
    fn quota_and_disarm() {
        assert_eq!(quota_from_flag(None), Ok(DEFAULT_QUOTA));
        assert_eq!(quota_from_flag(Some("0")), Ok(DEFAULT_QUOTA));
        assert_eq!(quota_from_flag(Some("16777216")), Ok(16 << 20));
        assert!(quota_from_flag(Some("16MiB")).is_err());
        assert!(may_disarm(&[("m1".into(), 10), ("m2".into(), 20)], 100).is_ok());
        let e = may_disarm(&[("m1".into(), 10), ("m2".into(), 100)], 100).unwrap_err();
        assert!(e.contains("m2 (100 bytes)"), "{e}");
    }
}
