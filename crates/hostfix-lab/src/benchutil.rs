//! What the benchmarks share: filling a lab with data, and the finish line both clocks
//! stop at (every member serves a quorum read as a voter, and the repaired member has the
//! leader's revision).

use std::time::{Duration, Instant};

use crate::lab::Lab;

const VALUE: usize = 100 * 1024;

/// Put ~`mb` MB of 100 KiB values through member 0.
pub async fn fill(lab: &Lab, mb: usize) {
    let mut ep = lab.connector(0).unwrap().connect(&lab.node(0).client_url()).await.unwrap();
    let value = vec![b'x'; VALUE];
    for k in 0..(mb * 1024 * 1024 / VALUE) {
        ep.client().put(format!("/bench/{k:06}"), value.clone(), None).await.unwrap();
    }
}

/// Every member answers a quorum read, none is a learner, and member `i` has the leader's
/// revision.
pub async fn converged(lab: &Lab, i: usize) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut revs = vec![];
        let mut leader_rev = None;
        let mut ok = true;
        for k in 0..lab.nodes().len() {
            let r = async {
                let mut ep = lab.connector(k).ok()?.connect(&lab.node(k).client_url()).await.ok()?;
                let st = ep.status().await.ok()?;
                ep.health().await.ok()?;
                let list = ep.member_list().await.ok()?;
                (!list.members.iter().any(|m| m.is_learner) && list.members.len() == lab.nodes().len()).then_some(st)
            }
            .await;
            match r {
                Some(st) => {
                    if st.leader == st.member_id {
                        leader_rev = Some(st.revision);
                    }
                    revs.push((k, st.revision));
                }
                None => ok = false,
            }
        }
        let mine = revs.iter().find(|(k, _)| *k == i).map(|x| x.1);
        if ok && leader_rev.is_some() && mine == leader_rev {
            return;
        }
        assert!(Instant::now() < deadline, "never converged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "hostfix-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}
