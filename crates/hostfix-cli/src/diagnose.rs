//! `etcd-hostfix diagnose`: classify the local member's condition from its own logs and from
//! live probes, and name the playbook that fixes it.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use hostfix_core::diagnose::{diagnose_log, Class, CommandFor, Finding, Playbook, Probes};
use hostfix_core::logs::parse_text;
use hostfix_core::exit;
use serde::Serialize;
use tracing::Instrument;

use hostfix_playbooks::local::{Local, LOG_TAIL_BYTES};
use crate::{Global, Output, RuntimeArg};

#[derive(Debug, Clone, clap::Args)]
pub struct DiagnoseOpts {
    /// Classify this log file instead of the member's own logs (`-` for stdin). Probes are
    /// skipped: the verdict rests on the log alone.
    #[arg(long)]
    pub log: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    finding: &'a Finding,
    /// Where the log lines came from.
    log_source: String,
    probes: Option<&'a Probes>,
}

pub async fn run(g: &Global, o: &DiagnoseOpts) -> Result<i32> {
    let (finding, source, probes) =
        gather(g, o).instrument(tracing::info_span!("diagnose", host_root = %g.host_root.display())).await?;
    match g.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&Report { finding: &finding, log_source: source, probes: probes.as_ref() })?
        ),
        Output::Table => print!("{}", render(&finding, &source)),
    }
    Ok(if finding.class == Class::Healthy { exit::OK } else { exit::UNHEALTHY })
}

fn render(f: &Finding, source: &str) -> String {
    let mut s = format!("member:   {}\nclass:    {}\nplaybook: {}\n", f.member, f.class.as_str(), f.playbook.as_str());
    if !f.command.is_empty() {
        s.push_str(&format!("next:     {}\n", f.command));
    }
    s.push_str(&format!("log:      {source}\n"));
    if !f.evidence.is_empty() {
        s.push_str("evidence:\n");
        for e in &f.evidence {
            s.push_str(&format!("  {e}\n"));
        }
    }
    for n in &f.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    s
}

/// The exact next command, spelled with the options this run was given, so that it can be
/// pasted as is.
struct Commands {
    prefix: String,
}

impl CommandFor for Commands {
    fn command(&self, p: Playbook, class: Class) -> String {
        match p {
            Playbook::None => String::new(),
            Playbook::Rejoin | Playbook::Rebuild => format!("{} {}", self.prefix, p.as_str()),
            Playbook::Defrag => format!("{} defrag   # compact, defragment each member in turn, disarm NOSPACE; the plan comes first", self.prefix),
            Playbook::Manual if class == Class::Partitioned => format!(
                "{} status   # and the same from another master: if the others are healthy there, this host is cut off (see the checks below)",
                self.prefix
            ),
            Playbook::Manual if class == Class::NotRunning => {
                format!("{} status   # start the member (restore its manifest or container), then check", self.prefix)
            }
            Playbook::Manual => format!("{} status   # no automatic playbook applies; read the evidence", self.prefix),
        }
    }
}

fn shell_word(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/-_.:=,@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn commands(g: &Global) -> Commands {
    let mut p = vec!["sudo etcd-hostfix".to_string()];
    if g.host_root != PathBuf::from("/") {
        p.push(format!("--host-root {}", shell_word(&g.host_root.display().to_string())));
    }
    match g.runtime {
        RuntimeArg::Auto => {}
        RuntimeArg::StaticPod => p.push("--runtime static-pod".into()),
        RuntimeArg::Docker => p.push("--runtime docker".into()),
    }
    if g.container != "etcd" {
        p.push(format!("--container {}", shell_word(&g.container)));
    }
    if let Some(m) = &g.manifest {
        p.push(format!("--manifest {}", shell_word(&m.display().to_string())));
    }
    if let Some(d) = &g.docker_host {
        p.push(format!("--docker-host {}", shell_word(d)));
    }
    Commands { prefix: p.join(" ") }
}

fn read_log_file(path: &PathBuf) -> Result<String> {
    if path.as_os_str() == "-" {
        // stdin cannot seek: read it all, keep the tail.
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("reading the log from stdin")?;
        let start = buf.len().saturating_sub(LOG_TAIL_BYTES as usize);
        return Ok(String::from_utf8_lossy(&buf[start..]).into_owned());
    }
    hostfix_adapters::runtime::read_tail(path, LOG_TAIL_BYTES).with_context(|| format!("cannot read {}", path.display()))
}

async fn gather(g: &Global, o: &DiagnoseOpts) -> Result<(Finding, String, Option<Probes>)> {
    if let Some(path) = &o.log {
        let text = read_log_file(path)?;
        let lines = parse_text(&text);
        // The member may be anything; do not touch the host to find its name.
        let local = Local::discover(&g.settings()).await.ok();
        let name = local.as_ref().map(|l| l.config.flags.name().to_string()).unwrap_or_else(|| "-".into());
        let f = diagnose_log(&name, &lines, &Probes::default(), &commands(g));
        return Ok((f, path.display().to_string(), None));
    }
    let s = g.settings();
    let local = Local::discover(&s).await?;
    let conn = local.connector(&s)?;
    let d = hostfix_playbooks::diagnose::diagnose_local(&s, &local, &conn, &commands(g), hostfix_playbooks::diagnose::Logs::Always).await?;
    Ok((d.finding, d.log_source, Some(d.probes)))
}
