//! `status`'s fleet section: every master's agent, read from whichever member answers
//! (the local one first, then the peers its configuration names), so that a master whose
//! own etcd is down still shows what the others' daemons are doing.

use std::collections::BTreeMap;

use hostfix_core::agent::{self, AgentRecord, FleetRow};
use serde::Serialize;

use crate::local::Local;
use crate::Settings;

#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    /// The member it was read from.
    pub read_from: String,
    pub agents: Vec<FleetRow>,
}

pub async fn read(g: &Settings) -> anyhow::Result<Fleet> {
    let local = Local::discover(g).await?;
    let conn = local.connector(g)?;
    let mut ep = local.first_answering(g, &conn).await?;
    let members: Vec<String> = ep.member_list().await?.members.into_iter().map(|m| m.name).collect();
    let mut records = BTreeMap::new();
    for (k, v) in ep.get_prefix(agent::AGENTS_PREFIX).await? {
        // A record this version cannot read is shown as absent rather than failing the
        // whole status: a newer agent may have added fields, never removed them.
        if let (Some(name), Ok(r)) = (k.strip_prefix(agent::AGENTS_PREFIX), serde_json::from_slice::<AgentRecord>(&v)) {
            records.insert(name.to_string(), r);
        }
    }
    let silent: BTreeMap<String, String> = ep
        .get_prefix(agent::SILENT_PREFIX)
        .await?
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(agent::SILENT_PREFIX)?.to_string(), String::from_utf8_lossy(&v).into_owned())))
        .collect();
    let known: Vec<String> = ep
        .get_prefix(agent::KNOWN_PREFIX)
        .await?
        .into_iter()
        .filter_map(|(k, _)| Some(k.strip_prefix(agent::KNOWN_PREFIX)?.to_string()))
        .collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    Ok(Fleet { read_from: ep.url.clone(), agents: agent::fleet(&members, &records, &silent, &known, now) })
}
