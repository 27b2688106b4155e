//! The disaster-recovery playbooks, run: `rebuild` (seed 002: a survivor becomes a
//! one-member cluster with `--force-new-cluster`, which is then removed) and `restore`
//! (seed 003: a one-member cluster from a snapshot). Like rejoin: [`prepare`] gathers facts
//! and plans (pure, may refuse), the driver shows the plan and decides, [`execute`] locks
//! and runs the steps through a journal, reporting progress through a [`Reporter`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hostfix_adapters::etcd::verify_snapshot;
use hostfix_adapters::etcdtool::{self, EtcdTool};
use hostfix_adapters::journal::Journal;
use hostfix_adapters::runtime::RuntimeKind;
use hostfix_core::dr::{apiserver_after, plan_rebuild, ApiserverAfter, plan_restore, single_member_edits, PeerFact, RecoveryFacts, RecoveryKind, RecoveryPlan, RecoveryStep};
use tracing::{info, info_span, Instrument};

use crate::actions::{free_name, Actions};
use crate::local::{configured, Local};
use crate::lock::{file_lock_holder, lock_path, FileLock};
use crate::{crash_point, run_id, Progress, Reporter, Settings};

pub const JOURNAL: &str = "recover";

/// How a rebuild or restore runs.
#[derive(Debug, Clone)]
pub struct RecoverOptions {
    /// Act although the cluster still has quorum, or (rebuild) a reachable member is ahead.
    pub force: bool,
    /// Members the operator vouches are down, although they only time out from here.
    pub peers_down: Vec<String>,
    /// Upper bound for each wait.
    pub wait: Duration,
    /// Restore: leave the local kube-apiserver running on its stale watch cache.
    pub no_apiserver_restart: bool,
    /// Archived runs kept once this run succeeded (`hostfix_core::archive::to_prune`).
    pub keep_archives: usize,
}

/// What `prepare` found: a plan to show, or why not.
pub enum Prepared {
    Refused(String),
    Plan { plan: RecoveryPlan, resumed: Option<Journal<RecoveryPlan>>, tool: Option<Offline> },
}

/// How `execute` ended, when it did not fail.
pub enum Outcome {
    Done { history: PathBuf },
    Refused(String),
}

pub async fn prepare(g: &Settings, local: &Local, kind: RecoveryKind, o: &RecoverOptions, rep: &dyn Reporter) -> Result<Prepared> {
    let state_dir = g.state_dir();
    if let Some(holder) = file_lock_holder(&state_dir) {
        return Ok(Prepared::Refused(format!("another etcd-hostfix run (pid {holder}) holds {}", lock_path(&state_dir).display())));
    }
    let resumed = Journal::<RecoveryPlan>::load(&state_dir, JOURNAL)?;
    if let Some(j) = &resumed {
        if j.plan.kind != kind {
            bail!("an unfinished {:?} run is journaled at {}; finish it first (run that command again)", j.plan.kind, Journal::<RecoveryPlan>::path_for(&state_dir, JOURNAL).display());
        }
    }
    // The version-matched tool is needed before anything changes.
    let tool = match kind {
        RecoveryKind::Restore => Some(Offline::find(local).await?),
        RecoveryKind::Rebuild => None,
    };
    let plan = match &resumed {
        Some(j) => {
            rep.note(&format!("resuming {} run {} ({} of {} steps done)", JOURNAL, j.run_id, j.done.len(), j.plan.steps.len()));
            j.plan.clone()
        }
        None => {
            let facts = gather(g, local, o).await?;
            let data = local.data_dir().join("member");
            let planned = match kind {
                RecoveryKind::Rebuild => plan_rebuild(&facts, &data.display().to_string()),
                RecoveryKind::Restore => plan_restore(&facts),
            };
            let mut plan = match planned {
                Ok(p) => p,
                Err(refusal) => return Ok(Prepared::Refused(refusal.to_string())),
            };
            if kind == RecoveryKind::Restore {
                let bumped = tool.as_ref().is_some_and(Offline::can_bump_revision);
                let has = Actions { g, local, wait: o.wait }.has_apiserver();
                match apiserver_after(true, bumped, has, o.no_apiserver_restart) {
                    ApiserverAfter::Bounce => {
                        let at = plan.steps.iter().position(|s| *s == RecoveryStep::RemoveOldContainers).unwrap_or(plan.steps.len());
                        plan.steps.insert(at, RecoveryStep::BounceApiserver);
                    }
                    ApiserverAfter::Skip(why) => rep.note(&format!(
                        "note: the revision cannot be bumped, so every kube-apiserver keeps serving its watch cache from before the restore until it restarts (kubernetes#107457); not restarted here: {why}. Restart it yourself once etcd is up ({})",
                        match local.config.runtime {
                            RuntimeKind::Docker => "`docker restart kube-apiserver` on RKE".to_string(),
                            RuntimeKind::StaticPod => "move /etc/kubernetes/manifests/kube-apiserver.yaml out and back".to_string(),
                        }
                    )),
                    ApiserverAfter::NotNeeded => {}
                }
            }
            plan
        }
    };
    Ok(Prepared::Plan { plan, resumed, tool })
}

#[allow(clippy::too_many_arguments)]
pub async fn execute(
    g: &Settings,
    local: &Local,
    plan: &RecoveryPlan,
    resumed: Option<Journal<RecoveryPlan>>,
    tool: Option<Offline>,
    snapshot: Option<PathBuf>,
    o: &RecoverOptions,
    rep: &dyn Reporter,
) -> Result<Outcome> {
    let state_dir = g.state_dir();
    let span = info_span!("recover", kind = ?plan.kind, member = %plan.name);
    async move {
        if let Err(why) = preflight(g, local, plan, resumed.as_ref(), snapshot.as_deref()) {
            return Ok(Outcome::Refused(why.to_string()));
        }
        let Some(_flock) = FileLock::take(&state_dir)? else {
            return Ok(Outcome::Refused(format!("another etcd-hostfix run holds {}", lock_path(&state_dir).display())));
        };
        let mut journal = match resumed {
            Some(j) => j,
            None => {
                let mut j = Journal::create(&state_dir, JOURNAL, run_id(), plan.clone())?;
                if let Some(s) = &snapshot {
                    j.set("snapshot", s.display().to_string())?;
                }
                j
            }
        };
        let snapshot = journal.get::<String>("snapshot").map(PathBuf::from).or(snapshot);
        let r = Runner { act: Actions { g, local, wait: o.wait }, plan, snapshot, tool, rep };
        match r.run(&mut journal).await {
            Ok(()) => {
                r.act.prune_archives(o.keep_archives, &journal.run_id, rep);
                Ok(Outcome::Done { history: journal.finish()? })
            }
            Err(e) => Err(e.context(format!(
                "stopped; run the same command again to resume from {}",
                Journal::<RecoveryPlan>::path_for(&state_dir, JOURNAL).display()
            ))),
        }
    }
    .instrument(span)
    .await
}

/// What must hold on disk before the first change, for the steps not done yet: an archive
/// that is a rename stays on one filesystem, a copy has room, and so does the restored db.
pub fn preflight(
    g: &Settings,
    local: &Local,
    plan: &RecoveryPlan,
    resumed: Option<&Journal<RecoveryPlan>>,
    snapshot: Option<&Path>,
) -> Result<(), crate::space::SpaceError> {
    let pending = |step: RecoveryStep| {
        plan.steps.contains(&step) && !resumed.is_some_and(|j| j.is_done(step.name()))
    };
    let archive = g.state_dir().join("archive");
    let data = local.data_dir();
    if pending(RecoveryStep::ArchiveCopy) {
        let member = data.join("member");
        crate::space::check_room_for(&archive, crate::space::dir_bytes(&member), &format!("the copy of {}", member.display()))?;
    }
    if let (true, Some(s)) = (pending(RecoveryStep::RestoreSnapshot), snapshot) {
        let bytes = std::fs::metadata(s).map(|m| m.len()).unwrap_or(0);
        crate::space::check_room_for(&data, bytes, &format!("the db restored from {}", s.display()))?;
    }
    Ok(())
}

/// etcd's offline tool, from the host, or else (RKE) from the member's own image run
/// through the Docker engine: the image always carries the right version.
/// How far a restore moves the revision on: far past any revision a watcher can have seen
/// since the snapshot (the README's restore section says how it was chosen).
const BUMP_REVISION: u64 = 1_000_000_000;

pub enum Offline {
    Host(EtcdTool),
    /// The tool in the member's own image (an RKE node has none on the host). `bump`: its
    /// `snapshot restore` has `--bump-revision` (etcdutl 3.5.10 and later), asked once.
    Image { docker: hostfix_adapters::runtime::DockerRuntime, image: String, bin: String, bump: bool },
}

impl Offline {
    pub async fn find(local: &Local) -> Result<Offline> {
        let want = etcdtool::parse_version(&local.config.image);
        let host_err = match EtcdTool::find(want) {
            Ok(t) => return Ok(Offline::Host(t)),
            Err(e) => e,
        };
        let Some(docker) = local.docker.clone() else { return Err(host_err.into()) };
        // The tools sit beside etcd in the image.
        let etcd = local.config.argv.iter().find(|a| a.rsplit('/').next() == Some("etcd")).cloned().unwrap_or("etcd".into());
        let dir = etcd.rsplit_once('/').map(|x| x.0.to_string());
        let names: &[&str] = if want >= Some((3, 5)) { &["etcdutl", "etcdctl"] } else { &["etcdctl"] };
        for n in names {
            let bin = dir.as_ref().map(|d| format!("{d}/{n}")).unwrap_or(n.to_string());
            if docker.run_tool(&local.config.image, &[bin.clone(), "version".into()], &[]).await.is_ok() {
                let help = [bin.clone(), "snapshot".into(), "restore".into(), "--help".into()];
                let bump = docker.run_tool(&local.config.image, &help, &[]).await.is_ok_and(|h| h.contains("--bump-revision"));
                return Ok(Offline::Image { docker, image: local.config.image.clone(), bin, bump });
            }
        }
        Err(anyhow!("{host_err}; nor does image {} carry etcdutl or etcdctl", local.config.image))
    }

    /// Whether a restore with this tool bumps the revision and marks it compacted, so that
    /// no watcher can be served an older revision than it saw.
    pub fn can_bump_revision(&self) -> bool {
        match self {
            Offline::Host(t) => t.can_bump_revision(),
            Offline::Image { bump, .. } => *bump,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Offline::Host(t) => t.path.display().to_string(),
            Offline::Image { image, bin, .. } => format!("{bin} in image {image}"),
        }
    }

    fn parent_and_name(file: &Path) -> (String, String) {
        (
            file.parent().map(|p| p.display().to_string()).unwrap_or("/".into()),
            file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        )
    }

    async fn status(&self, file: &Path) -> Result<serde_json::Value> {
        match self {
            Offline::Host(t) => Ok(t.status(file)?),
            Offline::Image { docker, image, bin, .. } => {
                let (dir, name) = Self::parent_and_name(file);
                let argv = [bin.clone(), "snapshot".into(), "status".into(), format!("/hostfix-in/{name}"), "-w".into(), "json".into()];
                let out = docker.run_tool(image, &argv, &[format!("{dir}:/hostfix-in:ro")]).await?;
                let line = out.lines().find(|l| l.trim_start().starts_with('{')).unwrap_or_default();
                serde_json::from_str(line).map_err(|e| anyhow!("{} snapshot status: unexpected output ({e}): {out}", self.describe()))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn restore(&self, file: &Path, data: &Path, target: &str, name: &str, peer_url: &str, token: &str, rep: &dyn Reporter) -> Result<()> {
        // etcd's restore copies the snapshot to member/snap/db first: that file's growth is
        // the part worth a bar.
        let file_len = std::fs::metadata(file).map(|m| m.len()).ok();
        let db = data.join(target).join("member/snap/db");
        match self {
            Offline::Host(t) => {
                let bump = t.can_bump_revision().then_some(BUMP_REVISION);
                if bump.is_none() {
                    rep.note(&format!("note: {} {}.{} cannot bump the revision or mark it compacted; watchers that saw newer revisions must re-list", t.path.display(), t.version.0, t.version.1));
                }
                let (t, file, out, name, peer_url, token) =
                    (t.clone(), file.to_path_buf(), data.join(target), name.to_string(), peer_url.to_string(), token.to_string());
                let work = async move {
                    let r = tokio::task::spawn_blocking(move || t.restore(&file, &out, &name, &peer_url, &token, bump)).await?;
                    Ok::<_, anyhow::Error>(r?)
                };
                with_restore_progress(rep, file_len, &db, work).await
            }
            Offline::Image { docker, image, bin, bump } => {
                let (dir, file_name) = Self::parent_and_name(file);
                rep.note(&format!(
                    "note: restoring with {}{}",
                    self.describe(),
                    if *bump { "; the revision is bumped and marked compacted" } else { ", which cannot bump the revision or mark it compacted; watchers that saw newer revisions must re-list" }
                ));
                let mut argv = vec![
                    bin.clone(),
                    "snapshot".into(),
                    "restore".into(),
                    format!("/hostfix-in/{file_name}"),
                    format!("--data-dir=/hostfix-out/{target}"),
                    format!("--name={name}"),
                    format!("--initial-cluster={name}={peer_url}"),
                    format!("--initial-advertise-peer-urls={peer_url}"),
                    format!("--initial-cluster-token={token}"),
                ];
                if *bump {
                    // The same bump as with a host tool (see the restore doc in the README).
                    argv.extend([format!("--bump-revision={BUMP_REVISION}"), "--mark-compacted".to_string()]);
                }
                let binds = [format!("{dir}:/hostfix-in:ro"), format!("{}:/hostfix-out", data.display())];
                with_restore_progress(rep, file_len, &db, docker.run_tool(image, &argv, &binds)).await?;
                Ok(())
            }
        }
    }
}

/// Await `work` while a terminal watches `db` grow towards the snapshot's size.
async fn with_restore_progress<T, E>(rep: &dyn Reporter, total: Option<u64>, db: &Path, work: impl std::future::Future<Output = Result<T, E>>) -> Result<T, E> {
    if !rep.wants_progress() {
        return work.await;
    }
    let show = || rep.progress("restore", Progress::Bytes { done: std::fs::metadata(db).map(|m| m.len()).unwrap_or(0), total });
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let out = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = tick.tick() => show(),
        }
    };
    show();
    rep.progress_end("restore", out.is_ok());
    out
}

pub async fn gather(g: &Settings, local: &Local, o: &RecoverOptions) -> Result<RecoveryFacts> {
    let conn = local.connector(g)?;
    let name = local.config.flags.name().to_string();
    let peer_url = local.local_peer_url().context("the local member has no --initial-advertise-peer-urls")?;
    let local_url = local.local_client_url().context("the local member has no client URL")?;
    // The local member and its peers are probed at once: a member that is starting (it
    // listens but does not answer yet) costs one timeout, not one for itself and one more
    // for the peers.
    let me_member = configured(&name, &peer_url, &local_url);
    let (me, mut probes) = tokio::join!(crate::probe::probe_member(&conn, &me_member), local.probe_configured_peers(&conn));
    let entries = local.config.flags.initial_cluster();
    // The voter count as the local member last knew it (its own list, served without
    // quorum), else as configured.
    let listed = match conn.connect(&local_url).await {
        Ok(mut ep) => ep.member_list().await.ok(),
        Err(_) => None,
    };
    let voters = listed.as_ref().map(|l| l.members.iter().filter(|m| !m.is_learner).count()).unwrap_or(entries.len());
    // And the voters it lists that `--initial-cluster` does not name, probed at the client
    // URL they advertise. kubeadm writes `--initial-cluster` as the cluster was when the
    // member joined: the first master's names only itself, a joiner's only those before it.
    // A voter known by count alone cannot be probed, and the plan must then refuse.
    let unnamed: Vec<hostfix_adapters::etcd::Member> = listed
        .map(|l| l.members)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !m.is_learner && !m.client_urls.is_empty() && m.name != name && !m.peer_urls.contains(&peer_url))
        .filter(|m| !probes.iter().any(|(e, _)| e.name == m.name || m.peer_urls.contains(&e.peer_url)))
        .collect();
    let found = futures_util::future::join_all(unnamed.iter().map(|m| crate::probe::probe_member(&conn, m))).await;
    for (m, s) in unnamed.into_iter().zip(found) {
        let peer_url = m.peer_urls.first().cloned().unwrap_or_default();
        let name = if m.name.is_empty() { peer_url.clone() } else { m.name };
        probes.push((hostfix_core::flags::PeerEntry { name, peer_url }, s));
    }
    // `--peers-down` must name known members: a typo must not vouch for nobody.
    for v in &o.peers_down {
        if !probes.iter().any(|(e, _)| &e.name == v) {
            let known: Vec<&str> = probes.iter().map(|(e, _)| e.name.as_str()).collect();
            bail!(
                "--peers-down names {v}, which is not another member in --initial-cluster or the local member's list (those are: {})",
                known.join(", ")
            );
        }
    }
    let data = local.data_dir().join("member");
    let local_revision = me.revision.or_else(|| crate::rejoin::local_data_revision(local, None));
    Ok(RecoveryFacts {
        name,
        peer_url,
        voters: voters.max(1),
        peers: probes
            .into_iter()
            .map(|(e, p)| PeerFact {
                vouched_down: o.peers_down.contains(&e.name),
                name: e.name,
                client_url: p.client_urls.first().cloned().unwrap_or_default(),
                reachable: p.reachable,
                reach: p.reach,
                quorum_read: p.quorum_read,
                raft_index: p.raft_index,
                revision: p.revision,
            })
            .collect(),
        local_quorum_read: me.quorum_read,
        local_raft_index: me.raft_index,
        local_revision,
        local_has_data: data.is_dir(),
        container: (local.config.runtime == RuntimeKind::Docker).then(|| g.container.clone()),
        force: o.force,
    })
}

/// The plan in words, one line per step.
pub fn describe(g: &Settings, local: &Local, plan: &RecoveryPlan, snapshot: Option<&Path>) -> Vec<String> {
    let data = local.data_dir().join("member");
    let archive = g.state_dir().join("archive");
    let how = |what: &str| match local.config.runtime {
        RuntimeKind::StaticPod => format!("park the manifest if it is back, edit it ({what}; no other line changes), and move it back"),
        RuntimeKind::Docker => format!(
            "recreate container {c} with {what} and nothing else changed (the old one renamed {c}-hostfix-aside-<run>-<phase>)",
            c = g.container
        ),
    };
    plan.steps
        .iter()
        .map(|s| match s {
            RecoveryStep::VerifySnapshot => format!(
                "check the SHA-256 trailer of {} and read its `snapshot status`",
                snapshot.map(|p| p.display().to_string()).unwrap_or_default()
            ),
            RecoveryStep::Stop => match local.config.runtime {
                RuntimeKind::StaticPod => format!("park the manifest in {} and wait for etcd to exit", g.state_dir().join("parked").display()),
                RuntimeKind::Docker => format!("stop container {} and wait for etcd to exit", g.container),
            },
            RecoveryStep::ArchiveCopy => format!("copy {} to {}/<run>/member (the original stays in use)", data.display(), archive.display()),
            RecoveryStep::Archive => {
                let act = Actions { g, local, wait: std::time::Duration::ZERO };
                match act.data_archive(&data, &archive.join("<run>")) {
                    Ok((dir, None)) => format!("move {} to {}/member by rename (kept, not deleted)", data.display(), dir.display()),
                    Ok((dir, Some(why))) => format!("move {} to {}/member by rename (kept, not deleted; {why})", data.display(), dir.display()),
                    Err(e) => format!("move {} aside by rename ({e})", data.display()),
                }
            }
            RecoveryStep::RestoreSnapshot => format!(
                "restore the snapshot into a fresh dir beside {} as a one-member cluster {}={} with a new cluster token, then move it into place",
                data.display(),
                plan.name,
                plan.peer_url
            ),
            RecoveryStep::StartForced => how("--force-new-cluster added"),
            RecoveryStep::StartSingle => how(&format!("--initial-cluster={}={} and --initial-cluster-state=new", plan.name, plan.peer_url)),
            RecoveryStep::WaitSingle => format!("wait until {} serves quorum reads as the only member", plan.name),
            RecoveryStep::Unforce => how("--force-new-cluster removed, so no restart cuts the others off again"),
            RecoveryStep::RemoveOldContainers => "remove the old containers renamed aside (their volumes stay)".into(),
            RecoveryStep::BounceApiserver => "restart the local kube-apiserver (park its manifest, wait for it to stop, move it back), so that its watch cache starts from the restored data; --no-apiserver-restart skips this".into(),
        })
        .collect()
}

pub fn kind_word(kind: RecoveryKind) -> &'static str {
    match kind {
        RecoveryKind::Rebuild => "rebuild",
        RecoveryKind::Restore => "restore",
    }
}

struct Runner<'a> {
    act: Actions<'a>,
    plan: &'a RecoveryPlan,
    snapshot: Option<PathBuf>,
    tool: Option<Offline>,
    rep: &'a dyn Reporter,
}

impl Runner<'_> {
    fn data_dir(&self) -> PathBuf {
        self.act.local.data_dir()
    }

    fn archive(&self, run: &str) -> PathBuf {
        self.act.g.state_dir().join("archive").join(run)
    }

    async fn run(&self, j: &mut Journal<RecoveryPlan>) -> Result<()> {
        let mut waits = 0;
        for (i, s) in self.plan.steps.iter().enumerate() {
            let key = format!("{i}:{}", s.name());
            // `unforce` runs between two waits; the crash hook names them apart.
            let hook = if *s == RecoveryStep::WaitSingle {
                waits += 1;
                format!("wait-single-{waits}")
            } else {
                s.name().to_string()
            };
            if j.is_done(&key) {
                continue;
            }
            let started = Instant::now();
            self.rep.step_started(i + 1, self.plan.steps.len(), s.name());
            self.step(s, j)
                .instrument(info_span!("step", n = i + 1, step = s.name()))
                .await
                .with_context(|| format!("step {} ({})", i + 1, s.name()))?;
            info!(step = s.name(), elapsed_ms = started.elapsed().as_millis() as u64, "step done");
            crash_point(&hook);
            j.mark_done(&key)?;
            self.rep.step_done(i + 1, self.plan.steps.len(), s.name(), started.elapsed());
        }
        Ok(())
    }

    async fn step(&self, s: &RecoveryStep, j: &mut Journal<RecoveryPlan>) -> Result<()> {
        let run = j.run_id.clone();
        let crash = |phase: &str| crash_point(&format!("recreate-{phase}"));
        match s {
            RecoveryStep::VerifySnapshot => self.verify(j).await,
            RecoveryStep::Stop => self.act.stop().await,
            RecoveryStep::ArchiveCopy => self.archive_copy(&run),
            RecoveryStep::Archive => {
                for line in self.act.archive_data(&self.archive(&run))? {
                    self.rep.note(&line);
                }
                Ok(())
            }
            RecoveryStep::RestoreSnapshot => {
                self.restore(&run).await?;
                // Whether the other masters' data can be newer than the cluster's now: it
                // cannot when the revision was bumped (`print_next` reads this).
                let bumped = self.tool.as_ref().is_some_and(Offline::can_bump_revision);
                j.set("bumped", bumped)?;
                Ok(())
            }
            RecoveryStep::StartForced => {
                let edits = single_member_edits(&self.plan.name, &self.plan.peer_url, true);
                self.act.start_with(&edits, &self.archive(&run), &format!("{run}-forced"), &crash).await
            }
            RecoveryStep::StartSingle => {
                let edits = single_member_edits(&self.plan.name, &self.plan.peer_url, false);
                self.act.start_with(&edits, &self.archive(&run), &format!("{run}-restore"), &crash).await
            }
            RecoveryStep::Unforce => {
                let edits = vec![("force-new-cluster".to_string(), None)];
                self.act.start_with(&edits, &self.archive(&run), &format!("{run}-unforced"), &crash).await
            }
            RecoveryStep::WaitSingle => self.wait_single().await,
            RecoveryStep::BounceApiserver => self.act.bounce_apiserver(self.rep).await,
            RecoveryStep::RemoveOldContainers => {
                let tags: Vec<String> = match self.plan.kind {
                    RecoveryKind::Rebuild => vec![format!("{run}-forced"), format!("{run}-unforced")],
                    RecoveryKind::Restore => vec![format!("{run}-restore")],
                };
                self.act.remove_asides(&tags).await
            }
        }
    }

    async fn verify(&self, j: &mut Journal<RecoveryPlan>) -> Result<()> {
        let snap = self.snapshot.as_ref().context("no snapshot given")?;
        verify_snapshot(snap).map_err(|e| anyhow!("snapshot {} fails its integrity check: {e}", snap.display()))?;
        // A checksum recorded beside the file by `snapshot save` must match too.
        let sum_file = PathBuf::from(format!("{}.sha256", snap.display()));
        if let Ok(text) = std::fs::read_to_string(&sum_file) {
            let want = text.split_whitespace().next().unwrap_or_default().to_string();
            let got = etcdtool::file_sha256(snap)?;
            if want != got {
                bail!("snapshot {} has SHA-256 {got}, but {} records {want}", snap.display(), sum_file.display());
            }
        }
        let tool = self.tool.as_ref().context("no etcd tool")?;
        let status = tool.status(snap).await?;
        self.rep.note(&format!(
            "snapshot {}: revision {}, {} keys, {} bytes (read by {})",
            snap.display(),
            status["revision"],
            status["totalKey"],
            status["totalSize"],
            tool.describe()
        ));
        j.set("snapshot_status", status)?;
        Ok(())
    }

    fn archive_copy(&self, run: &str) -> Result<()> {
        let src = self.data_dir().join("member");
        let dest = self.archive(run).join("member");
        if dest.exists() {
            return Ok(());
        }
        // Copied to a temporary name and renamed when whole, so a killed copy is never
        // mistaken for an archive. A partial copy from a killed run is ours to replace.
        let part = self.archive(run).join("member.partial");
        if part.exists() {
            std::fs::remove_dir_all(&part).with_context(|| part.display().to_string())?;
        }
        copy_dir(&src, &part)?;
        std::fs::rename(&part, &dest)?;
        Ok(())
    }

    async fn restore(&self, run: &str) -> Result<()> {
        let data = self.data_dir();
        // The archive step moved the old member away, so a member here is this run's
        // restore, finished before a kill.
        if data.join("member").exists() {
            return Ok(());
        }
        let snap = self.snapshot.as_ref().context("no snapshot given")?;
        let tool = self.tool.as_ref().context("no etcd tool")?;
        // Restored beside the data dir (same filesystem, so moving it in is a rename). A
        // failed attempt leaves its target behind and etcd's restore refuses an existing
        // dir: that leftover is archived, never reused or deleted.
        let target_name = format!(".hostfix-restore-{run}");
        let target = data.join(&target_name);
        if target.exists() {
            let (dir, _) = self.act.data_archive(&target, &self.archive(run))?;
            hostfix_adapters::relocate::rename(&target, &free_name(&dir, "failed-restore-"))?;
        }
        hostfix_adapters::private::create_dir(&data)?;
        tool.restore(snap, &data, &target_name, &self.plan.name, &self.plan.peer_url, &format!("etcd-hostfix-{run}"), self.rep).await?;
        hostfix_adapters::relocate::rename(&target.join("member"), &data.join("member"))?;
        // Now empty: removing it deletes nothing.
        std::fs::remove_dir(&target)?;
        Ok(())
    }

    async fn wait_single(&self) -> Result<()> {
        let url = self.act.local.local_client_url().context("no client URL")?;
        let conn = self.act.local.connector(self.act.g)?;
        let deadline = Instant::now() + self.act.wait;
        let mut last = String::new();
        while Instant::now() < deadline {
            match conn.connect(&url).await {
                Ok(mut ep) => match (ep.member_list().await, ep.health().await) {
                    (Ok(l), Ok(())) if l.members.len() == 1 => return Ok(()),
                    (Ok(l), Ok(())) => last = format!("{} members listed", l.members.len()),
                    (Err(e), _) | (_, Err(e)) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{} did not serve as a one-member cluster within {:?}: {last}", self.plan.name, self.act.wait)
    }
}

fn copy_dir(src: &Path, dest: &Path) -> Result<()> {
    hostfix_adapters::private::create_dir(dest).with_context(|| dest.display().to_string())?;
    for e in std::fs::read_dir(src).with_context(|| src.display().to_string())? {
        let e = e?;
        let to = dest.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), &to).with_context(|| e.path().display().to_string())?;
        }
    }
    Ok(())
}
