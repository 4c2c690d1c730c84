//! Rules: `client|socks pass|block { ... }` and the deprecated bare `pass|block { ... }`.
//!
//! Dante wants `from:` and `to:` next to each other with options before or after them, and
//! list options alone on their line; we accept options in any order and several per line.

use super::methods::List;
use super::{Ctx, Parser};
use crate::lexer::Tok;
use crate::model::{
    Command, Protocol, ProxyProtocol, Rule, RuleKind, SessionLimits, Side, StateKey, Throttle,
    Upstream, Verdict,
};
use crate::support::{self, Place};

/// Rule options with a value reader here.
const HANDLED: &[&str] = &[
    "from",
    "to",
    "command",
    "protocol",
    "proxyprotocol",
    "socksmethod",
    "clientmethod",
    "user",
    "group",
    "log",
    "udp.portrange",
    "pam.servicename",
    "timeout.negotiate",
    "timeout.connect",
    "timeout.io",
    "timeout.io.tcp",
    "timeout.io.udp",
    "timeout.tcp_fin_wait",
    "session.max",
    "session.throttle",
    "session.state.key",
    "session.state.max",
    "session.state.throttle",
    "session.inheritable",
    "bandwidth",
    "redirect",
    "internal.log.",
    "external.log.",
    "libwrap",
    "internal.socket.",
    "internal.ip.",
    "internal.tcp.",
    "internal.udp.",
    "external.socket.",
    "external.ip.",
    "external.tcp.",
    "external.udp.",
];

pub(super) fn has_rule_handler(key: &str) -> bool {
    HANDLED.contains(&key)
}

/// Words that start a new top-level object: seeing one inside a rule means a missing `}`.
const OBJECT_STARTERS: &[&str] = &[
    "client", "socks", "hostid", "pass", "block", "route", "monitor",
];

impl<'a> Parser<'a> {
    /// After `client`, `socks` or `hostid` (kind `None`): the verdict, then the body.
    pub(super) fn rule_header(&mut self, start: Tok<'a>, kind: Option<RuleKind>) {
        let v = self.sc.ident();
        let verdict = match v.text {
            "pass" => Verdict::Pass,
            "block" => Verdict::Block,
            "deny" => {
                self.error(v, "'deny' is not a verdict; use 'block'");
                Verdict::Block
            }
            _ => {
                let t = if v.text.is_empty() {
                    self.sc.next_token()
                } else {
                    v
                };
                self.error(
                    t,
                    format!("expected 'pass' or 'block' after '{}'", start.text),
                );
                self.sc.skip_block();
                return;
            }
        };
        let Some(kind) = kind else {
            self.error(
                start,
                "hostid is not supported on this system; Dante's Linux build refuses it too",
            );
            self.sc.skip_block();
            return;
        };
        self.rule_body(start, kind, verdict);
    }

    /// `route { ... }`: a rule body of route keywords; a route needs `via:`.
    pub(super) fn route(&mut self, start: Tok<'a>) {
        self.rule_body(start, RuleKind::Route, Verdict::Pass);
    }

    /// A route's `method:`: what we offer the upstream (none, username).
    fn route_methods(&mut self, kw: Tok<'a>, rule: &mut Rule) {
        for t in self.list_items(kw) {
            match crate::model::Method::from_name(t.text) {
                Some(m @ crate::model::Method::None) => {
                    if !rule.socksmethod.contains(&m) {
                        rule.socksmethod.push(m);
                    }
                }
                Some(m @ crate::model::Method::Username) => {
                    if !rule.socksmethod.contains(&m) {
                        rule.socksmethod.push(m);
                    }
                }
                Some(crate::model::Method::Gssapi) => {
                    self.not_yet(t, "method gssapi in a route", "");
                }
                _ => self.error(
                    t,
                    "a route's method is what the upstream is offered: none, username or gssapi",
                ),
            }
        }
    }

    /// `pass {`, `block {` without `socks` (deprecated), or `deny {` (an error).
    pub(super) fn bare_verdict_rule(&mut self, start: Tok<'a>) {
        let verdict = match start.text {
            "pass" => Verdict::Pass,
            "block" => Verdict::Block,
            _ => {
                self.error(start, "'deny' is not a verdict; use 'block'");
                Verdict::Block
            }
        };
        if start.text != "deny" {
            self.warn(
                start,
                format!(
                    "'{0}' without 'socks' is deprecated; assuming 'socks {0}'",
                    start.text
                ),
            );
        }
        self.rule_body(start, RuleKind::Socks, verdict);
    }

    fn rule_body(&mut self, start: Tok<'a>, kind: RuleKind, verdict: Verdict) {
        if !self.sc.eat('{') {
            let t = self.sc.next_token();
            self.error(
                t,
                format!("expected '{{' after '{} {}'", kind.name(), verdict.name()),
            );
            self.sc.skip_line();
            return;
        }
        let number = match kind {
            RuleKind::Client => self.cfg.client_rules.len(),
            RuleKind::Socks => self.cfg.socks_rules.len(),
            RuleKind::Route => self.cfg.routes.len(),
        } + 1;
        let number = u32::try_from(number).unwrap_or(u32::MAX);
        let mut rule = Rule::new(kind, verdict, number, start.line);
        let errors_before = self.errors.len();
        let (mut from, mut to) = (false, false);
        self.object_body(
            start,
            "rule",
            "expected a rule keyword (such as 'from:' or 'log:') or '}'",
            &mut |p, kw| p.rule_option(&mut rule, kw, &mut from, &mut to),
        );
        // A missing from/to after other errors in the rule is usually their fallout.
        if !(from && to) && self.errors.len() == errors_before {
            self.error(start, "a rule needs both 'from:' and 'to:'");
        }
        if kind == RuleKind::Socks && rule.socksmethod.is_empty() && self.cfg.socksmethod.is_empty()
        {
            // Dante's checkrule() warning: the rule inherits the empty global list.
            self.warn(
                start,
                format!(
                    "socks-rule #{number} sets no socks authentication methods, not even 'none'; \
                     no client can ever match it"
                ),
            );
        }
        // `redirect to:` replaces a connect's target; what it would mean for a bind (the
        // expected peer) or a UDP association is not defined, so say so instead of guessing.
        let only_connect = !rule.command.is_empty()
            && rule
                .command
                .iter()
                .all(|c| *c == crate::model::Command::Connect);
        if rule.redirect_to.is_some() && !only_connect {
            self.error(
                start,
                format!(
                    "socks-rule #{number}: 'redirect to:' changes only the target of a connect; \
                     add 'command: connect' to this rule"
                ),
            );
        }
        if kind == RuleKind::Route && rule.via.is_none() && self.errors.len() == errors_before {
            self.error(start, format!("route #{number} has no 'via:'"));
        }
        let username = rule.socksmethod.contains(&crate::model::Method::Username);
        let socks5 = rule
            .upstream
            .first()
            .is_none_or(|u| *u == Upstream::SocksV5);
        if kind == RuleKind::Route && username && !socks5 {
            self.error(
                start,
                format!(
                    "route #{number}: method username is a SOCKS5 method; this route's upstream \
                     speaks {}",
                    rule.upstream.first().map_or("socks_v5", |u| u.name())
                ),
            );
        }
        // Dante refuses a proxy route naming any command but connect; we chain BIND and UDP
        // ASSOCIATE too, through SOCKS5 only.
        let via_proxy = matches!(rule.via, Some(crate::model::Via::Proxy { .. }));
        let non_connect = rule.command.iter().find(|c| {
            matches!(
                c,
                crate::model::Command::Bind | crate::model::Command::UdpAssociate
            )
        });
        let offers_socks5 = rule.upstream.is_empty() || rule.upstream.contains(&Upstream::SocksV5);
        if let (RuleKind::Route, true, Some(c), false) =
            (kind, via_proxy, non_connect, offers_socks5)
        {
            self.error(
                start,
                format!(
                    "route #{number}: serverchaining of command {} needs proxyprotocol socks_v5; \
                     an upstream speaking {} carries only the connect command",
                    c.name(),
                    rule.upstream
                        .iter()
                        .map(|u| u.name())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            );
        }
        match kind {
            RuleKind::Client => self.cfg.client_rules.push(rule),
            RuleKind::Socks => self.cfg.socks_rules.push(rule),
            RuleKind::Route => self.cfg.routes.push(rule),
        }
    }

    /// The keywords of an object's body (a rule, a monitor) up to its `}`, each handed to
    /// `option`; `what` names the object in the error for a missing `}`.
    pub(super) fn object_body(
        &mut self,
        start: Tok<'a>,
        what: &str,
        expected: &str,
        option: &mut dyn FnMut(&mut Parser<'a>, Tok<'a>),
    ) {
        let missing = format!(
            "missing '}}' at the end of the {what} that starts on line {}",
            start.line
        );
        loop {
            self.sc.skip_space();
            if self.sc.at_eof() {
                self.error(start, missing);
                break;
            }
            if self.sc.eat('}') {
                break;
            }
            let before = self.sc.clone();
            let kw = self.sc.ident();
            if kw.text.is_empty() {
                let t = self.sc.next_token();
                self.error(t, expected);
                self.sc.skip_value();
                continue;
            }
            if OBJECT_STARTERS.contains(&kw.text) && !self.keyword_follows() {
                self.error(start, missing);
                self.sc = before;
                break;
            }
            option(self, kw);
        }
    }

    fn rule_option(&mut self, rule: &mut Rule, kw: Tok<'a>, from: &mut bool, to: &mut bool) {
        let ctx = Ctx::Rule(rule.kind);
        if rule.kind == RuleKind::Route && matches!(kw.text, "method" | "socksmethod") {
            // In a route, the methods we offer the upstream: not bound by our own lists.
            if self.colon(kw) {
                self.route_methods(kw, rule);
            }
            return;
        }
        let Some(entry) = support::lookup(kw.text) else {
            if kw.text == "port" {
                self.error(
                    kw,
                    "'port' must follow the address of 'from:' or 'to:' on the same line",
                );
                self.sc.skip_value();
                return;
            }
            self.unknown_keyword(kw, ctx);
            self.sc.skip_value();
            return;
        };
        if !entry.place.contains(ctx.place()) || entry.place == Place::OBJECT {
            self.misplaced(kw, entry, ctx);
            self.sc.skip_value();
            return;
        }
        let Some(name) = self.admit(kw, entry, ctx) else {
            self.sc.skip_value();
            return;
        };
        // `redirect from: ...` and `redirect to: ...`: the colon follows the direction.
        if name == "redirect" {
            self.redirect(kw, rule);
            return;
        }
        if !self.colon(kw) {
            self.sc.skip_value();
            return;
        }
        match name {
            "from" | "to" => {
                let seen = if name == "from" { &mut *from } else { &mut *to };
                if *seen {
                    self.error(kw, format!("'{name}:' given twice in one rule"));
                }
                *seen = true;
                match self.rule_addr(kw) {
                    Some(a) if name == "from" => rule.from = a,
                    Some(a) => rule.to = a,
                    None => self.skip_to_keyword(),
                }
            }
            "internal.log." | "external.log." => {
                if let Some(l) = self.error_log(kw) {
                    rule.error_logs.push(l);
                }
            }
            "via" => {
                if rule.via.is_some() {
                    self.error(kw, "'via:' given twice in one route");
                }
                rule.via = self.via(kw);
            }
            "libwrap" => {
                let t = self.sc.rest_of_line();
                if t.text.is_empty() {
                    self.error(t, "expected libwrap options after 'libwrap:'");
                } else {
                    rule.libwrap = Some(t.text.to_string());
                }
            }
            "internal.socket." | "internal.ip." | "internal.tcp." | "internal.udp."
            | "external.socket." | "external.ip." | "external.tcp." | "external.udp." => {
                if let Some(o) = self.sockopt(kw) {
                    if o.side == Side::External && rule.kind == RuleKind::Client {
                        self.error(
                            kw,
                            "can not set socket options for the external side in a client-rule, \
                             as there is no external side set up yet at this point.  Needs to be \
                             set in the corresponding socks-rule if necessary",
                        );
                    } else {
                        if o.side == Side::Internal && !o.anytime() {
                            // Dante's warning; the option is set all the same, and Linux
                            // honours most of them on an established connection.
                            self.warn(
                                kw,
                                format!(
                                    "to our knowledge the socket option \"{}\" can only be \
                                     correctly applied at pre-connection establishment time, but \
                                     by the time this rule is matched, the connection will \
                                     already have been established",
                                    o.option_name()
                                ),
                            );
                        }
                        rule.sockopts.push(o);
                    }
                }
            }
            "command" => self.commands(kw, &mut rule.command),
            "protocol" => self.protocols(kw, &mut rule.protocol),
            "proxyprotocol" => self.proxyprotocols(kw, rule),
            "socksmethod" => self.rule_methods(kw, List::Socks, &mut rule.socksmethod),
            "clientmethod" => self.rule_methods(kw, List::Client, &mut rule.clientmethod),
            "user" | "group" => {
                let list = if name == "user" {
                    &mut rule.user
                } else {
                    &mut rule.group
                };
                for t in self.list_items(kw) {
                    if !list.iter().any(|u| u == t.text) {
                        list.push(t.text.to_string());
                    }
                }
            }
            "log" => self.log_flags(kw, rule),
            "udp.portrange" => {
                rule.udp_portrange = self.udp_portrange(kw);
                self.end_of_value(kw);
            }
            "pam.servicename" => rule.pam_servicename = self.service_name(kw),
            "bandwidth" => {
                let t = self.sc.clone().number();
                rule.bandwidth = match self.number("bandwidth:", u64::MAX) {
                    Some(0) => {
                        self.error(t, "'bandwidth:' must be at least 1 byte per second");
                        None
                    }
                    n => n,
                };
                self.end_of_value(kw);
            }
            _ if name.starts_with("session.") => {
                self.session(kw, name, &mut rule.session);
                self.end_of_value(kw);
            }
            _ if name.starts_with("timeout.") => {
                self.timeout(kw, name, &mut rule.timeout);
                self.end_of_value(kw);
            }
            _ => self.sc.skip_value(),
        }
    }

    /// `command: ...`: each command once.
    pub(super) fn commands(&mut self, kw: Tok<'a>, list: &mut Vec<Command>) {
        for t in self.list_items(kw) {
            match Command::from_name(t.text) {
                Some(c) if list.contains(&c) => {}
                Some(c) => list.push(c),
                None => self.error(
                    t,
                    "unknown command; expected bind, bindreply, connect, udpassociate or \
                     udpreply",
                ),
            }
        }
    }

    /// `protocol: tcp udp`: each once.
    pub(super) fn protocols(&mut self, kw: Tok<'a>, list: &mut Vec<Protocol>) {
        for t in self.list_items(kw) {
            let p = match t.text {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                _ => {
                    self.error(t, "unknown protocol; expected tcp or udp");
                    continue;
                }
            };
            if !list.contains(&p) {
                list.push(p);
            }
        }
    }

    fn proxyprotocols(&mut self, kw: Tok<'a>, rule: &mut Rule) {
        if rule.kind == RuleKind::Route {
            for t in self.list_items(kw) {
                let u = match t.text {
                    "socks_v4" => Upstream::SocksV4,
                    "socks_v5" => Upstream::SocksV5,
                    "http" | "http_v1.0" => Upstream::Http,
                    "upnp" => {
                        self.error(
                            t,
                            "'upnp' (routes through a UPnP gateway) is not built into rsockd",
                        );
                        continue;
                    }
                    _ => {
                        self.error(
                            t,
                            "unknown proxy protocol; expected socks_v4, socks_v5, http or \
                             http_v1.0",
                        );
                        continue;
                    }
                };
                if !rule.upstream.contains(&u) {
                    rule.upstream.push(u);
                }
            }
            return;
        }
        for t in self.list_items(kw) {
            let p = match t.text {
                "socks_v4" => ProxyProtocol::SocksV4,
                "socks_v5" => ProxyProtocol::SocksV5,
                "http" | "http_v1.0" | "upnp" => {
                    self.error(
                        t,
                        "this proxy protocol is only meaningful in routes; rules take socks_v4 \
                         or socks_v5",
                    );
                    continue;
                }
                _ => {
                    self.error(t, "unknown proxy protocol; expected socks_v4 or socks_v5");
                    continue;
                }
            };
            if !rule.proxyprotocol.contains(&p) {
                rule.proxyprotocol.push(p);
            }
        }
    }

    fn log_flags(&mut self, kw: Tok<'a>, rule: &mut Rule) {
        for t in self.list_items(kw) {
            let l = &mut rule.log;
            match t.text {
                "connect" => l.connect = true,
                "disconnect" => l.disconnect = true,
                "data" => l.data = true,
                "error" => l.error = true,
                "iooperation" | "ioop" => l.iooperation = true,
                "tcpinfo" => l.tcpinfo = true,
                _ => self.error(
                    t,
                    "unknown log keyword; expected connect, disconnect, data, error, iooperation \
                     or tcpinfo",
                ),
            }
        }
    }

    /// `udp.portrange: A-B` (also `A - B`).
    fn udp_portrange(&mut self, kw: Tok<'a>) -> Option<(u16, u16)> {
        let after = format!("{}:", kw.text);
        let start = self.number(&after, u64::from(u16::MAX))?;
        if !self.sc.eat('-') {
            let t = self.sc.next_token();
            self.error(t, format!("expected a range 'FIRST-LAST' after '{after}'"));
            return None;
        }
        let end_tok = self.sc.clone().number();
        let end = self.number("-", u64::from(u16::MAX))?;
        if end < start {
            self.error(
                end_tok,
                format!("end port ({end}) can not be less than start port ({start})"),
            );
            return None;
        }
        Some((u16::try_from(start).ok()?, u16::try_from(end).ok()?))
    }

    /// `session.max: N`, `session.throttle: N/S`, `session.state.key: from|user`,
    /// `session.state.max: N`, `session.state.throttle: N/S`, `session.inheritable: yes|no`.
    fn session(&mut self, kw: Tok<'a>, name: &str, l: &mut SessionLimits) {
        let after = format!("{}:", kw.text);
        match name {
            "session.max" | "session.state.max" => {
                let Some(n) = self.at_least_one(&after) else {
                    return;
                };
                if name == "session.max" {
                    l.max = Some(n);
                } else {
                    l.state_max = Some(n);
                }
            }
            "session.throttle" | "session.state.throttle" => {
                let Some(t) = self.throttle(&after) else {
                    return;
                };
                if name == "session.throttle" {
                    l.throttle = Some(t);
                } else {
                    l.state_throttle = Some(t);
                }
            }
            "session.state.key" => {
                let t = self.sc.ident();
                l.state_key = match t.text {
                    "from" => Some(StateKey::From),
                    "user" => Some(StateKey::User),
                    "hostid" => {
                        self.error(t, "hostid is not supported on this system; Dante's Linux build refuses it too");
                        None
                    }
                    _ => {
                        let t = if t.text.is_empty() {
                            self.sc.next_token()
                        } else {
                            t
                        };
                        self.error(t, "unknown session.state.key; expected from or user");
                        None
                    }
                };
            }
            _ => l.inheritable = self.yes_no(kw),
        }
    }

    /// A count of at least 1 (a limit of 0 would refuse everything: use a block rule).
    fn at_least_one(&mut self, after: &str) -> Option<u32> {
        let t = self.sc.clone().number();
        let n = self.number(after, u64::from(u32::MAX))?;
        if n == 0 {
            self.error(
                t,
                format!("'{after}' must be at least 1; to refuse every session, use a block rule"),
            );
            return None;
        }
        u32::try_from(n).ok()
    }

    /// `N/S`: at most N new sessions in S seconds.
    fn throttle(&mut self, after: &str) -> Option<Throttle> {
        let sessions = self.at_least_one(after)?;
        if !self.sc.eat('/') {
            let t = self.sc.next_token();
            self.error(
                t,
                format!("expected 'SESSIONS/SECONDS' after '{after}', e.g. 10/1"),
            );
            return None;
        }
        let seconds = self.at_least_one("/")?;
        Some(Throttle { sessions, seconds })
    }

    /// `redirect from: ADDR [port = P]` or `redirect to: ADDR [port = P]`, an IP address.
    fn redirect(&mut self, kw: Tok<'a>, rule: &mut Rule) {
        let dir = self.sc.ident();
        if !matches!(dir.text, "from" | "to") {
            let t = if dir.text.is_empty() {
                self.sc.next_token()
            } else {
                dir
            };
            self.error(t, "expected 'from:' or 'to:' after 'redirect'");
            self.sc.skip_value();
            return;
        }
        if !self.colon(dir) {
            self.sc.skip_value();
            return;
        }
        let Some(r) = self.redirect_addr(dir) else {
            self.skip_to_keyword();
            return;
        };
        let slot = if dir.text == "from" {
            &mut rule.redirect_from
        } else {
            &mut rule.redirect_to
        };
        if slot.is_some() {
            self.error(
                kw,
                format!("'redirect {}:' given twice in one rule", dir.text),
            );
        }
        *slot = Some(r);
    }
}
