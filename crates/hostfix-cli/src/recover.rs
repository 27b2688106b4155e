//! Disaster recovery: `rebuild` (seed 002: a survivor becomes a one-member cluster with
//! `--force-new-cluster`, which is then removed), `restore --snapshot FILE` (seed 003: a
//! one-member cluster from a snapshot) and `snapshot save`.
//!
//! Same shape as `rejoin`: facts, a pure plan (or a refusal that changes nothing), the plan
//! printed, confirmation, a local lock, then journaled idempotent steps. The other masters
//! come back with `rejoin`, as learners, so the cluster keeps quorum while it grows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hostfix_core::dr::{RecoveryKind, RecoveryPlan};
use hostfix_core::exit;
use hostfix_playbooks::local::Local;
use hostfix_playbooks::recover::{self as playbook, describe, kind_word, Outcome, Prepared, RecoverOptions};
use hostfix_playbooks::Settings;

use crate::rejoin::{confirmed, refused, Terminal};
use crate::Global;

#[derive(Debug, Clone, clap::Args)]
pub struct RecoverOpts {
    /// Print the plan and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Act without asking. Without it, the command asks on a terminal and refuses otherwise.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Act although the cluster still has quorum, or (rebuild) a reachable member is ahead
    /// of the local data. What is overridden is printed in the plan. It does not cover
    /// peers that only time out: those need --peers-down.
    #[arg(long)]
    pub force: bool,
    /// Vouch that these members (comma-separated names) are down, although from here they
    /// only time out. A timeout may be this master cut off from a cluster that still has
    /// quorum, and rebuilding then splits it in two: only a person who knows those hosts
    /// are off can say so. The plan repeats what was vouched.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub peers_down: Vec<String>,
    /// Once the run succeeded, keep the archives of this many runs (the newest; it never
    /// prunes the newest) and remove older ones.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_archives: u32,
    /// Upper bound, in seconds, for each wait.
    #[arg(long, default_value_t = 300)]
    pub wait_timeout: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RestoreOpts {
    /// The snapshot to restore (from `etcd-hostfix snapshot save` or `etcdctl snapshot save`).
    #[arg(long)]
    pub snapshot: PathBuf,
    /// Do not restart the local kube-apiserver afterwards. etcd 3.4 and 3.5 before 3.5.8
    /// cannot bump the revision on restore, so an API server keeps serving its watch cache
    /// from before the restore until it restarts (kubernetes#107457); by default a restore
    /// restarts the local one (static pod) once etcd is up.
    #[arg(long)]
    pub no_apiserver_restart: bool,
    #[command(flatten)]
    pub common: RecoverOpts,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SaveOpts {
    /// Where to write the snapshot [default: <state-dir>/snapshots/snapshot-<time>.db].
    /// Its SHA-256 goes beside it as `<out>.sha256`, its status as `<out>.json`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also read the saved file's revision, key count and hash with etcdutl (or etcdctl
    /// 3.4) and record them. That reads the whole file again; the record has the member's
    /// revision at save time either way.
    #[arg(long)]
    pub status: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCmd {
    /// Save a snapshot from a healthy member (the local one when it is healthy), verify it,
    /// and record its checksum and status beside the file.
    Save(SaveOpts),
}

fn print_plan(g: &Settings, local: &Local, plan: &RecoveryPlan, snapshot: Option<&Path>) {
    let what = kind_word(plan.kind);
    println!("{what} plan: {} ({}) becomes a one-member cluster:", plan.name, plan.peer_url);
    for o in &plan.overridden {
        println!("  --force overrides: {o}");
    }
    if !plan.vouched_down.is_empty() {
        println!("  operator vouched that {} {} down (--peers-down); they only time out from here", plan.vouched_down.join(", "), if plan.vouched_down.len() == 1 { "is" } else { "are" });
    }
    for (i, (s, d)) in plan.steps.iter().zip(describe(g, local, plan, snapshot)).enumerate() {
        println!("  {:>2}. {:<15} {d}", i + 1, s.name());
    }
}

fn print_next(plan: &RecoveryPlan, bumped: bool) {
    if plan.others.is_empty() {
        return;
    }
    // A restore that bumped the revision leaves the cluster newer than any master's old
    // data, so a plain rejoin takes them back; one that could not bump is older than they
    // are, and rejoin refuses that without --force.
    let rolled_back = plan.kind == RecoveryKind::Restore && !bumped;
    let force = if rolled_back { " --force" } else { "" };
    println!("next, on each other master, bring its member back as a learner (a lock serialises them; each finds this cluster through its --initial-cluster peer URLs):");
    for o in &plan.others {
        println!("  {o}: sudo etcd-hostfix rejoin --yes{force}");
    }
    if plan.kind == RecoveryKind::Restore && bumped {
        println!("  (the restore bumped the revision past theirs: their data is archived as always, and their kube-apiservers re-list by themselves)");
    }
    if rolled_back {
        println!("  (--force: their data is from before the restore and may be newer than the snapshot; rejoin archives it, never deletes it)");
        println!("  (rejoin --force then restarts that master's kube-apiserver too, as this restore did here, so that no API server keeps a watch cache from before the restore; --no-apiserver-restart opts out)");
    }
}

pub async fn rebuild(g: &Global, o: &RecoverOpts) -> Result<i32> {
    run(&g.settings(), o, RecoveryKind::Rebuild, None, false, &Terminal::new(g)).await
}

pub async fn restore(g: &Global, o: &RestoreOpts) -> Result<i32> {
    let rep = Terminal::new(g);
    let g = &g.settings();
    // Bad input is an error before anything else happens.
    let meta = std::fs::metadata(&o.snapshot).with_context(|| format!("snapshot {}", o.snapshot.display()))?;
    if !meta.is_file() {
        bail!("snapshot {} is not a file", o.snapshot.display());
    }
    let snapshot = std::fs::canonicalize(&o.snapshot)?;
    run(g, &o.common, RecoveryKind::Restore, Some(snapshot), o.no_apiserver_restart, &rep).await
}

async fn run(g: &Settings, o: &RecoverOpts, kind: RecoveryKind, snapshot: Option<PathBuf>, no_apiserver_restart: bool, rep: &Terminal) -> Result<i32> {
    let local = Local::discover(g).await?;
    let opts = RecoverOptions {
        force: o.force,
        peers_down: o.peers_down.clone(),
        wait: Duration::from_secs(o.wait_timeout),
        no_apiserver_restart,
        keep_archives: o.keep_archives as usize,
    };
    let (plan, resumed, tool) = match playbook::prepare(g, &local, kind, &opts, rep).await? {
        Prepared::Refused(why) => return Ok(refused(why)),
        Prepared::Plan { plan, resumed, tool } => (plan, resumed, tool),
    };
    print_plan(g, &local, &plan, snapshot.as_deref());
    if o.dry_run {
        if let Err(why) = hostfix_playbooks::recover::preflight(g, &local, &plan, resumed.as_ref(), snapshot.as_deref()) {
            return Ok(refused(why));
        }
        println!("dry run: nothing was changed");
        return Ok(exit::OK);
    }
    if !confirmed(o.yes)? {
        return Ok(exit::REFUSED);
    }
    match playbook::execute(g, &local, &plan, resumed, tool, snapshot, &opts, rep).await? {
        Outcome::Refused(why) => Ok(refused(why)),
        Outcome::Done { history } => {
            println!("{} complete: {} serves as a one-member cluster (journal kept at {})", kind_word(kind), plan.name, history.display());
            // The journal says whether the restore bumped the revision.
            let bumped = std::fs::read_to_string(&history)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["data"]["bumped"].as_bool())
                .unwrap_or(false);
            print_next(&plan, bumped);
            Ok(exit::OK)
        }
    }
}

pub async fn snapshot_save(g: &Global, o: &SaveOpts) -> Result<i32> {
    let rep = Terminal::new(g);
    let g = &g.settings();
    let local = Local::discover(g).await?;
    let conn = local.connector(g)?;
    let out = o.out.clone().unwrap_or_else(|| hostfix_playbooks::snapshot::default_path(g, "snapshot"));
    let saved = hostfix_playbooks::snapshot::save(g, &local, &conn, &out, hostfix_playbooks::snapshot::Source::Best, o.status, &rep).await?;
    if !saved.member.quorum_read {
        eprintln!("warning: the cluster has no quorum; saved {}'s own data, which may be behind", saved.member.name);
    }
    println!("saved {} ({} bytes) from {} ({}), SHA-256 {}", saved.path.display(), saved.bytes, saved.member.name, saved.endpoint, saved.sha256);
    match &saved.status {
        Ok(s) => println!("status: revision {}, {} keys, hash {}", s["revision"], s["totalKey"], s["hash"]),
        Err(_) if !o.status => {
            println!("revision {} at {} when saved (--status reads the file's own)", saved.member.revision.unwrap_or(0), saved.member.name)
        }
        Err(e) => println!("status: not read ({e})"),
    }
    Ok(exit::OK)
}
