//! rsockd-rules: Dante's client and socks rules, compiled once per config, evaluated first match
//! wins per rule kind; no match is Dante's implicit block rule number 0.
//!
//! Pure: name resolution and interface lookup are the server's job; it passes interface
//! networks to [`RuleSet::compile`] and resolved names in the queries, and asks
//! [`RuleSet::needs_client_names`] / [`RuleSet::needs_target_names`] whether resolving is needed.

#![forbid(unsafe_code)]

mod addr;
mod compile;

pub use compile::CompileError;
pub use rsockd_config::{Command, Method, ProxyProtocol, Rule, Verdict};

use addr::canonical;
use compile::{command_bit, compile_rule, version_bit, Compiled};
use rsockd_config::{Config, RuleKind};
use std::net::{IpAddr, SocketAddr};

/// The compiled rules of one config.
#[derive(Debug, Clone)]
pub struct RuleSet {
    client: Vec<Compiled>,
    socks: Vec<Compiled>,
    /// `monitor { }` objects, compiled as socks rules of their from/to/command/protocol.
    monitors: Vec<Compiled>,
    /// `route { }` objects, in file order.
    routes: Vec<Compiled>,
    global_socksmethod: Vec<Method>,
    needs_client_names: bool,
    needs_target_names: bool,
    needs_local_names: bool,
    needs_groups: bool,
    /// Some client rule's methods are not just `none`: clients are checked at accept
    /// (`rfc931`, `pam.address`, `pam.any`) with [`RuleSet::client_candidates`].
    needs_client_auth: bool,
    /// `srchost: checkreplyauth`.
    check_reply_auth: bool,
}

/// A new TCP connection, checked against client rules.
#[derive(Debug, Clone, Copy)]
pub struct ClientQuery<'a> {
    /// The client.
    pub src: SocketAddr,
    /// Our listening address the client connected to.
    pub dst: SocketAddr,
    /// The client's (forward-confirmed) reverse names; only needed if
    /// [`RuleSet::needs_client_names`].
    pub src_names: &'a [String],
    /// The (forward-confirmed) names of `dst`, our own address; only needed if
    /// [`RuleSet::needs_local_names`] (a client rule's `to:` is a host or domain name).
    pub dst_names: &'a [String],
}

/// A SOCKS request, UDP datagram or BIND reply, checked against socks rules.
///
/// For `bindreply`/`udpreply`, Dante's convention: `src` is the remote peer and `dst` the client.
#[derive(Debug, Clone, Copy)]
pub struct SocksQuery<'a> {
    pub src: SocketAddr,
    pub version: ProxyProtocol,
    pub command: Command,
    /// The method negotiated (`None` for SOCKS v4).
    pub method: Method,
    /// The authenticated user, if any.
    pub user: Option<&'a str>,
    /// The groups of `user` (primary and supplementary), for `group:` conditions; only needed
    /// if [`RuleSet::needs_groups`].
    pub groups: &'a [String],
    pub dst: Dest<'a>,
}

/// The target of a request. A host-name target resolved to several addresses is checked once
/// per address (`ip` = that address, `name` = the requested name): a rule network matches the
/// IP, a rule host/domain name matches the requested name or any of `names`.
#[derive(Debug, Clone, Copy)]
pub struct Dest<'a> {
    pub ip: Option<IpAddr>,
    /// The host name the client asked for, if it asked for one.
    pub name: Option<&'a str>,
    pub port: u16,
    /// Reverse names of `ip`; only needed if [`RuleSet::needs_target_names`].
    pub names: &'a [String],
}

/// The verdict for a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'a> {
    pub verdict: Verdict,
    /// Rule number as Dante logs it; 0 = the implicit default block rule.
    pub number: u32,
    /// The matching rule; `None` for the implicit block.
    pub rule: Option<&'a Rule>,
}

impl Match<'_> {
    const DEFAULT_BLOCK: Match<'static> = Match {
        verdict: Verdict::Block,
        number: 0,
        rule: None,
    };
}

impl RuleSet {
    /// Compiles the rules of `cfg`. `iface` maps an interface name to its networks (the server
    /// passes a getifaddrs-backed closure); a rule name that is not an interface is a host name.
    pub fn compile(
        cfg: &Config,
        iface: &dyn Fn(&str) -> Option<Vec<ipnet::IpNet>>,
    ) -> Result<RuleSet, CompileError> {
        let client = cfg
            .client_rules
            .iter()
            .map(|r| compile_rule(cfg, r, iface))
            .collect::<Result<Vec<_>, _>>()?;
        let socks = cfg
            .socks_rules
            .iter()
            .map(|r| compile_rule(cfg, r, iface))
            .collect::<Result<Vec<_>, _>>()?;
        let routes = cfg
            .routes
            .iter()
            .map(|r| compile_rule(cfg, r, iface))
            .collect::<Result<Vec<_>, _>>()?;
        let monitors = cfg
            .monitors
            .iter()
            .map(|m| {
                let mut r = Rule::new(RuleKind::Socks, Verdict::Pass, m.number, m.line);
                r.from = m.from.clone();
                r.to = m.to.clone();
                r.command = m.command.clone();
                r.protocol = m.protocol.clone();
                compile_rule(cfg, &r, iface)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let needs_client_names = client
            .iter()
            .chain(&socks)
            .any(|c| c.from.addr.wants_names());
        let needs_target_names = socks.iter().chain(&routes).any(|c| c.to.addr.wants_names());
        let needs_local_names = client.iter().any(|c| c.to.addr.wants_names());
        let needs_groups = socks
            .iter()
            .chain(&client)
            .any(|c| !c.rule.group.is_empty());
        let needs_client_auth = client.iter().any(|c| c.methods != [Method::None]);
        Ok(RuleSet {
            check_reply_auth: cfg.srchost.checkreplyauth,
            client,
            socks,
            monitors,
            routes,
            global_socksmethod: cfg.socksmethod.clone(),
            needs_client_names,
            needs_target_names,
            needs_local_names,
            needs_groups,
            needs_client_auth,
        })
    }

    /// The client rules whose addresses match a new connection, in order, each with the
    /// methods that must pass for it to match (its `clientmethod`, else the global one).
    /// The first whose method passes (and whose `user:`/`group:` then match, see
    /// [`user_matches`]) is the client's rule, as in Dante; none is the default block.
    pub fn client_candidates(&self, q: &ClientQuery<'_>) -> Vec<(Match<'_>, &[Method])> {
        self.client
            .iter()
            .filter(|c| {
                c.from
                    .matches(Some(q.src.ip()), q.src.port(), None, q.src_names)
                    && c.to
                        .matches(Some(q.dst.ip()), q.dst.port(), None, q.dst_names)
            })
            .map(|c| (found(c), c.methods.as_slice()))
            .collect()
    }

    /// Some client rule checks a method at accept: see [`RuleSet::client_candidates`].
    pub fn needs_client_auth(&self) -> bool {
        self.needs_client_auth
    }

    /// First client rule matching a new connection by address (the rule when every client
    /// rule's method is `none`).
    pub fn client(&self, q: &ClientQuery<'_>) -> Match<'_> {
        for c in &self.client {
            if c.from
                .matches(Some(q.src.ip()), q.src.port(), None, q.src_names)
                && c.to
                    .matches(Some(q.dst.ip()), q.dst.port(), None, q.dst_names)
            {
                return found(c);
            }
        }
        Match::DEFAULT_BLOCK
    }

    /// First socks rule matching a request. A socks rule whose `from:` is a host or domain
    /// name needs the client's names: use [`RuleSet::socks_with_src_names`] when
    /// [`RuleSet::needs_client_names`] is true.
    pub fn socks(&self, q: &SocksQuery<'_>) -> Match<'_> {
        self.socks_with_src_names(q, &[])
    }

    /// [`RuleSet::socks`] with the (forward-confirmed) names of `q.src`, as in
    /// [`ClientQuery::src_names`].
    pub fn socks_with_src_names(&self, q: &SocksQuery<'_>, src_names: &[String]) -> Match<'_> {
        // Replies are not authenticated by the session's method unless `srchost:
        // checkreplyauth` says so (Dante: the reply is checked as method none, without a user).
        let reply = matches!(q.command, Command::BindReply | Command::UdpReply);
        let plain;
        let q = if reply && !self.check_reply_auth {
            plain = SocksQuery {
                method: Method::None,
                user: None,
                groups: &[],
                ..*q
            };
            &plain
        } else {
            q
        };
        let skip_methods = reply && !self.check_reply_auth;
        for c in &self.socks {
            if socks_matches(c, q, src_names, skip_methods) {
                return found(c);
            }
        }
        Match::DEFAULT_BLOCK
    }

    /// Whether any route exists: then a request no route matches fails (Dante 1.4).
    pub fn has_routes(&self) -> bool {
        !self.routes.is_empty()
    }

    /// The routes matching a request from `client` for `command` to `dst`, in file order
    /// (failover tries them in turn).
    pub fn routes_for(&self, client: SocketAddr, command: Command, dst: &Dest<'_>) -> Vec<&Rule> {
        let bit = command_bit(command);
        self.routes
            .iter()
            .filter(|c| {
                c.commands & bit != 0
                    && c.from.matches(Some(client.ip()), client.port(), None, &[])
                    && c.to
                        .matches(dst.ip.map(canonical), dst.port, dst.name, dst.names)
            })
            .map(|c| &c.rule)
            .collect()
    }

    /// The number of the first monitor watching a session of `command` from `client` to
    /// `target`. Monitors match addresses only: a host or domain name in one matches nothing.
    pub fn monitor(&self, client: SocketAddr, command: Command, target: SocketAddr) -> Option<u32> {
        let bit = command_bit(command);
        self.monitors
            .iter()
            .find(|c| {
                c.commands & bit != 0
                    && c.from.matches(Some(client.ip()), client.port(), None, &[])
                    && c.to.matches(Some(target.ip()), target.port(), None, &[])
            })
            .map(|c| c.rule.number)
    }

    /// Some rule's `from:` is a host or domain name: the server must reverse-resolve (and
    /// forward-confirm) client addresses and pass the names in [`ClientQuery::src_names`] and
    /// to [`RuleSet::socks_with_src_names`].
    pub fn needs_client_names(&self) -> bool {
        self.needs_client_names
    }

    /// Some client rule's `to:` is a host or domain name: the server must reverse-resolve
    /// (and forward-confirm) the address a client connected to, for [`ClientQuery::dst_names`].
    pub fn needs_local_names(&self) -> bool {
        self.needs_local_names
    }

    /// Some socks rule's `to:` is a host or domain name: the server must reverse-resolve IP
    /// targets and pass the names in [`Dest::names`].
    pub fn needs_target_names(&self) -> bool {
        self.needs_target_names
    }

    /// Some socks rule has a `group:` condition: the server must look up the groups of
    /// authenticated users and pass them in [`SocksQuery::groups`].
    pub fn needs_groups(&self) -> bool {
        self.needs_groups
    }

    /// The socksmethod list in force for clients that matched client rule `m`: the rule's own
    /// list, else the global one (empty for the implicit block).
    pub fn client_socksmethod<'a>(&'a self, m: &Match<'a>) -> &'a [Method] {
        match m.rule {
            Some(r) => r.effective_socksmethod(&self.global_socksmethod),
            None => &[],
        }
    }

    /// CVE-2024-54662 (fixed in Dante 1.4.4): a SOCKS v4 client has no method but `none`, so
    /// it may only go on if the matched client rule's socksmethod list allows `none`.
    pub fn client_allows_socks_v4(&self, m: &Match<'_>) -> bool {
        m.verdict == Verdict::Pass && self.client_socksmethod(m).contains(&Method::None)
    }
}

fn found(c: &Compiled) -> Match<'_> {
    Match {
        verdict: c.rule.verdict,
        number: c.rule.number,
        rule: Some(&c.rule),
    }
}

/// A rule's `user:` and `group:` conditions against the session's user and its groups.
/// Dante checks the primary group too (since 1.3.0); a rule naming users or groups never
/// matches a session without a user.
pub fn user_matches(rule: &Rule, user: Option<&str>, groups: &[String]) -> bool {
    if !rule.user.is_empty() && !user.is_some_and(|u| rule.user.iter().any(|x| x == u)) {
        return false;
    }
    rule.group.is_empty() || (user.is_some() && groups.iter().any(|g| rule.group.contains(g)))
}

fn socks_matches(
    c: &Compiled,
    q: &SocksQuery<'_>,
    src_names: &[String],
    skip_methods: bool,
) -> bool {
    if c.commands & command_bit(q.command) == 0 || c.versions & version_bit(q.version) == 0 {
        return false;
    }
    // CVE-2024-54662: SOCKS v4 cannot authenticate, so only a rule allowing `none` applies,
    // whatever method the caller passed.
    if !skip_methods && q.version == ProxyProtocol::SocksV4 && !c.methods.contains(&Method::None) {
        return false;
    }
    if !skip_methods && !c.methods.contains(&q.method) {
        return false;
    }
    if !user_matches(&c.rule, q.user, q.groups) {
        return false;
    }
    c.from
        .matches(Some(q.src.ip()), q.src.port(), None, src_names)
        && c.to
            .matches(q.dst.ip.map(canonical), q.dst.port, q.dst.name, q.dst.names)
}
