//! Writes a [`Config`] back as sockd.conf text that parses to the same model.
//!
//! Settings come first in a fixed order (`*.protocol` before the addresses, as Dante requires),
//! then client rules, then socks rules. Values equal to the defaults are left out.

use crate::model::{
    AddrMatch, Config, HostSpec, LogDest, Method, PortMatch, Rotation, Rule, RuleAddr,
    SessionLimits, Timeouts,
};
use std::fmt::{self, Display, Formatter, Write};

fn methods(ms: &[Method]) -> String {
    ms.iter().map(|m| m.name()).collect::<Vec<_>>().join(" ")
}

fn families(f: crate::model::Families) -> &'static str {
    match (f.ipv4, f.ipv6) {
        (true, false) => "ipv4",
        (false, true) => "ipv6",
        _ => "ipv4 ipv6",
    }
}

impl Display for HostSpec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            HostSpec::Ip(ip) => write!(f, "{ip}"),
            HostSpec::Name(n) => f.write_str(n),
        }
    }
}

impl Display for LogDest {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            LogDest::Syslog { facility: None } => f.write_str("syslog"),
            LogDest::Syslog {
                facility: Some(fac),
            } => write!(f, "syslog/{fac}"),
            LogDest::Stdout => f.write_str("stdout"),
            LogDest::Stderr => f.write_str("stderr"),
            LogDest::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl Display for PortMatch {
    /// The `port ...` suffix of an address; empty for any port.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            PortMatch::Any => Ok(()),
            PortMatch::Eq(p) => write!(f, "port = {p}"),
            PortMatch::Ne(p) => write!(f, "port != {p}"),
            PortMatch::Ge(p) => write!(f, "port >= {p}"),
            PortMatch::Le(p) => write!(f, "port <= {p}"),
            PortMatch::Gt(p) => write!(f, "port > {p}"),
            PortMatch::Lt(p) => write!(f, "port < {p}"),
            PortMatch::Range(a, b) => write!(f, "port {a} - {b}"),
        }
    }
}

impl Display for AddrMatch {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            AddrMatch::Any => f.write_str("0/0"),
            AddrMatch::Net(n) => write!(f, "{n}"),
            AddrMatch::Name(n) => f.write_str(n),
            AddrMatch::Domain(d) => write!(f, ".{d}"),
        }
    }
}

impl Display for RuleAddr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)?;
        if self.port != PortMatch::Any {
            write!(f, " {}", self.port)?;
        }
        Ok(())
    }
}

fn timeouts(out: &mut String, t: &Timeouts, indent: &str) -> fmt::Result {
    let all = [
        ("timeout.negotiate", t.negotiate),
        ("timeout.connect", t.connect),
        ("timeout.io.tcp", t.io_tcp),
        ("timeout.io.udp", t.io_udp),
        ("timeout.tcp_fin_wait", t.tcp_fin_wait),
    ];
    for (k, v) in all {
        if let Some(v) = v {
            writeln!(out, "{indent}{k}: {v}")?;
        }
    }
    Ok(())
}

fn list<T>(out: &mut String, key: &str, items: &[T], name: impl Fn(&T) -> String) -> fmt::Result {
    if !items.is_empty() {
        let v: Vec<String> = items.iter().map(name).collect();
        writeln!(out, "        {key}: {}", v.join(" "))?;
    }
    Ok(())
}

fn session(s: &mut String, l: &SessionLimits) -> fmt::Result {
    if let Some(n) = l.max {
        writeln!(s, "        session.max: {n}")?;
    }
    if let Some(t) = l.throttle {
        writeln!(s, "        session.throttle: {}/{}", t.sessions, t.seconds)?;
    }
    if let Some(k) = l.state_key {
        writeln!(s, "        session.state.key: {}", k.name())?;
    }
    if let Some(n) = l.state_max {
        writeln!(s, "        session.state.max: {n}")?;
    }
    if let Some(t) = l.state_throttle {
        writeln!(
            s,
            "        session.state.throttle: {}/{}",
            t.sessions, t.seconds
        )?;
    }
    if let Some(i) = l.inheritable {
        writeln!(
            s,
            "        session.inheritable: {}",
            if i { "yes" } else { "no" }
        )?;
    }
    Ok(())
}

impl Display for Rule {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        if self.kind == crate::model::RuleKind::Route {
            writeln!(s, "route {{")?;
        } else {
            writeln!(s, "{} {} {{", self.kind.name(), self.verdict.name())?;
        }
        writeln!(s, "        from: {} to: {}", self.from, self.to)?;
        match &self.via {
            Some(crate::model::Via::Direct) => writeln!(s, "        via: direct")?,
            Some(crate::model::Via::Proxy { host, port }) => {
                writeln!(s, "        via: {host} port = {port}")?
            }
            None => {}
        }
        list(&mut s, "proxyprotocol", &self.upstream, |u| {
            u.name().to_string()
        })?;
        list(&mut s, "command", &self.command, |c| c.name().to_string())?;
        list(&mut s, "protocol", &self.protocol, |p| p.name().to_string())?;
        list(&mut s, "proxyprotocol", &self.proxyprotocol, |p| {
            p.name().to_string()
        })?;
        if !self.clientmethod.is_empty() {
            writeln!(s, "        clientmethod: {}", methods(&self.clientmethod))?;
        }
        if !self.socksmethod.is_empty() {
            writeln!(s, "        socksmethod: {}", methods(&self.socksmethod))?;
        }
        list(&mut s, "user", &self.user, |u| u.clone())?;
        list(&mut s, "group", &self.group, |g| g.clone())?;
        list(&mut s, "log", &self.log.names(), |l| l.to_string())?;
        timeouts(&mut s, &self.timeout, "        ")?;
        if let Some((a, b)) = self.udp_portrange {
            writeln!(s, "        udp.portrange: {a}-{b}")?;
        }
        if let Some(n) = &self.pam_servicename {
            writeln!(s, "        pam.servicename: {n}")?;
        }
        session(&mut s, &self.session)?;
        if let Some(b) = self.bandwidth {
            writeln!(s, "        bandwidth: {b}")?;
        }
        for (dir, r) in [("from", &self.redirect_from), ("to", &self.redirect_to)] {
            if let Some(r) = r {
                match r.port {
                    Some(p) => writeln!(s, "        redirect {dir}: {} port = {p}", r.ip)?,
                    None => writeln!(s, "        redirect {dir}: {}", r.ip)?,
                }
            }
        }
        for l in &self.error_logs {
            writeln!(s, "        {l}")?;
        }
        for o in &self.sockopts {
            writeln!(s, "        {}: {}", o.key(), o.value)?;
        }
        if let Some(l) = &self.libwrap {
            writeln!(s, "        libwrap: {l}")?;
        }
        s.push_str("}\n");
        f.write_str(&s)
    }
}

impl Display for crate::model::ErrorLog {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.log.{}.{}: {}",
            self.side.name(),
            self.level,
            self.what.name(),
            self.symbols.join(" ")
        )
    }
}

impl Display for Config {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        let dests = |d: &[LogDest]| {
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        if !self.logoutput.is_empty() {
            writeln!(s, "logoutput: {}", dests(&self.logoutput))?;
        }
        if !self.errorlog.is_empty() {
            writeln!(s, "errorlog: {}", dests(&self.errorlog))?;
        }
        if let Some(d) = self.debug {
            writeln!(s, "debug: {d}")?;
        }
        if self.internal_protocol != Default::default() {
            writeln!(s, "internal.protocol: {}", families(self.internal_protocol))?;
        }
        for a in &self.internal {
            writeln!(s, "internal: {} port = {}", a.host, a.port)?;
        }
        if self.external_protocol != Default::default() {
            writeln!(s, "external.protocol: {}", families(self.external_protocol))?;
        }
        for a in &self.external {
            writeln!(s, "external: {}", a.host)?;
        }
        for p in &self.external_prefixes {
            writeln!(s, "external: {p}")?;
        }
        match self.external_rotation {
            Rotation::None => {}
            Rotation::Route => writeln!(s, "external.rotation: route")?,
            Rotation::SameSame => writeln!(s, "external.rotation: same-same")?,
            Rotation::Random => writeln!(s, "external.rotation: random")?,
            Rotation::User => writeln!(s, "external.rotation: user")?,
        }
        if !self.socksmethod.is_empty() {
            writeln!(s, "socksmethod: {}", methods(&self.socksmethod))?;
        }
        if !self.clientmethod.is_empty() {
            writeln!(s, "clientmethod: {}", methods(&self.clientmethod))?;
        }
        let users = [
            ("user.privileged", &self.user_privileged),
            ("user.unprivileged", &self.user_unprivileged),
            ("user.libwrap", &self.user_libwrap),
        ];
        for (k, v) in users {
            if let Some(v) = v {
                writeln!(s, "{k}: {v}")?;
            }
        }
        timeouts(&mut s, &self.timeout, "")?;
        if !self.udp_connectdst {
            writeln!(s, "udp.connectdst: no")?;
        }
        if self.compat_sameport {
            writeln!(s, "compatibility: sameport")?;
        }
        if self.extension_bind {
            writeln!(s, "extension: bind")?;
        }
        if self.compat_draft505 {
            writeln!(s, "compatibility: draft-5.05")?;
        }
        if self.libwrap_hosts_access {
            writeln!(s, "libwrap.hosts_access: yes")?;
        }
        if let Some(p) = &self.libwrap_allow {
            writeln!(s, "libwrap.allow: {}", p.display())?;
        }
        if let Some(p) = &self.libwrap_deny {
            writeln!(s, "libwrap.deny: {}", p.display())?;
        }
        for l in &self.error_logs {
            writeln!(s, "{l}")?;
        }
        for o in &self.sockopts {
            writeln!(s, "{}: {}", o.key(), o.value)?;
        }
        let sh = self.srchost;
        if sh != crate::model::Srchost::default() {
            let words: Vec<&str> = [
                (sh.nodnsmismatch, "nodnsmismatch"),
                (sh.nodnsunknown, "nodnsunknown"),
                (sh.checkreplyauth, "checkreplyauth"),
            ]
            .into_iter()
            .filter_map(|(on, w)| on.then_some(w))
            .collect();
            writeln!(s, "srchost: {}", words.join(" "))?;
        }
        if let Some(a) = self.announce_udp {
            writeln!(s, "rsockd.announce.udp: {a}")?;
        }
        if let Some(a) = self.announce_bind {
            writeln!(s, "rsockd.announce.bind: {a}")?;
        }
        if !self.proxyprotocol_from.is_empty() {
            let nets: Vec<String> = self
                .proxyprotocol_from
                .iter()
                .map(|n| n.to_string())
                .collect();
            writeln!(s, "rsockd.proxyprotocol.from: {}", nets.join(" "))?;
        }
        for a in &self.agent {
            writeln!(s, "rsockd.agent: {} port = {}", a.host, a.port)?;
        }
        for a in &self.metrics {
            writeln!(s, "rsockd.metrics: {} port = {}", a.host, a.port)?;
        }
        if let Some(n) = self.metrics_users {
            writeln!(s, "rsockd.metrics.users: {n}")?;
        }
        if self.log_format != crate::model::LogFormat::Dante {
            writeln!(s, "rsockd.log.format: {}", self.log_format.name())?;
        }
        if let Some(t) = self.drain_timeout {
            writeln!(s, "rsockd.drain.timeout: {t}")?;
        }
        if let Some(n) = &self.pam_servicename {
            writeln!(s, "pam.servicename: {n}")?;
        }
        for role in [
            crate::model::CpuRole::Mother,
            crate::model::CpuRole::Relay,
            crate::model::CpuRole::AuthHelper,
        ] {
            let c = self.cpu.of(role);
            if let Some((p, prio)) = c.schedule {
                writeln!(s, "cpu.schedule.{}: {}/{prio}", role.name(), p.name())?;
            }
            if let Some(m) = &c.mask {
                let m: Vec<String> = m.iter().map(u32::to_string).collect();
                writeln!(s, "cpu.mask.{}: {}", role.name(), m.join(" "))?;
            }
        }
        if let Some(n) = self.child_maxrequests {
            writeln!(s, "child.maxrequests: {n}")?;
        }
        if let Some(n) = self.child_maxlifetime {
            writeln!(s, "child.maxlifetime: {n}")?;
        }
        if let Some(p) = &self.route_credentials {
            writeln!(s, "rsockd.route.credentials: {}", p.display())?;
        }
        if let Some(p) = &self.users_file {
            writeln!(s, "rsockd.users.file: {}", p.display())?;
        }
        if self.route_maxfail != 1 {
            writeln!(s, "route.maxfail: {}", self.route_maxfail)?;
        }
        if self.route_badexpire != 300 {
            writeln!(s, "route.badexpire: {}", self.route_badexpire)?;
        }
        for r in self
            .client_rules
            .iter()
            .chain(&self.socks_rules)
            .chain(&self.routes)
        {
            s.push('\n');
            write!(s, "{r}")?;
        }
        for m in &self.monitors {
            s.push('\n');
            write!(s, "{m}")?;
        }
        f.write_str(&s)
    }
}

impl Display for crate::model::Monitor {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let side = |s: crate::model::AlarmSides| match s.name() {
            "" => String::new(),
            n => format!("{n}."),
        };
        writeln!(f, "monitor {{\n        from: {} to: {}", self.from, self.to)?;
        if !self.protocol.is_empty() {
            let p: Vec<_> = self.protocol.iter().map(|p| p.name()).collect();
            writeln!(f, "        protocol: {}", p.join(" "))?;
        }
        if !self.command.is_empty() {
            let c: Vec<_> = self.command.iter().map(|c| c.name()).collect();
            writeln!(f, "        command: {}", c.join(" "))?;
        }
        for d in &self.data {
            let op = match (d.recv, d.send) {
                (true, false) => ".recv",
                (false, true) => ".send",
                _ => "",
            };
            writeln!(
                f,
                "        {}alarm.data{op}: {} in {}",
                side(d.sides),
                d.bytes,
                d.seconds
            )?;
        }
        for d in &self.disconnect {
            writeln!(
                f,
                "        {}alarm.disconnect: {}/{} in {}",
                side(d.sides),
                d.min,
                d.sessions,
                d.seconds
            )?;
        }
        writeln!(f, "}}")
    }
}
