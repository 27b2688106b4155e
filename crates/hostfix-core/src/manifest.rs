//! The kubeadm static-pod manifest for etcd: read it, map container paths to host paths
//! through its `hostPath` volumes, and edit its flags with a minimal textual diff.
//!
//! Editing is textual on purpose: re-serialising YAML would reorder keys, drop comments and
//! rewrite quoting, and an operator diffing the manifest at 3 a.m. must see only the flag
//! lines that had to change. Every edit is verified by parsing the result back.

use serde::Deserialize;
use serde_json::Value;

use crate::flags::{EtcdFlags, PeerEntry};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("malformed manifest: {message}")]
    Malformed { message: String },
    #[error("manifest has no etcd container (containers: {found:?})")]
    NoEtcdContainer { found: Vec<String> },
    #[error("flag --{flag} appears {count} times in the manifest; refusing to guess which to edit")]
    AmbiguousFlag { flag: String, count: usize },
    #[error("manifest edit did not verify when parsed back: {reason}")]
    EditNotVerified { reason: String },
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Pod {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: PodSpec,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Metadata {
    pub name: String,
    pub namespace: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    pub containers: Vec<Container>,
    pub volumes: Vec<Volume>,
    pub host_network: bool,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub volume_mounts: Vec<VolumeMount>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Volume {
    pub name: String,
    pub host_path: Option<HostPath>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct HostPath {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// A container path and the host path (as written in the manifest, before any host root)
/// that backs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: String,
    pub container: String,
    pub read_only: bool,
}

impl Pod {
    pub fn parse(text: &str) -> Result<Pod, ManifestError> {
        let pod: Pod = serde_saphyr::from_str(text)
            .map_err(|e| ManifestError::Malformed { message: e.to_string() })?;
        if pod.kind != "Pod" {
            return Err(ManifestError::Malformed {
                message: format!("expected kind: Pod, found kind: {:?}", pod.kind),
            });
        }
        Ok(pod)
    }

    /// The etcd container: named `etcd`, else the one whose command runs an etcd binary.
    pub fn etcd_container(&self) -> Result<&Container, ManifestError> {
        let runs_etcd = |c: &&Container| {
            c.command.first().or(c.args.first()).map(|p| p.rsplit('/').next() == Some("etcd")).unwrap_or(false)
        };
        self.spec
            .containers
            .iter()
            .find(|c| c.name == "etcd")
            .or_else(|| self.spec.containers.iter().find(runs_etcd))
            .ok_or_else(|| ManifestError::NoEtcdContainer {
                found: self.spec.containers.iter().map(|c| c.name.clone()).collect(),
            })
    }

    /// `hostPath` binds of the etcd container, longest container path first so that lookups
    /// pick the most specific mount.
    pub fn binds(&self) -> Result<Vec<Bind>, ManifestError> {
        let c = self.etcd_container()?;
        let mut binds: Vec<Bind> = c
            .volume_mounts
            .iter()
            .filter_map(|m| {
                let v = self.spec.volumes.iter().find(|v| v.name == m.name)?;
                let hp = v.host_path.as_ref()?;
                Some(Bind { host: hp.path.clone(), container: m.mount_path.clone(), read_only: m.read_only })
            })
            .collect();
        binds.sort_by_key(|b| std::cmp::Reverse(b.container.len()));
        Ok(binds)
    }
}

impl Container {
    pub fn argv(&self) -> Vec<String> {
        self.command.iter().chain(self.args.iter()).cloned().collect()
    }

    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env.iter().filter_map(|e| Some((e.name.clone(), e.value.clone()?))).collect()
    }

    pub fn flags(&self) -> EtcdFlags {
        EtcdFlags::parse(&self.argv(), &self.env_pairs())
    }
}

/// Map a path inside a container to the host path behind it, through a list of binds.
/// Returns `None` when no bind covers it: the path then lives only in the container.
pub fn to_host_path(binds: &[Bind], container_path: &str) -> Option<String> {
    let mut sorted: Vec<&Bind> = binds.iter().collect();
    sorted.sort_by_key(|b| std::cmp::Reverse(b.container.trim_end_matches('/').len()));
    for b in sorted {
        let root = b.container.trim_end_matches('/');
        let rest = if container_path == root {
            Some("")
        } else {
            container_path.strip_prefix(root).filter(|r| r.starts_with('/') || root.is_empty())
        };
        if let Some(rest) = rest {
            let host = b.host.trim_end_matches('/');
            return Some(format!("{host}{rest}"));
        }
    }
    None
}

/// A flag edit: set to a value, or remove.
pub type FlagEdit = (String, Option<String>);

/// One YAML sequence item line holding a flag.
struct FlagLine {
    line: usize,
    indent: String,
    /// The flag name and, if written `--name=value`, that value.
    name: String,
    /// True when written `--name` with the value on the following item line.
    split_value: bool,
}

fn scalar_of_item(line: &str) -> Option<(String, String)> {
    let indent_len = line.len() - line.trim_start().len();
    let rest = line.trim_start().strip_prefix("- ")?;
    let rest = rest.trim_end();
    let unquoted = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
        .unwrap_or(rest);
    Some((line[..indent_len].to_string(), unquoted.to_string()))
}

fn flag_lines(lines: &[&str]) -> Vec<FlagLine> {
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some((indent, scalar)) = scalar_of_item(l) else { continue };
        let Some(body) = scalar.strip_prefix("--") else { continue };
        let (name, split_value) = match body.split_once('=') {
            Some((n, _)) => (n.to_string(), false),
            None => {
                let next_is_value = lines
                    .get(i + 1)
                    .and_then(|n| scalar_of_item(n))
                    .map(|(ind, s)| ind == indent && !s.starts_with('-'))
                    .unwrap_or(false);
                (body.to_string(), next_is_value)
            }
        };
        out.push(FlagLine { line: i, indent, name, split_value });
    }
    out
}

/// Apply flag edits to the etcd container of a manifest, changing only the lines of the
/// edited flags, and prove the result by parsing it back: the etcd flags must equal the
/// intended ones and every other field of the pod must be unchanged.
pub fn edit_manifest_flags(text: &str, edits: &[FlagEdit]) -> Result<String, ManifestError> {
    let before = Pod::parse(text)?;
    let before_flags = before.etcd_container()?.flags();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let trimmed: Vec<&str> = lines.iter().map(|l| l.trim_end_matches(['\n', '\r'])).collect();
    let found = flag_lines(&trimmed);

    let mut replace: Vec<Option<Vec<String>>> = vec![None; lines.len()];
    let mut pending_inserts: Vec<&FlagEdit> = Vec::new();
    for edit in edits {
        let hits: Vec<&FlagLine> = found.iter().filter(|f| f.name == edit.0).collect();
        if hits.len() > 1 {
            return Err(ManifestError::AmbiguousFlag { flag: edit.0.clone(), count: hits.len() });
        }
        match hits.first() {
            Some(h) => {
                let eol = if lines[h.line].ends_with("\r\n") { "\r\n" } else { "\n" };
                replace[h.line] = Some(match &edit.1 {
                    Some(v) => vec![format!("{}- {}{}", h.indent, yaml_item(&format!("--{}={}", edit.0, v)), eol)],
                    None => vec![],
                });
                if h.split_value {
                    replace[h.line + 1] = Some(vec![]);
                }
            }
            None if edit.1.is_some() => pending_inserts.push(edit),
            None => {}
        }
    }

    // New flags go among the existing flag lines of the etcd command, in kubeadm's sorted
    // order, so that the diff is one added line each.
    if !pending_inserts.is_empty() {
        let anchor = found.first().ok_or_else(|| ManifestError::EditNotVerified {
            reason: "no existing flag lines to insert new flags beside".into(),
        })?;
        let block: Vec<&FlagLine> = found.iter().filter(|f| f.indent == anchor.indent).collect();
        for edit in pending_inserts {
            let after = block.iter().rfind(|f| f.name.as_str() < edit.0.as_str());
            let at = match after {
                Some(f) => f.line + if f.split_value { 1 } else { 0 },
                None => block[0].line,
            };
            // The file's own line ending: a CRLF manifest stays CRLF.
            let eol = if lines[anchor.line].ends_with("\r\n") { "\r\n" } else { "\n" };
            let line = format!("{}- {}{eol}", anchor.indent, yaml_item(&format!("--{}={}", edit.0, edit.1.as_deref().unwrap_or(""))));
            let slot = replace[at].get_or_insert_with(|| vec![lines[at].to_string()]);
            if after.is_some() {
                slot.push(line);
            } else {
                slot.insert(0, line);
            }
        }
    }

    let mut out = String::with_capacity(text.len() + 128);
    for (i, l) in lines.iter().enumerate() {
        match &replace[i] {
            Some(r) => r.iter().for_each(|s| out.push_str(s)),
            None => out.push_str(l),
        }
    }
    verify_edit(text, &out, &before_flags, edits)?;
    Ok(out)
}

/// A list item's text as YAML reads it back unchanged: plain, as kubeadm writes flags,
/// unless the value holds what YAML would read as structure (`: `, ` #`, a trailing `:`,
/// quotes, control characters); then double-quoted, JSON's escaping being valid YAML.
fn yaml_item(s: &str) -> String {
    let plain = !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && !s.ends_with(' ')
        && !s.chars().any(|c| c.is_control() || matches!(c, '"' | '\'' | '\\' | '\u{feff}'));
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serialises")
    }
}

fn verify_edit(old: &str, new: &str, before: &EtcdFlags, edits: &[FlagEdit]) -> Result<(), ManifestError> {
    let fail = |reason: String| ManifestError::EditNotVerified { reason };
    let after_pod = Pod::parse(new).map_err(|e| fail(format!("result does not parse: {e}")))?;
    let after = after_pod.etcd_container().map_err(|e| fail(e.to_string()))?.flags();
    let value_of = |f: &EtcdFlags, n: &str| f.flag(n).map(|x| x.value.clone());
    for (name, want) in edits {
        let got = value_of(&after, name);
        let ok = match want {
            Some(v) => got == Some(Some(v.clone())),
            None => got.is_none(),
        };
        if !ok {
            return Err(fail(format!("--{name} is {got:?} after the edit, wanted {want:?}")));
        }
    }
    for f in before.iter() {
        if edits.iter().any(|(n, _)| n == &f.name) {
            continue;
        }
        if value_of(&after, &f.name) != Some(f.value.clone()) {
            return Err(fail(format!("unedited flag --{} changed", f.name)));
        }
    }
    for f in after.iter() {
        if before.flag(&f.name).is_none() && !edits.iter().any(|(n, _)| n == &f.name) {
            return Err(fail(format!("unexpected new flag --{}", f.name)));
        }
    }
    let strip = |text: &str| -> Result<Value, ManifestError> {
        let mut v: Value = serde_saphyr::from_str(text).map_err(|e| fail(e.to_string()))?;
        if let Some(cs) = v.pointer_mut("/spec/containers").and_then(Value::as_array_mut) {
            for c in cs {
                if let Some(o) = c.as_object_mut() {
                    o.remove("command");
                    o.remove("args");
                }
            }
        }
        Ok(v)
    };
    if strip(old)? != strip(new)? {
        return Err(fail("fields other than the etcd command changed".into()));
    }
    Ok(())
}

/// Convenience for the common rejoin edit.
pub fn rejoin_edits(initial_cluster: &[PeerEntry]) -> Vec<FlagEdit> {
    vec![
        ("initial-cluster".into(), Some(crate::flags::format_initial_cluster(initial_cluster))),
        ("initial-cluster-state".into(), Some("existing".into())),
        ("force-new-cluster".into(), None),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kubeadm v1.28's `etcd.yaml`, byte for byte apart from addresses.
    pub const KUBEADM: &str = include_str!("../testdata/kubeadm-etcd.yaml");

    #[test]
    fn parses_kubeadm_manifest() {
        let pod = Pod::parse(KUBEADM).unwrap();
        let c = pod.etcd_container().unwrap();
        assert_eq!(c.image, "registry.k8s.io/etcd:3.5.9-0");
        let f = c.flags();
        assert_eq!(f.name(), "m1");
        assert_eq!(f.data_dir(), "/var/lib/etcd");
        assert!(f.client_cert_auth());
        assert_eq!(f.advertise_client_urls(), vec!["https://10.0.0.11:2379"]);
        assert_eq!(f.initial_cluster().len(), 3);
        let binds = pod.binds().unwrap();
        assert_eq!(to_host_path(&binds, "/var/lib/etcd/member").as_deref(), Some("/var/lib/etcd/member"));
        assert_eq!(
            to_host_path(&binds, "/etc/kubernetes/pki/etcd/ca.crt").as_deref(),
            Some("/etc/kubernetes/pki/etcd/ca.crt")
        );
        assert_eq!(to_host_path(&binds, "/etc/passwd"), None);
    }

    #[test]
    fn host_path_mapping_differs_from_container_path() {
        let binds = vec![
            Bind { host: "/data/etcd".into(), container: "/var/lib/etcd".into(), read_only: false },
            Bind { host: "/srv/pki".into(), container: "/etc/kubernetes/pki/etcd/".into(), read_only: true },
        ];
        assert_eq!(to_host_path(&binds, "/var/lib/etcd").as_deref(), Some("/data/etcd"));
        assert_eq!(to_host_path(&binds, "/var/lib/etcdx"), None);
        assert_eq!(to_host_path(&binds, "/etc/kubernetes/pki/etcd/peer.key").as_deref(), Some("/srv/pki/peer.key"));
    }

    #[test]
    fn malformed_yaml_is_an_error() {
        let e = Pod::parse("apiVersion: v1\nkind: Pod\nspec: [unclosed\n").unwrap_err();
        assert!(matches!(e, ManifestError::Malformed { .. }), "{e:?}");
        let e = Pod::parse("kind: Deployment\n").unwrap_err();
        assert!(e.to_string().contains("Deployment"));
    }

    #[test]
    fn manifest_without_etcd_container() {
        let text = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: apiserver\n    command: [kube-apiserver]\n";
        let e = Pod::parse(text).unwrap().etcd_container().unwrap_err();
        assert_eq!(e, ManifestError::NoEtcdContainer { found: vec!["apiserver".into()] });
    }

    fn changed_lines(a: &str, b: &str) -> (Vec<String>, Vec<String>) {
        let al: Vec<&str> = a.lines().collect();
        let bl: Vec<&str> = b.lines().collect();
        let removed = al.iter().filter(|l| !bl.contains(l)).map(|s| s.to_string()).collect();
        let added = bl.iter().filter(|l| !al.contains(l)).map(|s| s.to_string()).collect();
        (removed, added)
    }

    #[test]
    fn minimal_edit_of_kubeadm_manifest() {
        let out = edit_manifest_flags(
            KUBEADM,
            &[
                ("initial-cluster-state".into(), Some("existing".into())),
                ("initial-cluster".into(), Some("m1=https://10.0.0.11:2380,m9=https://10.0.0.19:2380".into())),
            ],
        )
        .unwrap();
        let (removed, added) = changed_lines(KUBEADM, &out);
        assert_eq!(removed, vec!["    - --initial-cluster=m1=https://10.0.0.11:2380,m2=https://10.0.0.12:2380,m3=https://10.0.0.13:2380"]);
        assert_eq!(
            added,
            vec![
                "    - --initial-cluster=m1=https://10.0.0.11:2380,m9=https://10.0.0.19:2380",
                "    - --initial-cluster-state=existing",
            ]
        );
        assert_eq!(KUBEADM.lines().count() + 1, out.lines().count());
        // Removing it again restores the original exactly.
        let back = edit_manifest_flags(
            &out,
            &[
                ("initial-cluster-state".into(), None),
                ("initial-cluster".into(), Some("m1=https://10.0.0.11:2380,m2=https://10.0.0.12:2380,m3=https://10.0.0.13:2380".into())),
            ],
        )
        .unwrap();
        assert_eq!(back, KUBEADM);
    }

    #[test]
    fn edit_handles_split_value_form_and_quotes() {
        let text = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: etcd\n    command:\n    - etcd\n    - --name\n    - m1\n    - \"--initial-cluster-state=new\"\n    # a comment that must survive\n    - --data-dir=/d\n";
        let out = edit_manifest_flags(text, &[("initial-cluster-state".into(), Some("existing".into())), ("name".into(), Some("m2".into()))]).unwrap();
        assert!(out.contains("# a comment that must survive"));
        let f = Pod::parse(&out).unwrap().etcd_container().unwrap().flags();
        assert_eq!(f.name(), "m2");
        assert_eq!(f.initial_cluster_state(), "existing");
        assert_eq!(f.data_dir(), "/d");
    }

    #[test]
    fn edit_refuses_ambiguity() {
        let text = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: etcd\n    command:\n    - etcd\n    - --name=a\n  - name: sidecar\n    command:\n    - x\n    - --name=b\n";
        let e = edit_manifest_flags(text, &[("name".into(), Some("c".into()))]).unwrap_err();
        assert_eq!(e, ManifestError::AmbiguousFlag { flag: "name".into(), count: 2 });
    }
}
