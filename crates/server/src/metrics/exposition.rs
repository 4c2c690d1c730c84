//! The server's totals as a Prometheus exposition: pure, a [`Snapshot`] in, text out.
//!
//! prometheus-client's encoder writes OpenMetrics text. Classic scrapers (`curl`, Prometheus
//! asking for `text/plain; version=0.0.4`) get the same families with the two differences that
//! format has: a counter's HELP and TYPE lines name the sample (`x_total`, not the family
//! `x`), and there is no `# EOF`. Our names are fixed by SPEC §10, and one of them does not fit
//! OpenMetrics' rules: the counter `rsockd_sessions_total` would be the family
//! `rsockd_sessions`, which is the gauge of running sessions. In OpenMetrics that one family is
//! therefore typed `unknown` under its full name; its samples are the same.

use std::fmt::Write as _;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::scoreboard::counters::{Cmd, Outcome, ProcRole, Snapshot, BUCKETS_US};
use crate::scoreboard::LimitRow;

/// Which text format the scraper gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Classic,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header offers it (Prometheus does), else classic text.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let offers = accept.is_some_and(|a| {
            a.split(',').any(|part| {
                let mut params = part.split(';').map(str::trim);
                let ty = params.next().unwrap_or("");
                let refused = params.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f64>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                ty.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if offers {
            Format::OpenMetrics
        } else {
            Format::Classic
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The exposition of `snap` and the limited rules' `limits` in `format`; `version` goes into
/// `rsockd_build_info`.
pub fn encode(snap: &Snapshot, limits: &[LimitRow], version: &str, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Families {
        snap: snap.clone(),
        limits: limits.to_vec(),
        version: version.to_string(),
        format,
    }));
    let mut text = String::with_capacity(4096 + snap.users.len() * 160);
    // Writing to a String cannot fail; an error here would be a bug in our collector.
    if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
        text.clear();
    }
    match format {
        Format::OpenMetrics => text,
        Format::Classic => classic(&text),
    }
}

/// OpenMetrics text (as prometheus-client writes it) made classic: counters' HELP and TYPE
/// lines take the `_total` name of their samples, and the `# EOF` line goes.
fn classic(open: &str) -> String {
    let mut out = String::with_capacity(open.len());
    let lines: Vec<&str> = open.lines().collect();
    let counter_family = |line: &str| -> Option<String> {
        let rest = line.strip_prefix("# TYPE ")?;
        let name = rest.strip_suffix(" counter")?;
        Some(name.to_string())
    };
    for (i, line) in lines.iter().enumerate() {
        if *line == "# EOF" {
            continue;
        }
        if let Some(name) = counter_family(line) {
            let _ = writeln!(out, "# TYPE {name}_total counter");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            let next_is_counter = lines
                .get(i + 1)
                .and_then(|l| counter_family(l))
                .is_some_and(|n| n == name);
            if next_is_counter {
                let help = &rest[name.len()..];
                let _ = writeln!(out, "# HELP {name}_total{help}");
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A label value in the text format: backslash, double quote and line feed escaped.
/// prometheus-client writes label values as they are, and user names come from clients.
fn label_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug)]
struct Families {
    snap: Snapshot,
    limits: Vec<LimitRow>,
    version: String,
    format: Format,
}

/// One sample's labels.
type Labels = Vec<(&'static str, String)>;

impl Families {
    fn counter(
        e: &mut DescriptorEncoder,
        family: &str,
        help: &str,
        samples: &[(Labels, u64)],
    ) -> Result<(), std::fmt::Error> {
        let mut m = e.encode_descriptor(family, help, None, MetricType::Counter)?;
        for (labels, v) in samples {
            m.encode_family(labels)?
                .encode_counter::<Labels, u64, f64>(v, None)?;
        }
        Ok(())
    }

    fn gauge(
        e: &mut DescriptorEncoder,
        family: &str,
        help: &str,
        samples: &[(Labels, u64)],
    ) -> Result<(), std::fmt::Error> {
        let mut m = e.encode_descriptor(family, help, None, MetricType::Gauge)?;
        for (labels, v) in samples {
            if labels.is_empty() {
                // Without labels prometheus-client would write `name{} v`.
                m.encode_gauge(v)?;
            } else {
                m.encode_family(labels)?.encode_gauge(v)?;
            }
        }
        Ok(())
    }
}

impl Collector for Families {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.snap;
        let e = &mut e;
        let label = |k: &'static str, v: &str| vec![(k, v.to_string())];

        let running: Vec<(Labels, u64)> = Cmd::ALL[..3]
            .iter()
            .zip(s.sessions)
            .map(|(c, n)| (label("command", c.name()), n))
            .collect();
        Self::gauge(
            e,
            "rsockd_sessions",
            "Sessions established now, by command.",
            &running,
        )?;
        Self::gauge(
            e,
            "rsockd_negotiating",
            "Clients accepted and still negotiating with a mother.",
            &[(Vec::new(), s.negotiating)],
        )?;

        let mut ended = Vec::new();
        for (c, by) in Cmd::ALL.iter().zip(s.sessions_total) {
            for (o, n) in Outcome::ALL.iter().zip(by) {
                if *c == Cmd::None && *o == Outcome::Ok {
                    // A client without a request is never handed to a relay.
                    continue;
                }
                let l = vec![
                    ("command", c.name().to_string()),
                    ("result", o.name().to_string()),
                ];
                ended.push((l, n));
            }
        }
        let help = "Client requests decided, by command and result (ok: handed to a relay).";
        match self.format {
            Format::Classic => Self::counter(e, "rsockd_sessions", help, &ended)?,
            Format::OpenMetrics => {
                let mut m =
                    e.encode_descriptor("rsockd_sessions_total", help, None, MetricType::Unknown)?;
                for (labels, v) in &ended {
                    m.encode_family(labels)?.encode_gauge(v)?;
                }
            }
        }

        Self::counter(
            e,
            "rsockd_bytes",
            "Payload bytes relayed, by direction (running sessions included).",
            &[
                (label("direction", "client_to_target"), s.bytes[0]),
                (label("direction", "target_to_client"), s.bytes[1]),
            ],
        )?;

        let mut buckets: Vec<(f64, u64)> = BUCKETS_US
            .iter()
            .zip(s.buckets)
            .map(|(us, n)| (*us as f64 / 1e6, n))
            .collect();
        buckets.push((f64::MAX, s.buckets[BUCKETS_US.len()]));
        e.encode_descriptor(
            "rsockd_handshake_duration_seconds",
            "Time from accept to the reply that completes the SOCKS negotiation.",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<Labels>(
            s.handshake_sum_us as f64 / 1e6,
            s.handshake_count,
            &buckets,
            None,
        )?;

        let failures: Vec<(Labels, u64)> = s
            .auth_failures
            .iter()
            .map(|(m, n)| (label("method", m), *n))
            .collect();
        Self::counter(
            e,
            "rsockd_auth_failures",
            "Failed authentications, by method.",
            &failures,
        )?;

        let rules: Vec<(Labels, u64)> = s
            .rule_sessions
            .iter()
            .map(|(ty, n, v)| {
                let l = vec![("type", ty.name().to_string()), ("rule", n.to_string())];
                (l, *v)
            })
            .collect();
        Self::counter(
            e,
            "rsockd_rule_sessions",
            "Clients decided by each rule (the numbers the log lines use).",
            &rules,
        )?;

        let mut users = Vec::with_capacity(2 * s.users.len() + 2);
        let all = s
            .users
            .iter()
            .map(|(u, b)| (u.as_str(), *b))
            .chain(std::iter::once(("", s.users_rest)));
        for (user, b) in all {
            for (dir, v) in [("client_to_target", b[0]), ("target_to_client", b[1])] {
                let l = vec![("user", label_value(user)), ("direction", dir.to_string())];
                users.push((l, v));
            }
        }
        Self::counter(
            e,
            "rsockd_user_bytes",
            "Payload bytes of authenticated users (users beyond rsockd.metrics.users under \"\").",
            &users,
        )?;

        let roles = &ProcRole::ALL[..3];
        let restarts: Vec<(Labels, u64)> = roles
            .iter()
            .map(|r| (label("role", r.name()), s.restarts[*r as usize]))
            .collect();
        Self::counter(
            e,
            "rsockd_process_restarts",
            "Processes started again after one died, by role.",
            &restarts,
        )?;
        let procs: Vec<(Labels, u64)> = ProcRole::ALL
            .iter()
            .filter(|r| **r != ProcRole::Supervisor || s.processes[**r as usize] > 0)
            .map(|r| (label("role", r.name()), s.processes[*r as usize]))
            .collect();
        Self::gauge(e, "rsockd_processes", "Processes alive, by role.", &procs)?;

        let rule =
            |r: &LimitRow| vec![("type", r.kind.to_string()), ("rule", r.number.to_string())];
        let with_max: Vec<&LimitRow> = self.limits.iter().filter(|r| r.max.is_some()).collect();
        Self::gauge(
            e,
            "rsockd_limit_sessions",
            "Sessions holding a slot of a rule's session.max, every process counted.",
            &with_max
                .iter()
                .map(|r| (rule(r), r.in_use))
                .collect::<Vec<_>>(),
        )?;
        Self::gauge(
            e,
            "rsockd_limit_sessions_max",
            "A rule's session.max.",
            &with_max
                .iter()
                .map(|r| (rule(r), r.max.unwrap_or(0)))
                .collect::<Vec<_>>(),
        )?;
        let paced: Vec<(Labels, u64)> = self
            .limits
            .iter()
            .filter_map(|r| Some((rule(r), r.bandwidth?)))
            .collect();
        Self::gauge(
            e,
            "rsockd_bandwidth_limit_bytes_per_second",
            "A rule's bandwidth: limit, shared by all its sessions.",
            &paced,
        )?;

        Self::gauge(
            e,
            "rsockd_build_info",
            "The running program's version (always 1).",
            &[(label("version", &self.version), 1)],
        )?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::scoreboard::counters::RuleType;

    fn sample() -> Snapshot {
        let mut s = Snapshot {
            sessions: [2, 1, 0],
            negotiating: 3,
            ..Default::default()
        };
        s.sessions_total[0] = [5, 1, 2];
        s.bytes = [100, 2000];
        s.buckets[0] = 4;
        s.buckets[BUCKETS_US.len()] = 1;
        s.handshake_count = 5;
        s.handshake_sum_us = 20_000_500;
        s.auth_failures = vec![("username", 7)];
        s.rule_sessions = vec![(RuleType::Socks, 2, 6)];
        s.users = vec![("al\"i\\ce\n".to_string(), [10, 20])];
        s.users_rest = [1, 2];
        s.restarts = [1, 2, 0, 0];
        s.processes = [2, 3, 1, 0];
        s
    }

    fn limits() -> Vec<LimitRow> {
        vec![
            LimitRow {
                kind: "socks",
                number: 3,
                max: Some(10),
                in_use: 4,
                bandwidth: None,
            },
            LimitRow {
                kind: "client",
                number: 1,
                max: None,
                in_use: 0,
                bandwidth: Some(5000),
            },
        ]
    }

    #[test]
    fn limited_rules() {
        let t = encode(&sample(), &limits(), "1", Format::Classic);
        assert!(
            t.contains("rsockd_limit_sessions{type=\"socks\",rule=\"3\"} 4\n"),
            "{t}"
        );
        assert!(t.contains("rsockd_limit_sessions_max{type=\"socks\",rule=\"3\"} 10\n"));
        assert!(!t.contains("rsockd_limit_sessions{type=\"client\""));
        assert!(t.contains(
            "rsockd_bandwidth_limit_bytes_per_second{type=\"client\",rule=\"1\"} 5000\n"
        ));
    }

    fn sample_line<'a>(text: &'a str, starts: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(starts))
            .unwrap_or_else(|| panic!("no line starting {starts:?} in\n{text}"))
    }

    #[test]
    fn classic_text_names_counters_by_their_samples_and_has_no_eof() {
        let t = encode(&sample(), &limits(), "1.2.3", Format::Classic);
        assert!(t.contains("# TYPE rsockd_sessions gauge\n"), "{t}");
        assert!(t.contains("# TYPE rsockd_sessions_total counter\n"), "{t}");
        assert!(t.contains("# HELP rsockd_bytes_total Payload"), "{t}");
        assert!(!t.contains("# EOF"), "{t}");
        assert!(!t.contains("# TYPE rsockd_bytes counter"), "{t}");
        assert_eq!(
            sample_line(
                &t,
                "rsockd_sessions_total{command=\"connect\",result=\"ok\"}"
            ),
            "rsockd_sessions_total{command=\"connect\",result=\"ok\"} 5"
        );
        assert_eq!(
            sample_line(&t, "rsockd_sessions{command=\"bind\"}"),
            "rsockd_sessions{command=\"bind\"} 1"
        );
        assert_eq!(
            sample_line(&t, "rsockd_build_info"),
            "rsockd_build_info{version=\"1.2.3\"} 1"
        );
    }

    #[test]
    fn openmetrics_ends_with_eof_and_types_the_clashing_family_unknown() {
        let t = encode(&sample(), &limits(), "1", Format::OpenMetrics);
        assert!(t.ends_with("# EOF\n"), "{t}");
        assert!(t.contains("# TYPE rsockd_sessions_total unknown\n"), "{t}");
        assert!(t.contains("# TYPE rsockd_bytes counter\n"), "{t}");
        assert!(t.contains("rsockd_bytes_total{direction=\"target_to_client\"} 2000\n"));
    }

    #[test]
    fn histogram_buckets_are_cumulative_in_seconds() {
        let t = encode(&sample(), &limits(), "1", Format::Classic);
        assert_eq!(
            sample_line(
                &t,
                "rsockd_handshake_duration_seconds_bucket{le=\"0.0005\"}"
            ),
            "rsockd_handshake_duration_seconds_bucket{le=\"0.0005\"} 4"
        );
        assert_eq!(
            sample_line(&t, "rsockd_handshake_duration_seconds_bucket{le=\"10.0\"}"),
            "rsockd_handshake_duration_seconds_bucket{le=\"10.0\"} 4"
        );
        assert_eq!(
            sample_line(&t, "rsockd_handshake_duration_seconds_bucket{le=\"+Inf\"}"),
            "rsockd_handshake_duration_seconds_bucket{le=\"+Inf\"} 5"
        );
        assert_eq!(
            sample_line(&t, "rsockd_handshake_duration_seconds_count"),
            "rsockd_handshake_duration_seconds_count 5"
        );
    }

    #[test]
    fn user_names_from_clients_are_escaped() {
        let t = encode(&sample(), &limits(), "1", Format::Classic);
        assert!(
            t.contains(
                "rsockd_user_bytes_total{user=\"al\\\"i\\\\ce\\n\",direction=\"client_to_target\"} 10\n"
            ),
            "{t}"
        );
        assert!(t.contains("rsockd_user_bytes_total{user=\"\",direction=\"target_to_client\"} 2\n"));
    }

    #[test]
    fn accept_header_chooses_the_format() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                    version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prom)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Classic);
        assert_eq!(Format::from_accept(None), Format::Classic);
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text; q=0")),
            Format::Classic
        );
    }
}
