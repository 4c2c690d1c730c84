//! rsockd: a SOCKS server that reads Dante's sockd.conf and takes Dante's flags.
//!
//! `main` parses the command line, validates the configuration, binds the listening sockets,
//! detaches and drops privileges (all before any thread exists), then runs mother 1. Child
//! roles are this same binary exec'ed with a hidden `--role` argument.
#![forbid(unsafe_code)]

mod cli;
mod hash_password;
mod order;

use std::io::Write;
use std::process::ExitCode;

use rsockd_server::log;
use rsockd_server::roles::{self, mother::MotherArgs};
use rsockd_server::scoreboard::counters;
use rsockd_server::settings::{Flags, Settings};

/// The safe default `scripts/run.sh` uses: loopback only, so never an open proxy.
const DEFAULT_CONFIG: &str = "\
# rsockd built-in default: safe to run anywhere.
# Listens on loopback only and serves only loopback clients: never an open proxy.
logoutput: stderr
internal: 127.0.0.1 port = 1080
# rsockd extension: a wildcard external address lets the kernel pick the source address.
external: 0.0.0.0
external: ::
socksmethod: none
client pass { from: 127.0.0.0/8 to: 0/0 log: error }
client block { from: 0/0 to: 0/0 log: connect error }
socks pass { from: 127.0.0.0/8 to: 0/0 log: connect disconnect error }
";

const LICENCE: &str = "rsockd is distributed under the BSD 3-clause licence.\n\
It reads configuration files written for Dante, which is Copyright (c) Inferno Nettverk A/S;\n\
rsockd contains no Dante code.\n";

fn main() -> ExitCode {
    let argv0 = std::env::args().next().unwrap_or_else(|| "rsockd".into());
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = if args.first().map(String::as_str) == Some("--role") {
        run_role(&args)
    } else {
        // An upgrade starts the program at this path with these arguments.
        roles::upgrade::remember_origin(&argv0, &args);
        run_main(&args)
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// A child process: the hidden arguments (`roles::Role::to_args`) name its role.
fn run_role(args: &[String]) -> i32 {
    let (role, flags) = match roles::Role::parse(args) {
        Ok(r) => r,
        Err(e) => {
            log::error(&format!("internal role: {e}"));
            return 2;
        }
    };
    let Some(ctl) = rsockd_sys::spawn::inherited_fd(roles::CTL_FD) else {
        log::error("internal role: no control channel; this mode is started by rsockd itself");
        return 2;
    };
    roles::run_child(role, flags, ctl)
}

fn version(level: u32) -> String {
    let mut s = format!("rsockd v{}\n", env!("CARGO_PKG_VERSION"));
    if level > 1 {
        s.push_str("build: relay-processes seqpacket-handoff happy-eyeballs socks4a\n");
    }
    s
}

fn run_main(args: &[String]) -> i32 {
    if args.first().map(String::as_str) == Some("--hash-password") {
        return hash_password::run(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("--print-default-config") {
        print!("{DEFAULT_CONFIG}");
        return 0;
    }
    let cli = match cli::parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rsockd: {e}\n{}", cli::usage());
            return 1;
        }
    };
    if cli.help {
        print!("{}", cli::usage());
        return 0;
    }
    if cli.version > 0 {
        print!("{}", version(cli.version));
        return 0;
    }
    if cli.licence {
        print!("{LICENCE}");
        return 0;
    }
    if let Some(o) = cli.order {
        let pidfile = cli.pidfile.as_deref().unwrap_or(cli::DEFAULT_PIDFILE);
        return order::run(o, pidfile);
    }
    // First, before anything else holds descriptors: what an old rsockd handed over (we are
    // its upgrade), or what a service manager passed.
    let mut inherited = match roles::upgrade::take_inherited() {
        Ok(i) => i,
        Err(e) => {
            log::error(&e);
            return 1;
        }
    };
    let passed = match rsockd_server::net::activation::take() {
        Ok(p) => p,
        Err(e) => {
            log::error(&e);
            return 1;
        }
    };
    let file = cli
        .config
        .clone()
        .unwrap_or_else(|| cli::DEFAULT_CONFIG.to_string());
    let flags = Flags {
        debug: cli.debug,
        no_keepalive: cli.no_keepalive,
    };
    let of = cli.mothers;
    // The top process is mother 1 (or the supervisor) from its first line on.
    if cli.supervisor {
        log::set_process("supervisor");
    } else {
        log::set_process(&format!("mother 1/{of}"));
    }
    let loaded = match inherited.as_mut() {
        Some(i) => Settings::load_inheriting(&file, i.generation, flags, i.board.take()),
        None => Settings::load(&file, 1, flags),
    };
    let (settings, warnings) = match loaded {
        Ok(ok) => ok,
        Err(e) => {
            log::error(&e.to_string());
            log::alert(&format!("mother[1/{of}]: shutting down"));
            return 1;
        }
    };
    for w in &warnings {
        log::warning(w);
    }
    // Read as the user we start as (root, usually), as the helper will read it.
    match rsockd_server::auth::check(&settings.config, true) {
        Ok(ws) => ws.iter().for_each(|w| log::warning(w)),
        Err(e) => {
            log::error(&e);
            log::alert(&format!("mother[1/{of}]: shutting down"));
            return 1;
        }
    }
    let addrs = match settings.listen_addrs() {
        Ok(a) => a,
        Err(e) => {
            log::error(&e.to_string());
            return 1;
        }
    };
    let unprivileged = match resolve_users(&settings) {
        Ok(u) => u,
        Err(e) => {
            log::error(&e);
            return 1;
        }
    };
    if cli.verify {
        return 0;
    }
    if let Err(e) = settings.install_logging() {
        log::error(&e.to_string());
        return 1;
    }
    let assigned = match rsockd_server::net::activation::assign(&addrs, passed) {
        Ok(a) => a,
        Err(e) => {
            log::error(&e);
            log::alert(&format!("mother[1/{of}]: shutting down"));
            return 1;
        }
    };
    let mut handed = inherited
        .as_mut()
        .map(|i| std::mem::take(&mut i.listeners))
        .unwrap_or_default();
    let mut listeners = Vec::new();
    for (a, passed) in assigned {
        // The old family's socket for this address: its backlog carries over.
        if let Some(i) = handed.iter().position(|(h, _)| *h == a) {
            listeners.push(handed.swap_remove(i));
            continue;
        }
        if let Some(fd) = passed {
            log::info(&format!(
                "socket activation: the service manager's socket serves {}",
                log::addr(&a)
            ));
            listeners.push((a, fd));
            continue;
        }
        match rsockd_server::net::listen::bind(a) {
            Ok(s) => listeners.push((a, s.into())),
            Err(e) => {
                log::error(&format!("{e}"));
                log::alert(&format!("mother[1/{of}]: shutting down"));
                return 1;
            }
        }
    }
    for (a, _) in handed {
        log::info(&format!(
            "upgrade: {} is no longer in the configuration; not listening there",
            log::addr(&a)
        ));
    }
    // An upgrade is already detached, and must keep the old one's session and process group.
    if cli.detach && inherited.is_none() {
        if let Err(e) = rsockd_sys::daemon::daemonize() {
            log::error(&format!("cannot detach: {e}"));
            return 1;
        }
    }
    let pidpath = cli
        .pidfile
        .clone()
        .or_else(|| rsockd_sys::privs::is_root().then(|| cli::DEFAULT_PIDFILE.to_string()));
    let pidfile = match &pidpath {
        // The old process writes our pid there once we are ready; we keep it to truncate it.
        Some(p) if inherited.is_some() => std::fs::OpenOptions::new().write(true).open(p).ok(),
        Some(p) => match write_pidfile(p) {
            Ok(f) => Some(f),
            Err(e) => {
                log::error(&format!("cannot write pidfile {p}: {e}"));
                return 1;
            }
        },
        None => None,
    };
    rsockd_sys::process::raise_nofile();
    if let Err(e) = rsockd_sys::process::set_subreaper() {
        log::warning(&format!("cannot become a child subreaper: {e}"));
    }
    if let Some((to, _)) = &unprivileged {
        give_log_files_to(&settings, to);
    }
    if let Some((to, saved)) = unprivileged {
        if let Err(e) = rsockd_sys::privs::drop_to(&to, saved) {
            log::error(&format!("cannot switch to user {}: {e}", to.name));
            return 1;
        }
    } else if rsockd_sys::privs::is_root() {
        log::warning("setting the unprivileged uid to 0 is not recommended for security reasons");
    }
    let relays = (rsockd_sys::process::cpus() / of as usize).max(1);
    // The server's running totals, for /metrics and SIGUSR1: made once, before any child, so
    // every process maps the same region and no reload starts them again.
    let users = settings
        .config
        .metrics_users
        .map_or(counters::DEFAULT_USERS, |n| n as usize);
    let top = if cli.supervisor {
        counters::ProcRole::Supervisor
    } else {
        counters::ProcRole::Mother
    };
    let carried = inherited.as_mut().and_then(|i| i.counters.take());
    // RSOCKD_COUNTERS=off keeps no totals at all: for measuring what counting costs (the
    // benchmark's rsockd-nocount); /metrics then shows zeros and SIGUSR1 no totals.
    let off = std::env::var_os("RSOCKD_COUNTERS").is_some_and(|v| v == "off");
    let made = match carried {
        // An upgrade: the totals go on from the old family's.
        Some(fd) => counters::adopt(fd, top),
        None if off => Ok(()),
        None => counters::create(users, top),
    };
    if let Err(e) = made {
        log::warning(&format!(
            "cannot make the counters region: {e}; metrics are off"
        ));
    }
    if cli.supervisor {
        return roles::supervisor::run(roles::supervisor::SupervisorArgs {
            of,
            flags,
            settings,
            listeners,
            pidfile,
            pidfile_path: pidpath.map(std::path::PathBuf::from),
            relays,
            draining: inherited.as_ref().is_some_and(|i| i.draining),
            predecessor: inherited.map(|i| i.chan),
        });
    }
    roles::mother::run(MotherArgs {
        index: 1,
        of,
        flags,
        settings: std::rc::Rc::new(settings),
        listeners,
        pidfile,
        relays,
        upstream: None,
        lead: true,
        draining: inherited.as_ref().is_some_and(|i| i.draining),
        pidfile_path: pidpath.map(std::path::PathBuf::from),
        predecessor: inherited.map(|i| i.chan),
    })
}

/// The account to run as, and the uid to keep as saved uid (Dante keeps its privileged uid).
fn resolve_users(s: &Settings) -> Result<Option<(rsockd_sys::privs::Account, u32)>, String> {
    let look = |kw: &str, name: &str| -> Result<rsockd_sys::privs::Account, String> {
        match rsockd_sys::privs::lookup(name) {
            Ok(Some(a)) => Ok(a),
            Ok(None) => Err(format!("{}: {kw}: no such user \"{name}\"", s.file)),
            Err(e) => Err(format!("{}: {kw}: cannot look up \"{name}\": {e}", s.file)),
        }
    };
    let privileged = match &s.config.user_privileged {
        Some(n) => Some(look("user.privileged", n)?),
        None => None,
    };
    let Some(name) = &s.config.user_unprivileged else {
        return Ok(None);
    };
    let un = look("user.unprivileged", name)?;
    if !rsockd_sys::privs::is_root() {
        if rsockd_sys::privs::euid() != un.uid {
            log::warning(&format!(
                "user.unprivileged: not running as root, so staying uid {} instead of \"{}\"",
                rsockd_sys::privs::euid(),
                un.name
            ));
        }
        return Ok(None);
    }
    let saved = privileged.map(|p| p.uid).unwrap_or(0);
    Ok(Some((un, saved)))
}

/// Relays are re-executed after the privilege drop and open the log files themselves, so the
/// files we created as root must be writable by the account we run as (Dante's forked children
/// inherit the open descriptor instead).
fn give_log_files_to(s: &Settings, to: &rsockd_sys::privs::Account) {
    use rsockd_config::LogDest;
    for dest in s.config.logoutput.iter().chain(&s.config.errorlog) {
        if let LogDest::File(path) = dest {
            if let Err(e) = std::os::unix::fs::chown(path, Some(to.uid), Some(to.gid)) {
                log::warning(&format!(
                    "cannot hand log file {} to user {}: {e}; processes running as {} may not be able to write to it",
                    path.display(),
                    to.name,
                    to.name
                ));
            }
        }
    }
}

fn write_pidfile(path: &str) -> std::io::Result<std::fs::File> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    writeln!(f, "{}", std::process::id())?;
    Ok(f)
}
