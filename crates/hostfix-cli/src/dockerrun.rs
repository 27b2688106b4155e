//! `etcd-hostfix docker-run`: the `docker run` command that recreates a container exactly
//! as it is (seed 004's run.tpl), optionally with etcd flags edited.

use anyhow::{bail, Result};
use hostfix_adapters::runtime::{DockerRuntime, RuntimeError};
use hostfix_core::container::{check_etcd, edit_spec_flags, render_docker_run, run_spec};
use hostfix_core::exit;

use crate::Global;

#[derive(Debug, Clone, clap::Args)]
pub struct DockerRunOpts {
    /// The container [default: --container, `etcd`].
    pub container: Option<String>,
    /// Set an etcd flag in the printed command, e.g. `initial-cluster-state=existing`.
    /// Repeatable.
    #[arg(long, value_name = "NAME=VALUE", allow_hyphen_values = true)]
    pub set_flag: Vec<String>,
    /// Remove an etcd flag from the printed command, e.g. `force-new-cluster`. Repeatable.
    #[arg(long, value_name = "NAME", allow_hyphen_values = true)]
    pub unset_flag: Vec<String>,
}

fn flag_name(s: &str) -> &str {
    s.trim_start_matches('-')
}

pub async fn run(g: &Global, o: &DockerRunOpts) -> Result<i32> {
    let mut edits = vec![];
    for s in &o.set_flag {
        let Some((n, v)) = s.split_once('=') else { bail!("--set-flag {s}: expected NAME=VALUE") };
        edits.push((flag_name(n).to_string(), Some(v.to_string())));
    }
    edits.extend(o.unset_flag.iter().map(|n| (flag_name(n).to_string(), None)));
    let name = o.container.as_deref().unwrap_or(&g.container);
    let d = DockerRuntime::connect(g.docker_host.as_deref()).await?;
    let (c, image) = d.inspect_json(name).await?;
    check_etcd(&c)?;
    let mut spec = run_spec(&c, &image)?;
    if !edits.is_empty() {
        let image_ep: Vec<String> =
            serde_json::from_value(image.pointer("/Config/Entrypoint").cloned().unwrap_or_default()).unwrap_or_default();
        edit_spec_flags(&mut spec, &image_ep, &edits);
    }
    match d.check_image(&c).await {
        Ok(()) => {}
        Err(e @ RuntimeError::ImageMoved { .. }) => spec.notes.push(e.to_string()),
        Err(e) => return Err(e.into()),
    }
    print!("{}", render_docker_run(&spec)?);
    Ok(exit::OK)
}
