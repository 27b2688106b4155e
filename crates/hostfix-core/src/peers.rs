//! Where a master may find its peers when its own configuration names none: the members a
//! daemon last saw in a cluster with quorum (`known_peers`). The rule of what is worth
//! keeping is here; the file it is kept in is the playbooks' (`local::known_peers_path`).

use crate::status::MemberStatus;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KnownPeer {
    pub name: String,
    pub client_urls: Vec<String>,
}

/// The members in a daemon's observation worth keeping as [`KnownPeer`]s: all the listed
/// ones that have a client URL, sorted, when a member other than the local one (`local_id`)
/// served a quorum read; `None` otherwise. A list only the local member vouches for may be
/// a cluster of its own (a first master that bootstrapped alone over lost data serves
/// quorum reads by itself), and keeping it would forget the real peers just when they are
/// needed.
pub fn known_peers(members: &[MemberStatus], local_id: Option<&str>) -> Option<Vec<KnownPeer>> {
    if !members.iter().any(|m| m.quorum_read && Some(m.id.as_str()) != local_id) {
        return None;
    }
    let mut out: Vec<KnownPeer> = members
        .iter()
        .filter(|m| !m.client_urls.is_empty())
        .map(|m| KnownPeer { name: m.name.clone(), client_urls: m.client_urls.clone() })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.client_urls).cmp(&(&b.name, &b.client_urls)));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, url: &str, quorum_read: bool) -> MemberStatus {
        MemberStatus { id: format!("id-{name}"), name: name.into(), client_urls: vec![url.into()], quorum_read, ..Default::default() }
    }

    #[test]
    fn known_peers_only_from_a_list_a_peer_vouches_for() {
        let down = [member("m2", "https://10.0.0.2:2379", false), member("m1", "https://10.0.0.1:2379", false)];
        assert_eq!(known_peers(&down, Some("id-m1")), None, "nobody served a quorum read: not the cluster's list");
        let mut alone = down.to_vec();
        alone[1].quorum_read = true;
        assert_eq!(known_peers(&alone, Some("id-m1")), None, "only the local member answers: maybe a cluster of its own");
        let mut up = down.to_vec();
        up[0].quorum_read = true;
        up.push(MemberStatus { name: String::new(), ..Default::default() });
        let known = known_peers(&up, Some("id-m1")).unwrap();
        // Sorted, so that an unchanged cluster is an unchanged file; a member without a
        // client URL (added, never started) has nothing to ask.
        assert_eq!(known.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["m1", "m2"]);
    }
}
