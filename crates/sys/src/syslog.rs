//! syslog(3), the way Dante logs to `syslog[/facility]`.

use std::ffi::CString;
use std::sync::OnceLock;

/// The ident string must outlive every syslog call (openlog keeps the pointer).
static IDENT: OnceLock<CString> = OnceLock::new();

/// Maps a Dante facility name to its syslog constant.
pub fn facility(name: &str) -> Option<libc::c_int> {
    Some(match name {
        "auth" => libc::LOG_AUTH,
        "authpriv" => libc::LOG_AUTHPRIV,
        "cron" => libc::LOG_CRON,
        "daemon" => libc::LOG_DAEMON,
        "kern" => libc::LOG_KERN,
        "lpr" => libc::LOG_LPR,
        "mail" => libc::LOG_MAIL,
        "news" => libc::LOG_NEWS,
        "syslog" => libc::LOG_SYSLOG,
        "user" => libc::LOG_USER,
        "uucp" => libc::LOG_UUCP,
        "local0" => libc::LOG_LOCAL0,
        "local1" => libc::LOG_LOCAL1,
        "local2" => libc::LOG_LOCAL2,
        "local3" => libc::LOG_LOCAL3,
        "local4" => libc::LOG_LOCAL4,
        "local5" => libc::LOG_LOCAL5,
        "local6" => libc::LOG_LOCAL6,
        "local7" => libc::LOG_LOCAL7,
        _ => return None,
    })
}

/// Opens the syslog connection once per process with our program name and pid.
pub fn open(ident: &str) {
    let id = IDENT.get_or_init(|| CString::new(ident).unwrap_or_default());
    // SAFETY: `id` lives in a static for the rest of the process, as openlog requires.
    unsafe {
        libc::openlog(
            id.as_ptr(),
            libc::LOG_PID | libc::LOG_NDELAY,
            libc::LOG_DAEMON,
        )
    };
}

/// Sends one message at `priority` (a LOG_* level) to `facility`.
pub fn send(facility: libc::c_int, priority: libc::c_int, msg: &str) {
    let Ok(c) = CString::new(msg.replace('\0', "\\0")) else {
        return;
    };
    // SAFETY: the format string is a constant "%s" and `c` is a valid NUL-terminated string,
    // so syslog reads exactly one string argument.
    unsafe { libc::syslog(facility | priority, c"%s".as_ptr(), c.as_ptr()) };
}
