//! The bad-input corpus at the core: odd and hostile manifests, flags and daemon configs.
//! Each case either works (the flags read right, and a rejoin's edit is minimal and parses
//! back to exactly the intended flags) or fails with an error that names what is wrong.
//! The CLI half (file, exit code, nothing changed on disk) is tests/bad_input.rs.

use hostfix_core::flags::parse_initial_cluster;
use hostfix_core::manifest::{edit_manifest_flags, Pod};

const BASE: &str = include_str!("../testdata/kubeadm-etcd.yaml");

fn edits() -> Vec<(String, Option<String>)> {
    vec![
        ("initial-cluster-state".into(), Some("existing".into())),
        ("initial-cluster".into(), Some("m1=https://10.0.0.11:2380,m3=https://10.0.0.13:2380".into())),
    ]
}

/// It works: name, data dir and peers read right; the edit changes only flag lines (one
/// added, one replaced), and reading it back gives exactly the intended flags.
fn works(case: &str, text: &str) {
    let pod = Pod::parse(text).unwrap_or_else(|e| panic!("{case}: {e}"));
    let flags = pod.etcd_container().unwrap_or_else(|e| panic!("{case}: {e}")).flags();
    assert_eq!(flags.name(), "m1", "{case}");
    assert_eq!(flags.data_dir(), "/var/lib/etcd", "{case}");
    assert_eq!(flags.initial_cluster().len(), 3, "{case}");
    let out = edit_manifest_flags(text, &edits()).unwrap_or_else(|e| panic!("{case}: {e}"));
    let after = Pod::parse(&out).unwrap().etcd_container().unwrap().flags();
    assert_eq!(after.get("initial-cluster-state"), Some("existing"), "{case}");
    assert_eq!(after.initial_cluster().len(), 2, "{case}");
    for f in flags.iter().filter(|f| f.name != "initial-cluster" && f.name != "initial-cluster-state") {
        assert_eq!(after.flag(&f.name).map(|x| &x.value), Some(&f.value), "{case}: --{} changed", f.name);
    }
    let old: Vec<&str> = text.lines().collect();
    let new: Vec<&str> = out.lines().collect();
    let removed = old.iter().filter(|l| !new.contains(l)).count();
    let added = new.iter().filter(|l| !old.contains(l)).count();
    assert!(removed <= 2 && added <= 3, "{case}: not a minimal edit (-{removed} +{added}):\n{out}");
}

fn fails(case: &str, text: &str, needles: &[&str]) {
    let r = Pod::parse(text).and_then(|p| p.etcd_container().map(|c| c.flags())).and_then(|_| edit_manifest_flags(text, &edits()));
    let e = r.err().unwrap_or_else(|| panic!("{case}: accepted")).to_string();
    for n in needles {
        assert!(e.contains(n), "{case}: error lacks {n:?}: {e}");
    }
}

#[test]
fn crlf_line_endings_work_and_stay_crlf() {
    let text = BASE.replace('\n', "\r\n");
    works("crlf", &text);
    let out = edit_manifest_flags(&text, &edits()).unwrap();
    assert!(!out.replace("\r\n", "").contains('\n'), "a bare LF crept in");
}

#[test]
fn a_byte_order_mark_works() {
    works("bom", &format!("\u{feff}{BASE}"));
}

#[test]
fn tabs_for_indentation_are_an_error_with_a_line() {
    let text = BASE.replace("    - --name=m1", "\t- --name=m1");
    fails("tab", &text, &["malformed manifest", "line"]);
}

#[test]
fn a_tab_inside_a_value_works() {
    let text = BASE.replace("  name: etcd\n  namespace", "  name: \"etcd\\t\"\n  namespace");
    works("tab in value", &text);
}

#[test]
fn duplicate_flags_are_refused_by_name() {
    let text = BASE.replace("    - --name=m1\n", "    - --name=m1\n    - --initial-cluster=m1=https://10.0.0.11:2380\n");
    fails("duplicate", &text, &["--initial-cluster appears 2 times"]);
}

#[test]
fn flags_split_between_command_and_args_work() {
    let text = BASE.replace(
        "    - --initial-advertise-peer-urls=https://10.0.0.11:2380\n",
        "    - --initial-advertise-peer-urls=https://10.0.0.11:2380\n    args:\n",
    );
    // Everything after the split is under args now.
    let pod = Pod::parse(&text).unwrap();
    assert!(!pod.spec.containers[0].args.is_empty());
    works("command+args", &text);
}

#[test]
fn a_flag_and_its_value_as_two_items_work() {
    let text = BASE.replace("    - --name=m1\n", "    - --name\n    - m1\n");
    works("split value", &text);
}

#[test]
fn several_containers_work_on_the_etcd_one() {
    let sidecar = "  - name: backup\n    image: busybox\n    command:\n    - /bin/sh\n    - -c\n    - --name=not-etcd\n";
    let text = BASE.replacen("  containers:\n", &format!("  containers:\n{sidecar}"), 1);
    works("sidecar first", &text);
}

#[test]
fn no_etcd_container_names_what_is_there() {
    let text = BASE.replace("    - etcd\n", "    - kube-apiserver\n").replace("    name: etcd\n", "    name: kube-apiserver\n");
    fails("no etcd", &text, &["no etcd container", "etcd"]);
}

#[test]
fn not_utf8_is_an_error_not_a_panic() {
    // The CLI reads bytes; a manifest that is not UTF-8 cannot reach the parser as text.
    let bytes = [BASE.as_bytes(), b"\xff\xfe"].concat();
    assert!(String::from_utf8(bytes).is_err());
}

#[test]
fn anchors_and_aliases_work() {
    let text = BASE
        .replace("    - --trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt\n", "    - &ca --trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt\n")
        .replace("  labels:\n", "  labels: &labels\n");
    works("anchors", &text);
}

#[test]
fn flow_style_command_lists_are_read() {
    let text = BASE.replace(
        "  - command:\n    - etcd\n",
        "  - command: [etcd, --experimental-peer-skip-client-san-verification=false]\n    args:\n",
    );
    let pod = Pod::parse(&text).unwrap();
    let flags = pod.etcd_container().unwrap().flags();
    assert_eq!(flags.name(), "m1");
    assert_eq!(flags.get("experimental-peer-skip-client-san-verification"), Some("false"));
}

#[test]
fn a_huge_manifest_parses_or_fails_without_panic() {
    let filler: String = (0..200_000).map(|i| format!("    k{i}: v\n")).collect();
    let text = BASE.replacen("  labels:\n", &format!("  labels:\n{filler}"), 1);
    let _ = Pod::parse(&text);
}

#[test]
fn malformed_initial_cluster_entries_are_skipped_not_guessed() {
    let entries = parse_initial_cluster("m1=https://10.0.0.11:2380,garbage,=https://x:2380,m3=");
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert!(names.contains(&"m1"), "{names:?}");
    assert!(!names.contains(&"garbage"), "{names:?}");
}

#[test]
fn ipv6_peer_urls_parse() {
    let entries = parse_initial_cluster("m1=https://[fd00::11]:2380,m2=https://[fd00::12]:2380");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].peer_url, "https://[fd00::12]:2380");
}

#[test]
fn duplicate_names_in_initial_cluster_are_kept_apart() {
    // etcd allows one name with several peer URLs: two entries, one name.
    let entries = parse_initial_cluster("m1=https://10.0.0.11:2380,m1=https://10.0.0.21:2380");
    assert_eq!(entries.len(), 2);
}

mod config {
    use hostfix_core::config::parse;

    fn fails(text: &str, needles: &[&str]) {
        let e = parse("/etc/etcd-hostfix/config.yaml", text).expect_err(text).to_string();
        for n in needles {
            assert!(e.contains(n), "{text:?}: error lacks {n:?}: {e}");
        }
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        fails("probe_interval: 1s\nprobe_intervall: 2s\n", &["/etc/etcd-hostfix/config.yaml:2:", "probe_intervall", "expected one of"]);
    }

    #[test]
    fn wrong_types_name_the_key() {
        fails("probe_interval: [1, 2]\n", &["probe_interval"]);
        fails("max_repairs: lots\n", &["max_repairs"]);
    }

    #[test]
    fn negative_durations_are_refused() {
        fails("probe_interval: -5s\n", &["probe_interval", "-5s"]);
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert!(parse("c.yaml", "").is_ok());
        assert!(parse("c.yaml", "# only a comment\n").is_ok());
    }
}

mod inspect {
    use hostfix_core::container::{argv, check_etcd, render_docker_run, run_spec};
    use serde_json::json;

    fn base() -> serde_json::Value {
        json!({
            "Id": "0123456789abcdef0123456789abcdef",
            "Name": "/etcd",
            "Config": {
                "Image": "rancher/mirrored-coreos-etcd:v3.5.1",
                "Entrypoint": ["/usr/local/bin/etcd"],
                "Cmd": ["--name=etcd-m1", "--data-dir=/var/lib/rancher/etcd"],
                "Env": ["ETCDCTL_API=3"],
                "Labels": {"io.rancher.rke.container.name": "etcd"}
            },
            "HostConfig": {"NetworkMode": "host", "Binds": ["/var/lib/etcd:/var/lib/rancher/etcd:z"]}
        })
    }

    fn image() -> serde_json::Value {
        json!({"Config": {"Entrypoint": null, "Cmd": ["/bin/sh"], "Env": []}})
    }

    fn rendered(v: &serde_json::Value) -> String {
        render_docker_run(&run_spec(v, &image()).unwrap()).unwrap()
    }

    #[test]
    fn a_wrapper_entrypoint_keeps_etcds_flags() {
        let mut v = base();
        v["Config"]["Entrypoint"] = json!(["/bin/sh", "-c", "exec /usr/local/bin/etcd \"$@\"", "--"]);
        let a = argv(&v);
        assert!(a.iter().any(|x| x == "--name=etcd-m1"), "{a:?}");
        let words = shlex::split(&rendered(&v).replace("\\\n", " ")).unwrap();
        assert!(words.iter().any(|w| w == "exec /usr/local/bin/etcd \"$@\""), "{words:?}");
    }

    #[test]
    fn null_and_missing_fields_are_empty_not_errors() {
        let mut v = base();
        v["Config"]["Env"] = serde_json::Value::Null;
        v["Config"]["Labels"] = serde_json::Value::Null;
        v["HostConfig"].as_object_mut().unwrap().remove("Binds");
        assert!(run_spec(&v, &image()).is_ok());
        assert!(check_etcd(&v).is_ok());
    }

    #[test]
    fn a_container_without_etcd_is_named() {
        let mut v = base();
        v["Config"]["Entrypoint"] = json!(["/bin/sh"]);
        v["Config"]["Cmd"] = json!(["-c", "sleep 1"]);
        let e = check_etcd(&v).unwrap_err().to_string();
        assert!(e.contains("etcd") && e.contains("does not run etcd"), "{e}");
    }

    #[test]
    fn a_very_large_env_renders() {
        let mut v = base();
        v["Config"]["Env"] = json!((0..5000).map(|i| format!("K{i}={}", "x".repeat(100))).collect::<Vec<_>>());
        assert!(rendered(&v).len() > 500_000);
    }

    #[test]
    fn labels_with_newlines_are_quoted_and_survive_a_shell() {
        let mut v = base();
        v["Config"]["Labels"]["note"] = json!("line one\nline 'two' $HOME");
        let cmd = rendered(&v);
        let words = shlex::split(&cmd.replace("\\\n", " ")).expect("shell-splittable");
        assert!(words.iter().any(|w| w.contains("note=line one\nline 'two' $HOME")), "{cmd}");
    }
}
