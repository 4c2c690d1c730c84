//! A small network of namespaces for system tests that need more than loopback: a balancer in
//! front of two nodes, a client and a target each on a machine of its own. Every host is a
//! network namespace with one interface (`eth0`) on a bridge that lives in a namespace of its
//! own too, so nothing is added to the machine's own network: the test's traffic never leaves
//! the namespaces it made.
//!
//! [`Lab::drop`] ends the processes registered with [`Lab::track`] (by PID) and deletes every
//! namespace, whether the test passed or panicked.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};

/// One lab: its namespaces, and the processes to end when it goes.
pub struct Lab {
    prefix: String,
    hosts: Vec<String>,
    /// Tracked pids with their start times (pids are reused once a process is gone).
    pids: Mutex<Vec<(i32, Option<String>)>>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Lab {
    /// Makes the namespaces `hosts` (name, address in 10.N.0.0/24; the names are short and
    /// become `<tag><pid>-<name>`) on one bridge. An error says why the machine cannot (not
    /// root, no namespaces): callers skip with it.
    pub fn new(tag: &str, hosts: &[(&str, Ipv4Addr)]) -> Result<Lab, String> {
        let prefix = format!("{tag}{}", std::process::id());
        let mut lab = Lab {
            prefix,
            hosts: Vec::new(),
            pids: Mutex::new(Vec::new()),
        };
        let hub = lab.add_ns("hub")?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for (i, (name, addr)) in hosts.iter().enumerate() {
            let ns = lab.add_ns(name)?;
            let port = format!("p{i}");
            // Made inside the hub, its peer moved straight into the host: never in ours.
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(lab)
    }

    fn add_ns(&mut self, name: &str) -> Result<String, String> {
        let ns = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &ns])?;
        self.hosts.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The full name of host `name`'s namespace.
    pub fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// A command that runs `program` in host `name` (`ip netns exec`, which execs, so the
    /// child's PID is the program's).
    pub fn command(&self, name: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(name), program]);
        c
    }

    /// Ends `pid` and every process below it (SIGKILL) when the lab is dropped.
    pub fn track(&self, pid: i32) {
        if let Ok(mut p) = self.pids.lock() {
            p.push((pid, started(pid)));
        }
    }

    /// Starts `f` on a thread that has entered host `name`'s network namespace: sockets made
    /// there belong to that host, and can be used from any thread afterwards.
    pub fn spawn_in<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.ns(name));
        thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            setns(&ns, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
    }

    /// [`Lab::spawn_in`], waiting for the result.
    pub fn run_in<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        self.spawn_in(name, f)
            .join()
            .unwrap_or_else(|_| panic!("a thread in namespace {name} panicked"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let tracked = self.pids.lock().map(|p| p.clone()).unwrap_or_default();
        // Still the process we started (not a reused pid), then its whole tree (relays outlive
        // a killed mother), then the kills.
        let roots: Vec<i32> = tracked
            .into_iter()
            .filter(|(p, t)| t.is_some() && started(*p) == *t)
            .map(|(p, _)| p)
            .collect();
        let mut pids = roots.clone();
        for r in roots {
            pids.extend(descendants(r));
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // A namespace goes when its last process does; the killed ones need a moment.
        thread::sleep(Duration::from_millis(100));
        for ns in self.hosts.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// When `pid` started (field 22 of /proc/PID/stat), to tell it from a later user of its pid.
fn started(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19).map(str::to_string)
}

/// Every live process below `root` (by the parent field of /proc/PID/stat).
pub fn descendants(root: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // The command name may hold spaces and parentheses: fields follow the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (child, _) in parent_of.iter().filter(|(_, pp)| *pp == p) {
            out.push(*child);
            frontier.push(*child);
        }
    }
    out
}
