//! The rejoin playbook, run: replace the local member, whose data is lost or bad, with a
//! fresh learner fed by the rest of the cluster, then promote it.
//!
//! Order of business: [`prepare`] gathers facts and plans (pure, may refuse); the driver
//! shows the plan and decides (a person confirms, the daemon's policy already has); then
//! [`execute`] locks and runs the steps through a journal. Nothing is written before
//! `execute`, so a refusal or a dry run leaves every file byte-identical.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hostfix_adapters::etcd::{hex_id, verify_snapshot, Connector, Endpoint, Member};
use hostfix_adapters::etcdtool::EtcdTool;
use hostfix_adapters::journal::Journal;
use hostfix_adapters::runtime::{LocalConfig, RuntimeKind, ASIDE_INFIX};
use hostfix_core::backup::{age_words, likely, rank, Backup, BackupMode, Candidate};
use hostfix_core::manifest::rejoin_edits;
use hostfix_core::rejoin::{initial_cluster_after_add, plan_rejoin, MemberFact, Refusal, RejoinFacts, RejoinPlan, Step};
use hostfix_core::status::MemberStatus;
use tracing::{info, info_span, Instrument};

use crate::actions::{free_name, wait_for, Actions};
use crate::local::Local;
use crate::lock::{cluster_lock, file_lock_holder, lock_path, FileLock, LOCK_KEY};
use crate::{crash_point, is_transient, pause_point, run_id, unix_now, Progress, Reporter, Settings};

/// How a rejoin runs.
#[derive(Debug, Clone)]
pub struct RejoinOptions {
    /// Rejoin even though the local data is newer than the cluster's (it is archived).
    pub force: bool,
    /// How long to wait for the cluster-wide lock held by another master.
    pub lock_timeout: Duration,
    /// Upper bound for each wait (pod gone, learner caught up, cluster healthy).
    pub wait: Duration,
    /// Which backup the plan relies on (see `hostfix_core::backup`).
    pub backup: BackupMode,
    /// `--backup auto` reuses a snapshot no older than this.
    pub backup_max_age: Duration,
    /// With `--force` over newer local data: leave the local kube-apiserver as it is.
    pub no_apiserver_restart: bool,
    /// Archived runs kept once this run succeeded (`hostfix_core::archive::to_prune`).
    pub keep_archives: usize,
}

/// What `prepare` found: a plan to show, or why not.
pub enum Prepared {
    Refused(String),
    Plan { plan: RejoinPlan, resumed: Option<Journal<RejoinPlan>> },
}

/// How `execute` ended, when it did not fail.
pub enum Outcome {
    Done { history: PathBuf },
    Refused(String),
    /// Refused for this host's own disks or layout (no room on the etcd disk), not for the
    /// cluster's state: the daemon does not retry it (see `core::policy`).
    HostRefused(String),
}

/// Where a rejoin records that it removed another master's member (down, so that a
/// learner could be added): `/etcd-hostfix/removed/<name>`, holding the remover's name.
pub fn removed_key(name: &str) -> String {
    format!("/etcd-hostfix/removed/{name}")
}

/// How long /proc and the data dir must stay clear after a straggler was seen, before the
/// learner starts: longer than a kubelet's wrapper takes to exec etcd.
const STRAGGLER_QUIET: Duration = Duration::from_secs(2);

/// How long a learner may lag before rejoin checks that it is running at all.
const LEARNER_PATIENCE: Duration = Duration::from_secs(30);

pub async fn prepare(g: &Settings, local: &Local, conn: &Connector, o: &RejoinOptions, rep: &dyn Reporter) -> Result<Prepared> {
    let state_dir = g.state_dir();
    if let Some(holder) = file_lock_holder(&state_dir) {
        return Ok(Prepared::Refused(format!(
            "another etcd-hostfix run (pid {holder}) holds {}",
            lock_path(&state_dir).display()
        )));
    }
    let resumed = Journal::<RejoinPlan>::load(&state_dir, "rejoin")?;
    let plan = match &resumed {
        Some(j) => {
            rep.note(&format!("resuming rejoin run {} ({} of {} steps done)", j.run_id, j.done.len(), j.plan.steps.len()));
            j.plan.clone()
        }
        None => {
            // The newest snapshot's hash is checked while the facts are gathered: at 200 MB
            // and more it is the plan's longest part, and it rarely needs the facts.
            let dir = g.state_dir().join("snapshots");
            let candidates = crate::snapshot::candidates(&dir);
            let early = (o.backup == BackupMode::Auto).then(|| likely(&candidates)).flatten().map(|c| {
                let c = c.clone();
                (c.path.clone(), tokio::task::spawn_blocking(move || crate::snapshot::verify(&c)))
            });
            let (mut facts, unanswered) = gather_facts(g, local, conn).await?;
            facts.backup = choose_backup(&dir, candidates, facts.cluster_id.as_deref(), o, rep, early).await;
            let mut planned = plan_rejoin(&facts);
            let mut rolled_back = false;
            if let (Err(r @ Refusal::LocalDataNewer { .. }), true) = (&planned, o.force) {
                rep.note(&format!("--force overrides: {r}; the local data is archived, not deleted"));
                facts.local_data_revision = None;
                planned = plan_rejoin(&facts);
                rolled_back = true;
            }
            // The local kube-apiserver watched revisions the cluster no longer has (a
            // restore elsewhere): restart it once the member is back, as the restore did.
            if let Ok(p) = &mut planned {
                let has = Actions { g, local, wait: o.wait }.has_apiserver();
                match hostfix_core::dr::apiserver_after(rolled_back, false, has, o.no_apiserver_restart) {
                    hostfix_core::dr::ApiserverAfter::Bounce => {
                        let at = p.steps.iter().position(|s| matches!(s, Step::RemoveOldContainer { .. })).unwrap_or(p.steps.len());
                        p.steps.insert(at, Step::BounceApiserver);
                    }
                    hostfix_core::dr::ApiserverAfter::Skip(why) => {
                        rep.note(&format!("note: this master's kube-apiserver may serve a watch cache newer than the cluster's data until it restarts; not restarted here: {why}"))
                    }
                    hostfix_core::dr::ApiserverAfter::NotNeeded => {}
                }
            }
            match planned {
                Ok(p) => p,
                Err(refusal @ (Refusal::NoQuorum { .. } | Refusal::NoHealthyPeer)) if !unanswered.is_empty() => {
                    // "0 of 3 answer" alone reads as a dead cluster; a certificate the
                    // peers reject, or a peer that times out, is another matter.
                    let why: Vec<String> = unanswered.iter().map(|u| format!("  - {u}")).collect();
                    // kubeadm's first master names only itself in --initial-cluster: with no
                    // daemon's record of the others, there was nobody else to ask.
                    let alone = local.candidate_endpoints(g).iter().all(|u| Some(u) == local.local_client_url().as_ref());
                    let hint = if alone {
                        "\nThis member's --initial-cluster names no other member (kubeadm writes it so on the first master), and no daemon here has recorded where the others are: name one with --endpoints https://<another master>:2379"
                    } else {
                        ""
                    };
                    return Ok(Prepared::Refused(format!("{refusal}. Not answering:\n{}{hint}", why.join("\n"))));
                }
                Err(refusal) => return Ok(Prepared::Refused(refusal.to_string())),
            }
        }
    };
    Ok(Prepared::Plan { plan, resumed })
}

/// Take the locks and run the plan through the journal, resuming `resumed` if given.
pub async fn execute(
    g: &Settings,
    local: &Local,
    conn: &Connector,
    plan: &RejoinPlan,
    resumed: Option<Journal<RejoinPlan>>,
    o: &RejoinOptions,
    rep: &dyn Reporter,
) -> Result<Outcome> {
    let state_dir = g.state_dir();
    let name = &plan.name;
    let span = info_span!("rejoin", member = %name, host_root = %g.host_root.display());
    async move {
        if let Err(why) = preflight(g, local, conn, plan, resumed.as_ref()).await {
            return Ok(Outcome::HostRefused(why.to_string()));
        }
        let _flock = match FileLock::take(&state_dir)? {
            Some(l) => l,
            None => return Ok(Outcome::Refused(format!("another etcd-hostfix run holds {}", lock_path(&state_dir).display()))),
        };
        let mut peer = conn.connect(plan.peer.client_urls.first().context("peer has no client URL")?).await?;
        let (lease, keeper) = match cluster_lock(&mut peer, name, o.lock_timeout, rep).await? {
            Ok(l) => l,
            Err(why) => {
                // Leave the host as it was: undo the local lock this run created.
                _flock.undo();
                return Ok(Outcome::Refused(why));
            }
        };
        let mut journal = match resumed {
            Some(j) => j,
            None => Journal::create(&state_dir, "rejoin", run_id(), plan.clone())?,
        };
        let result = Runner { g, local, conn, plan, wait: o.wait, rep }.run(&mut journal).await;
        keeper.abort();
        match result {
            Ok(()) => {
                let _ = peer.unlock(LOCK_KEY, lease).await;
                Actions { g, local, wait: o.wait }.prune_archives(o.keep_archives, &journal.run_id, rep);
                let history = journal.finish()?;
                Ok(Outcome::Done { history })
            }
            Err(e) => {
                // The lease expires by itself; the journal stays so that a rerun resumes.
                Err(e.context(format!(
                    "rejoin stopped; run `etcd-hostfix rejoin` again to resume from {}",
                    Journal::<RejoinPlan>::path_for(&state_dir, "rejoin").display()
                )))
            }
        }
    }
    .instrument(span)
    .await
}

fn to_fact(m: &Member, probed: Option<&MemberStatus>) -> MemberFact {
    MemberFact {
        id: m.id,
        name: m.name.clone(),
        peer_urls: m.peer_urls.clone(),
        client_urls: m.client_urls.clone(),
        is_learner: m.is_learner,
        quorum_read: probed.map(|p| p.quorum_read).unwrap_or(false),
        sees_leader: probed.map(|p| p.has_leader).unwrap_or(false),
        revision: probed.and_then(|p| p.revision),
        is_leader: probed.map(|p| p.is_leader).unwrap_or(false),
    }
}

/// A hash check already started, for one path.
type Early = Option<(String, tokio::task::JoinHandle<Result<(u64, String), String>>)>;

/// `--backup`: `auto` reuses the newest snapshot in `dir` (`<state-dir>/snapshots/`) of this
/// cluster, young enough, whose SHA-256 trailer checks out now; else a fresh one is taken.
pub async fn choose_backup(
    dir: &Path,
    candidates: Vec<Candidate>,
    cluster_id: Option<&str>,
    o: &RejoinOptions,
    rep: &dyn Reporter,
    mut early: Early,
) -> Backup {
    match o.backup {
        BackupMode::None => return Backup::None,
        BackupMode::Fresh => return Backup::default(),
        BackupMode::Auto => {}
    }
    let Some(cid) = cluster_id else {
        let why = "the cluster ID is not known, so no earlier snapshot can be matched to it".to_string();
        rep.note(&format!("backup: {why}; a fresh one is taken"));
        return Backup::Fresh { why };
    };
    let ranked = rank(&candidates, cid, unix_now(), o.backup_max_age.as_secs());
    let mut passed: Vec<String> = ranked.ignored.iter().map(|(p, why)| format!("{p}: {why}")).collect();
    for c in &ranked.usable {
        let checked = match early.take() {
            Some((p, h)) if p == c.path => h.await.unwrap_or_else(|e| Err(e.to_string())),
            _ => {
                let c = c.clone();
                tokio::task::spawn_blocking(move || crate::snapshot::verify(&c)).await.unwrap_or_else(|e| Err(e.to_string()))
            }
        };
        match checked {
            Ok((bytes, verified_by)) => {
                return Backup::Reuse {
                    path: c.path.clone(),
                    saved_at_unix: c.saved_at_unix.unwrap_or(0),
                    bytes,
                    sha256: c.sha256.clone().unwrap_or_default(),
                    verified_by,
                }
            }
            Err(e) => passed.insert(0, e),
        }
    }
    // Said only when falling back: with a snapshot reused, older ones do not matter.
    let shown = passed.len().min(3);
    let more = if passed.len() > shown { format!(" (and {} more)", passed.len() - shown) } else { String::new() };
    let why = if passed.is_empty() { format!("none in {}", dir.display()) } else { passed[..shown].join("; ") + &more };
    let why = format!("no snapshot of cluster {cid} to reuse ({why})");
    rep.note(&format!("backup: {why}; a fresh one is taken"));
    Backup::Fresh { why }
}

/// Everything the planner needs, from the peers first: a member with a foreign or rolled-back
/// data dir cannot be trusted to describe the cluster.
/// The facts, and why members that did not answer did not.
pub async fn gather_facts(g: &Settings, local: &Local, conn: &Connector) -> Result<(RejoinFacts, Vec<String>)> {
    let name = local.config.flags.name().to_string();
    let peer_url = local.local_peer_url().context("the local member has no --initial-advertise-peer-urls")?;
    let view = local.cluster_view_or_why(g, conn).await;
    // Why members did not answer, for a refusal for want of quorum to say.
    let unanswered: Vec<String> = match &view {
        Ok((_, probed)) => probed.iter().filter_map(|p| p.error.as_ref().map(|e| format!("{}: {e}", p.name))).collect(),
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    };
    let view = view.ok();
    let cluster_id = view.as_ref().map(|(list, _)| hex_id(list.cluster_id));
    let members: Vec<MemberFact> = match view {
        Some((list, probed)) => list.members.iter().zip(probed.iter()).map(|(m, p)| to_fact(m, Some(p))).collect(),
        // Nobody answers: the planner sees no healthy voter and refuses for want of quorum.
        None => local
            .config
            .flags
            .initial_cluster()
            .iter()
            .enumerate()
            .map(|(i, e)| MemberFact {
                id: i as u64 + 1,
                name: e.name.clone(),
                peer_urls: vec![e.peer_url.clone()],
                client_urls: vec![],
                is_learner: false,
                quorum_read: false,
                sees_leader: false,
                revision: None,
                is_leader: false,
            })
            .collect(),
    };
    let me = members.iter().find(|m: &&MemberFact| m.peer_urls.contains(&peer_url) || m.name == name);
    let cluster_rev = members.iter().filter(|m| m.quorum_read).filter_map(|m| m.revision).max();
    let local_healthy_caught_up = me
        .map(|m| !m.is_learner && m.quorum_read && m.revision.is_some() && m.revision == cluster_rev)
        .unwrap_or(false);
    Ok((RejoinFacts {
        cluster_id,
        backup: Backup::default(),
        name,
        peer_url,
        local_healthy_caught_up,
        local_data_revision: local_data_revision(local, me),
        members,
        container: (local.config.runtime == RuntimeKind::Docker).then(|| g.container.clone()),
    }, unanswered))
}

/// The local data's revision, when knowable: from the member itself if it answers in the
/// same cluster, else from its db file via `etcdutl`/`etcdctl snapshot status` on a copy.
pub fn local_data_revision(local: &Local, me: Option<&MemberFact>) -> Option<i64> {
    if let Some(r) = me.and_then(|m| m.revision) {
        return Some(r);
    }
    let db = local.data_dir().join("member/snap/db");
    if !db.is_file() {
        return None;
    }
    // Reading needs no version match: any tool will do.
    let want = hostfix_adapters::etcdtool::parse_version(&local.config.image);
    let tool = EtcdTool::for_reading(want).ok()?;
    hostfix_adapters::etcdtool::db_revision(&tool, &db)
}

/// The plan in words: a header and, per step, its name and what it will do.
pub fn describe(g: &Settings, local: &Local, plan: &RejoinPlan) -> (String, Vec<(String, String)>) {
    let state = g.state_dir();
    let backup = match &plan.backup {
        Backup::Fresh { why } if why.is_empty() => "backup: a fresh snapshot, taken while the member stops (--backup fresh always takes one)".to_string(),
        Backup::Fresh { why } => format!("backup: a fresh snapshot, taken while the member stops; none is reused: {why} (--backup auto reuses a verified one when it can)"),
        Backup::Reuse { path, saved_at_unix, bytes, verified_by, .. } => format!(
            "backup: {path}, saved {} ago, {bytes} bytes, verified now against {} (--backup fresh takes a new one instead)",
            age_words(unix_now().saturating_sub(*saved_at_unix)),
            if verified_by.is_empty() { "its SHA-256 trailer" } else { verified_by }
        ),
        Backup::None => "backup: NONE (--backup none): no restore point is taken or checked before the membership changes".to_string(),
    };
    let mut header = format!(
        "rejoin plan for member {} ({}), through peer {} ({}):\n{backup}",
        plan.name,
        plan.peer_url,
        plan.peer.name,
        plan.peer.client_urls.join(",")
    );
    if let Some(d) = crate::perf::load_last(&state).filter(|d| !d.pass) {
        header.push_str(&format!(
            "\nwarning: the last disk check here (check perf, {} ago) measured fdatasync p99 {:.1} ms under {}, above 10 ms: \
             the new member's catch-up and its heartbeats may be slow on this disk",
            age_words(unix_now().saturating_sub(d.checked_at_unix)),
            d.p99_ms,
            d.dir
        ));
    }
    let mut out = vec![];
    for s in &plan.steps {
        let what = match s {
            Step::Snapshot { peer, .. } => {
                let leader = if *peer == plan.peer.name && plan.peer.is_leader { " (the leader: no other voter is healthy)" } else { "" };
                format!("save a snapshot from {peer}{leader} to {} and verify its SHA-256", state.join("snapshots").display())
            }
            Step::UseSnapshot { path } => format!("rely on {path} as the backup; check that it is still there, whole"),
            Step::Stop => match local.config.runtime {
                RuntimeKind::StaticPod => format!(
                    "park {} in {} and wait for etcd to exit",
                    local.config.manifest.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                    state.join("parked").display()
                ),
                RuntimeKind::Docker => format!("stop container {}", g.container),
            },
            Step::Remove { id } => format!("member remove {}", hex_id(*id)),
            Step::RemoveDown { id, name } => format!(
                "member remove {} ({name}, down: etcd refuses any member add while a voter is unreachable; its master's rejoin re-adds it)",
                hex_id(*id)
            ),
            Step::Archive => {
                // The real place, which depends on the mounts: the plan names it.
                let act = Actions { g, local, wait: Duration::ZERO };
                let places: Vec<String> = act
                    .data_paths()
                    .iter()
                    .map(|d| match act.data_archive(d, &state.join("archive").join("<run>")) {
                        Ok((dir, None)) => format!("{} to {}/", d.display(), dir.display()),
                        Ok((dir, Some(why))) => format!("{} to {}/ ({why})", d.display(), dir.display()),
                        Err(e) => format!("{} ({e})", d.display()),
                    })
                    .collect();
                format!("move {} by rename (kept, not deleted, never copied)", places.join(", and "))
            }
            Step::AddLearner { name, peer_url, reuse: Some(id) } => {
                format!("reuse the unstarted member {} for {name} at {peer_url}", hex_id(*id))
            }
            Step::AddLearner { name, peer_url, reuse: None } => format!("member add {name} --peer-urls={peer_url} --learner"),
            Step::Configure => match local.config.runtime {
                RuntimeKind::StaticPod => "set --initial-cluster (from the member list after the add) and --initial-cluster-state=existing; no other line changes".into(),
                RuntimeKind::Docker => format!(
                    "save `docker inspect {}` and its docker run command to {}/<run>/; the recreate sets --initial-cluster (from the member list after the add) and --initial-cluster-state=existing, nothing else",
                    g.container,
                    state.join("archive").display()
                ),
            },
            Step::Start => match local.config.runtime {
                RuntimeKind::StaticPod => "move the manifest back into manifests/".into(),
                RuntimeKind::Docker => format!(
                    "rename container {c} to {c}{ASIDE_INFIX}<run>, create {c} again with the same spec and only those flags changed, start it (rolled back if it cannot start)",
                    c = g.container
                ),
            },
            Step::Promote => "wait until the learner has caught up, then member promote".into(),
            Step::WaitHealthy => "wait until every member is healthy and the local revision equals the leader's".into(),
            Step::RemoveOldContainer { name } => {
                format!("remove the old container, renamed {name}{ASIDE_INFIX}<run> by the recreate (its volumes stay)")
            }
            Step::BounceApiserver => "restart the local kube-apiserver (park its manifest, wait for it to stop, move it back): it watched revisions from before the restore; --no-apiserver-restart skips this".into(),
        };
        out.push((s.name().to_string(), what));
    }
    (header, out)
}

/// What must hold on disk before the first change: room for the fresh backup, and an
/// archive that can be a rename. Checked for the steps not done yet.
pub async fn preflight(
    g: &Settings,
    local: &Local,
    conn: &Connector,
    plan: &RejoinPlan,
    resumed: Option<&Journal<RejoinPlan>>,
) -> Result<(), crate::space::SpaceError> {
    let pending = |name: &str| {
        plan.steps.iter().enumerate().any(|(i, s)| s.name() == name && !resumed.is_some_and(|j| j.is_done(&format!("{i}:{name}"))))
    };
    let state = g.state_dir();
    if let Some(Step::Snapshot { peer, url }) = plan.steps.iter().find(|s| matches!(s, Step::Snapshot { .. })) {
        if pending("snapshot") {
            // The source's db size is what the stream will write. A source that does not
            // answer now is the snapshot step's to report.
            let mut urls: Vec<String> = url.iter().cloned().collect();
            urls.extend(plan.peer.client_urls.iter().cloned());
            for u in urls {
                if let Ok(mut ep) = conn.connect(&u).await {
                    if let Ok(st) = ep.status().await {
                        let db = st.db_size.max(0) as u64;
                        crate::space::check_room(&state.join("snapshots"), db, if peer.is_empty() { &u } else { peer })?;
                        learner_room(local, db, &u)?;
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Room on the data dir's disk for what the learner will receive (the peer's db, and its
/// WAL and snapshot files beside it), with the archive still kept there: the archive is a
/// rename, so it frees nothing. A dedicated etcd disk is often small.
fn learner_room(local: &Local, db: u64, from: &str) -> Result<(), crate::space::SpaceError> {
    let data = local.data_dir();
    crate::space::check_room_for(
        &data,
        crate::space::learner_bytes_needed(db),
        &format!("the data the learner will receive (the db of {from} is {db} bytes; the archived member stays on this disk)"),
    )
}

struct Runner<'a> {
    g: &'a Settings,
    local: &'a Local,
    conn: &'a Connector,
    plan: &'a RejoinPlan,
    wait: Duration,
    rep: &'a dyn Reporter,
}

impl Runner<'_> {
    fn cfg(&self) -> &LocalConfig {
        &self.local.config
    }

    fn state(&self) -> PathBuf {
        self.g.state_dir()
    }

    async fn peer(&self) -> Result<Endpoint> {
        // Any healthy voter will do; the planned one first.
        let mut urls: Vec<String> = self.plan.peer.client_urls.clone();
        urls.extend(self.local.candidate_endpoints(self.g));
        let mine = self.local.local_client_url();
        let mut last = None;
        for u in urls.iter().filter(|u| Some(*u) != mine.as_ref()) {
            match self.conn.connect(u).await {
                Ok(ep) => return Ok(ep),
                Err(e) => last = Some(e),
            }
        }
        Err(anyhow!("no peer answers: {}", last.map(|e| e.to_string()).unwrap_or_default()))
    }

    async fn run(&self, j: &mut Journal<RejoinPlan>) -> Result<()> {
        let steps = self.plan.steps.clone();
        let mut i = 0;
        while i < steps.len() {
            let key = format!("{i}:{}", steps[i].name());
            if j.is_done(&key) {
                i += 1;
                continue;
            }
            // The snapshot and stopping the broken member are independent: overlap them.
            if let (Step::Snapshot { .. }, Some(Step::Stop)) = (&steps[i], steps.get(i + 1)) {
                let stop_key = format!("{}:stop", i + 1);
                if !j.is_done(&stop_key) {
                    pause_point("snapshot");
                    let started = Instant::now();
                    self.rep.step_started(i + 1, steps.len(), "snapshot");
                    self.rep.step_started(i + 2, steps.len(), "stop");
                    let span = info_span!("step", n = i + 1, step = "snapshot+stop");
                    let src = match &steps[i] {
                        Step::Snapshot { peer, url: Some(u) } => Some((peer.as_str(), u.as_str())),
                        _ => None,
                    };
                    let (a, b) = async { tokio::join!(self.snapshot(j.run_id.clone(), src), self.stop()) }.instrument(span).await;
                    let path = a.with_context(|| format!("step {} (snapshot)", i + 1))?;
                    b.with_context(|| format!("step {} (stop)", i + 2))?;
                    info!(elapsed_ms = started.elapsed().as_millis() as u64, "snapshot and stop done");
                    crash_point("snapshot");
                    j.set("snapshot", path.display().to_string())?;
                    j.mark_done(&key)?;
                    self.rep.step_done(i + 1, steps.len(), "snapshot", started.elapsed());
                    crash_point("stop");
                    j.mark_done(&stop_key)?;
                    self.rep.step_done(i + 2, steps.len(), "stop", started.elapsed());
                    i += 2;
                    continue;
                }
            }
            pause_point(steps[i].name());
            let span = info_span!("step", n = i + 1, step = steps[i].name());
            let started = Instant::now();
            self.rep.step_started(i + 1, steps.len(), steps[i].name());
            let r = match crate::fail_point(steps[i].name()) {
                Ok(()) => self.step(&steps[i], j).instrument(span).await,
                Err(e) => Err(e),
            };
            r.with_context(|| format!("step {} ({})", i + 1, steps[i].name()))?;
            info!(step = steps[i].name(), elapsed_ms = started.elapsed().as_millis() as u64, "step done");
            crash_point(steps[i].name());
            j.mark_done(&key)?;
            self.rep.step_done(i + 1, steps.len(), steps[i].name(), started.elapsed());
            i += 1;
        }
        Ok(())
    }

    async fn step(&self, s: &Step, j: &mut Journal<RejoinPlan>) -> Result<()> {
        match s {
            Step::Snapshot { peer, url } => {
                let p = self.snapshot(j.run_id.clone(), url.as_deref().map(|u| (peer.as_str(), u))).await?;
                j.set("snapshot", p.display().to_string())?;
                Ok(())
            }
            Step::UseSnapshot { path } => {
                let bytes = match &self.plan.backup {
                    Backup::Reuse { bytes, .. } => *bytes,
                    _ => 0,
                };
                let p = PathBuf::from(path);
                let whole = std::fs::metadata(&p).map(|m| m.len() == bytes).unwrap_or(false);
                let p = if whole {
                    p
                } else {
                    // Pruned or changed since the plan was made: a fresh one, rather than none.
                    self.rep.note(&format!("backup {path} is gone or changed since the plan was made; taking a fresh one"));
                    self.snapshot(j.run_id.clone(), None).await?
                };
                j.set("snapshot", p.display().to_string())?;
                Ok(())
            }
            Step::Stop => self.stop().await,
            Step::Remove { id } => self.remove(*id).await,
            Step::RemoveDown { id, name } => {
                // Said in etcd before it is done, so that the removed member's own daemon
                // knows a repair removed it (and heals at once) rather than a person.
                let mut ep = self.peer().await?;
                ep.put_value(&removed_key(name), &self.plan.name).await?;
                self.remove(*id).await
            }
            Step::Archive => self.archive(j).await,
            Step::AddLearner { peer_url, reuse, .. } => self.add_learner(peer_url, *reuse, j).await,
            Step::Configure => self.configure(j).await,
            Step::Start => self.start(j).await,
            Step::RemoveOldContainer { .. } => self.remove_old(j).await,
            Step::BounceApiserver => self.act().bounce_apiserver(self.rep).await,
            Step::Promote => self.promote(j).await,
            Step::WaitHealthy => {
                self.wait_healthy().await?;
                // Back as a voter: a removal record for this member no longer applies.
                if let Ok(mut ep) = self.peer().await {
                    let _ = ep.delete_key(&removed_key(&self.plan.name)).await;
                }
                Ok(())
            }
        }
    }

    /// A fresh backup from `url` (the plan's source, a voter that is not the leader when
    /// one was healthy), else from any healthy peer; with its `.sha256` and `.json` records,
    /// so that a later `--backup auto` can reuse it.
    async fn snapshot(&self, run: String, src: Option<(&str, &str)>) -> Result<PathBuf> {
        let dir = self.state().join("snapshots");
        let path = dir.join(format!("rejoin-{run}.db"));
        if path.exists() && verify_snapshot(&path).is_ok() {
            return Ok(path);
        }
        hostfix_adapters::private::create_dir(&dir).with_context(|| dir.display().to_string())?;
        let (mut ep, name) = match src {
            Some((name, u)) => match self.conn.connect(u).await {
                Ok(ep) => (ep, name.to_string()),
                Err(_) => (self.peer().await?, String::new()),
            },
            None => (self.peer().await?, String::new()),
        };
        let st = ep.status().await?;
        let from = MemberStatus {
            name,
            cluster_id: Some(hex_id(st.cluster_id)),
            version: Some(st.version),
            revision: Some(st.revision),
            raft_index: Some(st.raft_index),
            quorum_read: true,
            ..Default::default()
        };
        // Verified while streaming: the SHA-256 trailer is checked before this returns.
        let streamed = crate::snapshot::stream_into(&mut ep, &path, self.rep).await?;
        crate::snapshot::write_records(&path, &streamed, &from, &ep.url, None)?;
        Ok(path)
    }

    fn act(&self) -> Actions<'_> {
        Actions { g: self.g, local: self.local, wait: self.wait }
    }

    async fn stop(&self) -> Result<()> {
        self.act().stop().await
    }

    /// etcd refuses membership changes for a few seconds after a peer (re)connects
    /// ("unhealthy cluster"); those errors are retried within the wait bound.
    async fn retry_membership<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = Instant::now() + self.wait;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() < deadline && is_transient(&e.to_string()) => {
                    info!(what, error = %e, "retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn remove(&self, id: u64) -> Result<()> {
        self.retry_membership("member remove", || async {
            let mut ep = self.peer().await?;
            let list = ep.member_list().await?;
            if list.members.iter().any(|m| m.id == id) {
                ep.member_remove(id).await?;
            }
            Ok(())
        })
        .await
    }

    async fn archive(&self, j: &mut Journal<RejoinPlan>) -> Result<()> {
        let dest = match j.get::<String>("archive") {
            Some(p) => PathBuf::from(p),
            None => {
                let p = self.state().join("archive").join(&j.run_id);
                j.set("archive", p.display().to_string())?;
                p
            }
        };
        for line in self.act().archive_data(&dest)? {
            self.rep.note(&line);
        }
        Ok(())
    }

    async fn add_learner(&self, peer_url: &str, reuse: Option<u64>, j: &mut Journal<RejoinPlan>) -> Result<()> {
        let id = self
            .retry_membership("member add", || async {
                let mut ep = self.peer().await?;
                let list = ep.member_list().await?;
                // A previous attempt (or an operator) may have added it already.
                if let Some(m) = list.members.iter().find(|m| m.peer_urls.iter().any(|u| u == peer_url)) {
                    return Ok(m.id);
                }
                if let Some(id) = reuse {
                    if list.members.iter().any(|m| m.id == id) {
                        return Ok(id);
                    }
                }
                Ok(ep.member_add_learner(peer_url).await?)
            })
            .await?;
        let mut ep = self.peer().await?;
        let list = ep.member_list().await?;
        let facts: Vec<MemberFact> = list.members.iter().map(|m| to_fact(m, None)).collect();
        let cluster = initial_cluster_after_add(&facts, &self.plan.name, peer_url);
        j.set("new_id", id)?;
        j.set("initial_cluster", cluster)?;
        Ok(())
    }

    /// Static pod: edit the parked manifest now. Docker: keep the container's inspect; the
    /// edits are applied by the recreate in `start`.
    async fn configure(&self, j: &mut Journal<RejoinPlan>) -> Result<()> {
        let archive = self.state().join("archive").join(&j.run_id);
        match self.cfg().runtime {
            RuntimeKind::StaticPod => self.act().edit_parked(&self.edits(j)?, &archive),
            RuntimeKind::Docker => self.act().save_container(&archive, &j.run_id).await,
        }
    }

    fn edits(&self, j: &Journal<RejoinPlan>) -> Result<Vec<hostfix_core::manifest::FlagEdit>> {
        let cluster: String = j.get("initial_cluster").context("journal lacks initial_cluster")?;
        Ok(rejoin_edits(&hostfix_core::flags::parse_initial_cluster(&cluster)))
    }

    async fn start(&self, j: &mut Journal<RejoinPlan>) -> Result<()> {
        let archive = self.state().join("archive").join(&j.run_id);
        let parked = self.local.static_pod.as_ref().map(|sp| sp.parked_path().exists()).unwrap_or(false);
        if parked && self.clear_stragglers(&archive).await? {
            // A straggler on flags that say `existing` joins as whatever the cluster lists at
            // this peer URL, which is now the learner: the leader then counts the learner as
            // having the data the straggler received, and a learner started on the emptied
            // dir panics on the leader's first heartbeat ("tocommit(N) is out of range",
            // caught on etcd 3.6 in tests/rejoin.rs every_class). So that learner is replaced
            // by a fresh one before anything starts; the straggler's data stays archived.
            if let Some(tainted) = j.get::<u64>("new_id") {
                self.rep.note(&format!(
                    "note: the straggler may have joined as learner {}; replacing it with a fresh learner",
                    hostfix_adapters::etcd::hex_id(tainted)
                ));
                self.remove(tainted).await?;
                self.add_learner(&self.plan.peer_url, None, j).await?;
                self.configure(j).await?;
                // Whatever the kubelet did meanwhile is waited out and archived again.
                if self.clear_stragglers(&archive).await? {
                    bail!("etcd kept being restarted on its old flags while its manifest was parked; the learner is not started (run rejoin again once the kubelet has settled)");
                }
            }
        }
        let crash = |phase: &str| crash_point(&format!("recreate-{phase}"));
        self.act().start_with(&self.edits(j)?, &archive, &j.run_id, &crash).await
    }

    /// The learner must start from an empty data dir. A crashlooping pod can be restarted by
    /// the kubelet in the instant its manifest is parked, before the kubelet notices: that
    /// straggler, still on the old flags, writes a fresh `member` dir under its old ID after
    /// the archive step, and the learner would then start as that ID and never catch up.
    /// So, while the manifest is still parked: wait for any straggler to be stopped, and
    /// archive what it wrote. Once one is seen, a second may still be starting (inside the
    /// kubelet's wrapper, not yet `etcd` in /proc, as CI caught: its dir appeared after the
    /// archive and the learner's log was lost under it), so /proc and the data dir must then
    /// stay clear for [`STRAGGLER_QUIET`]. Nothing seen costs nothing. Says whether a
    /// straggler wrote a data dir (archived).
    async fn clear_stragglers(&self, archive: &Path) -> Result<bool> {
        let url = self.local.local_client_url().unwrap_or_default();
        let member = self.local.data_dir().join("member");
        let deadline = Instant::now() + self.wait;
        let mut seen = !hostfix_adapters::process::etcd_pids(&url).is_empty();
        let mut wrote = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            wait_for("a restarted etcd to be stopped by the kubelet", left, || hostfix_adapters::process::etcd_pids(&url).is_empty()).await?;
            if member.exists() {
                let (dir, _) = self.act().data_archive(&member, archive)?;
                let dest = free_name(&dir, "member.late-");
                self.rep.note(&format!("note: a restart raced the stop and wrote {}; archived to {}", member.display(), dest.display()));
                hostfix_adapters::relocate::rename(&member, &dest)?;
                seen = true;
                wrote = true;
            }
            if !seen {
                return Ok(false);
            }
            let quiet_until = Instant::now() + STRAGGLER_QUIET;
            let mut stirred = false;
            while Instant::now() < quiet_until {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if member.exists() || !hostfix_adapters::process::etcd_pids(&url).is_empty() {
                    stirred = true;
                    break;
                }
            }
            if !stirred {
                return Ok(wrote);
            }
            if Instant::now() >= deadline {
                bail!("etcd kept being restarted while its manifest was parked (for {:?}); the learner is not started", self.wait);
            }
        }
    }

    async fn remove_old(&self, j: &Journal<RejoinPlan>) -> Result<()> {
        self.act().remove_asides(&[j.run_id.clone()]).await
    }

    async fn promote(&self, j: &mut Journal<RejoinPlan>) -> Result<()> {
        let r = self.promote_when_caught_up(j).await;
        if self.rep.wants_progress() {
            if r.is_ok() {
                self.show_final_learner().await;
            }
            self.rep.progress_end("learner", r.is_ok());
        }
        r
    }

    /// The figure the bar ends on, once the member is promoted. A learner with little to
    /// catch up on is promoted before any figure is taken (its endpoint was not up yet, or
    /// the first promote succeeded), and the bar would then never be drawn: the terminal's
    /// account of the catch-up should not depend on how fast it was. Bounded: the member
    /// answers within moments of its promotion, and a figure that cannot be had is skipped.
    async fn show_final_learner(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let shown = async { self.show_learner(&mut self.peer().await?).await };
            match shown.await {
                Ok(()) => return,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => {
                    tracing::debug!(error = %e, "no final learner figure");
                    return;
                }
            }
        }
    }

    /// The learner's applied index against the peer's, for a terminal's bar; a figure that
    /// cannot be had now is skipped, the wait goes on regardless.
    async fn show_learner(&self, ep: &mut Endpoint) -> Result<()> {
        let url = self.local.local_client_url().context("the local member has no client URL")?;
        let peer = ep.status().await?;
        let st = self.conn.connect(&url).await?.status().await?;
        self.rep.progress("learner", Progress::Index { applied: st.raft_applied_index, target: peer.raft_index });
        Ok(())
    }

    async fn promote_when_caught_up(&self, j: &mut Journal<RejoinPlan>) -> Result<()> {
        let mut id: u64 = j.get("new_id").context("journal lacks new_id")?;
        let started = Instant::now();
        let deadline = started + self.wait;
        let mut bounced = false;
        let mut shown: Option<Instant> = None;
        loop {
            // A peer that cannot be reached now (a partition, an election) may be back
            // before the bound: waited for like a learner that has not caught up.
            let listed = async {
                let mut ep = self.peer().await?;
                if self.rep.wants_progress() && shown.is_none_or(|t| t.elapsed() >= Duration::from_millis(200)) {
                    let _ = self.show_learner(&mut ep).await;
                    shown = Some(Instant::now());
                }
                let list = ep.member_list().await?;
                anyhow::Ok((ep, list))
            };
            let (mut ep, list) = match listed.await {
                Ok(v) => v,
                Err(e) if Instant::now() < deadline && is_transient(&e.to_string()) => {
                    info!(error = %e, "no peer to promote through yet; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => return Err(e.context(format!("learner {} not promoted", hex_id(id)))),
            };
            match list.members.iter().find(|m| m.id == id) {
                Some(m) if !m.is_learner => return Ok(()),
                Some(_) => match ep.member_promote(id).await {
                    Ok(()) => return Ok(()),
                    // "can only promote a learner member which is in sync with leader"
                    Err(e) if Instant::now() < deadline => {
                        tracing::debug!(error = %e, "learner not ready yet");
                        // A learner that is not even running as itself will never catch up:
                        // restart it once rather than wait out the whole bound.
                        if !bounced && started.elapsed() > LEARNER_PATIENCE {
                            if let Some(why) = self.learner_absent(id).await {
                                self.rep.note(&format!("note: the learner has not caught up after {LEARNER_PATIENCE:?} and {why}; restarting it once"));
                                // Stopped, the manifest is parked again, and the restart
                                // clears whatever the wrong member wrote (archived).
                                self.act().stop().await?;
                                self.start(j).await?;
                                // The restart may have replaced a tainted learner with a
                                // fresh one (`start`): promote that one, not the removed ID
                                // (which CI once saw reported as "vanished").
                                id = j.get("new_id").context("journal lacks new_id")?;
                                bounced = true;
                            }
                        }
                    }
                    Err(e) => {
                        let why = self.learner_absent(id).await.unwrap_or_else(|| "the local member runs as the learner".into());
                        return Err(anyhow!("learner {} never caught up within {:?} ({why}): {e}", hex_id(id), self.wait));
                    }
                },
                None => bail!("member {} vanished from the member list", hex_id(id)),
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Why the local member is not the learner `id`, if it is not: its endpoint does not
    /// answer, or it answers as another member (a stale configuration).
    async fn learner_absent(&self, id: u64) -> Option<String> {
        let url = self.local.local_client_url()?;
        match self.conn.connect(&url).await {
            Err(e) => Some(format!("its endpoint does not answer ({e})")),
            Ok(mut ep) => match ep.status().await {
                Err(e) => Some(format!("its endpoint does not answer ({e})")),
                Ok(st) if st.member_id != id => Some(format!("it runs as member {}, not {}", hex_id(st.member_id), hex_id(id))),
                Ok(_) => None,
            },
        }
    }

    async fn wait_healthy(&self) -> Result<()> {
        let deadline = Instant::now() + self.wait;
        let my_url = self.local.local_client_url();
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some((_, probed)) = self.local.cluster_view(self.g, self.conn).await {
                let leader_rev = probed.iter().find(|m| m.is_leader).and_then(|m| m.revision);
                let mine = probed.iter().find(|m| m.client_urls.first() == my_url.as_ref());
                let required = |m: &&MemberStatus| {
                    m.peer_urls.contains(&self.plan.peer_url)
                        || m.peer_urls.iter().any(|u| self.plan.healthy_at_start.contains(u))
                };
                let all_healthy = probed.iter().filter(required).all(|m| m.healthy && !m.is_learner);
                if all_healthy && leader_rev.is_some() && mine.map(|m| m.healthy) == Some(true) && mine.and_then(|m| m.revision) == leader_rev {
                    let others: Vec<String> = probed.iter().filter(|m| !m.healthy).map(|m| m.name.clone()).collect();
                    if !others.is_empty() {
                        self.rep.note(&format!("note: still unhealthy, and not this run's to repair: {}", others.join(", ")));
                    }
                    return Ok(());
                }
                last = probed
                    .iter()
                    .filter(required)
                    .filter(|m| !m.healthy)
                    .map(|m| format!("{}: {}", m.name, m.error.clone().unwrap_or_else(|| "not healthy".into())))
                    .collect::<Vec<_>>()
                    .join("; ");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("cluster not healthy after {:?}: {last}", self.wait)
    }
}

