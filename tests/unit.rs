//! The systemd unit passes `systemd-analyze verify` (systemd 252 here, though not PID 1).
//! The tool only warns on unknown keys, so its stderr is what is checked, and a unit with a
//! bogus key proves that the check can fail.

mod common;

use std::path::Path;
use std::process::Command;

fn verify(dir: &Path, name: &str, text: &str) -> (bool, String) {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    let o = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&p).output().expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    // Only what concerns this unit: the verifier also loads the units it names.
    // Nothing at all on stderr: the tool only warns on unknown keys.
    (o.status.success() && stderr.trim().is_empty(), stderr)
}

#[test]
fn the_unit_verifies_cleanly() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("systemd-analyze is not installed here; skipping");
        return;
    }
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/etcd-hostfix.service")).unwrap();
    for line in ["Type=notify", "WatchdogSec=", "Restart=always", "ExecStart=/usr/bin/etcd-hostfix daemon", "ProtectSystem=strict"] {
        assert!(text.contains(line), "the unit lacks {line}");
    }
    // The verifier wants the ExecStart binary to exist: point it at the one just built.
    let text = text.replace("/usr/bin/etcd-hostfix", common::BIN);
    let d = tempfile::tempdir().unwrap();
    let (ok, why) = verify(d.path(), "etcd-hostfix.service", &text);
    assert!(ok, "systemd-analyze verify:\n{why}");
    let (ok, why) = verify(d.path(), "etcd-hostfix-bad.service", &text.replace("Restart=always", "Restart=always\nRestartEvery=1s"));
    assert!(!ok && why.contains("RestartEvery"), "the check must catch an unknown key: {why}");
}
