//! Where lines go: `logoutput`/`errorlog` destinations.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{OnceLock, RwLock};

use super::level::Level;

/// One destination, opened.
pub enum Dest {
    Stderr,
    Stdout,
    File { path: String, file: File },
    Syslog { facility: libc::c_int },
}

/// The process's destinations: `all` gets every line, `errors` only warnings and worse.
pub struct Outputs {
    all: Vec<Dest>,
    errors: Vec<Dest>,
    /// `rsockd.log.format: json`.
    json: bool,
}

static PROCESS: RwLock<String> = RwLock::new(String::new());

pub(super) fn set_process(name: &str) {
    if let Ok(mut p) = PROCESS.write() {
        *p = name.to_string();
    }
}

/// Program name and pid for the prefix, fixed per process.
fn ident() -> &'static str {
    static IDENT: OnceLock<String> = OnceLock::new();
    IDENT.get_or_init(|| format!("rsockd[{}]", std::process::id()))
}

impl Outputs {
    /// Lines to stderr only: before a configuration is read, and for `-V`.
    pub fn stderr() -> Self {
        Outputs {
            all: vec![Dest::Stderr],
            errors: Vec::new(),
            json: false,
        }
    }

    pub fn new(all: Vec<Dest>, errors: Vec<Dest>, json: bool) -> Self {
        Outputs { all, errors, json }
    }

    /// Opens a log file for appending; several processes append to it at once.
    pub fn open_file(path: &str) -> std::io::Result<Dest> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Dest::File {
            path: path.to_string(),
            file,
        })
    }

    pub fn write(&self, level: Level, msg: &str) {
        let now = std::time::SystemTime::now();
        let (stamp, secs, micros) = rsockd_sys::localtime::stamp(now);
        let line = if self.json {
            let process = PROCESS.read().map(|p| p.clone()).unwrap_or_default();
            let process = if process.is_empty() {
                "rsockd"
            } else {
                &process
            };
            super::json::line(level, msg, secs, micros, std::process::id(), process)
        } else {
            format!(
                "{stamp} ({secs}.{micros:06}) {}: {}: {msg}\n",
                ident(),
                level.as_str()
            )
        };
        // Syslog adds its own stamp and name: it gets `level: text`, or the JSON object.
        let bare = if self.json {
            line.trim_end().to_string()
        } else {
            format!("{}: {msg}", level.as_str())
        };
        let bare = bare.as_str();
        for d in &self.all {
            emit(d, level, &line, bare);
        }
        if level >= Level::Warning {
            for d in &self.errors {
                emit(d, level, &line, bare);
            }
        }
    }
}

fn emit(d: &Dest, level: Level, line: &str, msg: &str) {
    // Failing to log must never take the server down; there is nowhere to report it anyway.
    match d {
        Dest::Stderr => {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
        Dest::Stdout => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
        Dest::File { file, .. } => {
            let _ = (&*file).write_all(line.as_bytes());
        }
        Dest::Syslog { facility } => {
            let prio = match level {
                Level::Debug => libc::LOG_DEBUG,
                Level::Info => libc::LOG_INFO,
                Level::Notice => libc::LOG_NOTICE,
                Level::Warning => libc::LOG_WARNING,
                Level::Error => libc::LOG_ERR,
                Level::Alert => libc::LOG_ALERT,
            };
            rsockd_sys::syslog::send(*facility, prio, msg);
        }
    }
}
