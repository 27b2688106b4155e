//! `etcd-hostfix lab`: real etcd clusters on this machine's loopback addresses.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use hostfix_core::exit;
use hostfix_lab::kubelet::KubeletConfig;
use hostfix_lab::{EtcdVersion, Lab, LabRuntime, LabSpec};

use crate::{Global, Output, RuntimeArg};

#[derive(Debug, Clone, clap::Args)]
pub struct LabOpts {
    /// Where the lab's host roots live.
    #[arg(long, default_value_os_t = default_lab_dir())]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DemoOpts {
    #[command(flatten)]
    pub up: UpOpts,
    /// Heal with a typed `rejoin` (status, diagnose, rejoin), as before the daemon.
    #[arg(long)]
    pub manual: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpOpts {
    #[command(flatten)]
    pub lab: LabOpts,
    /// Number of members.
    #[arg(long, default_value_t = 3)]
    pub members: usize,
    /// etcd version: 3.6 (3.6.16, what kubeadm 1.34+ installs), 3.7 (3.7.3), 3.5 (3.5.36),
    /// or 3.4 (Debian's 3.4.23). 3.5 to 3.7 are built from etcd's Go modules by scripts/dev.
    #[arg(long = "etcd", default_value = "3.6")]
    pub version: EtcdVersion,
    /// `static-pod` (kubeadm masters) or `docker` (Rancher RKE nodes). The global
    /// `--runtime static-pod|docker` sets this too.
    #[arg(long = "lab-runtime", default_value = "static-pod")]
    pub lab_runtime: LabRuntime,
    /// Members listen on 127.A.B.1..N (with the real kubelet: 198.18.A.16·B+1..N, each
    /// master in its own network namespace).
    #[arg(long, default_value = "42.0", value_parser = parse_subnet)]
    pub subnet: [u8; 2],
    /// Static pods only: `stand-in` (the lab's own kubelet: fast, the default) or `real`
    /// (masters made by kubeadm, run by the real kubelet and containerd that scripts/dev
    /// builds from their Go modules; etcd 3.6 or later).
    #[arg(long, default_value = "stand-in")]
    pub kubelet: hostfix_lab::KubeletKind,
}

fn parse_subnet(s: &str) -> Result<[u8; 2], String> {
    let (a, b) = s.split_once('.').ok_or("expected A.B")?;
    Ok([a.parse().map_err(|_| "bad A")?, b.parse().map_err(|_| "bad B")?])
}

fn default_lab_dir() -> PathBuf {
    std::env::temp_dir().join("etcd-hostfix-lab")
}

#[derive(Debug, Subcommand)]
pub enum LabCmd {
    /// Bring a lab cluster up and leave it running.
    Up(UpOpts),
    /// Show `status` as seen from the lab's first master.
    Status(LabOpts),
    /// Stop everything the lab started (by PID and container ID) and remove nothing else.
    Down(LabOpts),
    /// The product as it is used: bring a lab up, start an `etcd-hostfix daemon` on every
    /// master, write keys, break a member (seed 000's crashloop), and print what the daemons
    /// saw and did until it is healed, with the incident record; then tear it all down.
    /// With --manual, heal it by typing `rejoin` instead.
    Demo(DemoOpts),
    /// Not CI: the lab with a daemon per master for N minutes, breaking a random member in
    /// a random definitive way at random intervals under a steady write load; then breaks,
    /// heals, time to healthy, keys lost (must be 0) and the daemons' RSS over time.
    Soak(crate::soak::SoakOpts),
    /// The lab's stand-in for the kubelet (internal).
    #[command(hide = true)]
    Kubelet {
        #[arg(long)]
        host_root: PathBuf,
        #[arg(long)]
        node: String,
        #[arg(long = "image")]
        images: Vec<String>,
        #[arg(long, default_value_t = 1000)]
        backoff_base_ms: u64,
    },
}

pub async fn run(g: &Global, mut cmd: LabCmd) -> Result<i32> {
    // `lab demo --runtime docker` reads naturally; the global option picks the lab's kind.
    if let LabCmd::Up(o) | LabCmd::Demo(DemoOpts { up: o, .. }) | LabCmd::Soak(crate::soak::SoakOpts { up: o, .. }) = &mut cmd {
        match g.runtime {
            RuntimeArg::Docker => o.lab_runtime = LabRuntime::Docker,
            RuntimeArg::StaticPod => o.lab_runtime = LabRuntime::StaticPod,
            RuntimeArg::Auto => {}
        }
    }
    match cmd {
        LabCmd::Up(o) => {
            let exe = std::env::current_exe()?;
            let lab = Lab::up(spec(&o), &exe, true).await?;
            lab.wait_healthy(&all(&lab), lab.nodes().len(), Duration::from_secs(60)).await?;
            println!("lab up in {} ({} members, etcd {}):", o.lab.dir.display(), o.members, o.version.tag());
            for n in lab.nodes() {
                println!("  {}  {}  host root {}", n.name, n.client_url(), n.host_root.display());
            }
            match &lab.node(0).netns {
                // A real-kubelet master is a network namespace: run the tool there, as on it.
                Some(ns) => println!(
                    "next: nsenter --net={} etcd-hostfix {}",
                    hostfix_lab::realkube::netns_path(ns).display(),
                    status_args(&lab, 0).join(" ")
                ),
                None => println!("next: etcd-hostfix {}", status_args(&lab, 0).join(" ")),
            }
            Ok(exit::OK)
        }
        LabCmd::Status(o) => {
            let lab = Lab::load(&o.dir)?;
            crate::status::run(&lab_global(g, &lab, 0)).await
        }
        LabCmd::Down(o) => {
            let mut lab = Lab::load(&o.dir)?;
            lab.down().await?;
            std::fs::remove_file(Lab::state_file(&o.dir)).ok();
            println!("lab in {} is down", o.dir.display());
            Ok(exit::OK)
        }
        LabCmd::Demo(o) if o.manual => demo(g, o.up).await,
        LabCmd::Demo(o) => demo_daemons(g, o.up).await,
        LabCmd::Soak(o) => crate::soak::soak(o).await,
        LabCmd::Kubelet { host_root, node, images, backoff_base_ms } => {
            let cfg = KubeletConfig {
                host_root,
                node,
                images: hostfix_lab::lab::image_map(&images)?,
                backoff_base: Duration::from_millis(backoff_base_ms),
                backoff_max: Duration::from_millis(backoff_base_ms * 16),
                rescan: Duration::from_millis(250),
                grace: Duration::from_secs(10),
            };
            cfg.run().await?;
            Ok(exit::OK)
        }
    }
}

fn spec(o: &UpOpts) -> LabSpec {
    let mut s = LabSpec::new(&o.lab.dir, o.members, o.version, o.lab_runtime, o.subnet);
    s.kubelet = o.kubelet;
    s
}

pub(crate) fn all(lab: &Lab) -> Vec<usize> {
    (0..lab.nodes().len()).collect()
}

/// The global options that point `status` (or any command) at lab node `i`.
pub fn lab_global(g: &Global, lab: &Lab, i: usize) -> Global {
    let n = lab.node(i);
    let mut out = g.clone();
    out.host_root = n.host_root.clone();
    out.manifest = None;
    out.state_dir = None;
    match &n.container {
        Some(c) => {
            out.runtime = RuntimeArg::Docker;
            out.container = c.clone();
        }
        None => out.runtime = RuntimeArg::StaticPod,
    }
    out
}

fn status_args(lab: &Lab, i: usize) -> Vec<String> {
    let n = lab.node(i);
    match &n.container {
        Some(c) => vec!["--runtime".into(), "docker".into(), "--container".into(), c.clone(), "status".into()],
        None => vec!["--host-root".into(), n.host_root.display().to_string(), "status".into()],
    }
}

pub(crate) fn step(s: &str) {
    println!("\n==> {s}");
}

/// A demo's lab, in a fresh directory each time: what it leaves (archives, logs, incident
/// records) stays there for reading.
pub(crate) async fn demo_lab(exe: &std::path::Path, mut o: UpOpts, kind: &str) -> Result<(Lab, UpOpts)> {
    if o.kubelet == hostfix_lab::KubeletKind::Real {
        // Its daemons would have to run in each master's network namespace; not yet.
        anyhow::bail!("lab {kind} runs on the stand-in kubelet; `lab up --kubelet real` brings up masters on the real one");
    }
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    o.lab.dir = o.lab.dir.join(format!("{kind}-{stamp}"));
    step(&format!(
        "bringing up a {}-member etcd {} lab ({}) in {}",
        o.members,
        o.version.tag(),
        match o.lab_runtime {
            LabRuntime::StaticPod => "kubeadm static pods",
            LabRuntime::Docker => "RKE docker containers",
        },
        o.lab.dir.display()
    ));
    let lab = Lab::up(spec(&o), exe, false).await?;
    Ok((lab, o))
}

async fn demo(g: &Global, o: UpOpts) -> Result<i32> {
    let exe = std::env::current_exe()?;
    let (mut lab, o) = demo_lab(&exe, o, "demo").await?;
    let result = async {
        lab.wait_healthy(&all(&lab), lab.nodes().len(), Duration::from_secs(60)).await?;
        for i in 0..100 {
            lab.etcdctl(0, &["put", &format!("/demo/key-{i:03}"), &format!("value-{i}")])?;
        }
        println!("wrote 100 keys through {}", lab.node(0).client_url());
        let mut table = g.clone();
        table.output = Output::Table;
        let last = lab.nodes().len() - 1;
        step(&format!("status from {}", lab.node(last).name));
        crate::status::run(&lab_global(&table, &lab, last)).await?;

        let holder = if o.lab_runtime == LabRuntime::Docker { "container" } else { "manifest" };
        step(&format!("breaking {}: data dir lost, its {holder} still says --initial-cluster-state=new", lab.node(last).name));
        lab.crashloop_member(last).await?;
        wait_crashloop(&table, &lab, last).await?;
        step(&format!("status from {} (expect exit 4: degraded)", lab.node(last).name));
        let code = crate::status::run(&lab_global(&table, &lab, last)).await?;
        println!("status exit code: {code}");

        step(&format!("diagnose on {}", lab.node(last).name));
        crate::diagnose::run(&lab_global(&table, &lab, last), &crate::diagnose::DiagnoseOpts { log: None }).await?;
        step(&format!("rejoin on {}", lab.node(last).name));
        let opts = crate::rejoin::RejoinOpts {
            dry_run: false,
            yes: true,
            force: false,
            lock_timeout: 60,
            wait_timeout: 120,
            backup: hostfix_core::backup::BackupMode::Auto,
            backup_max_age: Duration::from_secs(3600),
            no_apiserver_restart: false,
            keep_archives: 3,
        };
        let started = std::time::Instant::now();
        let code = crate::rejoin::run(&lab_global(&table, &lab, last), &opts).await?;
        anyhow::ensure!(code == exit::OK, "rejoin exited {code}");
        println!("rejoin took {:.1}s", started.elapsed().as_secs_f64());
        let got = lab.etcdctl(last, &["get", "--prefix", "/demo/", "--keys-only"])?;
        println!("{} serves {} demo keys", lab.node(last).name, got.lines().filter(|l| !l.is_empty()).count());
        step(&format!("status from {}", lab.node(last).name));
        crate::status::run(&lab_global(&table, &lab, last)).await
    }
    .await;
    step("tearing the lab down");
    lab.down().await?;
    result
}

/// One `etcd-hostfix daemon` per master, as the systemd unit would run it.
pub(crate) struct Daemons {
    pub(crate) children: Vec<std::process::Child>,
    logs: Vec<PathBuf>,
}

impl Daemons {
    /// `extra` is appended to each daemon's config file.
    pub(crate) fn start(exe: &std::path::Path, lab: &Lab, extra: &str) -> Result<Daemons> {
        let mut d = Daemons { children: vec![], logs: vec![] };
        for i in all(lab) {
            let n = lab.node(i);
            let cfg = n.host_root.join("etc/etcd-hostfix/config.yaml");
            std::fs::create_dir_all(cfg.parent().unwrap())?;
            std::fs::write(&cfg, format!("probe_interval: 500ms\nsnapshot_interval: 0\nmetrics_listen: {}:9379\n{extra}", n.ip))?;
            let log = n.host_root.join("daemon.log");
            let out = std::fs::File::create(&log)?;
            let mut args: Vec<String> = match &n.container {
                Some(c) => vec!["--runtime".into(), "docker".into(), "--container".into(), c.clone()],
                None => vec!["--runtime".into(), "static-pod".into()],
            };
            args.extend(["--host-root".into(), n.host_root.display().to_string(), "daemon".into()]);
            let child = std::process::Command::new(exe)
                .args(&args)
                .env("NO_COLOR", "1")
                .env("RUST_LOG", "info")
                .stdin(std::process::Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()?;
            d.children.push(child);
            d.logs.push(log);
        }
        Ok(d)
    }

    /// SIGTERM each daemon we started, by PID, and wait for it.
    pub(crate) fn stop(&mut self) {
        for c in &mut self.children {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The daemon's log lines worth showing, shortened for a terminal.
fn daemon_lines(text: &str, from: usize) -> Vec<String> {
    text.lines()
        .skip(from)
        .filter(|l| !l.contains("step done"))
        .map(|l| {
            // Timestamp (time of day), level, and the message with its fields.
            let (ts, rest) = l.split_once(' ').unwrap_or(("", l));
            let t = ts.get(11..23).unwrap_or(ts);
            let rest = rest.trim_start();
            let rest = match rest.find(": ") {
                Some(i) if rest[..i].contains("hostfix") || rest[..i].contains('{') => rest[i + 2..].to_string(),
                _ => rest.to_string(),
            };
            let short: String = rest.chars().take(200).collect();
            format!("  {t} {short}")
        })
        .collect()
}

async fn demo_daemons(g: &Global, o: UpOpts) -> Result<i32> {
    let exe = std::env::current_exe()?;
    let (mut lab, o) = demo_lab(&exe, o, "demo").await?;
    let mut daemons = None;
    let result = async {
        lab.wait_healthy(&all(&lab), lab.nodes().len(), Duration::from_secs(60)).await?;
        for i in 0..100 {
            lab.etcdctl(0, &["put", &format!("/demo/key-{i:03}"), &format!("value-{i}")])?;
        }
        println!("wrote 100 keys through {}", lab.node(0).client_url());
        step("starting `etcd-hostfix daemon` on every master (as systemd would: one per master)");
        let d = daemons.insert(Daemons::start(&exe, &lab, "")?);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut table = g.clone();
        table.output = Output::Table;
        let last = lab.nodes().len() - 1;
        step(&format!("status from {}", lab.node(last).name));
        crate::status::run(&lab_global(&table, &lab, last)).await?;

        let from = std::fs::read_to_string(&d.logs[last]).unwrap_or_default().lines().count();
        let holder = if o.lab_runtime == LabRuntime::Docker { "container" } else { "manifest" };
        step(&format!(
            "breaking {}: data dir lost, its {holder} still says --initial-cluster-state=new; nobody types anything from here on",
            lab.node(last).name
        ));
        let broke = std::time::Instant::now();
        lab.crashloop_member(last).await?;
        let state_dir = lab.node(last).host_root.join("var/lib/etcd-hostfix");
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        let record = loop {
            if let Some(r) = finished_incidents(&state_dir).into_iter().next() {
                break r;
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "no repair within 300 s; see {}", d.logs[last].display());
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        lab.wait_healthy(&all(&lab), lab.nodes().len(), Duration::from_secs(60)).await?;
        let took = broke.elapsed();
        step(&format!("what {}'s daemon saw and did ({})", lab.node(last).name, d.logs[last].display()));
        for l in daemon_lines(&std::fs::read_to_string(&d.logs[last]).unwrap_or_default(), from) {
            println!("{l}");
        }
        step(&format!("the incident record {}", record.0.display()));
        println!("{}", serde_json::to_string_pretty(&record.1)?);
        println!(
            "\nhealed {:.1}s after the break, with no command typed; outcome: {}",
            took.as_secs_f64(),
            record.1["outcome"]["result"].as_str().unwrap_or("?")
        );
        let got = lab.etcdctl(last, &["get", "--prefix", "/demo/", "--keys-only", "--consistency=s"])?;
        println!("{} serves {} demo keys", lab.node(last).name, got.lines().filter(|l| !l.is_empty()).count());
        // The daemon's next turn (every 500 ms here) records the repair's end.
        tokio::time::sleep(Duration::from_secs(1)).await;
        step(&format!("status from {} (with the daemon's own section)", lab.node(last).name));
        crate::status::run(&lab_global(&table, &lab, last)).await
    }
    .await;
    step("stopping the daemons and tearing the lab down");
    if let Some(mut d) = daemons {
        d.stop();
    }
    lab.down().await?;
    result
}

/// The daemon's incident records in `state_dir` that have an outcome, oldest first.
pub(crate) fn finished_incidents(state_dir: &std::path::Path) -> Vec<(PathBuf, serde_json::Value)> {
    hostfix_daemon::files::incident_files(state_dir)
        .into_iter()
        .filter_map(|p| {
            let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).ok()?).ok()?;
            (!v["outcome"].is_null()).then_some((p, v))
        })
        .collect()
}

async fn wait_crashloop(g: &Global, lab: &Lab, i: usize) -> Result<()> {
    for _ in 0..120 {
        let r = hostfix_playbooks::probe::gather(&lab_global(g, lab, i).settings()).await?;
        if r.local.state == hostfix_core::status::RunState::Crashlooping {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::bail!("{} never crashlooped", lab.node(i).name)
}
