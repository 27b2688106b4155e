//! Property tests for the two round trips the playbooks rely on:
//! - a manifest edit, parsed back, gives exactly the intended flags and nothing else;
//! - a rendered `docker run`, split again by a shell's rules, gives the container's argv.

use hostfix_core::container::{render_docker_run, run_spec};
use hostfix_core::manifest::{edit_manifest_flags, ManifestError, Pod};
use proptest::prelude::*;

const BASE: &str = include_str!("../testdata/kubeadm-etcd.yaml");

fn flag_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("initial-cluster-state".to_string()),
        Just("initial-cluster".to_string()),
        Just("force-new-cluster".to_string()),
        Just("name".to_string()),
        Just("snapshot-count".to_string()),
        "[a-z][a-z-]{0,20}[a-z]".prop_map(|s| s),
    ]
}

/// Values as etcd flags carry them: URLs, lists, numbers, names.
fn plain_value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9=:/.,_-]{1,60}"
}

/// Anything printable on one line, YAML's special characters included.
fn any_value() -> impl Strategy<Value = String> {
    "[ -~]{0,40}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn plain_edits_apply_exactly(edits in prop::collection::btree_map(flag_name(), prop::option::of(plain_value()), 1..4)) {
        let edits: Vec<(String, Option<String>)> = edits.into_iter().collect();
        let before = Pod::parse(BASE).unwrap().etcd_container().unwrap().flags();
        let out = edit_manifest_flags(BASE, &edits).expect("plain values always apply");
        let after = Pod::parse(&out).unwrap().etcd_container().unwrap().flags();
        for (n, v) in &edits {
            prop_assert_eq!(after.get(n).map(str::to_string), v.clone(), "--{}", n);
        }
        for f in before.iter().filter(|f| !edits.iter().any(|e| e.0 == f.name)) {
            prop_assert_eq!(after.flag(&f.name).map(|x| x.value.clone()), Some(f.value.clone()));
        }
        for f in after.iter() {
            prop_assert!(before.flag(&f.name).is_some() || edits.iter().any(|e| e.0 == f.name), "new flag --{}", f.name);
        }
        // Minimal: every line that changed is a flag line.
        let old: Vec<&str> = BASE.lines().collect();
        for l in out.lines().filter(|l| !old.contains(l)) {
            prop_assert!(l.trim_start().starts_with("- --") || l.trim_start().starts_with("- \"--"), "changed a non-flag line: {:?}", l);
        }
    }

    #[test]
    fn any_edit_applies_exactly_or_is_refused(name in flag_name(), value in any_value()) {
        let edits = vec![(name.clone(), Some(value.clone()))];
        match edit_manifest_flags(BASE, &edits) {
            Ok(out) => {
                let after = Pod::parse(&out).unwrap().etcd_container().unwrap().flags();
                prop_assert_eq!(after.get(&name), Some(value.as_str()));
            }
            Err(ManifestError::EditNotVerified { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error: {}", e),
        }
    }

    #[test]
    fn docker_run_splits_back_to_the_argv(cmd in prop::collection::vec("[^\u{0}]{0,30}", 0..8), env in prop::collection::vec("[A-Z]{1,5}=[^\u{0}]{0,20}", 0..4)) {
        let c = serde_json::json!({
            "Id": "0123456789abcdef0123456789abcdef",
            "Name": "/etcd",
            "Config": {"Image": "etcd:x", "Entrypoint": ["/usr/local/bin/etcd"], "Cmd": cmd, "Env": env},
            "HostConfig": {"NetworkMode": "host"}
        });
        let spec = run_spec(&c, &serde_json::json!({"Config": {}})).unwrap();
        let out = render_docker_run(&spec).unwrap();
        let body: String = out[if out.starts_with("docker run") { 0 } else { out.find("\ndocker run").expect("a docker run line") + 1 }..].replace(" \\\n", " ");
        let words = shlex::split(&body).expect("splittable");
        // The argv is the entrypoint (after the image, or as --entrypoint) and the command.
        let image = words.iter().position(|w| w == "etcd:x").expect("the image");
        let mut got: Vec<String> = words.iter().position(|w| w == "--entrypoint").filter(|i| *i < image).map(|i| vec![words[i + 1].clone()]).unwrap_or_default();
        got.extend(words[image + 1..].iter().cloned());
        let mut want = vec!["/usr/local/bin/etcd".to_string()];
        want.extend(cmd.iter().cloned());
        prop_assert_eq!(got, want, "{}", out);
        for e in &env {
            prop_assert!(words.contains(e), "env {:?} lost", e);
        }
    }
}
