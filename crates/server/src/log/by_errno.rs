//! `internal.log.<level>.error:` / `external.log.<level>.error:`: errors whose errno (or
//! getaddrinfo code) a rule, or the global settings, list get a line of their own at the
//! level given, beside the session lines the rule's `log:` asks for. As Dante, the external
//! side covers connecting to the target (`connect to host T failed: ...`, and `... is now in
//! progress` when EINPROGRESS is listed) and resolving its name; rsockd also applies both
//! sides to errors on an established session's two connections.

use std::net::SocketAddr;

use rsockd_config::{Config, ErrorLog, LogWhat, Rule, Side};

use super::Level;

/// The lists in force for a rule: its own, or else the global ones.
pub fn lists<'a>(rule: Option<&'a Rule>, cfg: &'a Config) -> &'a [ErrorLog] {
    match rule {
        Some(r) if !r.error_logs.is_empty() => &r.error_logs,
        _ => &cfg.error_logs,
    }
}

/// Our level for a syslog level name (emerg, alert and crit are written as `alert`).
fn level(name: &str) -> Level {
    match name {
        "debug" => Level::Debug,
        "info" => Level::Info,
        "notice" => Level::Notice,
        "warning" => Level::Warning,
        "err" => Level::Error,
        _ => Level::Alert,
    }
}

/// The level of the first list on `side` that names errno `e`.
pub fn errno_level(lists: &[ErrorLog], side: Side, e: i32) -> Option<Level> {
    lists
        .iter()
        .find(|l| l.side == side && l.has_errno(e))
        .map(|l| level(&l.level))
}

/// The level of the first external list that names getaddrinfo error `code`.
pub fn gai_level(lists: &[ErrorLog], code: i32) -> Option<Level> {
    lists
        .iter()
        .find(|l| l.side == Side::External && l.has_gai(code))
        .map(|l| level(&l.level))
}

/// glibc's getaddrinfo texts back to their codes (std's errors carry only the text).
pub fn gai_code(text: &str) -> Option<i32> {
    Some(match text {
        "Name or service not known" => -2,
        "Temporary failure in name resolution" => -3,
        "Non-recoverable failure in name resolution" => -4,
        "No address associated with hostname" => -5,
        "ai_family not supported" => -6,
        "Address family for hostname not supported" => -9,
        "Memory allocation failure" => -10,
        "System error" => -11,
        _ => return None,
    })
}

/// The level for a resolver failure given as its text.
pub fn by_gai_text(lists: &[ErrorLog], text: &str) -> Option<Level> {
    gai_code(text).and_then(|c| gai_level(lists, c))
}

/// `could not DNS-resolve "NAME": TEXT for IPv4 address`, Dante's line; the family is the
/// one our external addresses have (left out when they have both).
pub fn dns_failed(name: &str, text: &str, externals: &[std::net::IpAddr]) -> String {
    let v4 = externals.iter().any(|a| a.is_ipv4());
    let v6 = externals.iter().any(|a| a.is_ipv6());
    let family = match (v4, v6) {
        (true, false) => " for IPv4 address",
        (false, true) => " for IPv6 address",
        _ => "",
    };
    format!(
        "could not DNS-resolve \"{}\": {text}{family}",
        super::escape(name.as_bytes())
    )
}

/// Writes `msg` at `level` if one is set.
pub fn write(level: Option<Level>, msg: impl FnOnce() -> String) {
    if let Some(l) = level {
        super::write(l, &msg());
    }
}

/// `<side>.log.<level>.tcp.enabled|disabled:`: for the connection on `side`, whose
/// `tcpi_options` are `options`, a line per list that names options it has (enabled) or
/// lacks (disabled). `who` names the connection. (Dante 1.4.2 parses these and, in our
/// observation, writes nothing; rsockd writes these lines.)
pub fn tcp_options(lists: &[ErrorLog], side: Side, options: u8, who: &str) {
    for l in lists.iter().filter(|l| l.side == side) {
        let want_on = match l.what {
            LogWhat::TcpEnabled => true,
            LogWhat::TcpDisabled => false,
            LogWhat::Error => continue,
        };
        let matched: Vec<&str> = l
            .symbols
            .iter()
            .map(String::as_str)
            .filter(|o| {
                let bit = match *o {
                    "timestamps" => 1,
                    "sack" => 2,
                    "wscale" => 4,
                    _ => 8,
                };
                (options & bit != 0) == want_on
            })
            .collect();
        if !matched.is_empty() {
            super::write(
                level(&l.level),
                &format!(
                    "TCP options {} on {who}: {}",
                    if want_on { "enabled" } else { "disabled" },
                    matched.join(" ")
                ),
            );
        }
    }
}

/// Whether some list on either side watches TCP options.
pub fn watches_tcp_options(lists: &[ErrorLog]) -> bool {
    lists.iter().any(|l| l.what != LogWhat::Error)
}

/// `connect to host T failed: TEXT`, Dante's line.
pub fn connect_failed(target: &SocketAddr, text: &str) -> String {
    format!("connect to host {} failed: {text}", super::addr(target))
}

/// `connect to host T is now in progress`, Dante's line for EINPROGRESS.
pub fn connect_in_progress(target: &SocketAddr) -> String {
    format!("connect to host {} is now in progress", super::addr(target))
}

/// `error on the connection from client C to I: TEXT`: an error on a client's connection.
pub fn client_error(client: &SocketAddr, internal: &SocketAddr, errno: i32) -> String {
    format!(
        "error on the connection from client {} to {}: {}",
        super::addr(client),
        super::addr(internal),
        nix::errno::Errno::from_raw(errno).desc()
    )
}

/// `error on the connection to target T from E: TEXT`: an error on a session's target side.
pub fn target_error(target: &SocketAddr, external: &SocketAddr, errno: i32) -> String {
    format!(
        "error on the connection to target {} from {}: {}",
        super::addr(target),
        super::addr(external),
        nix::errno::Errno::from_raw(errno).desc()
    )
}

/// The line for an established session that ended on an error, if socks rule `rule` (or the
/// global settings) list it: `client`/`internal` name the client side, `target`/`external`
/// the target side.
pub fn session_error(
    cfg: &Config,
    rule: u32,
    side: Side,
    errno: i32,
    client: [&SocketAddr; 2],
    target: [&SocketAddr; 2],
) {
    let r = (rule as usize)
        .checked_sub(1)
        .and_then(|i| cfg.socks_rules.get(i));
    let level = errno_level(lists(r, cfg), side, errno);
    write(level, || match side {
        Side::Internal => client_error(client[0], client[1], errno),
        Side::External => target_error(target[0], target[1], errno),
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn log(side: Side, level: &str, syms: &[&str]) -> ErrorLog {
        ErrorLog {
            side,
            level: level.into(),
            symbols: syms.iter().map(|s| s.to_string()).collect(),
            what: rsockd_config::LogWhat::Error,
        }
    }

    #[test]
    fn levels_sides_and_codes() {
        let l = [
            log(Side::External, "warning", &["ECONNREFUSED"]),
            log(Side::Internal, "err", &["system-any"]),
            log(Side::External, "notice", &["dns-any"]),
        ];
        assert_eq!(errno_level(&l, Side::External, 111), Some(Level::Warning));
        assert_eq!(errno_level(&l, Side::External, 104), None);
        assert_eq!(errno_level(&l, Side::Internal, 104), Some(Level::Error));
        assert_eq!(
            gai_level(&l, gai_code("Name or service not known").unwrap()),
            Some(Level::Notice)
        );
        assert_eq!(gai_code("something else"), None);
        assert_eq!(level("crit"), Level::Alert);
    }
}
