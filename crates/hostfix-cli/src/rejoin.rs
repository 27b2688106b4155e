//! `etcd-hostfix rejoin`: the terminal driver of the rejoin playbook. The playbook itself
//! (facts, plan, steps, locks) is `hostfix_playbooks::rejoin`; this shows the plan, asks,
//! and renders progress.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Result;
use hostfix_core::backup::BackupMode;
use hostfix_core::exit;
use hostfix_playbooks::local::Local;
use hostfix_playbooks::rejoin::{self as playbook, Outcome, Prepared, RejoinOptions};
use hostfix_playbooks::{Progress, Reporter};

use crate::Global;

#[derive(Debug, Clone, clap::Args)]
pub struct RejoinOpts {
    /// Print the plan and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Act without asking. Without it, rejoin asks on a terminal and refuses otherwise.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How long to wait for the cluster-wide repair lock held by another master.
    #[arg(long, default_value_t = 300)]
    pub lock_timeout: u64,
    /// Rejoin even though the local data is newer than the cluster's, as after a restore
    /// from an older snapshot. The local data is archived, not deleted.
    #[arg(long)]
    pub force: bool,
    /// Upper bound, in seconds, for each wait (pod gone, learner caught up, cluster healthy).
    #[arg(long, default_value_t = 300)]
    pub wait_timeout: u64,
    /// The backup taken before any membership change. `auto` reuses the newest snapshot in
    /// <state-dir>/snapshots/ (the daemon's schedule, or `snapshot save`) of this cluster,
    /// no older than --backup-max-age, whose SHA-256 checks out; else it takes a fresh one,
    /// as `fresh` always does. `none` takes none, and the plan says so.
    #[arg(long, default_value = "auto", value_parser = parse_backup)]
    pub backup: BackupMode,
    /// The oldest snapshot `--backup auto` reuses (30s, 15m, 1h, 2d).
    #[arg(long, default_value = "1h", value_parser = hostfix_core::config::parse_duration)]
    pub backup_max_age: Duration,
    /// With --force over newer local data (a restore on another master): do not restart
    /// the local kube-apiserver afterwards. By default it is restarted, because it watched
    /// revisions the cluster no longer has.
    #[arg(long)]
    pub no_apiserver_restart: bool,
    /// Once the rejoin succeeded, keep the archives of this many runs (the newest; it
    /// never prunes the newest) and remove older ones. Archives sit on the etcd disk when
    /// the state dir is on another mount, beside the new member's data.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_archives: u32,
}

fn parse_backup(s: &str) -> Result<BackupMode, String> {
    s.parse()
}

/// Renders a playbook's progress on the terminal: the plan as a numbered list, notes as
/// lines of their own. Steps are quiet; the plan said what they do. Long waits get a bar
/// on stderr, only when stderr is a terminal and `--no-progress` is not given.
pub struct Terminal {
    bars: bool,
    bar: std::sync::Mutex<Option<(String, indicatif::ProgressBar)>>,
}

impl Terminal {
    pub fn new(g: &Global) -> Terminal {
        Terminal { bars: !g.no_progress && std::io::stderr().is_terminal(), bar: Default::default() }
    }

    /// Print a line without tearing a bar that is being drawn.
    fn line(&self, msg: &str) {
        match &*self.bar.lock().unwrap() {
            Some((_, b)) => b.suspend(|| println!("{msg}")),
            None => println!("{msg}"),
        }
    }
}

fn new_bar(task: &str, p: Progress) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let template = match p {
        Progress::Bytes { .. } => "{prefix:>9} {bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {elapsed}",
        Progress::Index { .. } => "{prefix:>9} {bar:30} applied index {pos}/{len} {elapsed}",
    };
    let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    b.set_style(ProgressStyle::with_template(template).expect("static template").progress_chars("=> "));
    b.set_prefix(task.to_string());
    b
}

impl Reporter for Terminal {
    fn plan(&self, _playbook: &str, header: &str, steps: &[(String, String)]) {
        println!("{header}");
        for (i, (name, what)) in steps.iter().enumerate() {
            println!("  {:>2}. {name:<13} {what}", i + 1);
        }
    }
    fn note(&self, msg: &str) {
        self.line(msg);
    }
    fn wants_progress(&self) -> bool {
        self.bars
    }
    fn progress(&self, task: &str, p: Progress) {
        if !self.bars {
            return;
        }
        let mut slot = self.bar.lock().unwrap();
        if slot.as_ref().is_none_or(|(t, _)| t != task) {
            if let Some((_, old)) = slot.take() {
                old.finish();
            }
            *slot = Some((task.to_string(), new_bar(task, p)));
        }
        let b = &slot.as_ref().expect("just set").1;
        match p {
            Progress::Bytes { done, total } => {
                if let Some(t) = total {
                    b.set_length(t.max(done));
                }
                b.set_position(done);
            }
            Progress::Index { applied, target } => {
                b.set_length(target.max(applied));
                b.set_position(applied);
            }
        }
    }
    fn progress_end(&self, task: &str, completed: bool) {
        let mut slot = self.bar.lock().unwrap();
        if slot.as_ref().is_some_and(|(t, _)| t == task) {
            // The last figure stays on screen: how much, how fast. A size known only at the
            // end (a small stream comes in one piece) is the whole when it completed.
            if let Some((_, b)) = slot.take() {
                if completed {
                    b.set_length(b.position());
                    b.finish();
                } else {
                    b.abandon();
                }
                // indicatif leaves the cursor on the bar's line; what is printed next
                // starts a line of its own.
                eprintln!();
            }
        }
    }
}

pub async fn run(g: &Global, o: &RejoinOpts) -> Result<i32> {
    let s = g.settings();
    let local = Local::discover(&s).await?;
    let conn = local.connector(&s)?;
    let opts = RejoinOptions {
        force: o.force,
        lock_timeout: Duration::from_secs(o.lock_timeout),
        wait: Duration::from_secs(o.wait_timeout),
        backup: o.backup,
        backup_max_age: o.backup_max_age,
        no_apiserver_restart: o.no_apiserver_restart,
        keep_archives: o.keep_archives as usize,
    };
    let rep = Terminal::new(g);
    let (plan, resumed) = match playbook::prepare(&s, &local, &conn, &opts, &rep).await? {
        Prepared::Refused(why) => return Ok(refused(why)),
        Prepared::Plan { plan, resumed } => (plan, resumed),
    };
    let (header, steps) = playbook::describe(&s, &local, &plan);
    rep.plan("rejoin", &header, &steps);
    if o.dry_run {
        // What `execute` would refuse for, said now rather than after the operator said yes.
        if let Err(why) = playbook::preflight(&s, &local, &conn, &plan, resumed.as_ref()).await {
            return Ok(refused(why));
        }
        println!("dry run: nothing was changed");
        return Ok(exit::OK);
    }
    if !confirmed(o.yes)? {
        return Ok(exit::REFUSED);
    }
    match playbook::execute(&s, &local, &conn, &plan, resumed, &opts, &rep).await? {
        Outcome::Refused(why) | Outcome::HostRefused(why) => Ok(refused(why)),
        Outcome::Done { history } => {
            println!("rejoin complete: {} is a healthy voter again (journal kept at {})", plan.name, history.display());
            Ok(exit::OK)
        }
    }
}

/// Say why a playbook will not act, and that nothing changed; the exit code for it.
pub(crate) fn refused(why: impl std::fmt::Display) -> i32 {
    eprintln!("refused: {why}");
    eprintln!("nothing was changed");
    exit::REFUSED
}

/// `--yes`, or a "y" on a terminal. Without a terminal and without `--yes`, no: a runbook
/// must say what it means.
pub(crate) fn confirmed(yes: bool) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        eprintln!("refused: not a terminal and no --yes; nothing was changed");
        return Ok(false);
    }
    print!("proceed? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        eprintln!("refused: not confirmed; nothing was changed");
        return Ok(false);
    }
    Ok(true)
}
