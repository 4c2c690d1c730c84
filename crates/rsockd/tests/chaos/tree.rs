//! The process tree, read in one pass over /proc: roles, sessions per relay, descriptors by
//! role, and whether the tree is whole.

use std::collections::BTreeMap;

use crate::common::*;

#[derive(Clone, Debug)]
pub(crate) struct Proc {
    pub(crate) pid: i32,
    pub(crate) ppid: i32,
    pub(crate) state: char,
    pub(crate) title: String,
}

/// `root` and every process below it.
pub(crate) fn tree(root: i32) -> Vec<Proc> {
    let mut all: Vec<(i32, i32, char)> = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Some(f) = proc_stat(pid) else { continue };
        let state = f.first().and_then(|s| s.chars().next()).unwrap_or('?');
        let Some(ppid) = f.get(1).and_then(|p| p.parse().ok()) else {
            continue;
        };
        all.push((pid, ppid, state));
    }
    let mut pids = vec![root];
    let mut i = 0;
    while i < pids.len() {
        let p = pids[i];
        pids.extend(all.iter().filter(|x| x.1 == p).map(|x| x.0));
        i += 1;
    }
    pids.into_iter()
        .filter_map(|pid| {
            let &(_, ppid, state) = all.iter().find(|x| x.0 == pid)?;
            Some(Proc {
                pid,
                ppid,
                state,
                title: cmdline(pid),
            })
        })
        .collect()
}

/// `mother I` or `relay I.K` from a process title.
pub(crate) fn role(title: &str) -> Option<String> {
    if let Some(r) = title.strip_prefix("rsockd: mother ") {
        return Some(format!("mother {}", r.split('/').next()?));
    }
    let r = title.strip_prefix("rsockd: relay ")?;
    Some(format!("relay {}", r.split(':').next()?))
}

pub(crate) fn relay_sessions(title: &str) -> Option<u32> {
    title
        .strip_prefix("rsockd: relay ")?
        .split(": ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// The mother index a role belongs to.
pub(crate) fn role_mother(role: &str) -> Option<u32> {
    let r = role
        .strip_prefix("mother ")
        .or_else(|| role.strip_prefix("relay "))?;
    r.split('.').next()?.parse().ok()
}

pub(crate) fn fd_targets(pid: i32) -> Option<Vec<String>> {
    let rd = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut v: Vec<String> = rd
        .flatten()
        .map(|e| {
            let t = std::fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "?".into());
            format!("{}->{t}", e.file_name().to_string_lossy())
        })
        .collect();
    v.sort();
    Some(v)
}

/// Role → (fd count, fd listing) of every process in the tree.
pub(crate) type Fds = BTreeMap<String, (usize, Vec<String>)>;

/// Drops pipes whose both ends the process holds: a relay's splice pool keeps up to 32 empty
/// pipes for reuse, so their number depends on past traffic, not on leaks. Pipes shared with
/// other processes (stderr, the supervisor's) stay counted.
pub(crate) fn without_own_pipes(t: Vec<String>) -> Vec<String> {
    let target = |e: &String| e.split_once("->").map(|(_, t)| t.to_string());
    let pipes: Vec<String> = t
        .iter()
        .filter_map(target)
        .filter(|x| x.starts_with("pipe:"))
        .collect();
    t.into_iter()
        .filter(|e| {
            target(e).is_none_or(|x| {
                !x.starts_with("pipe:") || pipes.iter().filter(|p| **p == x).count() < 2
            })
        })
        .collect()
}

pub(crate) fn fds_by_role(snap: &[Proc]) -> Fds {
    snap.iter()
        .filter_map(|p| {
            let r = role(&p.title)?;
            let t = without_own_pipes(fd_targets(p.pid)?);
            Some((r, (t.len(), t)))
        })
        .collect()
}

/// Ok when the tree is exactly `roles` (one process each), every relay is its mother's child
/// and idle, and nothing is a zombie; otherwise what is still off.
pub(crate) fn tree_whole(root: i32, roles: &[String]) -> Result<Vec<Proc>, String> {
    let snap = tree(root);
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for p in &snap {
        if p.state == 'Z' {
            problems.push(format!("zombie {} (parent {})", p.pid, p.ppid));
            continue;
        }
        let Some(r) = role(&p.title) else {
            problems.push(format!("unknown process {} {:?}", p.pid, p.title));
            continue;
        };
        seen.entry(r.clone()).or_default().push(p.pid);
        if r.starts_with("relay ") {
            if relay_sessions(&p.title) != Some(0) {
                problems.push(format!("{} {:?} still busy", p.pid, p.title));
            }
            let m = role_mother(&r).unwrap();
            let mother = snap
                .iter()
                .find(|x| role(&x.title).as_deref() == Some(&format!("mother {m}")));
            if mother.map(|x| x.pid) != Some(p.ppid) {
                problems.push(format!(
                    "{} {:?} is not a child of its mother (parent {})",
                    p.pid, p.title, p.ppid
                ));
            }
        }
    }
    for r in roles {
        match seen.get(r).map(Vec::len) {
            Some(1) => {}
            Some(n) => problems.push(format!("{n} processes titled {r}: {:?}", seen[r])),
            None => problems.push(format!("no {r}")),
        }
    }
    for (r, pids) in &seen {
        if !roles.contains(r) {
            problems.push(format!("unexpected {r}: {pids:?}"));
        }
    }
    if problems.is_empty() {
        Ok(snap)
    } else {
        Err(problems.join("; "))
    }
}
