//! Replays every saved fuzz input (fuzz/corpus/<target>/) through the same bodies the fuzz
//! targets run (`hostfix_core::fuzzing`), so a regression shows in `cargo test` without a
//! fuzzer.

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let data = std::fs::read(e.path()).unwrap();
        let r = std::panic::catch_unwind(|| body(&data));
        assert!(r.is_ok(), "{target}: {} panics", e.path().display());
        n += 1;
    }
    assert!(n > 0, "no corpus in {}", dir.display());
}

#[test]
fn manifest_corpus() {
    replay("manifest", hostfix_core::fuzzing::manifest);
}

#[test]
fn container_corpus() {
    replay("container", hostfix_core::fuzzing::container);
}

#[test]
fn logs_corpus() {
    replay("logs", hostfix_core::fuzzing::logs);
}

#[test]
fn config_corpus() {
    replay("config", hostfix_core::fuzzing::config);
}
