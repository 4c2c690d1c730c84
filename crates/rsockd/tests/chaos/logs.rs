//! What the log tells: the relay of a session, and the deaths of mothers.

use std::net::SocketAddr;

use crate::common::*;

/// `(wall time, pid)` of log lines containing every one of `needles`, written at or after
/// `since`.
pub(crate) fn log_lines(log: &str, needles: &[&str], since: f64) -> Vec<(f64, i32)> {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| {
            let t: f64 = l.split_once(" (")?.1.split_once(')')?.0.parse().ok()?;
            let pid = l.split_once("rsockd[")?.1.split_once(']')?.0.parse().ok()?;
            (t >= since).then_some((t, pid))
        })
        .collect()
}

/// The relay that a session's client was handed to, by the relay's own `tcp/connect [` line
/// written between `since` and `until`.
pub(crate) fn relay_from_log(log: &str, client: SocketAddr, since: f64, until: f64) -> Option<i32> {
    let c = format!("tcp/connect [: {} ", dante_addr(client));
    log_lines(log, &[&c], since)
        .into_iter()
        .find(|(t, _)| *t <= until)
        .map(|x| x.1)
}

/// The relay pid of the mother's `session error (relay process P died)` line for `client`,
/// written between `since` and `until`.
pub(crate) fn died_with_from_log(
    log: &str,
    client: SocketAddr,
    since: f64,
    until: f64,
) -> Option<i32> {
    let c = format!("tcp/connect ]: {} ", dante_addr(client));
    log.lines()
        .filter(|l| l.contains(&c))
        .filter(|l| {
            l.split_once(" (")
                .and_then(|x| x.1.split_once(')'))
                .and_then(|x| x.0.parse::<f64>().ok())
                .is_some_and(|t| t >= since && t <= until)
        })
        .find_map(|l| {
            l.split_once("session error (relay process ")?
                .1
                .split_once(' ')?
                .0
                .parse()
                .ok()
        })
}
