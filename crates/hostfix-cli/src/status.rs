//! `etcd-hostfix status`: the report is gathered by the playbooks library; this renders it.

use anyhow::Result;
use tracing::Instrument;

use crate::{Global, Output};

pub async fn run(g: &Global) -> Result<i32> {
    let report = hostfix_playbooks::probe::gather(&g.settings())
        .instrument(tracing::info_span!("status", host_root = %g.host_root.display()))
        .await?;
    match g.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => print!("{}", report.render_table()),
    }
    Ok(report.exit_code())
}
