//! `rsockd.log.format: json`: every line as one JSON object. `msg` is the Dante text, so
//! nothing a Dante admin greps for is lost; for session lines the parts of that text are also
//! given as keys (`event`, `rule`, `command`, `client`, `target`, `user`, bytes, duration,
//! `reason`). The keys are read back from the text this server wrote (log/lines.rs is the one
//! place that writes it), which keeps the line builders free of a second, structured copy.
//! Pure: no I/O.

use serde::Serialize;

use super::level::Level;

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    level: &'static str,
    pid: u32,
    process: &'a str,
    msg: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    session: Option<Session>,
}

/// What a session line's text says, key by key.
#[derive(Serialize, Default, Debug, PartialEq, Eq)]
pub struct Session {
    /// `pass` or `block`.
    pub event: &'static str,
    /// `client 1`, `socks 2`: the rule type and the number the text gives.
    pub rule: String,
    /// `accept`, `connect`, `bind`, `bindreply`, `udpassociate`, `udpreply`.
    pub command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_client_to_target: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_target_to_client: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One JSON line (with its line feed) for `msg` at `level`, written at `secs.micros` (Unix
/// time) by process `pid`, named `process` (`mother 1/2`, `relay 1.2`, ...).
pub fn line(level: Level, msg: &str, secs: u64, micros: u32, pid: u32, process: &str) -> String {
    let l = Line {
        ts: rfc3339(secs, micros),
        level: level.as_str(),
        pid,
        process,
        msg,
        session: session(msg),
    };
    // Serialising strings and numbers cannot fail; keep the text if it somehow does.
    let mut out = serde_json::to_string(&l)
        .unwrap_or_else(|_| serde_json::json!({ "level": level.as_str(), "msg": msg }).to_string());
    out.push('\n');
    out
}

/// `2026-12-07T09:13:12.239516Z`.
fn rfc3339(secs: u64, micros: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The keys of a session line (`pass(N): proto/command M: ...`); None for other lines.
pub fn session(msg: &str) -> Option<Session> {
    let (event, rest) = if let Some(r) = msg.strip_prefix("pass(") {
        ("pass", r)
    } else {
        ("block", msg.strip_prefix("block(")?)
    };
    let (number, rest) = rest.split_once("): ")?;
    number.parse::<u32>().ok()?;
    let (subject, rest) = rest.split_once(' ')?;
    let (_proto, command) = subject.split_once('/')?;
    let (marker, body) = rest.split_once(": ").unwrap_or((rest, ""));
    let kind = if command == "accept" {
        "client"
    } else {
        "socks"
    };
    let mut s = Session {
        event,
        rule: format!("{kind} {number}"),
        command: command.to_string(),
        ..Default::default()
    };
    // Lines of the reply direction name the peer first and our client last.
    let reply = command == "bindreply" || command == "udpreply";
    let (head, tail) = match body.split_once(".  Session duration: ") {
        Some((before, after)) => {
            s.duration_s = leading_number(after);
            let (head, reason) = before.split_once(": ").unwrap_or((before, ""));
            (head, Some(reason))
        }
        None => match body.split_once(": ") {
            Some((head, tail)) if marker != "-" => (head, Some(tail)),
            Some((head, _data)) => (head, None),
            None => (body, None),
        },
    };
    s.reason = tail.filter(|t| !t.is_empty()).map(str::to_string);
    // An i/o line's route ends with its byte count: `a b -> c d (5)`.
    let head = match head.rsplit_once(" (") {
        Some((route, n)) if marker == "-" && n.ends_with(')') => route,
        _ => head,
    };
    let halves: Vec<&str> = head.split(", ").collect();
    let counted = halves[0].matches(" -> ").count() == 2;
    let (near, far) = if counted {
        // `W1 -> a b -> R1[, W2 -> c d -> R2]`: W1/R1 written to / read from side a.
        let first: Vec<&str> = halves[0].split(" -> ").collect();
        let second: Option<Vec<&str>> = halves.get(1).map(|h| h.split(" -> ").collect());
        let (w1, r1) = (leading_number(first[0]), leading_number(first[2]));
        let (w2, r2) = second.as_ref().map_or((None, None), |v| {
            (
                leading_number(v[0]),
                v.get(2).and_then(|x| leading_number(x)),
            )
        });
        let (to_target, from_target) = if reply {
            (w1, r1)
        } else {
            (w2.or(r1), r2.or(w1))
        };
        s.bytes_client_to_target = to_target;
        s.bytes_target_to_client = from_target;
        (
            Some(first[1]),
            second.as_ref().and_then(|v| v.get(1).copied()),
        )
    } else {
        let mut parts = head.splitn(2, " -> ");
        (parts.next(), parts.next())
    };
    // `a b` (or `a via balancer b`) -> `c d`: a is the client, d the target.
    let a = near
        .and_then(|n| n.split(' ').next())
        .filter(|a| !a.is_empty());
    let d = far.and_then(|f| f.split(' ').next_back());
    let (client, target) = if reply { (d, a) } else { (a, d) };
    if let Some(c) = client {
        let (user, bare) = split_user(c);
        s.user = user.map(str::to_string);
        s.client = Some(bare.to_string());
    }
    s.target = target.filter(|t| *t != "0.0.0.0.0").map(str::to_string);
    Some(s)
}

/// `method%user@addr` to (user, addr); an address without a user as it is.
fn split_user(a: &str) -> (Option<&str>, &str) {
    match (a.find('%'), a.rfind('@')) {
        (Some(p), Some(at)) if p < at => (Some(&a[p + 1..at]), &a[at + 1..]),
        _ => (None, a),
    }
}

/// The number a count starts with (`710/1` is 710 bytes in 1 packet).
fn leading_number(s: &str) -> Option<u64> {
    let digits: &str = &s[..s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len())];
    digits.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(1_796_634_792, 239_516),
            "2026-12-07T09:13:12.239516Z"
        );
        assert_eq!(rfc3339(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
    }

    #[test]
    fn a_connects_closing_line() {
        let s = session(
            "pass(2): tcp/connect ]: 13 -> username%alice@127.0.0.1.40000 127.0.0.1.1080 -> 7, \
             7 -> 127.0.0.1.50000 127.0.0.2.80 -> 13: client closed.  Session duration: 3s",
        )
        .unwrap();
        assert_eq!(
            s,
            Session {
                event: "pass",
                rule: "socks 2".into(),
                command: "connect".into(),
                client: Some("127.0.0.1.40000".into()),
                target: Some("127.0.0.2.80".into()),
                user: Some("alice".into()),
                bytes_client_to_target: Some(7),
                bytes_target_to_client: Some(13),
                duration_s: Some(3),
                reason: Some("client closed".into()),
            }
        );
    }

    #[test]
    fn accept_lines_name_the_client_rule() {
        let s = session("pass(1): tcp/accept [: 127.0.0.1.40000 127.0.0.1.1080").unwrap();
        assert_eq!(s.rule, "client 1");
        assert_eq!(s.client.as_deref(), Some("127.0.0.1.40000"));
        assert_eq!(s.target, None);
        let s = session(
            "pass(1): tcp/accept ]: 13 -> 127.0.0.1.40000 127.0.0.1.1080 -> 7: client closed.  \
             Session duration: 0s",
        )
        .unwrap();
        assert_eq!(s.bytes_client_to_target, Some(7));
        assert_eq!(s.bytes_target_to_client, Some(13));
        let s = session(
            "block(0): tcp/accept ]: 127.0.0.1.40000 127.0.0.1.1080: no rules matched; \
             using default block rule",
        )
        .unwrap();
        assert_eq!((s.event, s.rule.as_str()), ("block", "client 0"));
        assert_eq!(
            s.reason.as_deref(),
            Some("no rules matched; using default block rule")
        );
        let s = session("pass(1): tcp/accept [: 10.0.0.9.5000 via 127.0.0.5.3000 127.0.0.1.1080")
            .unwrap();
        assert_eq!(s.client.as_deref(), Some("10.0.0.9.5000"));
    }

    #[test]
    fn refusals_io_and_udp() {
        let s = session(
            "block(1): tcp/connect ]: 127.0.0.1.40000 127.0.0.1.1080 -> 0.0.0.0.0 \
             127.0.0.1.9: not allowed",
        )
        .unwrap();
        assert_eq!(s.target.as_deref(), Some("127.0.0.1.9"));
        assert_eq!(s.reason.as_deref(), Some("not allowed"));
        let s = session("pass(2): tcp/connect -: a b -> c d (5): hello").unwrap();
        assert_eq!(
            (s.client.as_deref(), s.target.as_deref()),
            (Some("a"), Some("d"))
        );
        assert_eq!(s.reason, None, "data is not a reason");
        let s = session(
            "pass(3): udp/udpassociate ]: 710/1 -> 127.0.0.1.5000 127.0.0.1.6000 -> 710/1, \
             700/1 -> 127.0.0.1.7000 127.0.0.1.8000 -> 700/1: client closed.  Session \
             duration: 1s",
        )
        .unwrap();
        assert_eq!(s.bytes_client_to_target, Some(700));
        assert_eq!(s.bytes_target_to_client, Some(700));
        assert_eq!(s.target.as_deref(), Some("127.0.0.1.8000"));
    }

    #[test]
    fn reply_direction_lines_name_our_client_as_the_client() {
        let s = session(
            "pass(2): tcp/bindreply ]: 5 -> 127.0.0.9.6000 127.0.0.1.7000 -> 3, 3 -> \
             127.0.0.1.1080 127.0.0.1.40000 -> 5: remote peer closed.  Session duration: 2s",
        )
        .unwrap();
        assert_eq!(s.client.as_deref(), Some("127.0.0.1.40000"));
        assert_eq!(s.target.as_deref(), Some("127.0.0.9.6000"));
        assert_eq!(s.bytes_client_to_target, Some(5));
        assert_eq!(s.bytes_target_to_client, Some(3));
    }

    #[test]
    fn other_lines_have_only_the_common_keys() {
        assert_eq!(session("accepting clients on 127.0.0.1.1080"), None);
        assert_eq!(session("pass(x): tcp/connect [: a b"), None);
        let l = line(Level::Alert, "mother \"1\"\n", 0, 5, 42, "relay 1.2");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["msg"], "mother \"1\"\n");
        assert_eq!(v["level"], "alert");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["process"], "relay 1.2");
        assert_eq!(v["ts"], "1970-01-01T00:00:00.000005Z");
        assert!(v.get("event").is_none());
        assert!(l.ends_with("}\n") && l.matches('\n').count() == 1);
    }
}
