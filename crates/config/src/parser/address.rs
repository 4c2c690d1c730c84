//! Addresses and ports: `internal:`/`external:` values and rule `from:`/`to:` values.
//!
//! Dante's forms: `a.b.c.d/bits`, `x::y/bits`, `0/0` (both families), host names, `.domain`,
//! interface names; rule addresses need a mask, server addresses must not have one. Ports:
//! `port = N`, `port: N`, `port eq|ne|ge|le|gt|lt N`, `= != >= <= > <`, service names,
//! `port A-B` and `port A - B`.

use super::Parser;
use crate::lexer::Tok;
use crate::model::{AddrMatch, ExternalAddr, HostSpec, ListenAddr, PortMatch, Redirect, RuleAddr};
use crate::number::{self, NumberError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What an address token turned out to be.
enum Addr {
    V4(Ipv4Addr),
    /// With the `%scope` suffix if there was one.
    V6(Ipv6Addr, Option<String>),
    /// `0`, only meaningful as `0/0`.
    Zero,
    Domain(String),
    Name(String),
}

/// Builds a [`PortMatch`] from the number after an operator.
type MakePort = fn(u16) -> PortMatch;

const OPERATORS: &[(&str, MakePort)] = &[
    ("!=", PortMatch::Ne),
    (">=", PortMatch::Ge),
    ("<=", PortMatch::Le),
    ("=", PortMatch::Eq),
    (">", PortMatch::Gt),
    ("<", PortMatch::Lt),
    ("eq", PortMatch::Eq),
    ("neq", PortMatch::Ne),
    ("ne", PortMatch::Ne),
    ("ge", PortMatch::Ge),
    ("le", PortMatch::Le),
    ("gt", PortMatch::Gt),
    ("lt", PortMatch::Lt),
];

fn looks_numeric(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_digit() || c == '.')
        || (s.contains(':')
            && s.chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.'))
}

impl<'a> Parser<'a> {
    /// Reads and classifies an address token; `None` after reporting an error.
    fn addr_token(&mut self, kw: Tok<'_>) -> Option<(Tok<'a>, Addr)> {
        if self.sc.at_value_end() || self.at_known_keyword() {
            let t = self.sc.next_token();
            self.error(t, format!("expected an address after '{}:'", kw.text));
            return None;
        }
        let t = self.sc.word(&['/', '}']);
        if t.text.is_empty() {
            let t = self.sc.next_token();
            self.error(t, format!("expected an address after '{}:'", kw.text));
            return None;
        }
        let s = t.text;
        let a = if s == "0" {
            Addr::Zero
        } else if let Ok(v4) = s.parse::<Ipv4Addr>() {
            Addr::V4(v4)
        } else if let Some((ip, scope)) = s.split_once('%').and_then(|(ip, scope)| {
            ip.parse::<Ipv6Addr>()
                .ok()
                .map(|ip| (ip, scope.to_string()))
        }) {
            Addr::V6(ip, Some(scope))
        } else if let Ok(v6) = s.parse::<Ipv6Addr>() {
            Addr::V6(v6, None)
        } else if let Some(d) = s.strip_prefix('.') {
            if d.is_empty() {
                self.error(t, "expected a domain name after '.'");
                return None;
            }
            Addr::Domain(d.to_ascii_lowercase())
        } else if looks_numeric(s) {
            self.error(t, "not a valid IPv4 or IPv6 address");
            return None;
        } else {
            Addr::Name(s.to_string())
        };
        if let Addr::V6(ip, _) = &a {
            if ip.to_ipv4_mapped().is_some() {
                self.error(
                    t,
                    "IPv4-mapped IPv6 addresses are not used; write the plain IPv4 address",
                );
                return None;
            }
        }
        Some((t, a))
    }

    /// `internal: ADDRESS [port = N]`.
    pub(super) fn internal(&mut self, kw: Tok<'a>) {
        if self.first_internal_line.is_none() {
            self.first_internal_line = Some(kw.line);
        }
        if let Some(l) = self.listen_addr(kw, Some(1080)) {
            self.cfg.internal.push(l);
        }
    }

    /// `ADDRESS [port = N]` of a listening socket; without `default_port` the port is
    /// required. Consumes the whole value.
    pub(super) fn listen_addr(
        &mut self,
        kw: Tok<'a>,
        default_port: Option<u16>,
    ) -> Option<ListenAddr> {
        let Some(host) = self.server_host(kw) else {
            self.sc.skip_value();
            return None;
        };
        let mut port = default_port.unwrap_or(0);
        if !self.port_keyword() {
            if default_port.is_none() {
                let at = self.sc.clone().next_token();
                self.error(
                    at,
                    format!("'{}:' needs a port: 'ADDRESS port = P'", kw.text),
                );
                self.sc.skip_value();
                return None;
            }
        } else {
            let at = self.sc.clone().word(&['}']);
            match self.port_spec() {
                Some(PortMatch::Eq(p)) => port = p,
                Some(PortMatch::Range(..)) => {
                    self.error(at, "'internal:' takes one port, not a range");
                }
                Some(PortMatch::Ne(p) | PortMatch::Ge(p) | PortMatch::Le(p))
                | Some(PortMatch::Gt(p) | PortMatch::Lt(p)) => {
                    self.warn(
                        at,
                        format!("only '=' makes sense here; listening on port {p}"),
                    );
                    port = p;
                }
                Some(PortMatch::Any) | None => {}
            }
        }
        self.end_of_value(kw);
        Some(ListenAddr {
            host,
            port,
            line: kw.line,
        })
    }

    /// `rsockd.proxyprotocol.from: NET/BITS ...`: the networks of trusted load balancers.
    /// Masks are required, as in rules, so that a bare address is never a surprise /0.
    pub(super) fn balancers(&mut self, kw: Tok<'a>) {
        let mut any = false;
        // at_known_keyword: `fd00:` would look like a keyword to at_keyword.
        while !self.sc.at_value_end() && !self.at_known_keyword() {
            let Some((t, a)) = self.addr_token(kw) else {
                self.sc.skip_value();
                return;
            };
            let (ip, max) = match a {
                Addr::V4(ip) => (IpAddr::V4(ip), 32),
                Addr::V6(ip, None) => (IpAddr::V6(ip), 128),
                _ => {
                    self.error(
                        t,
                        format!("'{}:' takes IP networks (ADDRESS/BITS)", kw.text),
                    );
                    self.sc.skip_value();
                    return;
                }
            };
            if !self.sc.eat('/') {
                self.error(
                    t,
                    format!("expected a netmask after the address, e.g. '{ip}/{max}'"),
                );
                self.sc.skip_value();
                return;
            }
            let Some(bits) = self.mask(t, max) else {
                self.sc.skip_value();
                return;
            };
            match ipnet::IpNet::new(ip, bits) {
                Ok(n) => {
                    let n = n.trunc();
                    if !self.cfg.proxyprotocol_from.contains(&n) {
                        self.cfg.proxyprotocol_from.push(n);
                    }
                    any = true;
                }
                Err(_) => self.error(t, "bad netmask"),
            }
        }
        if !any {
            let t = self.sc.next_token();
            self.error(t, format!("expected a network after '{}:'", kw.text));
        }
        self.end_of_value(kw);
    }

    /// `external: ADDRESS` (no port, no mask).
    pub(super) fn external(&mut self, kw: Tok<'a>) {
        if self.first_external_line.is_none() {
            self.first_external_line = Some(kw.line);
        }
        // `external: 2001:db8:1::/64`: a prefix for external.rotation random/user.
        let w = self.sc.clone().word(&['}']);
        if w.text.contains('/') && !w.text.starts_with("0/") {
            match w.text.parse::<ipnet::IpNet>() {
                // A prefix (no host bits) is ours; an address with a mask is Dante's error,
                // given below.
                Ok(net) if net == net.trunc() => {
                    self.sc.word(&['}']);
                    if !self.cfg.external_prefixes.contains(&net) {
                        self.cfg.external_prefixes.push(net);
                    }
                    self.end_of_value(kw);
                    return;
                }
                Ok(_) => {}
                Err(_) => {
                    self.error(
                        w,
                        "expected an address, or a prefix such as 2001:db8:1::/64",
                    );
                    self.sc.skip_value();
                    return;
                }
            }
        }
        let Some(host) = self.server_host(kw) else {
            self.sc.skip_value();
            return;
        };
        if self.port_keyword() {
            let at = self.sc.clone().word(&['}']);
            self.error(at, "'external:' takes no port");
            self.sc.skip_value();
        }
        self.cfg.external.push(ExternalAddr {
            host,
            line: kw.line,
        });
        self.end_of_value(kw);
    }

    /// The address of `internal:`/`external:`.
    fn server_host(&mut self, kw: Tok<'a>) -> Option<HostSpec> {
        let (t, a) = self.addr_token(kw)?;
        if matches!(a, Addr::Zero | Addr::Domain(_)) {
            self.error(
                t,
                format!(
                    "expected an IP address, interface name or host name after '{}:'",
                    kw.text
                ),
            );
            return None;
        }
        if self.sc.eat('/') {
            self.error(
                t,
                format!("'{}:' takes an address without a netmask", kw.text),
            );
            return None;
        }
        match a {
            Addr::V4(ip) => Some(HostSpec::Ip(IpAddr::V4(ip))),
            Addr::V6(ip, None) => Some(HostSpec::Ip(IpAddr::V6(ip))),
            // getaddrinfo understands `fe80::1%eth0`; Dante 1.4.2 crashes on it.
            Addr::V6(_, Some(_)) | Addr::Name(_) => Some(HostSpec::Name(t.text.to_string())),
            Addr::Zero | Addr::Domain(_) => None,
        }
    }

    /// The address of `rsockd.announce.*`: a literal IP, not a wildcard (a name would be
    /// resolved once and silently go stale; an interface may have several addresses).
    pub(super) fn announce_addr(&mut self, kw: Tok<'a>) -> Option<IpAddr> {
        let (t, a) = self.addr_token(kw)?;
        match a {
            Addr::V4(ip) if !ip.is_unspecified() => Some(IpAddr::V4(ip)),
            Addr::V6(ip, None) if !ip.is_unspecified() => Some(IpAddr::V6(ip)),
            _ => {
                self.error(
                    t,
                    format!(
                        "expected an IPv4 or IPv6 address (not a wildcard, name or interface) \
                         after '{}:'",
                        kw.text
                    ),
                );
                None
            }
        }
    }

    /// A rule `from:`/`to:` value.
    pub(super) fn rule_addr(&mut self, kw: Tok<'a>) -> Option<RuleAddr> {
        let (t, a) = self.addr_token(kw)?;
        let has_mask = self.sc.eat('/');
        let addr = match a {
            Addr::Zero => {
                if !has_mask {
                    self.error(t, "expected '0/0' (any address)");
                    return None;
                }
                let m = self.mask(t, 128)?;
                if m != 0 {
                    self.error(
                        t,
                        "bad netmask for '0/'; the only legal value is 0 ('0/0' = any address)",
                    );
                    return None;
                }
                AddrMatch::Any
            }
            Addr::V4(ip) => {
                if !has_mask {
                    self.error(
                        t,
                        format!("expected a netmask after the address, e.g. '{ip}/32'"),
                    );
                    return None;
                }
                let bits = self.mask(t, 32)?;
                AddrMatch::Net(ipnet::IpNet::V4(ipnet::Ipv4Net::new(ip, bits).ok()?))
            }
            Addr::V6(ip, scope) => {
                if !has_mask {
                    self.error(
                        t,
                        format!("expected a netmask after the address, e.g. '{ip}/128'"),
                    );
                    return None;
                }
                if let Some(s) = scope {
                    self.warn(t, format!("scope '%{s}' is ignored in rule addresses"));
                }
                let bits = self.mask(t, 128)?;
                AddrMatch::Net(ipnet::IpNet::V6(ipnet::Ipv6Net::new(ip, bits).ok()?))
            }
            Addr::Domain(_) | Addr::Name(_) if has_mask => {
                self.error(t, "a host, domain or interface name takes no netmask");
                return None;
            }
            Addr::Domain(d) => AddrMatch::Domain(d),
            Addr::Name(n) => AddrMatch::Name(n),
        };
        let mut port = PortMatch::Any;
        if self.port_keyword() {
            port = self.port_spec()?;
        }
        Some(RuleAddr { addr, port })
    }

    /// The address of `redirect from:`/`redirect to:`: an IP address, no mask, and at most
    /// `port = P`.
    pub(super) fn redirect_addr(&mut self, kw: Tok<'a>) -> Option<Redirect> {
        let (t, a) = self.addr_token(kw)?;
        let ip = match a {
            Addr::V4(ip) => IpAddr::V4(ip),
            Addr::V6(ip, _) => IpAddr::V6(ip),
            _ => {
                self.error(t, format!("'redirect {}:' takes an IP address", kw.text));
                return None;
            }
        };
        if self.sc.eat('/') {
            self.error(
                t,
                format!("'redirect {}:' takes an address, not a network", kw.text),
            );
            return None;
        }
        let mut port = None;
        if self.port_keyword() {
            let at = self.sc.clone().next_token();
            match self.port_spec()? {
                PortMatch::Eq(p) => port = Some(p),
                _ => {
                    self.error(at, "a redirect takes one port: 'port = P'");
                    return None;
                }
            }
        }
        Some(Redirect { ip, port })
    }

    /// The number after `/`, at most `max` bits.
    fn mask(&mut self, addr: Tok<'_>, max: u8) -> Option<u8> {
        let t = self.sc.word(&['}']);
        let legal = format!("legal range is 0 - {max}");
        if t.text.is_empty() {
            let t = self.sc.next_token();
            self.error(t, format!("expected a netmask after '{}/'", addr.text));
            return None;
        }
        if t.text.contains('.') {
            self.error(
                t,
                format!("bad netmask; give the number of bits, the {legal}"),
            );
            return None;
        }
        match number::parse(t.text) {
            Ok(n) if n <= u64::from(max) => u8::try_from(n).ok(),
            Ok(_) | Err(NumberError::TooLarge) => {
                self.error(t, format!("bad netmask; the {legal}"));
                None
            }
            Err(NumberError::NotANumber) => {
                self.error(t, format!("bad netmask; expected a number, the {legal}"));
                None
            }
        }
    }

    /// Consumes the keyword `port` if it comes next.
    fn port_keyword(&mut self) -> bool {
        let mut s = self.sc.clone();
        if s.ident().text == "port" {
            self.sc = s;
            true
        } else {
            false
        }
    }

    /// What follows `port`.
    fn port_spec(&mut self) -> Option<PortMatch> {
        if self.sc.eat(':') {
            return self.port_value("port:").map(PortMatch::Eq);
        }
        for (op, make) in OPERATORS {
            let is_word = op.chars().all(|c| c.is_ascii_alphabetic());
            let mut s = self.sc.clone();
            let matched = if is_word {
                s.ident().text == *op
            } else {
                s.eat_str(op)
            };
            if matched {
                self.sc = s;
                let p = self.port_value(&format!("port {op}"))?;
                return Some(make(p));
            }
        }
        let t = self.sc.clone().number();
        if t.text.starts_with(|c: char| c.is_ascii_digit()) {
            let start = self.port_value("port")?;
            if !self.sc.eat('-') {
                return Some(PortMatch::Eq(start));
            }
            let end_tok = self.sc.clone().number();
            let end = self.port_value("-")?;
            if end < start {
                self.error(
                    end_tok,
                    format!("end port ({end}) can not be less than start port ({start})"),
                );
                return None;
            }
            return Some(PortMatch::Range(start, end));
        }
        let t = self.sc.next_token();
        self.error(
            t,
            "expected an operator (=, !=, <, <=, >, >=, eq, ne, lt, le, gt, ge), ':' or a \
             port range after 'port'",
        );
        None
    }

    /// A port number or service name.
    fn port_value(&mut self, after: &str) -> Option<u16> {
        self.sc.skip_blanks();
        if self.sc.peek().is_some_and(|c| c.is_ascii_digit()) {
            let t = self.sc.number();
            return self
                .check_number(t, after, u64::from(u16::MAX))
                .and_then(|n| u16::try_from(n).ok());
        }
        // Service names may hold '-' (ftp-data), numbers may not (ranges).
        let t = self.sc.word(&[':', '/', '}']);
        if t.text.is_empty() {
            let nt = self.sc.next_token();
            self.error(
                nt,
                format!("expected a port number or a service name after '{after}'"),
            );
            return None;
        }
        match self.opts.services.lookup(t.text) {
            Some(p) => Some(p),
            None => {
                self.error(
                    t,
                    format!("expected a port number or a known service name after '{after}'"),
                );
                None
            }
        }
    }
}

impl<'a> Parser<'a> {
    /// `via: direct` or `via: HOST port = P` (a route's upstream proxy; an address or a name).
    pub(super) fn via(&mut self, kw: Tok<'a>) -> Option<crate::model::Via> {
        let t = self.sc.word(&['}']);
        if t.text.is_empty() {
            let t = self.sc.next_token();
            self.error(t, "expected 'direct' or a proxy address after 'via:'");
            return None;
        }
        if t.text == "direct" {
            return Some(crate::model::Via::Direct);
        }
        let host = t.text.to_string();
        if !self.port_keyword() {
            self.error(
                t,
                format!("'via: {host}' needs the proxy's port: 'via: {host} port = P'"),
            );
            self.skip_to_keyword();
            return None;
        }
        let _ = kw;
        match self.port_spec()? {
            crate::model::PortMatch::Eq(port) if port != 0 => {
                Some(crate::model::Via::Proxy { host, port })
            }
            _ => {
                self.error(t, "'via:' takes one port: 'port = P'");
                None
            }
        }
    }
}
