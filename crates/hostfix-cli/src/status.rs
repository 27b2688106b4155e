//! `etcd-hostfix status`: the report is gathered by the playbooks library; this renders it,
//! with the daemon's own account of itself (from the state dir) when one has run here.

use anyhow::Result;
use hostfix_daemon::files::{self, DaemonStatus};
use tracing::Instrument;

use crate::{Global, Output};

pub async fn run(g: &Global) -> Result<i32> {
    let report = hostfix_playbooks::probe::gather(&g.settings())
        .instrument(tracing::info_span!("status", host_root = %g.host_root.display()))
        .await?;
    let daemon: Option<DaemonStatus> = files::read_json(&files::status_path(&g.state_dir())).ok().flatten();
    // What earlier repairs moved aside, and how much room it takes: on a dedicated etcd disk
    // it competes with the member's data. A member whose configuration cannot be read has
    // its archives listed by the report's problems instead.
    let settings = g.settings();
    let archives = match hostfix_playbooks::local::Local::discover(&settings).await {
        Ok(local) => hostfix_playbooks::actions::Actions { g: &settings, local: &local, wait: std::time::Duration::ZERO }.archives(),
        Err(_) => vec![],
    };
    // Every master's agent, from any member that answers; its failure is a line in the
    // report, never the report's failure.
    let fleet = hostfix_playbooks::fleet::read(&settings).await.map_err(|e| format!("{e:#}"));
    match g.output {
        Output::Json => {
            let mut v = serde_json::to_value(&report)?;
            v["archives"] = serde_json::to_value(&archives)?;
            v["fleet"] = match &fleet {
                Ok(f) => serde_json::to_value(f)?,
                Err(e) => serde_json::json!({ "error": e }),
            };
            if let Some(d) = &daemon {
                let mut dv = serde_json::to_value(d)?;
                dv["running"] = serde_json::Value::Bool(alive(d.pid));
                v["daemon"] = dv;
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Output::Table => {
            print!("{}", report.render_table());
            if !archives.is_empty() {
                let total: u64 = archives.iter().map(|a| a.bytes).sum();
                println!("\narchives: {} runs, {total} bytes (the newest are kept after each successful repair)", archives.len());
                for a in &archives {
                    let paths: Vec<String> = a.paths.iter().map(|p| p.display().to_string()).collect();
                    println!("  {}  {} bytes  {}", a.run, a.bytes, paths.join(", "));
                }
            }
            if let Some(d) = &daemon {
                print!("{}", render_daemon(d));
            }
            match &fleet {
                Ok(f) => print!("{}", render_fleet(f)),
                Err(e) => println!("\nfleet: cannot be read: {e}"),
            }
        }
    }
    Ok(report.exit_code())
}

fn alive(pid: u32) -> bool {
    pid != 0 && unsafe { libc::kill(pid as i32, 0) } == 0
}

fn render_daemon(d: &DaemonStatus) -> String {
    let mut s = format!(
        "\ndaemon: pid {} ({}), mode {}{}, updated {}\n",
        d.pid,
        if alive(d.pid) { "running" } else { "not running" },
        d.mode,
        match &d.paused {
            Some(p) => format!(", PAUSED since {}: {}", p.since, p.reason),
            None => String::new(),
        },
        d.updated_at
    );
    s.push_str(&format!("  condition: {} is {}\n", d.member, d.class));
    s.push_str(&format!("  decision:  {}\n", d.why));
    if let Some(r) = &d.repairing {
        s.push_str(&format!("  repairing: {r}\n"));
    }
    s.push_str(&format!("  budget:    {} repairs left in the window{}\n", d.budget_left, if d.circuit_open { "; CIRCUIT OPEN until `etcd-hostfix resume`" } else { "" }));
    if let Some(l) = &d.last_repair {
        s.push_str(&format!("  last repair: {} {} at {} ({})\n", l.playbook, l.result, l.ended_at, l.incident));
    }
    s
}

/// One row per master: its agent's state, condition and decision, and why it is (not)
/// acting.
fn render_fleet(f: &hostfix_playbooks::fleet::Fleet) -> String {
    let mut s = format!("\nfleet (read from {}):\n", f.read_from);
    let w = f.agents.iter().map(|r| r.member.len()).max().unwrap_or(6).max(6);
    s.push_str(&format!("  {:<w$}  {:<12}  {:<22}  {:<9}  {:>8}  {}\n", "MEMBER", "AGENT", "CONDITION", "DECISION", "SNAPSHOT", "WHY"));
    for r in &f.agents {
        let (class, decision) = r.agent.as_ref().map(|a| (a.class.as_str(), a.decision.as_str())).unwrap_or(("-", "-"));
        let snap = r.snapshot_age_s.map(age).unwrap_or_else(|| "-".into());
        s.push_str(&format!("  {:<w$}  {:<12}  {:<22}  {:<9}  {:>8}  {}\n", r.member, r.state, class, decision, snap, r.why));
    }
    s
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
