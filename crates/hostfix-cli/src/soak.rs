//! `etcd-hostfix lab soak`: the lab with a daemon per master for N minutes. At random
//! intervals one random member is broken in a random definitive way (one at a time, so the
//! cluster keeps quorum), while a writer puts keys through every member in turn. It reports
//! breaks, heals, the time-to-healthy distribution, acknowledged writes that are missing
//! afterwards (must be 0), and the daemons' RSS over time (must be flat).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use hostfix_core::exit;
use hostfix_lab::breaks::Break;
use hostfix_lab::{Lab, LabRuntime};
use serde::Serialize;

use crate::labcmd::{all, demo_lab, finished_incidents, step, Daemons, UpOpts};

#[derive(Debug, Clone, clap::Args)]
pub struct SoakOpts {
    #[command(flatten)]
    pub up: UpOpts,
    /// How long to run, in minutes.
    #[arg(long, default_value_t = 60)]
    pub minutes: u64,
    /// Seconds from one heal to the next break: a random value in MIN-MAX.
    #[arg(long, default_value = "20-90", value_parser = parse_range)]
    pub pause: (u64, u64),
    /// Seed of the random choices (default: from the clock); printed, so a run can be repeated.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The JSON report (default: soak-report.json in the lab's dir).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once('-').ok_or("expected MIN-MAX, in seconds")?;
    let (a, b): (u64, u64) = (a.parse().map_err(|_| "bad MIN")?, b.parse().map_err(|_| "bad MAX")?);
    if a > b {
        return Err("MIN is above MAX".into());
    }
    Ok((a, b))
}

/// xorshift64*: the soak needs repeatable choices, not good randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Debug, Serialize)]
struct BreakRecord {
    /// Seconds since the soak began, when the broken member was started.
    at_s: f64,
    member: String,
    class: &'static str,
    healed: bool,
    /// From the broken member's start to every member healthy.
    to_healthy_s: Option<f64>,
    incident_result: Option<String>,
    incident_class: Option<String>,
}

#[derive(Debug, Serialize)]
struct RssSample {
    at_s: f64,
    /// VmRSS per daemon.
    kib: Vec<u64>,
    /// RssAnon per daemon: the heap and stacks. The rest of VmRSS is file pages, mostly the
    /// binary's own code as each path first runs (a debug build is over 100 MB), which the
    /// kernel can drop; growth that matters shows here.
    anon_kib: Vec<u64>,
}

impl RssSample {
    fn now(at_s: f64, pids: &[u32]) -> RssSample {
        let field = |p: u32, f: &str| hostfix_lab::benchutil::proc_status_kib(p, f).unwrap_or(0);
        RssSample { at_s, kib: pids.iter().map(|p| field(*p, "VmRSS")).collect(), anon_kib: pids.iter().map(|p| field(*p, "RssAnon")).collect() }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    seed: u64,
    etcd: &'static str,
    minutes: u64,
    ran_s: f64,
    breaks: Vec<BreakRecord>,
    heals: usize,
    to_healthy_s: Summary,
    writes_acked: u64,
    writes_failed: u64,
    /// Acknowledged keys that a member does not serve at the end, per member.
    keys_lost: Vec<(String, u64)>,
    rss: Vec<RssSample>,
    rss_first_last_kib: Vec<(String, u64, u64)>,
    anon_first_last_kib: Vec<(String, u64, u64)>,
    incidents_per_member: Vec<(String, usize)>,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    n: usize,
    min: f64,
    p50: f64,
    p90: f64,
    max: f64,
    mean: f64,
}

fn summary(v: &[f64]) -> Summary {
    if v.is_empty() {
        return Summary::default();
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
    Summary { n: s.len(), min: s[0], p50: q(0.5), p90: q(0.9), max: s[s.len() - 1], mean: s.iter().sum::<f64>() / s.len() as f64 }
}

fn state_dir(lab: &Lab, i: usize) -> PathBuf {
    lab.node(i).host_root.join("var/lib/etcd-hostfix")
}

pub async fn soak(o: SoakOpts) -> Result<i32> {
    ensure!(o.up.lab_runtime == LabRuntime::StaticPod, "the soak breaks kubeadm static pods (its breaks edit the manifest offline)");
    let seed = o.seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64 | 1);
    let mut rng = Rng(seed);
    let exe = std::env::current_exe()?;
    let (mut lab, up) = demo_lab(&exe, o.up.clone(), "soak").await?;
    let report_path = o.report.clone().unwrap_or_else(|| up.lab.dir.join("soak-report.json"));
    let mut daemons = None;
    let result = run(&o, &mut rng, &lab, &exe, &mut daemons, seed).await;
    step("stopping the daemons and tearing the lab down");
    if let Some(mut d) = daemons {
        d.stop();
    }
    lab.down().await?;
    let report = result?;
    std::fs::write(&report_path, serde_json::to_string_pretty(&report)? + "\n").with_context(|| report_path.display().to_string())?;
    print_report(&report, &report_path);
    let lost: u64 = report.keys_lost.iter().map(|k| k.1).sum();
    Ok(if lost == 0 && report.heals == report.breaks.len() { exit::OK } else { exit::UNHEALTHY })
}

async fn run(o: &SoakOpts, rng: &mut Rng, lab: &Lab, exe: &Path, daemons: &mut Option<Daemons>, seed: u64) -> Result<Report> {
    let n = lab.nodes().len();
    lab.wait_healthy(&all(lab), n, Duration::from_secs(60)).await?;
    step(&format!("seed {seed}: starting a daemon per master, a writer through every member, and breaks every {}-{} s for {} min", o.pause.0, o.pause.1, o.minutes));
    // The budget is for production; here the breaks are the point.
    let d = daemons.insert(Daemons::start(exe, lab, "max_repairs: 100000\n")?);
    let pids: Vec<u32> = d.children.iter().map(|c| c.id()).collect();
    let began = Instant::now();
    let end = began + Duration::from_secs(o.minutes * 60);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let failed = Arc::new(AtomicU64::new(0));
    let conns: Vec<_> = (0..n).map(|i| lab.connector(i).map(|c| (c, lab.node(i).client_url()))).collect::<Result<_, _>>()?;
    let writer = {
        let (stop, acked, failed) = (stop.clone(), acked.clone(), failed.clone());
        tokio::spawn(async move {
            let value = vec![b'v'; 100];
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (conn, url) = &conns[(seq % conns.len() as u64) as usize];
                let key = format!("/soak/{seq:09}");
                let put = async {
                    let mut ep = conn.connect(url).await?;
                    ep.put_bytes(key.as_bytes(), &value).await
                };
                match tokio::time::timeout(Duration::from_secs(2), put).await {
                    Ok(Ok(())) => acked.lock().unwrap().push(seq),
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                seq += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let rss = Arc::new(Mutex::new(Vec::<RssSample>::new()));
    let sampler = {
        let (stop, rss, pids) = (stop.clone(), rss.clone(), pids.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                rss.lock().unwrap().push(RssSample::now(began.elapsed().as_secs_f64(), &pids));
                for _ in 0..300 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
    };

    let mut breaks = vec![];
    let mut broken_off = false;
    loop {
        let pause = Duration::from_secs(o.pause.0 + rng.below(o.pause.1 - o.pause.0 + 1));
        // A break needs time to heal before the end: the default daemon grace is short here.
        if Instant::now() + pause + Duration::from_secs(60) > end {
            break;
        }
        tokio::time::sleep(pause).await;
        let t = rng.below(n as u64) as usize;
        let b = Break::ALL[rng.below(Break::ALL.len() as u64) as usize];
        let before = finished_incidents(&state_dir(lab, t)).len();
        b.apply(lab, t).await.with_context(|| format!("breaking {} ({})", lab.node(t).name, b.class()))?;
        let broke = Instant::now();
        let at_s = broke.duration_since(began).as_secs_f64();
        let deadline = broke + Duration::from_secs(300);
        let mut rec = BreakRecord { at_s, member: lab.node(t).name.clone(), class: b.class(), healed: false, to_healthy_s: None, incident_result: None, incident_class: None };
        while Instant::now() < deadline {
            let done = finished_incidents(&state_dir(lab, t));
            if done.len() > before {
                let v = &done[done.len() - 1].1;
                rec.incident_result = v["outcome"]["result"].as_str().map(str::to_string);
                rec.incident_class = v["observed"]["class"].as_str().map(str::to_string);
                let left = deadline.saturating_duration_since(Instant::now());
                if lab.wait_healthy(&all(lab), n, left).await.is_ok() {
                    rec.healed = true;
                    rec.to_healthy_s = Some(broke.elapsed().as_secs_f64());
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        println!(
            "  {:>7.1}s  {} {:<22} {}",
            at_s,
            rec.member,
            rec.class,
            match rec.to_healthy_s {
                Some(s) => format!("healthy after {s:.1}s ({})", rec.incident_result.as_deref().unwrap_or("?")),
                None => format!("NOT healed within 300 s ({})", rec.incident_result.as_deref().unwrap_or("no incident")),
            }
        );
        let healed = rec.healed;
        breaks.push(rec);
        if !healed {
            // A second break on top of an unhealed one could cost quorum: stop here.
            broken_off = true;
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = writer.await;
    let _ = sampler.await;
    let mut rss = std::mem::take(&mut *rss.lock().unwrap());
    rss.push(RssSample::now(began.elapsed().as_secs_f64(), &pids));
    let ran_s = began.elapsed().as_secs_f64();
    if !broken_off {
        lab.wait_healthy(&all(lab), n, Duration::from_secs(60)).await?;
    }

    // Every acknowledged key, read from each member's own copy (serializable).
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let mut keys_lost = vec![];
    for i in all(lab) {
        let out = lab.etcdctl(i, &["get", "--prefix", "/soak/", "--keys-only", "--consistency=s"]).unwrap_or_default();
        let have: std::collections::HashSet<u64> = out.lines().filter_map(|l| l.strip_prefix("/soak/")?.parse().ok()).collect();
        keys_lost.push((lab.node(i).name.clone(), acked.iter().filter(|s| !have.contains(s)).count() as u64));
    }
    let times: Vec<f64> = breaks.iter().filter_map(|b| b.to_healthy_s).collect();
    let first_last = |pick: fn(&RssSample) -> &Vec<u64>| {
        (0..n)
            .map(|i| {
                // The first sample is at start-up; the one after a minute is the warm baseline.
                let first = rss.iter().find(|s| s.at_s >= 60.0).or(rss.first()).map(|s| pick(s)[i]).unwrap_or(0);
                (lab.node(i).name.clone(), first, rss.last().map(|s| pick(s)[i]).unwrap_or(0))
            })
            .collect::<Vec<_>>()
    };
    let (rss_first_last_kib, anon_first_last_kib) = (first_last(|s| &s.kib), first_last(|s| &s.anon_kib));
    Ok(Report {
        seed,
        etcd: o.up.version.tag(),
        minutes: o.minutes,
        ran_s,
        heals: breaks.iter().filter(|b| b.healed).count(),
        to_healthy_s: summary(&times),
        breaks,
        writes_acked: acked.len() as u64,
        writes_failed: failed.load(Ordering::Relaxed),
        keys_lost,
        rss,
        rss_first_last_kib,
        anon_first_last_kib,
        incidents_per_member: all(lab).into_iter().map(|i| (lab.node(i).name.clone(), finished_incidents(&state_dir(lab, i)).len())).collect(),
    })
}

fn print_report(r: &Report, path: &Path) {
    step(&format!("soak report ({})", path.display()));
    println!("seed {}, etcd {}, ran {:.0} s", r.seed, r.etcd, r.ran_s);
    let mut by_class = std::collections::BTreeMap::<&str, usize>::new();
    for b in &r.breaks {
        *by_class.entry(b.class).or_default() += 1;
    }
    println!("breaks: {} ({by_class:?}), healed: {}", r.breaks.len(), r.heals);
    let t = &r.to_healthy_s;
    println!("time to healthy (s): min {:.1}  p50 {:.1}  p90 {:.1}  max {:.1}  mean {:.1}", t.min, t.p50, t.p90, t.max, t.mean);
    println!("writes acknowledged: {}, failed (refused or timed out): {}", r.writes_acked, r.writes_failed);
    for (m, lost) in &r.keys_lost {
        println!("keys lost on {m}: {lost}");
    }
    for ((m, first, last), (_, a_first, a_last)) in r.rss_first_last_kib.iter().zip(&r.anon_first_last_kib) {
        let mib = |k: &u64| *k as f64 / 1024.0;
        println!(
            "daemon RSS on {m}: {:.1} MiB after a minute, {:.1} MiB at the end (anonymous: {:.1} -> {:.1} MiB)",
            mib(first),
            mib(last),
            mib(a_first),
            mib(a_last)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_range() {
        let s = summary(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((s.n, s.min, s.p50, s.max, s.mean), (5, 1.0, 3.0, 5.0, 3.0));
        assert_eq!(parse_range("20-90"), Ok((20, 90)));
        assert!(parse_range("9-1").is_err());
        let mut r = Rng(7);
        assert!((0..1000).all(|_| r.below(3) < 3));
    }
}
