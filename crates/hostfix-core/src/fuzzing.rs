//! The bodies of the fuzz targets (`fuzz/`), shared with the corpus replay test so that a
//! plain `cargo test` runs every saved input without a fuzzer. Each body feeds arbitrary
//! bytes to a parser or editor and asserts what must hold whatever the input: no panic, and
//! the round trips the rest of the code relies on.

use crate::manifest::{edit_manifest_flags, Pod};

/// The manifest model and its minimal-diff editor: an edit that succeeds reads back as
/// exactly the intended flags, and changes nothing else (the editor verifies that itself;
/// here it must never panic and never return an unverified text).
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(pod) = Pod::parse(text) else { return };
    let Ok(c) = pod.etcd_container() else { return };
    let before = c.flags();
    let _ = pod.binds();
    let edits = vec![("initial-cluster-state".to_string(), Some("existing".to_string())), ("force-new-cluster".to_string(), None)];
    if let Ok(out) = edit_manifest_flags(text, &edits) {
        let after = Pod::parse(&out).expect("an edit that verified parses").etcd_container().expect("still etcd").flags();
        assert_eq!(after.get("initial-cluster-state"), Some("existing"));
        assert!(after.flag("force-new-cluster").is_none());
        for f in before.iter().filter(|f| !edits.iter().any(|e| e.0 == f.name)) {
            assert_eq!(after.flag(&f.name).map(|x| &x.value), Some(&f.value), "--{} changed", f.name);
        }
    }
}

/// The container spec from inspect JSON and its `docker run` rendering: whatever renders
/// splits back, by a shell's rules, into the container's own argv at the end.
pub fn container(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let image = serde_json::json!({"Config": {}});
    let Ok(spec) = crate::container::run_spec(&v, &image) else { return };
    let Ok(out) = crate::container::render_docker_run(&spec) else { return };
    // Notes come first as `# ` lines, and may mention docker run themselves.
    let body: String = out[if out.starts_with("docker run") { 0 } else { out.find("\ndocker run").expect("a docker run line") + 1 }..].replace(" \\\n", " ");
    let words = shlex::split(&body).expect("rendered docker run is shell-splittable");
    assert!(words.len() >= 2 && words[0] == "docker" && words[1] == "run", "{out}");
    assert!(words.ends_with(&spec.cmd), "argv lost: {:?} vs {:?}", words, spec.cmd);
}

/// Log normalisation and classification: any text, any run split, never a panic, and the
/// evidence stays within its caps.
pub fn logs(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = crate::logs::parse_text(&text);
    let _ = crate::logs::runs(&lines);
    let run = crate::logs::newest_run(&lines);
    if let Some((_, ev)) = crate::diagnose::classify_log(run) {
        assert!(ev.len() <= crate::diagnose::MAX_EVIDENCE);
    }
}

/// The daemon's config: any text is a config or an error naming the file; never a panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match crate::config::parse("fuzz.yaml", text) {
        Ok(c) => {
            let _ = c.backup_max_age();
        }
        Err(e) => assert!(e.to_string().contains("fuzz.yaml"), "{e}"),
    }
}
