//! Shell completion and man pages, generated from the clap definitions themselves, so they
//! never drift from `--help`: `etcd-hostfix completions SHELL` and the hidden
//! `etcd-hostfix man DIR` that packaging runs.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use hostfix_core::exit;

use crate::Cli;

pub fn completions(shell: clap_complete::Shell) -> Result<i32> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "etcd-hostfix", &mut std::io::stdout());
    Ok(exit::OK)
}

/// `etcd-hostfix.1`, and `etcd-hostfix-<sub>.1` (`etcd-hostfix-snapshot-save.1`, ...) for
/// every subcommand that is not hidden.
pub fn man(dir: &Path) -> Result<i32> {
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = vec![];
    page(&cmd, "etcd-hostfix", "etcd-hostfix", dir, &mut written)?;
    for p in &written {
        println!("{}", p.display());
    }
    Ok(exit::OK)
}

/// `name` is the page's (`etcd-hostfix-snapshot-save`), `words` what a person types
/// (`etcd-hostfix snapshot save`).
fn page(cmd: &clap::Command, name: &str, words: &str, dir: &Path, written: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let named = cmd.clone().name(name.to_string()).bin_name(words.to_string());
    let path = dir.join(format!("{name}.1"));
    let mut buf = vec![];
    clap_mangen::Man::new(named).render(&mut buf)?;
    std::fs::write(&path, buf).with_context(|| path.display().to_string())?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        page(sub, &format!("{name}-{}", sub.get_name()), &format!("{words} {}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
