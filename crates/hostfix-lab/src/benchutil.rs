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

/// Which cells a benchmark runs: `HOSTFIX_BENCH_VERSIONS` (default "3.4,3.5"),
/// `HOSTFIX_BENCH_SIZES_MB` (default per benchmark) and `HOSTFIX_BENCH_ROUNDS` (default 3).
pub struct Matrix {
    pub versions: Vec<crate::EtcdVersion>,
    pub sizes_mb: Vec<usize>,
    pub rounds: usize,
}

impl Matrix {
    pub fn from_env(default_sizes_mb: &str) -> Matrix {
        let list = |var: &str, default: &str| -> Vec<String> {
            std::env::var(var).unwrap_or_else(|_| default.into()).split(',').map(str::to_string).collect()
        };
        Matrix {
            versions: list("HOSTFIX_BENCH_VERSIONS", "3.4,3.5").iter().map(|v| v.parse().unwrap()).collect(),
            sizes_mb: list("HOSTFIX_BENCH_SIZES_MB", default_sizes_mb).iter().map(|s| s.parse().unwrap()).collect(),
            rounds: std::env::var("HOSTFIX_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3),
        }
    }
}

/// One round: the manual procedure's time first, then each of the tool's columns, on the
/// same lab.
pub type Round = for<'a> fn(&'a Lab) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<Duration>> + 'a>>;

/// Every cell of the matrix on a fresh 3-member static-pod lab (loopback 127.`subnet`.x.y),
/// filled to size, `rounds` rounds each; medians, and each tool column's ratio to the first
/// (manual) column, as a Markdown table, printed and written to `out`.
pub async fn run_matrix(m: &Matrix, bin: &std::path::Path, subnet: u8, columns: &[&str], out: &std::path::Path, round: Round) {
    let mut report = format!("| etcd | data | db size | {} | rounds |\n|{}\n", {
        let mut h: Vec<String> = vec![format!("{} (median)", columns[0])];
        for c in &columns[1..] {
            h.push(format!("{c} (median)"));
            h.push("ratio".into());
        }
        h.join(" | ")
    }, " --- |".repeat(5 + 2 * (columns.len() - 1)));
    for (k, v) in m.versions.iter().enumerate() {
        for (s, mb) in m.sizes_mb.iter().enumerate() {
            let dir = tempdir();
            let spec = crate::LabSpec::new(&dir, 3, *v, crate::LabRuntime::StaticPod, [subnet, (k * 10 + s) as u8]);
            let mut lab = Lab::up(spec, bin, false).await.unwrap();
            lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
            fill(&lab, *mb).await;
            let db = lab.connector(0).unwrap().connect(&lab.node(0).client_url()).await.unwrap().status().await.unwrap().db_size;
            let mut cols: Vec<Vec<Duration>> = vec![vec![]; columns.len()];
            for r in 0..m.rounds {
                let times = round(&lab).await;
                let said: Vec<String> = columns.iter().zip(&times).map(|(c, t)| format!("{c} {:.2}s", t.as_secs_f64())).collect();
                eprintln!("etcd {} {mb} MB round {}: {}", v.tag(), r + 1, said.join(", "));
                for (c, t) in cols.iter_mut().zip(times) {
                    c.push(t);
                }
            }
            let meds: Vec<Duration> = cols.into_iter().map(median).collect();
            let mut cells = vec![format!("{:.2} s", meds[0].as_secs_f64())];
            for t in &meds[1..] {
                cells.push(format!("{:.2} s", t.as_secs_f64()));
                cells.push(format!("{:.2}×", t.as_secs_f64() / meds[0].as_secs_f64()));
            }
            report.push_str(&format!("| {} | ~{mb} MB | {:.0} MB | {} | {} |\n", v.tag(), db as f64 / 1e6, cells.join(" | "), m.rounds));
            lab.down().await.unwrap();
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    println!("{report}");
    std::fs::write(out, &report).unwrap();
    eprintln!("written to {}", out.display());
}
