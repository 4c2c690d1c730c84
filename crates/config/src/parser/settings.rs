//! Server settings: everything before the first rule.

use super::{Ctx, Parser};
use crate::lexer::Tok;
use crate::model::{Families, LogDest, Rotation, Timeouts};
use crate::support::{self, Place, Status};
use std::path::PathBuf;

/// Settings with a value reader here.
const HANDLED: &[&str] = &[
    "internal",
    "internal.protocol",
    "external",
    "external.protocol",
    "external.rotation",
    "socksmethod",
    "clientmethod",
    "user.privileged",
    "user.unprivileged",
    "user.libwrap",
    "logoutput",
    "errorlog",
    "debug",
    "child.maxrequests",
    "cpu.",
    "internal.log.",
    "external.log.",
    "internal.socket.",
    "internal.ip.",
    "internal.tcp.",
    "internal.udp.",
    "external.socket.",
    "external.ip.",
    "external.tcp.",
    "external.udp.",
    "child.maxlifetime",
    "route.maxfail",
    "route.badexpire",
    "timeout.negotiate",
    "timeout.connect",
    "timeout.io",
    "timeout.io.tcp",
    "timeout.io.udp",
    "timeout.tcp_fin_wait",
    "udp.connectdst",
    "libwrap.hosts_access",
    "libwrap.allow",
    "libwrap.deny",
    "compatibility",
    "extension",
    "srchost",
    "rsockd.announce.udp",
    "rsockd.announce.bind",
    "rsockd.proxyprotocol.from",
    "rsockd.agent",
    "rsockd.metrics",
    "rsockd.metrics.users",
    "rsockd.log.format",
    "rsockd.drain.timeout",
    "pam.servicename",
    "rsockd.users.file",
    "rsockd.route.credentials",
];

pub(super) fn has_global_handler(key: &str) -> bool {
    HANDLED.contains(&key)
}

/// syslog(3) facilities Dante accepts after `syslog/`.
const FACILITIES: &[&str] = &[
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog", "user",
    "uucp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

impl<'a> Parser<'a> {
    /// The value of `pam.servicename:` (global or in a rule): one word.
    pub(super) fn service_name(&mut self, kw: Tok<'a>) -> Option<String> {
        let t = self.sc.word(&[':', '}']);
        if t.text.is_empty() {
            let t = self.sc.next_token();
            self.error(
                t,
                format!("expected a PAM service name after '{}:'", kw.text),
            );
            return None;
        }
        let name = t.text.to_string();
        if name.contains('/') {
            self.error(t, "a PAM service name cannot hold '/'");
            return None;
        }
        self.end_of_value(kw);
        Some(name)
    }

    /// A server setting `kw: value`.
    pub(super) fn setting(&mut self, kw: Tok<'a>) {
        let Some(entry) = support::lookup(kw.text) else {
            self.unknown_keyword(kw, Ctx::Global);
            self.sc.skip_block();
            return;
        };
        if !entry.place.contains(Place::GLOBAL) {
            self.misplaced(kw, entry, Ctx::Global);
            self.sc.skip_value();
            return;
        }
        if let Some(line) = self.first_object_line {
            self.error(
                kw,
                format!(
                    "server settings must come before rules; '{}' comes after the rule on line {line}",
                    kw.text
                ),
            );
            self.sc.skip_line();
            return;
        }
        let Some(name) = self.admit(kw, entry, Ctx::Global) else {
            self.sc.skip_value();
            return;
        };
        if !self.colon(kw) {
            self.sc.skip_line();
            return;
        }
        self.global_value(kw, name);
    }

    fn global_value(&mut self, kw: Tok<'a>, name: &'static str) {
        match name {
            "internal" => self.internal(kw),
            "external" => self.external(kw),
            "internal.protocol" | "external.protocol" => self.families(kw, name),
            "external.rotation" => self.rotation(kw),
            "socksmethod" => {
                self.replaced_list(kw, self.socksmethod_line);
                self.socksmethod_line = Some(kw.line);
                self.cfg.socksmethod = self.global_methods(kw, false);
            }
            "clientmethod" => {
                self.replaced_list(kw, self.clientmethod_line);
                self.clientmethod_line = Some(kw.line);
                self.cfg.clientmethod = self.global_methods(kw, true);
            }
            "pam.servicename" => {
                self.cfg.pam_servicename = self.service_name(kw);
            }
            "rsockd.users.file" | "rsockd.route.credentials" => {
                let t = self.sc.word(&[':', '}']);
                if t.text.is_empty() {
                    let t = self.sc.next_token();
                    self.error(t, format!("expected a file name after '{}:'", kw.text));
                    return;
                }
                let path = Some(PathBuf::from(t.text));
                if name == "rsockd.users.file" {
                    self.cfg.users_file = path;
                } else {
                    self.cfg.route_credentials = path;
                }
                self.end_of_value(kw);
            }
            "user.privileged" | "user.unprivileged" | "user.libwrap" => {
                let t = self.sc.word(&[':', '}']);
                if t.text.is_empty() {
                    let t = self.sc.next_token();
                    self.error(t, format!("expected a user name after '{}:'", kw.text));
                    return;
                }
                let v = Some(t.text.to_string());
                match name {
                    "user.privileged" => self.cfg.user_privileged = v,
                    "user.unprivileged" => self.cfg.user_unprivileged = v,
                    _ => self.cfg.user_libwrap = v,
                }
                self.end_of_value(kw);
            }
            "logoutput" | "errorlog" => {
                let dests = self.log_dests(kw);
                if name == "logoutput" {
                    self.cfg.logoutput.extend(dests);
                } else {
                    self.cfg.errorlog.extend(dests);
                }
            }
            "cpu." => self.cpu(kw),
            "internal.log." | "external.log." => {
                if let Some(l) = self.error_log(kw) {
                    self.cfg.error_logs.push(l);
                }
            }
            "internal.socket." | "internal.ip." | "internal.tcp." | "internal.udp."
            | "external.socket." | "external.ip." | "external.tcp." | "external.udp." => {
                if let Some(o) = self.sockopt(kw) {
                    self.cfg.sockopts.push(o);
                }
            }
            "child.maxrequests" | "child.maxlifetime" => {
                // 0 is Dante's default: no limit.
                let n = self.number(&format!("{}:", kw.text), u64::from(u32::MAX));
                let n = n.filter(|&n| n > 0);
                if kw.text == "child.maxrequests" {
                    self.cfg.child_maxrequests = n;
                } else {
                    self.cfg.child_maxlifetime = n;
                }
                self.end_of_value(kw);
            }
            "route.maxfail" | "route.badexpire" => {
                if let Some(n) = self.number(&format!("{}:", kw.text), u64::from(u32::MAX)) {
                    if kw.text == "route.maxfail" {
                        self.cfg.route_maxfail = n as u32;
                    } else {
                        self.cfg.route_badexpire = n;
                    }
                }
                self.end_of_value(kw);
            }
            "debug" => {
                if let Some(n) = self.number(&format!("{}:", kw.text), u64::from(u32::MAX)) {
                    self.cfg.debug = u32::try_from(n).ok();
                }
                self.end_of_value(kw);
            }
            "udp.connectdst" => {
                if let Some(v) = self.yes_no(kw) {
                    self.cfg.udp_connectdst = v;
                }
                self.end_of_value(kw);
            }
            "libwrap.hosts_access" | "compatibility" | "extension" => self.by_value(kw, name),
            "libwrap.allow" | "libwrap.deny" => {
                let t = self.sc.word(&['}']);
                if t.text.is_empty() {
                    let t = self.sc.next_token();
                    self.error(t, format!("expected a file name after '{}:'", kw.text));
                    return;
                }
                let p = Some(PathBuf::from(t.text));
                if name == "libwrap.allow" {
                    self.cfg.libwrap_allow = p;
                } else {
                    self.cfg.libwrap_deny = p;
                }
                self.end_of_value(kw);
            }
            "srchost" => {
                for t in self.list_items(kw) {
                    let sh = &mut self.cfg.srchost;
                    match t.text {
                        "nodnsmismatch" => sh.nodnsmismatch = true,
                        "nodnsunknown" => sh.nodnsunknown = true,
                        "checkreplyauth" => sh.checkreplyauth = true,
                        _ => self.error(
                            t,
                            "expected one of nodnsmismatch, nodnsunknown, checkreplyauth after \
                             'srchost:'",
                        ),
                    }
                }
            }
            "rsockd.announce.udp" | "rsockd.announce.bind" => {
                if let Some(ip) = self.announce_addr(kw) {
                    if name == "rsockd.announce.udp" {
                        self.cfg.announce_udp = Some(ip);
                    } else {
                        self.cfg.announce_bind = Some(ip);
                    }
                }
                self.end_of_value(kw);
            }
            "rsockd.proxyprotocol.from" => self.balancers(kw),
            "rsockd.drain.timeout" => {
                let n = self.number(&format!("{}:", kw.text), u64::from(u32::MAX));
                self.cfg.drain_timeout = n.and_then(|n| u32::try_from(n).ok());
                self.end_of_value(kw);
            }
            "rsockd.agent" => {
                if let Some(l) = self.listen_addr(kw, None) {
                    self.cfg.agent.push(l);
                }
            }
            "rsockd.metrics" => {
                if let Some(l) = self.listen_addr(kw, None) {
                    self.cfg.metrics.push(l);
                }
            }
            "rsockd.metrics.users" => {
                let n = self.number(&format!("{}:", kw.text), 1_000_000);
                self.cfg.metrics_users = n.and_then(|n| u32::try_from(n).ok());
                self.end_of_value(kw);
            }
            "rsockd.log.format" => {
                let t = self.sc.word(&[':', '}']);
                match t.text {
                    "dante" => self.cfg.log_format = crate::model::LogFormat::Dante,
                    "json" => self.cfg.log_format = crate::model::LogFormat::Json,
                    _ => self.error(
                        t,
                        format!(
                            "rsockd.log.format: unknown format \"{}\"; expected dante or json",
                            t.text
                        ),
                    ),
                }
                self.end_of_value(kw);
            }
            _ if name.starts_with("timeout.") => {
                let mut t = self.cfg.timeout;
                self.timeout(kw, name, &mut t);
                self.cfg.timeout = t;
                self.end_of_value(kw);
            }
            _ => self.sc.skip_value(),
        }
    }

    fn replaced_list(&mut self, kw: Tok<'_>, earlier: Option<u32>) {
        if let Some(line) = earlier {
            self.warn(
                kw,
                format!(
                    "'{}' given again; this list replaces the one on line {line}",
                    kw.text
                ),
            );
        }
    }

    /// `timeout.*: N` into `t` (global or rule).
    pub(super) fn timeout(&mut self, kw: Tok<'_>, name: &str, t: &mut Timeouts) {
        let Some(n) = self.number(&format!("{}:", kw.text), u64::from(u32::MAX)) else {
            return;
        };
        let n = u32::try_from(n).ok();
        match name {
            "timeout.negotiate" => t.negotiate = n,
            "timeout.connect" => t.connect = n,
            "timeout.io" => {
                t.io_tcp = n;
                t.io_udp = n;
            }
            "timeout.io.tcp" => t.io_tcp = n,
            "timeout.io.udp" => t.io_udp = n,
            _ => t.tcp_fin_wait = n,
        }
    }

    /// `internal.protocol: ipv4 ipv6` and the external one; must precede the addresses.
    fn families(&mut self, kw: Tok<'a>, name: &str) {
        let (first, side) = if name == "internal.protocol" {
            (self.first_internal_line, "internal")
        } else {
            (self.first_external_line, "external")
        };
        if let Some(line) = first {
            self.error(
                kw,
                format!(
                    "'{name}' must come before the first '{side}:' line (line {line}), so that \
                     interface names expand with the right families"
                ),
            );
        }
        let mut f = Families {
            ipv4: false,
            ipv6: false,
        };
        for t in self.list_items(kw) {
            match t.text {
                "ipv4" => f.ipv4 = true,
                "ipv6" => f.ipv6 = true,
                _ => self.error(t, format!("expected 'ipv4' or 'ipv6' after '{}:'", kw.text)),
            }
        }
        if !f.ipv4 && !f.ipv6 {
            return;
        }
        if name == "internal.protocol" {
            self.cfg.internal_protocol = f;
        } else {
            self.cfg.external_protocol = f;
        }
    }

    fn rotation(&mut self, kw: Tok<'a>) {
        let t = self.sc.ident();
        self.cfg.external_rotation = match t.text {
            "none" => Rotation::None,
            "route" => Rotation::Route,
            "same-same" => Rotation::SameSame,
            "random" => Rotation::Random,
            "user" => Rotation::User,
            _ => {
                let t = if t.text.is_empty() {
                    self.sc.next_token()
                } else {
                    t
                };
                self.error(
                    t,
                    "expected 'none', 'route', 'same-same', 'random' or 'user' after \
                     'external.rotation:'",
                );
                return;
            }
        };
        self.end_of_value(kw);
    }

    /// `logoutput:`/`errorlog:` destinations.
    fn log_dests(&mut self, kw: Tok<'a>) -> Vec<LogDest> {
        let mut out = Vec::new();
        for t in self.list_items(kw) {
            let d = match t.text {
                "stdout" => LogDest::Stdout,
                "stderr" => LogDest::Stderr,
                "syslog" => LogDest::Syslog { facility: None },
                s => match s.strip_prefix("syslog/") {
                    Some(f) if FACILITIES.contains(&f) => LogDest::Syslog {
                        facility: Some(f.to_string()),
                    },
                    Some(_) => {
                        self.error(
                            t,
                            format!(
                                "unknown syslog facility; expected one of: {}",
                                FACILITIES.join(" ")
                            ),
                        );
                        continue;
                    }
                    None => LogDest::File(PathBuf::from(s)),
                },
            };
            out.push(d);
        }
        out
    }

    /// Keywords whose support depends on the value (`compatibility: reuseaddr`, ...).
    fn by_value(&mut self, kw: Tok<'a>, name: &'static str) {
        let items = self.list_items(kw);
        for t in items {
            let shown = format!("{name}: {}", t.text);
            match support::value_status(name, t.text) {
                None => {
                    let valid = support::values_of(name).join(", ");
                    self.error(t, format!("expected one of {valid} after '{name}:'"));
                }
                Some(Status::Rejected { reason }) => self.error(t, reason),
                Some(Status::NotYet { detail }) => self.not_yet(t, &shown, detail),
                Some(Status::Ignored { reason }) => {
                    self.warn(t, format!("'{shown}' is ignored: {reason}"));
                }
                Some(_) => match (name, t.text) {
                    ("libwrap.hosts_access", v) => self.cfg.libwrap_hosts_access = v == "yes",
                    ("compatibility", "sameport") => self.cfg.compat_sameport = true,
                    ("extension", "bind") => {
                        self.cfg.extension_bind = true;
                        // Dante 1.4.2 warns the same.
                        self.warn(
                            t,
                            "we are currently considering deprecating the Dante-specific SOCKS \
                             bind extension",
                        );
                    }
                    ("compatibility", "draft-5.05") => self.cfg.compat_draft505 = true,
                    _ => {}
                },
            }
        }
    }

    /// `cpu.schedule.<process>: POLICY/PRIORITY` or `cpu.mask.<process>: CPU... | any`.
    fn cpu(&mut self, kw: Tok<'a>) {
        let (what, proc_name) = match kw.text.strip_prefix("cpu.").and_then(|r| r.split_once('.')) {
            Some((w @ ("schedule" | "mask"), p)) => (w, p),
            _ => {
                self.error(
                    kw,
                    "expected 'cpu.schedule.<process>' or 'cpu.mask.<process>'",
                );
                self.sc.skip_value();
                return;
            }
        };
        let Some(role) = crate::model::CpuRole::from_name(proc_name) else {
            self.error(
                kw,
                format!(
                    "unknown process '{proc_name}'; expected mother, relay or \
                     auth-helper (or Dante's negotiate, request, monitor, io)"
                ),
            );
            self.sc.skip_value();
            return;
        };
        if what == "schedule" {
            let t = self.sc.word(&['/']);
            let Some(policy) = crate::model::SchedPolicy::from_name(t.text) else {
                self.error(
                    t,
                    "unknown scheduling policy; expected other, fifo, rr, batch or idle",
                );
                self.sc.skip_value();
                return;
            };
            if !self.sc.eat('/') {
                let t = self.sc.next_token();
                self.error(
                    t,
                    format!("expected '/PRIORITY' after the policy of '{}:'", kw.text),
                );
                self.sc.skip_value();
                return;
            }
            let Some(prio) = self.number(&format!("{}:", kw.text), 99) else {
                self.sc.skip_value();
                return;
            };
            self.cfg.cpu.of_mut(role).schedule = Some((policy, prio as u32));
        } else {
            let mut cpus = Vec::new();
            let mut any = false;
            for t in self.list_items(kw) {
                if t.text == "any" {
                    any = true;
                    continue;
                }
                match t.text.parse::<u32>() {
                    Ok(n) if n < 1024 => cpus.push(n),
                    _ => self.error(t, "expected a CPU number (0 to 1023) or 'any'"),
                }
            }
            self.cfg.cpu.of_mut(role).mask = (!any && !cpus.is_empty()).then_some(cpus);
            return;
        }
        self.end_of_value(kw);
    }
}
