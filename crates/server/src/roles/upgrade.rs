//! Zero-downtime upgrade (SIGUSR2 to mother 1 or the supervisor): start the binary at the
//! path we were started from (not /proc/self/exe: that is the old file), with our arguments,
//! and hand it the listening sockets and the scoreboard over a channel of its own. Both
//! families accept on the same sockets meanwhile, so no client is refused. When the new one
//! says it is ready, the old one stops accepting and drains as on SIGTERM; if it exits, refuses
//! its configuration or is not ready within [`READY_WITHIN`], the old one goes on serving.
//!
//! The outcome is written to `PIDFILE.upgrade` (`ok PID` or `failed: reason`) for
//! `rsockd --upgrade`, and the pidfile names the new process once it is ready.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rsockd_ipc::{Control, Report};

use crate::channel::Channel;
use crate::log;
use crate::roles::child;
use crate::scoreboard::counters;
use crate::settings::Settings;

/// How long the new binary has to become ready.
pub const READY_WITHIN: Duration = Duration::from_secs(10);
/// Names the descriptor of the upgrade channel in the new process.
pub const ENV: &str = "RSOCKD_UPGRADE_FD";
/// Where that descriptor is mapped.
const FD: i32 = 3;

/// How we were started: the program path (absolute, resolved at start) and the arguments.
struct Origin {
    exe: PathBuf,
    args: Vec<String>,
}

static ORIGIN: OnceLock<Origin> = OnceLock::new();

/// Remembers how this process was started; call first thing in `main`, before anything changes
/// the working directory (a daemon goes to /).
pub fn remember_origin(argv0: &str, args: &[String]) {
    let exe = if argv0.contains('/') {
        std::env::current_dir()
            .map(|d| d.join(argv0))
            .unwrap_or_else(|_| PathBuf::from(argv0))
    } else {
        std::env::var_os("PATH")
            .and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(argv0))
                    .find(|c| c.is_file())
            })
            .unwrap_or_else(|| PathBuf::from(argv0))
    };
    // `./rsockd` run from /opt/x is /opt/x/rsockd, not /opt/x/./rsockd.
    let exe: PathBuf = exe
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    let _ = ORIGIN.set(Origin {
        exe,
        args: args.to_vec(),
    });
}

/// `PIDFILE.upgrade`, where the outcome goes.
pub fn status_path(pidfile: &Path) -> PathBuf {
    let mut s = pidfile.as_os_str().to_owned();
    s.push(".upgrade");
    PathBuf::from(s)
}

/// Writes the outcome for `rsockd --upgrade` (as the saved uid: the pidfile's directory is
/// usually root's).
pub fn write_status(pidfile: Option<&Path>, text: &str) {
    let Some(p) = pidfile else {
        return;
    };
    let path = status_path(p);
    let res = rsockd_sys::privs::with_saved_uid(|| std::fs::write(&path, format!("{text}\n")));
    if let Err(e) = res {
        log::warning(&format!("upgrade: cannot write {}: {e}", path.display()));
    }
}

/// The new process, as the old one sees it while it starts.
pub struct Successor {
    child: std::process::Child,
    chan: Channel,
}

impl Successor {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts the binary we were started from with our arguments and hands it `listeners`
    /// (and the scoreboard, in `s`). Spawned as the saved uid (root, usually), so that it
    /// starts as we did and drops privileges itself.
    pub async fn start(
        s: &Settings,
        listeners: Vec<(SocketAddr, OwnedFd)>,
        draining: bool,
    ) -> Result<Successor, String> {
        let origin = ORIGIN
            .get()
            .ok_or("upgrade: the program path was not recorded at start")?;
        let (ours, theirs) =
            rsockd_sys::fdpass::seqpacket_pair().map_err(|e| format!("upgrade: channel: {e}"))?;
        // The server's totals go on in the new family: it maps our counters region.
        let mut fds = vec![(theirs, FD)];
        if let Some(c) = counters::dup_fd() {
            fds.push((c, counters::COUNTERS_FD));
        }
        let child = rsockd_sys::privs::with_saved_uid(|| {
            rsockd_sys::spawn::spawn_program(
                &origin.exe,
                &origin.args,
                fds,
                &[(ENV, FD.to_string())],
            )
        })
        .map_err(|e| format!("cannot start {}: {e}", origin.exe.display()))?;
        let chan = Channel::new(ours, "upgrade").map_err(|e| format!("upgrade: channel: {e}"))?;
        log::info(&format!(
            "upgrade: started {} as pid {}",
            origin.exe.display(),
            child.id()
        ));
        let mut next = Successor { child, chan };
        let sent = async {
            if draining {
                next.chan
                    .send(&Control::Draining(true).encode(), &[])
                    .await?;
            }
            child::send_config(&next.chan, s, listeners).await
        };
        if let Err(e) = sent.await {
            // Most likely it is gone already (a program that is no rsockd).
            let why = match next.exit_status().await {
                Some(st) => format!("the new binary exited ({st}) before it was ready"),
                None => format!("cannot hand over the sockets: {e}"),
            };
            next.stop().await;
            return Err(why);
        }
        Ok(next)
    }

    /// Its exit status, if it ends within 2 s.
    async fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => return Some(st),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                // Reaped by our SIGCHLD handler, or still running.
                _ => return None,
            }
        }
    }

    /// Waits until the new process says it is ready. On failure it is stopped (if it still
    /// runs) and the reason returned.
    pub async fn ready(mut self) -> Result<u32, String> {
        let pid = self.pid();
        let got = tokio::time::timeout(READY_WITHIN, self.chan.recv::<Report>()).await;
        let why = match got {
            Ok(Some((Report::Ready { .. }, _))) => return Ok(pid),
            Ok(Some(_)) => "it sent something other than its readiness".to_string(),
            Ok(None) => {
                // Its end of the channel closed: it exited (or closed it, which is as bad).
                match self.exit_status().await {
                    Some(st) => format!("the new binary exited ({st}) before it was ready"),
                    None => "the new binary exited before it was ready".to_string(),
                }
            }
            Err(_) => format!(
                "the new binary was not ready within {} s",
                READY_WITHIN.as_secs()
            ),
        };
        self.stop().await;
        Err(why)
    }

    /// Ends a successor that failed: SIGTERM, then SIGKILL after 2 s.
    async fn stop(&mut self) {
        let pid = i32::try_from(self.child.id()).unwrap_or(0);
        if pid <= 1 {
            return;
        }
        let _ = rsockd_sys::process::kill_raw(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = rsockd_sys::process::kill_raw(pid, libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// What the old process handed to us, the new one.
pub struct Inherited {
    /// The old family's configuration generation (its scoreboard carries it).
    pub generation: u64,
    /// The old family was draining (`rsockd --drain`): so are we.
    pub draining: bool,
    pub listeners: Vec<(SocketAddr, OwnedFd)>,
    pub board: Option<OwnedFd>,
    /// The old family's counters region, to count on in.
    pub counters: Option<OwnedFd>,
    /// To say we are ready.
    pub chan: OwnedFd,
}

/// In the new process, before anything else opens descriptors: the sockets and scoreboard the
/// old one handed over, if we were started as its successor.
pub fn take_inherited() -> Result<Option<Inherited>, String> {
    let Some(v) = std::env::var_os(ENV) else {
        return Ok(None);
    };
    std::env::remove_var(ENV);
    let fd: i32 = v
        .to_string_lossy()
        .parse()
        .map_err(|_| format!("{ENV}: not a descriptor number"))?;
    let chan = rsockd_sys::spawn::inherited_fd(fd)
        .ok_or_else(|| format!("{ENV}={fd}: no such descriptor"))?;
    let counters = rsockd_sys::spawn::inherited_fd(counters::COUNTERS_FD);
    let mut buf = vec![0u8; rsockd_ipc::MAX_MESSAGE];
    let deadline = Instant::now() + READY_WITHIN;
    // A drain order (`rsockd --drain` in force) may come before the configuration.
    let mut draining = false;
    let (msg, got) = loop {
        let got = loop {
            match rsockd_sys::fdpass::recv(chan.as_fd(), &mut buf) {
                Ok(r) if r.len == 0 => {
                    return Err("upgrade: the old process closed the channel".into())
                }
                Ok(r) => break r,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => return Err(format!("upgrade: cannot receive the sockets: {e}")),
            }
        };
        if got.truncated {
            return Err("upgrade: the hand-over message was truncated".into());
        }
        match Control::decode(&buf[..got.len]).map_err(|e| format!("upgrade: {e}"))? {
            Control::Draining(on) => draining = on,
            msg => break (msg, got),
        }
    };
    let Control::Config {
        generation,
        board,
        listen,
        ..
    } = msg
    else {
        return Err("upgrade: the hand-over message is not a configuration".into());
    };
    let mut fds = got.fds.into_iter();
    // The old configuration's text: we read the file ourselves (it may be new too).
    let _text = fds.next();
    let board = if board { fds.next() } else { None };
    let listeners: Vec<(SocketAddr, OwnedFd)> = listen.into_iter().zip(fds).collect();
    Ok(Some(Inherited {
        generation,
        draining,
        listeners,
        board,
        counters,
        chan,
    }))
}

/// Tells the old process we are ready (it then stops accepting and drains).
pub fn report_ready(chan: &OwnedFd) {
    let msg = Report::Ready {
        pid: std::process::id(),
    }
    .encode();
    if let Err(e) = rsockd_sys::fdpass::send(chan.as_fd(), &msg, &[]) {
        log::error(&format!(
            "upgrade: cannot tell the old process we are ready: {e}"
        ));
    }
}

/// The pidfile, once the new process is ready: its pid, written through the old process's
/// descriptor (opened as root at start).
pub fn hand_pidfile(f: &mut std::fs::File, pid: u32) {
    use std::io::Seek;
    let res = f
        .set_len(0)
        .and_then(|()| f.rewind())
        .and_then(|()| writeln!(f, "{pid}"));
    if let Err(e) = res {
        log::warning(&format!("upgrade: cannot write the pidfile: {e}"));
    }
}
