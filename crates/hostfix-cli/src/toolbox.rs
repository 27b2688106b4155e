//! Seed 003's operator toolbox: `keys` (the key inventory), `check perf`, `defrag`.

use std::time::Instant;

use anyhow::Result;
use hostfix_core::exit;
use hostfix_core::status::human_bytes;
use hostfix_playbooks::keys::{self, KeysOptions};
use hostfix_playbooks::local::Local;

use crate::{Global, Output};

#[derive(Debug, Clone, clap::Args)]
pub struct KeysOpts {
    /// Only keys under this prefix (the whole keyspace by default).
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Group by this many leading path segments (`/registry/pods` is depth 2).
    #[arg(long, default_value_t = 2)]
    pub depth: usize,
    /// Read at this revision; by default the current one, pinned by the first request so
    /// that every page is of the same moment.
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
    /// Count keys from etcd's index without reading any value: much faster on large
    /// keyspaces, and no value bytes.
    #[arg(long)]
    pub count_only: bool,
    /// Keys per page when values are read (by default each page is sized to about 4 MiB).
    #[arg(long, hide = true)]
    pub page: Option<i64>,
}

pub async fn keys(g: &Global, o: &KeysOpts) -> Result<i32> {
    let s = g.settings();
    let local = Local::discover(&s).await?;
    let conn = local.connector(&s)?;
    let mut ep = local.first_answering(&s, &conn).await?;
    let opts = KeysOptions { prefix: o.prefix.as_bytes().to_vec(), depth: o.depth, revision: o.revision, count_only: o.count_only, page: o.page };
    let t = Instant::now();
    let r = keys::inventory(&mut ep, &opts).await?;
    let took = t.elapsed();
    let rows = r.inventory.rows();
    match g.output {
        Output::Json => {
            let v = serde_json::json!({
                "endpoint": r.endpoint,
                "revision": r.revision,
                "prefix": o.prefix,
                "depth": o.depth,
                "total_keys": r.inventory.total_keys(),
                "total_value_bytes": r.inventory.total_bytes(),
                "requests": r.requests,
                "range_stream": r.streamed,
                "groups": rows,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Output::Table => {
            let width = rows.iter().map(|r| r.group.len()).max().unwrap_or(5).max(5);
            println!("{:<width$}  {:>10}  {:>11}", "GROUP", "KEYS", "VALUE BYTES");
            for row in &rows {
                let bytes = row.value_bytes.map(|b| human_bytes(b as i64)).unwrap_or_else(|| "-".into());
                println!("{:<width$}  {:>10}  {:>11}", row.group, row.keys, bytes);
            }
            let total = r.inventory.total_bytes().map(|b| human_bytes(b as i64)).unwrap_or_else(|| "-".into());
            println!("{:<width$}  {:>10}  {:>11}", "TOTAL", r.inventory.total_keys(), total);
            println!(
                "{} groups at revision {} from {}, {} requests{} in {:.2} s",
                rows.len(),
                r.revision,
                r.endpoint,
                r.requests,
                if r.streamed { " (RangeStream)" } else { "" },
                took.as_secs_f64()
            );
        }
    }
    Ok(exit::OK)
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum CheckCmd {
    /// etcdctl's `check perf` (a paced write load: throughput, slowest request, stddev),
    /// plus the fsync latency of the disk under the data dir, which etcd's tuning guide
    /// asks for first (p99 below 10 ms). PASS or FAIL with the figures; exit 4 on FAIL.
    /// Bounded by time and size; every key and file it writes is removed.
    Perf(PerfOpts),
}

#[derive(Debug, Clone, clap::Args)]
pub struct PerfOpts {
    /// etcdctl's load profiles: s (150 writes/s, 50 clients), m (1000, 200), l (8000, 500),
    /// xl (15000, 1000).
    #[arg(long, default_value = "s", value_parser = parse_load)]
    pub load: hostfix_core::perf::LoadProfile,
    /// How long the write load runs (etcdctl runs 60s).
    #[arg(long, default_value = "10s", value_parser = hostfix_core::config::parse_duration)]
    pub duration: std::time::Duration,
    /// Only the disk check: no load on the cluster.
    #[arg(long)]
    pub disk_only: bool,
    /// Upper bound of the disk check's time.
    #[arg(long, default_value = "5s", value_parser = hostfix_core::config::parse_duration)]
    pub disk_time: std::time::Duration,
    /// Upper bound of the disk check's bytes, written in 2300-byte records as the tuning
    /// guide's fio command does (`--bs=2300 --size=22m`).
    #[arg(long, default_value_t = 22 << 20)]
    pub disk_bytes: u64,
}

fn parse_load(s: &str) -> Result<hostfix_core::perf::LoadProfile, String> {
    s.parse()
}

pub async fn check(g: &Global, c: &CheckCmd) -> Result<i32> {
    let CheckCmd::Perf(o) = c;
    let s = g.settings();
    let local = Local::discover(&s).await?;
    let data = local.data_dir();
    // Beside the data dir, on its filesystem; the data dir itself is etcd's.
    let beside = data.parent().map(std::path::Path::to_path_buf).unwrap_or(data.clone());
    let disk = hostfix_playbooks::perf::disk_check(&beside, 2300, o.disk_bytes, o.disk_time, hostfix_core::perf::FSYNC_P99_LIMIT_MS)?;
    hostfix_playbooks::perf::save_last(&s.state_dir(), &disk)?;
    let mut verdicts = vec![hostfix_core::perf::disk_verdict(&disk.dir, disk.p99_ms, disk.writes)];
    let load = if o.disk_only {
        None
    } else {
        let conn = local.connector(&s)?;
        let ep = local.first_answering(&s, &conn).await?;
        let l = hostfix_playbooks::perf::load_check(&conn, &ep.url, o.load, o.duration).await?;
        verdicts.extend(hostfix_core::perf::load_verdicts(&l.profile, l.throughput, l.slowest_ms, l.stddev_ms, l.errors));
        Some(l)
    };
    let pass = verdicts.iter().all(|v| v.0);
    match g.output {
        Output::Json => {
            let v = serde_json::json!({
                "pass": pass,
                "disk": disk,
                "load": load,
                "verdicts": verdicts.iter().map(|(ok, w)| serde_json::json!({"pass": ok, "what": w})).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Output::Table => {
            for (ok, w) in &verdicts {
                println!("{}: {w}", if *ok { "PASS" } else { "FAIL" });
            }
            if let Some(l) = &load {
                println!(
                    "load: {} writes in {:.1} s from {} (p99 {:.1} ms); {} test keys removed",
                    l.writes, l.seconds, l.endpoint, l.p99_ms, l.removed
                );
            }
            println!("{}", if pass { "PASS" } else { "FAIL" });
        }
    }
    Ok(if pass { exit::OK } else { exit::UNHEALTHY })
}

#[derive(Debug, Clone, clap::Args)]
pub struct DefragOpts {
    /// Print the plan and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Act without asking. Without it, defrag asks on a terminal and refuses otherwise.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How long to wait for the cluster-wide repair lock held by another master.
    #[arg(long, default_value = "5m", value_parser = hostfix_core::config::parse_duration)]
    pub lock_timeout: std::time::Duration,
    /// Upper bound for each member's defrag, and for its return to quorum reads after it.
    #[arg(long, default_value = "5m", value_parser = hostfix_core::config::parse_duration)]
    pub wait_timeout: std::time::Duration,
}

pub async fn defrag(g: &Global, o: &DefragOpts) -> Result<i32> {
    use hostfix_playbooks::defrag::{self as playbook, DefragOptions, Outcome, Prepared};
    let s = g.settings();
    let local = Local::discover(&s).await?;
    let conn = local.connector(&s)?;
    let rep = crate::rejoin::Terminal::new(g);
    let plan = match playbook::prepare(&s, &local, &conn).await? {
        Prepared::Refused(why) => return Ok(crate::rejoin::refused(why)),
        Prepared::Plan(p) => p,
    };
    let (header, steps) = playbook::describe(&plan);
    hostfix_playbooks::Reporter::plan(&rep, "defrag", &header, &steps);
    if o.dry_run {
        println!("dry run: nothing was changed");
        return Ok(exit::OK);
    }
    if !crate::rejoin::confirmed(o.yes)? {
        return Ok(exit::REFUSED);
    }
    let opts = DefragOptions { lock_timeout: o.lock_timeout, wait: o.wait_timeout };
    let done = match playbook::execute(&s, &local, &conn, &plan, &opts, &rep).await? {
        Outcome::Refused(why) => return Ok(crate::rejoin::refused(why)),
        Outcome::Done(d) => d,
    };
    println!("{:<12} {:>12} {:>12} {:>12} {:>12}", "MEMBER", "DB BEFORE", "IN USE", "DB AFTER", "IN USE");
    for ((name, db0, use0), (_, db1, use1)) in plan.before.iter().zip(&done.after) {
        println!("{name:<12} {:>12} {:>12} {:>12} {:>12}", human_bytes(*db0), human_bytes(*use0), human_bytes(*db1), human_bytes(*use1));
    }
    match &done.disarm {
        None => {
            println!("defrag complete; no NOSPACE alarm was raised");
            Ok(exit::OK)
        }
        Some(Ok(n)) => {
            println!("defrag complete; {n} NOSPACE alarm(s) disarmed: writes are accepted again");
            Ok(exit::OK)
        }
        Some(Err(why)) => {
            eprintln!("defrag complete, but {why}: delete or compact more data, or raise --quota-backend-bytes");
            Ok(exit::UNHEALTHY)
        }
    }
}
