//! `etcd-hostfix snapshot save` against `etcdctl snapshot save` (the same version's etcdctl,
//! the same member, the same TLS), alternating on the same lab, at ~200 MB and ~1 GB, with
//! both etcd versions. Throughput is the db size over wall time, process start included for
//! both. Not a test: run `scripts/dev bench snapshot`.
//!
//! Environment: HOSTFIX_BENCH_VERSIONS (default "3.4,3.6"), HOSTFIX_BENCH_SIZES_MB (default
//! "200,1024"), HOSTFIX_BENCH_ROUNDS (default 3).

use std::path::Path;
use std::time::{Duration, Instant};

use hostfix_lab::benchutil::{fill, median, tempdir, Matrix};
use hostfix_lab::{Lab, LabRuntime, LabSpec};

const BIN: &str = env!("CARGO_BIN_EXE_etcd-hostfix");

fn time_etcdctl(lab: &Lab, out: &Path) -> Duration {
    let t = Instant::now();
    lab.etcdctl(0, &["--command-timeout=600s", "snapshot", "save", out.to_str().unwrap()]).unwrap();
    let took = t.elapsed();
    std::fs::remove_file(out).unwrap();
    took
}

fn time_hostfix(lab: &Lab, out: &Path) -> Duration {
    let t = Instant::now();
    let o = std::process::Command::new(BIN)
        .args(["--host-root", lab.node(0).host_root.to_str().unwrap(), "snapshot", "save", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for extra in ["", ".sha256", ".json"] {
        std::fs::remove_file(format!("{}{extra}", out.display())).unwrap();
    }
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let m = Matrix::from_env("200,1024");
    let mut report = String::from(
        "| etcd | db size | etcdctl snapshot save (median) | etcd-hostfix snapshot save (median) | throughput etcdctl | throughput etcd-hostfix | etcd-hostfix / etcdctl throughput | rounds |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (k, v) in m.versions.iter().enumerate() {
        for (s, mb) in m.sizes_mb.iter().enumerate() {
            let dir = tempdir();
            let spec = LabSpec::new(&dir, 3, *v, LabRuntime::StaticPod, [184, (k * 10 + s) as u8]);
            let mut lab = Lab::up(spec, Path::new(BIN), false).await.unwrap();
            lab.wait_healthy(&[0, 1, 2], 3, Duration::from_secs(60)).await.unwrap();
            fill(&lab, *mb).await;
            let db = lab.connector(0).unwrap().connect(&lab.node(0).client_url()).await.unwrap().status().await.unwrap().db_size;
            let out = dir.join("bench.db");
            let (mut a, mut b) = (vec![], vec![]);
            for r in 0..m.rounds {
                // Alternate which goes first, so the page cache favours neither.
                let (x, y) = if r % 2 == 0 {
                    let x = time_etcdctl(&lab, &out);
                    (x, time_hostfix(&lab, &out))
                } else {
                    let y = time_hostfix(&lab, &out);
                    (time_etcdctl(&lab, &out), y)
                };
                eprintln!("etcd {} {mb} MB round {}: etcdctl {:.2}s, etcd-hostfix {:.2}s", v.tag(), r + 1, x.as_secs_f64(), y.as_secs_f64());
                a.push(x);
                b.push(y);
            }
            let (x, y) = (median(a), median(b));
            let mbps = |d: Duration| db as f64 / 1e6 / d.as_secs_f64();
            report.push_str(&format!(
                "| {} | {:.0} MB | {:.2} s | {:.2} s | {:.0} MB/s | {:.0} MB/s | {:.2}× | {} |\n",
                v.tag(),
                db as f64 / 1e6,
                x.as_secs_f64(),
                y.as_secs_f64(),
                mbps(x),
                mbps(y),
                mbps(y) / mbps(x),
                m.rounds
            ));
            lab.down().await.unwrap();
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    println!("{report}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-snapshot.md");
    std::fs::write(&path, &report).unwrap();
    eprintln!("written to {}", path.display());
}
