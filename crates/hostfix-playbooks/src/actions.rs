//! What the playbooks do to the local member, whichever runtime runs it: stop it, restart it
//! with edited flags, clean up after a Docker recreate. Shared by `rejoin`, `rebuild` and
//! `restore`, so each playbook's runner only sequences steps.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hostfix_adapters::relocate;
use hostfix_adapters::runtime::{DockerRuntime, RuntimeError, RuntimeKind, ASIDE_INFIX};
use hostfix_core::manifest::{edit_manifest_flags, FlagEdit};

use crate::local::Local;
use crate::{Reporter, Settings};

pub struct Actions<'a> {
    pub g: &'a Settings,
    pub local: &'a Local,
    pub wait: Duration,
}

impl Actions<'_> {
    pub fn docker(&self) -> &DockerRuntime {
        self.local.docker.as_ref().expect("the Docker runtime was discovered")
    }

    /// The name a recreate gives the old container: `<name>-hostfix-aside-<tag>`.
    pub fn aside(&self, tag: &str) -> String {
        format!("{}{ASIDE_INFIX}{tag}", self.g.container)
    }

    /// Park the manifest or stop the container, then wait until etcd has exited: no etcd
    /// process for this client URL in `/proc`, and the port closed.
    pub async fn stop(&self) -> Result<()> {
        match self.local.config.runtime {
            RuntimeKind::StaticPod => self.local.static_pod.as_ref().expect("static pod").park()?,
            RuntimeKind::Docker => {
                let d = self.docker();
                match d.stop(&self.g.container).await {
                    Ok(()) => {}
                    // Killed mid-recreate: the old container is aside and already stopped.
                    Err(RuntimeError::NoContainer { .. }) if !d.asides(&self.g.container).await?.is_empty() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let url = self.local.local_client_url().unwrap_or_default();
        let addr = url.split_once("://").map(|x| x.1.to_string()).unwrap_or_default();
        wait_for("etcd to exit", self.wait, || {
            hostfix_adapters::process::etcd_pids(&url).is_empty()
                && std::net::TcpStream::connect_timeout(
                    &addr.parse().unwrap_or_else(|_| "127.0.0.1:1".parse().unwrap()),
                    Duration::from_millis(100),
                )
                .is_err()
        })
        .await
    }

    /// Apply flag edits to the parked manifest, minimally and verified. The manifest as it
    /// was before the first edit is kept in `archive` as `etcd.yaml.before`.
    pub fn edit_parked(&self, edits: &[FlagEdit], archive: &Path) -> Result<()> {
        let sp = self.local.static_pod.as_ref().expect("static pod");
        let parked = sp.parked_path();
        let text = std::fs::read_to_string(&parked).with_context(|| parked.display().to_string())?;
        let orig = archive.join("etcd.yaml.before");
        if !orig.exists() {
            hostfix_adapters::private::create_dir(archive)?;
            hostfix_adapters::private::write(&orig, &text)?;
        }
        let new = edit_manifest_flags(&text, edits).with_context(|| format!("editing {}", parked.display()))?;
        if new != text {
            hostfix_adapters::journal::write_atomic(&parked, new.as_bytes())?;
        }
        Ok(())
    }

    /// Keep `docker inspect` and the equivalent `docker run` of the container as it was
    /// (seed 004 saved the inspect first), once per run.
    pub async fn save_container(&self, archive: &Path, aside_tag: &str) -> Result<()> {
        let saved = archive.join("container.inspect.json");
        if saved.exists() {
            return Ok(());
        }
        let d = self.docker();
        let source = match d.inspect_opt(&self.g.container).await? {
            Some(_) => self.g.container.clone(),
            None => self.aside(aside_tag),
        };
        let (c, image) = d.inspect_json(&source).await?;
        hostfix_core::container::check_etcd(&c)?;
        d.check_image(&c).await?;
        hostfix_adapters::private::create_dir(archive)?;
        let run = hostfix_core::container::render_docker_run(&hostfix_core::container::run_spec(&c, &image)?)?;
        hostfix_adapters::private::write(archive.join("docker-run.before.sh"), run)?;
        hostfix_adapters::journal::write_atomic(&saved, serde_json::to_string_pretty(&c)?.as_bytes())?;
        Ok(())
    }

    /// Start the member with `edits` applied. A running static pod is parked first (and
    /// waited for); a container is recreated, its old self renamed `aside(aside_tag)`.
    /// Idempotent: rerun after a kill, it finishes what is left.
    pub async fn start_with(&self, edits: &[FlagEdit], archive: &Path, aside_tag: &str, crash: &(dyn Fn(&str) + Sync)) -> Result<()> {
        match self.local.config.runtime {
            RuntimeKind::StaticPod => {
                let sp = self.local.static_pod.as_ref().expect("static pod");
                if !sp.parked_path().exists() {
                    // Running already: with these flags (a rerun after a kill), leave it be.
                    if sp.load().map(|c| satisfied(&c.flags, edits)).unwrap_or(false) {
                        return Ok(());
                    }
                    self.stop().await?;
                }
                self.edit_parked(edits, archive)?;
                Ok(sp.unpark()?)
            }
            RuntimeKind::Docker => {
                self.save_container(archive, aside_tag).await?;
                Ok(self.docker().recreate(&self.g.container, &self.aside(aside_tag), edits, crash).await?)
            }
        }
    }

    /// The data this member has: `<data dir>/member`, and a separate `--wal-dir`.
    pub fn data_paths(&self) -> Vec<PathBuf> {
        let mut v = vec![self.local.data_dir().join("member")];
        if let Some(wal) = self.local.config.flags.get("wal-dir") {
            v.push(self.local.config.host_path(&self.local.root, wal));
        }
        v
    }

    /// Where `data` is archived by run `run` whose archive dir is `dest`
    /// (`<state>/archive/<run>`): there when a rename reaches it, else beside the data on
    /// its own mount (`relocate::archive_place`), with why.
    pub fn data_archive(&self, data: &Path, dest: &Path) -> Result<(PathBuf, Option<String>)> {
        let run = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(relocate::archive_place(data, dest, &run)?)
    }

    /// Move `<data dir>/member`, and a separate `--wal-dir`, aside for the run whose archive
    /// dir is `dest`: by rename only, each on its own mount (see `hostfix_adapters::relocate`),
    /// never copied, never deleted, never onto something already archived. Done already is
    /// fine. Returns a line per move, for the reporter.
    pub fn archive_data(&self, dest: &Path) -> Result<Vec<String>> {
        let mut said = vec![];
        for data in self.data_paths() {
            let (dir, why) = self.data_archive(&data, dest)?;
            if let Some(to) = relocate::archive_dir(&data, &dir)? {
                said.push(match why {
                    None => format!("archived {} to {}", data.display(), to.display()),
                    Some(why) => format!("archived {} to {} ({why})", data.display(), to.display()),
                });
            }
        }
        Ok(said)
    }

    /// Remove the containers recreates renamed aside, once the new one runs. Volumes stay.
    pub async fn remove_asides(&self, tags: &[String]) -> Result<()> {
        let d = self.docker();
        if !d.state(&self.g.container).await?.running {
            bail!("container {} is not running; keeping the old containers ({}) for comparison", self.g.container, tags.iter().map(|t| self.aside(t)).collect::<Vec<_>>().join(", "));
        }
        for t in tags {
            d.remove(&self.aside(t)).await?;
        }
        Ok(())
    }
}

impl Actions<'_> {
    /// Whether this master has a kube-apiserver static pod to bounce.
    pub fn has_apiserver(&self) -> bool {
        self.local.static_pod.as_ref().is_some_and(|sp| hostfix_adapters::runtime::ApiserverPod::beside(sp).locate().is_some())
    }

    /// Park the local kube-apiserver's manifest, wait until its process is gone, move the
    /// manifest back and wait until it runs again: its watch cache is then rebuilt from
    /// what etcd serves now. Idempotent: a rerun after a crash finds the manifest parked.
    pub async fn bounce_apiserver(&self, rep: &dyn Reporter) -> Result<()> {
        let Some(sp) = self.local.static_pod.as_ref() else { return Ok(()) };
        let a = hostfix_adapters::runtime::ApiserverPod::beside(sp);
        if a.locate().is_none() {
            rep.note(&format!("no kube-apiserver manifest at {}; nothing to bounce", a.parkable.manifest.display()));
            return Ok(());
        }
        let arg = a.etcd_servers_arg()?;
        a.park()?;
        // Tests kill a run here, with the manifest parked: the rerun must find it there.
        crate::crash_point("bounce-apiserver-parked");
        match &arg {
            Some(arg) => {
                wait_for("the local kube-apiserver to stop", self.wait, || hostfix_adapters::process::apiserver_pids(arg).is_empty()).await?
            }
            None => {
                // Without --etcd-servers its process cannot be told from another's; give
                // the kubelet the time a real one takes to notice and stop it.
                rep.note("the kube-apiserver manifest has no --etcd-servers; waiting 20 s for the kubelet to stop it");
                tokio::time::sleep(Duration::from_secs(20)).await;
            }
        }
        a.unpark()?;
        if let Some(arg) = &arg {
            wait_for("the local kube-apiserver to start again", self.wait, || !hostfix_adapters::process::apiserver_pids(arg).is_empty()).await?;
        }
        rep.note(&format!("kube-apiserver restarted from {}: its watch cache now starts from the restored data", a.parkable.manifest.display()));
        Ok(())
    }
}

pub use hostfix_adapters::relocate::free_name;

fn satisfied(flags: &hostfix_core::EtcdFlags, edits: &[FlagEdit]) -> bool {
    edits.iter().all(|(n, v)| match v {
        None => flags.flag(n).is_none(),
        Some(v) => flags.get(n) == Some(v.as_str()),
    })
}

pub async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}
