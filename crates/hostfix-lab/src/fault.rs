//! Faults for tests: a network partition of one lab master.
//!
//! Loopback traffic leaves with source 127.0.0.1 whatever address a member listens on, so
//! rules on `-s 127.x` match nothing. The cut is made by cgroup instead: the master's
//! processes (its kubelet stand-in and everything under it, and any tool run "on" it) go
//! into a cgroup2 group G, then
//! - `iptables -A OUTPUT -m cgroup --path G -d <other master> -j DROP` for each other master,
//! - `iptables -A OUTPUT -m cgroup ! --path G -d <its own address> -j DROP`.
//!
//! Both directions are then silent, so every peer sees a timeout, never a refusal: exactly
//! what a real partition (or a host that is off) looks like. Only the rules this value
//! added are deleted, by their exact spec; nothing is flushed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Lab, LabError};

const UNIFIED: &str = "/sys/fs/cgroup/unified";

pub struct Partition {
    group: PathBuf,
    /// The group's name under the unified hierarchy, as `-m cgroup --path` takes it.
    name: String,
    /// The cut-off master's address, and the other masters'.
    own: String,
    others: Vec<String>,
    /// Each rule as given to `iptables -A`, without the `-A`.
    rules: Vec<Vec<String>>,
    /// Where the moved processes came from, to put them back.
    home: PathBuf,
    healed: bool,
}

fn iptables(op: &str, rule: &[String]) -> Result<(), LabError> {
    let out = Command::new("iptables")
        .arg("-w")
        .arg(op)
        .args(rule)
        .output()
        .map_err(|e| LabError::Runner(format!("iptables: {e}")))?;
    if !out.status.success() {
        return Err(LabError::Runner(format!("iptables {op} {}: {}", rule.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

/// `pid` and every process below it.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = vec![];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // The command name is in parentheses and may hold spaces: fields start after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|x| x.1) else { continue };
        if let Some(pp) = rest.split_whitespace().nth(1).and_then(|s| s.parse::<u32>().ok()) {
            parent_of.push((p, pp));
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(parent_of.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    out
}

/// The cgroup2 directory a process is in.
fn cgroup_of(pid: u32) -> Option<PathBuf> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = s.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(Path::new(UNIFIED).join(rel.trim_start_matches('/')))
}

fn move_to(group: &Path, pid: u32) -> std::io::Result<()> {
    std::fs::write(group.join("cgroup.procs"), pid.to_string())
}

impl Partition {
    /// Cut lab master `i` (a static-pod node) off from every other master.
    pub fn cut(lab: &Lab, i: usize) -> Result<Partition, LabError> {
        let mut p = Partition::group(lab, i)?;
        p.cut_off()?;
        Ok(p)
    }

    /// The first half of [`Partition::cut`]: the group, with master `i`'s processes in it,
    /// and no rule yet. A command that must be cut off with the master while it runs is
    /// started in the group ([`Partition::enter`]) before [`Partition::cut_off`]:
    /// `-m cgroup` matches the cgroup a socket was created in, so a process moved in later
    /// would keep the connections it already has.
    pub fn group(lab: &Lab, i: usize) -> Result<Partition, LabError> {
        let n = lab.node(i);
        let runner = n.runner_pid.ok_or_else(|| LabError::Runner(format!("{}: a partition needs a static-pod node's runner", n.name)))?;
        let name = format!("hostfix-partition-{}-{}", std::process::id(), n.ip).replace('.', "-");
        let group = Path::new(UNIFIED).join(&name);
        std::fs::create_dir_all(&group).map_err(|e| LabError::io(&group, e))?;
        let home = cgroup_of(runner).unwrap_or_else(|| PathBuf::from(UNIFIED));
        let others = lab.nodes().iter().enumerate().filter(|(j, _)| *j != i).map(|(_, o)| o.ip.to_string()).collect();
        let p = Partition { group: group.clone(), name, own: n.ip.to_string(), others, rules: vec![], home, healed: false };
        for pid in descendants(runner) {
            // A process may exit meanwhile; the rest still move.
            let _ = move_to(&group, pid);
        }
        Ok(p)
    }

    /// The second half of [`Partition::cut`]: the rules, both directions.
    pub fn cut_off(&mut self) -> Result<(), LabError> {
        let drop_rule = |negate: bool, ip: String| {
            let mut r: Vec<String> = ["OUTPUT", "-m", "cgroup"].iter().map(|s| s.to_string()).collect();
            if negate {
                r.push("!".into());
            }
            r.extend(["--path".into(), self.name.clone(), "-d".into(), ip, "-j".into(), "DROP".into()]);
            r
        };
        let mut rules: Vec<Vec<String>> = self.others.iter().map(|ip| drop_rule(false, ip.clone())).collect();
        rules.push(drop_rule(true, self.own.clone()));
        for r in rules {
            self.add(r)?;
        }
        Ok(())
    }

    fn add(&mut self, rule: Vec<String>) -> Result<(), LabError> {
        iptables("-A", &rule)?;
        self.rules.push(rule);
        Ok(())
    }

    /// The cgroup a command must join to run on the cut-off master's side.
    pub fn procs_file(&self) -> PathBuf {
        self.group.join("cgroup.procs")
    }

    /// Make `cmd` start inside the cut-off master's cgroup: it can then reach that master
    /// and no other.
    pub fn enter(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        let procs = std::ffi::CString::new(self.procs_file().display().to_string()).expect("no NUL in a path");
        // SAFETY: only async-signal-safe calls (open, write, close) run between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" means the writing process itself.
                let r = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Remove exactly the rules this partition added, move every process back, and remove
    /// the group.
    pub fn heal(&mut self) -> Result<(), LabError> {
        if self.healed {
            return Ok(());
        }
        self.healed = true;
        let mut first_err = None;
        for r in self.rules.drain(..).rev() {
            if let Err(e) = iptables("-D", &r) {
                first_err.get_or_insert(e);
            }
        }
        let procs = std::fs::read_to_string(self.procs_file()).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            let _ = move_to(&self.home, pid);
        }
        // rmdir fails while a process is still inside; one that was exiting leaves soon.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.group).is_ok() || !self.group.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = self.heal();
    }
}
