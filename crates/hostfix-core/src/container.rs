//! A Docker container's spec, decided from `docker inspect` JSON: the `docker run` command
//! that recreates it (seed 004's run.tpl, done properly), and the create body the Docker
//! runtime uses to recreate it with edited etcd flags.
//!
//! Plain JSON in (the Engine API's field names, as `docker inspect` prints them and as
//! bollard's models serialize), plain data out, so every rule here is tested from fixtures.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::flags::{edit_argv, EtcdFlags};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerError {
    #[error("container {name} does not run etcd (entrypoint and command: {argv:?})")]
    NotEtcd { name: String, argv: Vec<String> },
    #[error("inspect of {name} lacks {field}")]
    Missing { name: String, field: &'static str },
    #[error("{name}: cannot shell-quote {value:?} (it holds a NUL byte)")]
    Unquotable { name: String, value: String },
}

/// What `docker run` needs to recreate a container. Fields equal to the image's own
/// defaults are left out, as `docker run` would fill them in again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    pub name: String,
    pub image: String,
    /// `None`: the image's entrypoint. `Some([])`: reset with `--entrypoint ""`.
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    /// `HostConfig.Binds`, verbatim (`src:dst[:mode]`, named volumes included).
    pub binds: Vec<String>,
    /// Volumes without a name the user chose (anonymous, or the image's `VOLUME`), pinned by
    /// their engine name so a recreated container keeps their data.
    pub anon_volumes: Vec<(String, String)>,
    /// `HostConfig.Mounts` (`--mount`), rendered as `--mount` options.
    pub mounts: Vec<String>,
    pub tmpfs: BTreeMap<String, String>,
    pub network: Option<String>,
    pub pid: Option<String>,
    pub ipc: Option<String>,
    pub uts: Option<String>,
    pub cgroupns: Option<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    /// `name` or `on-failure:N`.
    pub restart: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub log_driver: Option<String>,
    pub log_opts: BTreeMap<String, String>,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `host:container:perms`.
    pub devices: Vec<String>,
    pub security_opt: Vec<String>,
    /// `name=soft:hard`.
    pub ulimits: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `-p` values: `[ip:]hostport:port/proto`.
    pub ports: Vec<String>,
    pub expose: Vec<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    /// `--health-*` options, or `--no-healthcheck`, ready to print.
    pub health: Vec<(String, Option<String>)>,
    /// Resource limits and other `--opt value` pairs, in print order.
    pub resources: Vec<(String, String)>,
    /// Switches such as `--init`, `--read-only`, `--tty`, `--interactive`.
    pub switches: Vec<String>,
    pub group_add: Vec<String>,
    pub sysctls: BTreeMap<String, String>,
    /// Things `docker run` cannot express, printed as comments above the command.
    pub notes: Vec<String>,
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str).filter(|x| !x.is_empty())
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k)).filter(|v| !v.is_null())
}

fn strs(v: &Value, path: &[&str]) -> Vec<String> {
    get(v, path)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn int(v: &Value, path: &[&str]) -> i64 {
    get(v, path).and_then(Value::as_i64).unwrap_or(0)
}

fn map(v: &Value, path: &[&str]) -> BTreeMap<String, String> {
    get(v, path)
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default()
}

/// The container's name without the leading `/` the API adds.
pub fn container_name(inspect: &Value) -> String {
    s(inspect, &["Name"]).unwrap_or_default().trim_start_matches('/').to_string()
}

/// The argv the container runs: entrypoint then command.
pub fn argv(inspect: &Value) -> Vec<String> {
    let mut a = strs(inspect, &["Config", "Entrypoint"]);
    a.extend(strs(inspect, &["Config", "Cmd"]));
    a
}

/// The container runs etcd itself (RKE: `/usr/local/bin/etcd` first in the command),
/// not a wrapper whose flags we could not edit safely.
pub fn check_etcd(inspect: &Value) -> Result<(), ContainerError> {
    let argv = argv(inspect);
    if runs_etcd(&argv) {
        Ok(())
    } else {
        Err(ContainerError::NotEtcd { name: container_name(inspect), argv })
    }
}

/// The volumes mounted without a name the user chose (anonymous, or for the image's
/// `VOLUME`): volume mounts that neither a bind nor a `--mount` asked for, as (engine name,
/// destination).
fn anonymous_volumes(c: &Value) -> Vec<(String, String)> {
    let trim = |d: &str| d.trim_end_matches('/').to_string();
    let mut asked: Vec<String> = strs(c, &["HostConfig", "Binds"]).iter().filter_map(|b| b.split(':').nth(1).map(trim)).collect();
    asked.extend(
        get(c, &["HostConfig", "Mounts"]).and_then(Value::as_array).into_iter().flatten().filter_map(|m| m["Target"].as_str().map(trim)),
    );
    get(c, &["Mounts"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| m["Type"].as_str() == Some("volume"))
        .filter_map(|m| Some((m["Name"].as_str()?.to_string(), m["Destination"].as_str()?.to_string())))
        .filter(|(_, dest)| !asked.contains(&trim(dest)))
        .collect()
}

/// etcd itself is the process: its binary is the first or second word (after an init
/// such as tini), not hidden inside a wrapper whose flags could not be edited safely.
pub fn runs_etcd(argv: &[String]) -> bool {
    argv.iter().take(2).any(|a| a.rsplit('/').next() == Some("etcd"))
}

/// Go's duration syntax, as `docker run --health-interval` parses it.
fn go_duration(ns: i64) -> String {
    match ns {
        n if n % 1_000_000_000 == 0 => format!("{}s", n / 1_000_000_000),
        n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
        n if n % 1_000 == 0 => format!("{}us", n / 1_000),
        n => format!("{n}ns"),
    }
}

fn cpus(nano: i64) -> String {
    let mut t = format!("{}.{:09}", nano / 1_000_000_000, nano % 1_000_000_000);
    while t.ends_with('0') {
        t.pop();
    }
    t.trim_end_matches('.').to_string()
}

/// Read the spec from `docker inspect <container>` and `docker image inspect <its image>`.
pub fn run_spec(c: &Value, image: &Value) -> Result<RunSpec, ContainerError> {
    let name = container_name(c);
    let image_name = s(c, &["Config", "Image"]).ok_or(ContainerError::Missing { name: name.clone(), field: "Config.Image" })?;
    let ic = |k: &str| image.get("Config").and_then(|c| c.get(k)).cloned().unwrap_or(Value::Null);
    let hc = |k: &str| get(c, &["HostConfig", k]);
    let hs = |k: &str| s(c, &["HostConfig", k]).map(str::to_string);
    let mut spec = RunSpec { name: name.clone(), image: image_name.to_string(), ..Default::default() };

    let ep = strs(c, &["Config", "Entrypoint"]);
    let image_ep: Vec<String> = serde_json::from_value(ic("Entrypoint")).unwrap_or_default();
    if ep != image_ep {
        if ep.len() > 1 {
            spec.notes.push(format!(
                "the entrypoint {ep:?} has several words; `docker run --entrypoint` takes one, so the rest lead the command"
            ));
        }
        spec.entrypoint = Some(ep);
    }
    spec.cmd = strs(c, &["Config", "Cmd"]);

    let image_env: Vec<String> = serde_json::from_value(ic("Env")).unwrap_or_default();
    spec.env = strs(c, &["Config", "Env"]).into_iter().filter(|e| !image_env.contains(e)).collect();

    spec.binds = strs(c, &["HostConfig", "Binds"]);
    for m in get(c, &["HostConfig", "Mounts"]).and_then(Value::as_array).into_iter().flatten() {
        let mut parts = vec![format!("type={}", m["Type"].as_str().unwrap_or("volume"))];
        if let Some(src) = m["Source"].as_str().filter(|x| !x.is_empty()) {
            parts.push(format!("source={src}"));
        }
        parts.push(format!("target={}", m["Target"].as_str().unwrap_or_default()));
        if m["ReadOnly"].as_bool() == Some(true) {
            parts.push("readonly".into());
        }
        if let Some(p) = m.pointer("/BindOptions/Propagation").and_then(Value::as_str) {
            parts.push(format!("bind-propagation={p}"));
        }
        if m.pointer("/VolumeOptions/NoCopy").and_then(Value::as_bool) == Some(true) {
            parts.push("volume-nocopy".into());
        }
        if let Some(n) = m.pointer("/TmpfsOptions/SizeBytes").and_then(Value::as_i64) {
            parts.push(format!("tmpfs-size={n}"));
        }
        if let Some(n) = m.pointer("/TmpfsOptions/Mode").and_then(Value::as_i64) {
            parts.push(format!("tmpfs-mode={n:o}"));
        }
        spec.mounts.push(parts.join(","));
    }
    spec.anon_volumes = anonymous_volumes(c);
    spec.tmpfs = map(c, &["HostConfig", "Tmpfs"]);

    spec.network = hs("NetworkMode").filter(|n| n != "default");
    spec.pid = hs("PidMode");
    spec.ipc = hs("IpcMode");
    spec.uts = hs("UTSMode");
    spec.cgroupns = hs("CgroupnsMode");
    spec.user = s(c, &["Config", "User"]).filter(|u| Some(*u) != ic("User").as_str()).map(str::to_string);
    spec.workdir =
        s(c, &["Config", "WorkingDir"]).filter(|w| Some(*w) != ic("WorkingDir").as_str()).map(str::to_string);
    spec.hostname = chosen_hostname(c);
    spec.domainname = s(c, &["Config", "Domainname"]).map(str::to_string);

    if let Some(r) = s(c, &["HostConfig", "RestartPolicy", "Name"]).filter(|r| *r != "no") {
        let max = int(c, &["HostConfig", "RestartPolicy", "MaximumRetryCount"]);
        spec.restart = Some(if r == "on-failure" && max > 0 { format!("{r}:{max}") } else { r.to_string() });
    }

    let image_labels = image.get("Config").map(|ic| map(ic, &["Labels"])).unwrap_or_default();
    spec.labels = map(c, &["Config", "Labels"]).into_iter().filter(|(k, v)| image_labels.get(k) != Some(v)).collect();
    spec.log_driver = s(c, &["HostConfig", "LogConfig", "Type"]).map(str::to_string);
    spec.log_opts = map(c, &["HostConfig", "LogConfig", "Config"]);

    spec.privileged = hc("Privileged").and_then(Value::as_bool).unwrap_or(false);
    spec.cap_add = strs(c, &["HostConfig", "CapAdd"]);
    spec.cap_drop = strs(c, &["HostConfig", "CapDrop"]);
    for d in hc("Devices").and_then(Value::as_array).into_iter().flatten() {
        spec.devices.push(format!(
            "{}:{}:{}",
            d["PathOnHost"].as_str().unwrap_or_default(),
            d["PathInContainer"].as_str().unwrap_or_default(),
            d["CgroupPermissions"].as_str().unwrap_or("rwm")
        ));
    }
    spec.security_opt = strs(c, &["HostConfig", "SecurityOpt"]);
    for u in hc("Ulimits").and_then(Value::as_array).into_iter().flatten() {
        spec.ulimits.push(format!(
            "{}={}:{}",
            u["Name"].as_str().unwrap_or_default(),
            u["Soft"].as_i64().unwrap_or(0),
            u["Hard"].as_i64().unwrap_or(0)
        ));
    }
    spec.extra_hosts = strs(c, &["HostConfig", "ExtraHosts"]);
    spec.dns = strs(c, &["HostConfig", "Dns"]);
    spec.dns_search = strs(c, &["HostConfig", "DnsSearch"]);
    spec.dns_options = strs(c, &["HostConfig", "DnsOptions"]);

    let bindings = get(c, &["HostConfig", "PortBindings"]).and_then(Value::as_object).cloned().unwrap_or_default();
    for (port, binds) in &bindings {
        for b in binds.as_array().into_iter().flatten() {
            let ip = b["HostIp"].as_str().unwrap_or_default();
            let hp = b["HostPort"].as_str().unwrap_or_default();
            let ip = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
            spec.ports.push(match (ip.is_empty(), hp.is_empty()) {
                (true, true) => port.clone(),
                (true, false) => format!("{hp}:{port}"),
                (false, _) => format!("{ip}:{hp}:{port}"),
            });
        }
    }
    let image_exposed = ic("ExposedPorts");
    for p in get(c, &["Config", "ExposedPorts"]).and_then(Value::as_object).into_iter().flatten().map(|(k, _)| k) {
        if !bindings.contains_key(p) && image_exposed.get(p).is_none() {
            spec.expose.push(p.clone());
        }
    }

    spec.stop_signal =
        s(c, &["Config", "StopSignal"]).filter(|x| Some(*x) != ic("StopSignal").as_str()).map(str::to_string);
    spec.stop_timeout = get(c, &["Config", "StopTimeout"]).and_then(Value::as_i64);

    if let Some(h) = get(c, &["Config", "Healthcheck"]).filter(|h| Some(*h) != image.pointer("/Config/Healthcheck")) {
        let test = strs(h, &["Test"]);
        match test.first().map(String::as_str) {
            Some("NONE") => spec.health.push(("--no-healthcheck".into(), None)),
            Some("CMD-SHELL") => spec.health.push(("--health-cmd".into(), Some(test[1..].join(" ")))),
            Some("CMD") => {
                spec.notes.push("the healthcheck's exec form becomes the shell form with --health-cmd".into());
                let words: Vec<&str> = test[1..].iter().map(String::as_str).collect();
                spec.health.push(("--health-cmd".into(), Some(shlex::try_join(words).unwrap_or_default())));
            }
            _ => {}
        }
        for (k, opt) in [
            ("Interval", "--health-interval"),
            ("Timeout", "--health-timeout"),
            ("StartPeriod", "--health-start-period"),
            ("StartInterval", "--health-start-interval"),
        ] {
            if let Some(n) = h.get(k).and_then(Value::as_i64).filter(|n| *n > 0) {
                spec.health.push((opt.into(), Some(go_duration(n))));
            }
        }
        if let Some(n) = h.get("Retries").and_then(Value::as_i64).filter(|n| *n > 0) {
            spec.health.push(("--health-retries".into(), Some(n.to_string())));
        }
    }

    let mut res = |opt: &str, v: String| spec.resources.push((opt.to_string(), v));
    for (k, opt) in [
        ("Memory", "--memory"),
        ("MemorySwap", "--memory-swap"),
        ("MemoryReservation", "--memory-reservation"),
        ("CpuShares", "--cpu-shares"),
        ("CpuPeriod", "--cpu-period"),
        ("CpuQuota", "--cpu-quota"),
        ("BlkioWeight", "--blkio-weight"),
        ("PidsLimit", "--pids-limit"),
        ("OomScoreAdj", "--oom-score-adj"),
    ] {
        let n = int(c, &["HostConfig", k]);
        if n != 0 {
            res(opt, n.to_string());
        }
    }
    if let Some(n) = hc("MemorySwappiness").and_then(Value::as_i64).filter(|n| *n >= 0) {
        res("--memory-swappiness", n.to_string());
    }
    let nano = int(c, &["HostConfig", "NanoCpus"]);
    if nano > 0 {
        res("--cpus", cpus(nano));
    }
    for (k, opt) in [("CpusetCpus", "--cpuset-cpus"), ("CpusetMems", "--cpuset-mems"), ("CgroupParent", "--cgroup-parent"), ("UsernsMode", "--userns")] {
        if let Some(v) = hs(k) {
            res(opt, v);
        }
    }
    let shm = int(c, &["HostConfig", "ShmSize"]);
    if shm > 0 && shm != 64 << 20 {
        res("--shm-size", shm.to_string());
    }
    if let Some(r) = hs("Runtime").filter(|r| r != "runc") {
        res("--runtime", r);
    }

    let flag = |v: Option<&Value>| v.and_then(Value::as_bool) == Some(true);
    for (on, sw) in [
        (flag(hc("Init")), "--init"),
        (flag(hc("ReadonlyRootfs")), "--read-only"),
        (flag(hc("OomKillDisable")), "--oom-kill-disable"),
        (flag(get(c, &["Config", "Tty"])), "--tty"),
        (flag(get(c, &["Config", "OpenStdin"])), "--interactive"),
    ] {
        if on {
            spec.switches.push(sw.into());
        }
    }
    spec.group_add = strs(c, &["HostConfig", "GroupAdd"]);
    spec.sysctls = map(c, &["HostConfig", "Sysctls"]);
    for (k, what) in [("VolumesFrom", "--volumes-from"), ("Links", "--link")] {
        if !strs(c, &["HostConfig", k]).is_empty() {
            spec.notes.push(format!("{what} is not carried; its mounts or links are listed explicitly where possible"));
        }
    }
    Ok(spec)
}

fn q(name: &str, v: &str) -> Result<String, ContainerError> {
    shlex::try_quote(v).map(|c| c.into_owned()).map_err(|_| ContainerError::Unquotable { name: name.into(), value: v.into() })
}

/// The `docker run` command, one option per line, every word shell-quoted.
pub fn render_docker_run(spec: &RunSpec) -> Result<String, ContainerError> {
    let mut lines: Vec<(String, Option<String>)> = vec![("--detach".into(), None), ("--name".into(), Some(spec.name.clone()))];
    let mut push = |o: &str, v: &str| lines.push((o.to_string(), Some(v.to_string())));
    if let Some(n) = &spec.network {
        push("--network", n);
    }
    for (o, v) in [("--pid", &spec.pid), ("--ipc", &spec.ipc), ("--uts", &spec.uts), ("--cgroupns", &spec.cgroupns)] {
        if let Some(v) = v {
            push(o, v);
        }
    }
    for (o, v) in [
        ("--hostname", &spec.hostname),
        ("--domainname", &spec.domainname),
        ("--user", &spec.user),
        ("--workdir", &spec.workdir),
        ("--restart", &spec.restart),
    ] {
        if let Some(v) = v {
            push(o, v);
        }
    }
    if let Some(ep) = &spec.entrypoint {
        push("--entrypoint", ep.first().map(String::as_str).unwrap_or(""));
    }
    for e in &spec.env {
        push("--env", e);
    }
    for b in &spec.binds {
        push("--volume", b);
    }
    // `--mount` rather than `-v`: it pins the volume without adding the `z` mode `-v` implies.
    for (n, d) in &spec.anon_volumes {
        push("--mount", &format!("type=volume,source={n},target={d}"));
    }
    for m in &spec.mounts {
        push("--mount", m);
    }
    for (d, o) in &spec.tmpfs {
        push("--tmpfs", &if o.is_empty() { d.clone() } else { format!("{d}:{o}") });
    }
    for (k, v) in &spec.labels {
        push("--label", &format!("{k}={v}"));
    }
    if let Some(d) = &spec.log_driver {
        push("--log-driver", d);
    }
    for (k, v) in &spec.log_opts {
        push("--log-opt", &format!("{k}={v}"));
    }
    for (list, o) in [
        (&spec.cap_add, "--cap-add"),
        (&spec.cap_drop, "--cap-drop"),
        (&spec.devices, "--device"),
        (&spec.security_opt, "--security-opt"),
        (&spec.ulimits, "--ulimit"),
        (&spec.extra_hosts, "--add-host"),
        (&spec.dns, "--dns"),
        (&spec.dns_search, "--dns-search"),
        (&spec.dns_options, "--dns-option"),
        (&spec.ports, "--publish"),
        (&spec.expose, "--expose"),
        (&spec.group_add, "--group-add"),
    ] {
        for v in list {
            push(o, v);
        }
    }
    for (k, v) in &spec.sysctls {
        push("--sysctl", &format!("{k}={v}"));
    }
    if let Some(sig) = &spec.stop_signal {
        push("--stop-signal", sig);
    }
    if let Some(t) = spec.stop_timeout {
        push("--stop-timeout", &t.to_string());
    }
    for (o, v) in &spec.resources {
        push(o, v);
    }
    if spec.privileged {
        lines.push(("--privileged".into(), None));
    }
    for sw in &spec.switches {
        lines.push((sw.clone(), None));
    }
    lines.extend(spec.health.iter().cloned());

    let mut out = String::new();
    for n in &spec.notes {
        out.push_str(&format!("# note: {n}\n"));
    }
    out.push_str("docker run");
    for (o, v) in &lines {
        out.push_str(" \\\n  ");
        out.push_str(o);
        if let Some(v) = v {
            out.push(' ');
            out.push_str(&q(&spec.name, v)?);
        }
    }
    let mut tail: Vec<&str> = vec![&spec.image];
    if let Some(ep) = &spec.entrypoint {
        tail.extend(ep.iter().skip(1).map(String::as_str));
    }
    tail.extend(spec.cmd.iter().map(String::as_str));
    // etcd's flags are many; one per line keeps them reviewable.
    out.push_str(" \\\n  ");
    out.push_str(&tail.iter().map(|w| q(&spec.name, w)).collect::<Result<Vec<_>, _>>()?.join(" \\\n    "));
    out.push('\n');
    Ok(out)
}

/// etcd flag edits for a container: a flag given on the command line is edited there; one
/// given only as an `ETCD_*` variable is edited in the environment, so etcd never sees both.
/// Returns the new entrypoint, command and environment.
pub fn edit_container_flags(
    entrypoint: &[String],
    cmd: &[String],
    env: &[String],
    edits: &[(String, Option<String>)],
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let full: Vec<String> = entrypoint.iter().chain(cmd).cloned().collect();
    let env_pairs: Vec<(String, String)> =
        env.iter().filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect();
    let parsed = EtcdFlags::parse(&full, &env_pairs);
    let env_key = |n: &str| format!("ETCD_{}", n.to_uppercase().replace('-', "_"));
    let mut argv_edits = vec![];
    let mut new_env: Vec<String> = env.to_vec();
    for (n, v) in edits {
        let in_env = matches!(parsed.flag(n).map(|f| &f.source), Some(crate::flags::FlagSource::Env(_)));
        if in_env {
            let key = env_key(n);
            new_env.retain(|kv| kv.split_once('=').map(|x| x.0) != Some(key.as_str()));
            if let Some(v) = v {
                new_env.push(format!("{key}={v}"));
            }
        } else {
            argv_edits.push((n.clone(), v.clone()));
        }
    }
    let new_full = if argv_edits.is_empty() { full.clone() } else { edit_argv(&full, &argv_edits) };
    if new_full.starts_with(entrypoint) {
        (entrypoint.to_vec(), new_full[entrypoint.len()..].to_vec(), new_env)
    } else {
        // A flag inside the entrypoint itself was edited: the whole argv moves behind its
        // first word, which keeps exactly the same process arguments.
        (new_full[..1.min(new_full.len())].to_vec(), new_full[1.min(new_full.len())..].to_vec(), new_env)
    }
}

/// Apply flag edits to a spec read by [`run_spec`]. `image_entrypoint` is the image's own.
pub fn edit_spec_flags(spec: &mut RunSpec, image_entrypoint: &[String], edits: &[(String, Option<String>)]) {
    let ep: Vec<String> = spec.entrypoint.clone().unwrap_or_else(|| image_entrypoint.to_vec());
    // The image's environment is part of what etcd sees, though not printed.
    let (new_ep, cmd, env) = edit_container_flags(&ep, &spec.cmd, &spec.env, edits);
    if new_ep != ep {
        spec.entrypoint = Some(new_ep);
    }
    spec.cmd = cmd;
    spec.env = env;
}

/// The Engine API create body that recreates the container from its inspect, with etcd
/// flag edits applied. The image is the container's own image by name; the caller checks
/// the name still points at the same image ID.
pub fn create_body(c: &Value, edits: &[(String, Option<String>)]) -> Value {
    let cfg = c.get("Config").cloned().unwrap_or(json!({}));
    let mut body: Map<String, Value> = cfg.as_object().cloned().unwrap_or_default();
    let ep = strs(c, &["Config", "Entrypoint"]);
    let cmd = strs(c, &["Config", "Cmd"]);
    let env = strs(c, &["Config", "Env"]);
    let (ep2, cmd2, env2) = edit_container_flags(&ep, &cmd, &env, edits);
    if ep2 != ep {
        body.insert("Entrypoint".into(), json!(ep2));
    }
    body.insert("Cmd".into(), json!(cmd2));
    body.insert("Env".into(), json!(env2));
    let mut host = c.get("HostConfig").cloned().unwrap_or(json!({}));
    // Anonymous volumes are pinned by name, so the new container mounts the same data.
    let mut mounts: Vec<Value> = get(c, &["HostConfig", "Mounts"]).and_then(Value::as_array).cloned().unwrap_or_default();
    for (n, dest) in anonymous_volumes(c) {
        mounts.push(json!({"Type": "volume", "Source": n, "Target": dest}));
    }
    if !mounts.is_empty() {
        host["Mounts"] = json!(mounts);
    }
    body.insert("HostConfig".into(), host);
    // The network a container joins is its NetworkMode; user-defined networks also carry
    // their endpoint settings (aliases, static addresses).
    let mode = s(c, &["HostConfig", "NetworkMode"]).unwrap_or("default").to_string();
    if let Some(nets) = get(c, &["NetworkSettings", "Networks"]).and_then(Value::as_object) {
        if let Some(ep) = nets.get(&mode) {
            let mut e = Map::new();
            for k in ["Aliases", "IPAMConfig", "Links", "DriverOpts"] {
                if let Some(v) = ep.get(k).filter(|v| !v.is_null()) {
                    e.insert(k.into(), v.clone());
                }
            }
            body.insert("NetworkingConfig".into(), json!({ "EndpointsConfig": { mode.clone(): e } }));
        }
    }
    // A host-network container's hostname is the host's (the engine refuses to be told),
    // and a made-up one belongs to the old container's ID.
    if chosen_hostname(c).is_none() {
        body.remove("Hostname");
    }
    Value::Object(body)
}

/// The hostname someone chose, not the host's (shared UTS) nor the ID prefix the engine
/// makes up.
fn chosen_hostname(c: &Value) -> Option<String> {
    let mode = s(c, &["HostConfig", "NetworkMode"]).unwrap_or_default();
    let shares = mode == "host" || mode.starts_with("container:") || s(c, &["HostConfig", "UTSMode"]) == Some("host");
    let id = s(c, &["Id"]).unwrap_or_default();
    s(c, &["Config", "Hostname"]).filter(|h| !(shares || h.len() == 12 && id.starts_with(h))).map(str::to_string)
}

/// The fields `docker-run`'s round trip must preserve, normalised so that two inspects of
/// equivalent containers compare equal: what the engine fills in by itself (IDs, paths,
/// state, hostnames it generates) is left out. Mounts are compared as the engine applied
/// them (type, name, source, destination, mode, RW, propagation), because `-v` and
/// `--mount` are two spellings of one mount and a pinned anonymous volume is spelled anew.
pub fn comparable(c: &Value) -> Value {
    let pick = |path: &[&str]| get(c, path).cloned().unwrap_or(Value::Null);
    let hc = ["Tmpfs", "NetworkMode", "PidMode", "IpcMode", "UTSMode", "CgroupnsMode", "RestartPolicy", "LogConfig",
        "Privileged", "CapAdd", "CapDrop", "Devices", "SecurityOpt", "Ulimits", "ExtraHosts", "Dns", "DnsSearch",
        "DnsOptions", "PortBindings", "Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuPeriod",
        "CpuQuota", "CpusetCpus", "PidsLimit", "BlkioWeight", "ShmSize", "Init", "ReadonlyRootfs", "GroupAdd", "Sysctls",
        "OomScoreAdj"];
    let mut host = Map::new();
    for k in hc {
        let v = pick(&["HostConfig", k]);
        let empty = v.is_null() || v.as_array().is_some_and(|a| a.is_empty()) || v.as_object().is_some_and(|o| o.is_empty());
        host.insert(k.into(), if empty { Value::Null } else { v });
    }
    let cfg = ["Image", "Env", "User", "WorkingDir", "Labels", "StopSignal", "StopTimeout", "Healthcheck", "Tty", "OpenStdin"];
    let mut config = Map::new();
    for k in cfg {
        config.insert(k.into(), pick(&["Config", k]));
    }
    let mut env: Vec<String> = strs(c, &["Config", "Env"]);
    env.sort();
    config.insert("Env".into(), json!(env));
    let mut mounts: Vec<Value> = get(c, &["Mounts"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| {
            // The engine marks a volume it is told about with the SELinux label `z`, and one
            // it made for an image's VOLUME without; a pinned anonymous volume differs only
            // there, which matters on SELinux hosts alone.
            let mode = match (m["Type"].as_str(), m["Mode"].as_str()) {
                (Some("volume"), Some("z")) => json!(""),
                _ => m["Mode"].clone(),
            };
            json!({"Type": m["Type"], "Name": m["Name"], "Source": m["Source"], "Destination": m["Destination"], "Mode": mode, "RW": m["RW"], "Propagation": m["Propagation"]})
        })
        .collect();
    mounts.sort_by_key(|m| m["Destination"].as_str().unwrap_or_default().to_string());
    json!({
        "Name": container_name(c),
        "Argv": argv(c),
        "Config": config,
        "HostConfig": host,
        "Mounts": mounts,
        "Hostname": chosen_hostname(c),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rke() -> Value {
        json!({
            "Id": "5fb87452ddff0123456789",
            "Name": "/etcd",
            "Config": {
                "Hostname": "node1",
                "Env": ["ETCDCTL_API=3", "PATH=/usr/local/bin", "ETCD_UNSUPPORTED_ARCH=x86_64"],
                "Cmd": ["/usr/local/bin/etcd", "--name=etcd-vm5", "--initial-cluster-state=new", "--initial-cluster=etcd-vm5=https://10.0.0.5:2380"],
                "Image": "rancher/coreos-etcd:v3.4.13-rancher1",
                "Entrypoint": null,
                "Labels": {"io.rancher.rke.container.name": "etcd", "org.opencontainers.image.source": "x"}
            },
            "HostConfig": {
                "Binds": ["/var/lib/etcd:/var/lib/rancher/etcd/:z", "/etc/kubernetes:/etc/kubernetes:z"],
                "NetworkMode": "host",
                "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0},
                "LogConfig": {"Type": "json-file", "Config": {"max-file": "5", "max-size": "10m"}},
                "ShmSize": 67108864,
                "Runtime": "runc"
            },
            "Mounts": [{"Type": "bind", "Source": "/var/lib/etcd", "Destination": "/var/lib/rancher/etcd", "Mode": "z", "RW": true}],
            "NetworkSettings": {"Networks": {"host": {"Aliases": null}}}
        })
    }

    fn rke_image() -> Value {
        json!({"Config": {"Env": ["PATH=/usr/local/bin"], "Labels": {"org.opencontainers.image.source": "x"}, "Entrypoint": null}})
    }

    #[test]
    fn rke_container_renders_like_run_tpl_but_minimal() {
        let spec = run_spec(&rke(), &rke_image()).unwrap();
        assert_eq!(spec.env, vec!["ETCDCTL_API=3", "ETCD_UNSUPPORTED_ARCH=x86_64"], "the image's PATH is left out");
        assert_eq!(spec.labels.len(), 1, "the image's label is left out");
        assert_eq!(spec.hostname, None, "a host-network container takes the host's name");
        let out = render_docker_run(&spec).unwrap();
        assert!(out.starts_with("docker run \\\n  --detach \\\n  --name etcd \\\n  --network host"), "{out}");
        assert!(out.contains("--restart always"));
        assert!(out.contains("--log-opt 'max-file=5' \\\n  --log-opt 'max-size=10m'"), "{out}");
        assert!(out.contains("--volume /var/lib/etcd:/var/lib/rancher/etcd/:z"));
        let words = shlex::split(&out.replace("\\\n", " ")).unwrap();
        let img = words.iter().position(|w| w == "rancher/coreos-etcd:v3.4.13-rancher1").unwrap();
        assert_eq!(words[img + 1..], ["/usr/local/bin/etcd", "--name=etcd-vm5", "--initial-cluster-state=new", "--initial-cluster=etcd-vm5=https://10.0.0.5:2380"]);
    }

    #[test]
    fn privileged_and_resources_render() {
        let mut c = rke();
        c["HostConfig"]["Privileged"] = json!(true);
        c["HostConfig"]["Memory"] = json!(268435456);
        c["HostConfig"]["NanoCpus"] = json!(1500000000);
        c["HostConfig"]["Ulimits"] = json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}]);
        c["Config"]["Healthcheck"] = json!({"Test": ["CMD", "etcdctl", "endpoint health"], "Interval": 5000000000i64});
        let spec = run_spec(&c, &rke_image()).unwrap();
        let out = render_docker_run(&spec).unwrap();
        for want in ["--privileged", "--memory 268435456", "--cpus 1.5", "--ulimit 'nofile=1024:2048'", "--health-interval 5s"] {
            assert!(out.contains(want), "{want}: {out}");
        }
        assert!(out.starts_with("# note: the healthcheck's exec form"), "{out}");
        let words = shlex::split(&out.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n").replace("\\\n", " ")).unwrap();
        let i = words.iter().position(|w| w == "--health-cmd").unwrap();
        assert_eq!(words[i + 1], "etcdctl 'endpoint health'", "the exec form's words survive as one shell command");
    }

    #[test]
    fn awkward_values_are_quoted() {
        let mut c = rke();
        c["Config"]["Env"] = json!(["A=it's $HOME and \"x\"", "B=a b\nc"]);
        c["Config"]["Labels"] = json!({"k": "v;rm -rf /"});
        let spec = run_spec(&c, &rke_image()).unwrap();
        let out = render_docker_run(&spec).unwrap();
        let words = shlex::split(&out.replace(" \\\n", " ")).unwrap();
        assert!(words.contains(&"A=it's $HOME and \"x\"".to_string()), "{out}");
        assert!(words.contains(&"B=a b\nc".to_string()));
        assert!(words.contains(&"k=v;rm -rf /".to_string()));
        c["Config"]["Env"] = json!(["N=\0"]);
        assert!(matches!(render_docker_run(&run_spec(&c, &rke_image()).unwrap()), Err(ContainerError::Unquotable { .. })));
    }

    #[test]
    fn flag_edits_touch_only_those_flags() {
        let mut spec = run_spec(&rke(), &rke_image()).unwrap();
        edit_spec_flags(
            &mut spec,
            &[],
            &[("initial-cluster-state".into(), Some("existing".into())), ("force-new-cluster".into(), None), ("unsupported-arch".into(), None)],
        );
        assert_eq!(spec.cmd[2], "--initial-cluster-state=existing");
        assert_eq!(spec.cmd.len(), 4);
        assert_eq!(spec.env, vec!["ETCDCTL_API=3"], "an env-only flag is edited in the env");
    }

    #[test]
    fn edits_inside_a_multiword_entrypoint_keep_the_argv() {
        let (ep, cmd, _) = edit_container_flags(
            &["/usr/local/bin/etcd".into(), "--name=a".into()],
            &["--data-dir=/d".into()],
            &[],
            &[("name".into(), Some("b".into()))],
        );
        assert_eq!(ep, ["/usr/local/bin/etcd"]);
        assert_eq!(cmd, ["--name=b", "--data-dir=/d"]);
    }

    #[test]
    fn create_body_keeps_everything_but_the_edited_flags() {
        let body = create_body(&rke(), &[("initial-cluster-state".into(), Some("existing".into()))]);
        assert_eq!(body["Cmd"][2], "--initial-cluster-state=existing");
        assert_eq!(body["HostConfig"]["RestartPolicy"]["Name"], "always");
        assert_eq!(body["HostConfig"]["LogConfig"]["Config"]["max-size"], "10m");
        assert_eq!(body["Labels"]["io.rancher.rke.container.name"], "etcd");
        assert!(body.get("Hostname").is_none());
        assert_eq!(body["Env"], rke()["Config"]["Env"]);
    }

    #[test]
    fn anonymous_volumes_are_pinned() {
        let mut c = rke();
        c["Mounts"] = json!([{"Type": "volume", "Name": "abc123", "Destination": "/var/lib/anon", "Mode": "", "RW": true}]);
        let spec = run_spec(&c, &rke_image()).unwrap();
        assert_eq!(spec.anon_volumes, vec![("abc123".to_string(), "/var/lib/anon".to_string())]);
        let body = create_body(&c, &[]);
        assert_eq!(body["HostConfig"]["Mounts"][0], json!({"Type": "volume", "Source": "abc123", "Target": "/var/lib/anon"}));
    }

    #[test]
    fn not_etcd_is_refused() {
        let mut c = rke();
        c["Config"]["Cmd"] = json!(["/bin/sh", "-c", "etcd --name x"]);
        assert!(matches!(check_etcd(&c), Err(ContainerError::NotEtcd { .. })));
        assert!(check_etcd(&rke()).is_ok());
    }

    #[test]
    fn durations_and_cpus() {
        assert_eq!(go_duration(5_000_000_000), "5s");
        assert_eq!(go_duration(1_500_000_000), "1500ms");
        assert_eq!(cpus(500_000_000), "0.5");
        assert_eq!(cpus(2_000_000_000), "2");
    }
}
