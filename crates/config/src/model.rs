//! The validated configuration model: what a parsed sockd.conf means, with no syntax left in it.
//!
//! Field defaults follow Dante 1.4: `None`/empty means "not set in the file"; the server applies
//! Dante's defaults (timeouts 30/30/0/86400/0, port 1080, derived clientmethod).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

/// Everything a sockd.conf says, in file order where order matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `internal:` lines, in file order.
    pub internal: Vec<ListenAddr>,
    /// `internal.protocol:` — families used when expanding interface names.
    pub internal_protocol: Families,
    /// `external:` lines, in file order.
    pub external: Vec<ExternalAddr>,
    /// `external.protocol:`.
    pub external_protocol: Families,
    /// `external.rotation:`.
    /// `external: PREFIX/LEN` (our extension): addresses of a prefix routed to this host,
    /// used by `external.rotation: random` or `user` for CONNECT, bound with IP_FREEBIND.
    pub external_prefixes: Vec<ipnet::IpNet>,
    pub external_rotation: Rotation,
    /// Global `socksmethod:` list in preference order; empty = not set (Dante: block everything).
    pub socksmethod: Vec<Method>,
    /// Global `clientmethod:` list; empty = not set (Dante derives `none`).
    pub clientmethod: Vec<Method>,
    /// `user.privileged:`.
    pub user_privileged: Option<String>,
    /// `user.unprivileged:` (alias `user.notprivileged:`).
    pub user_unprivileged: Option<String>,
    /// `user.libwrap:` (kept for printing; libwrap lines run as the unprivileged user).
    pub user_libwrap: Option<String>,
    /// `logoutput:` destinations, all lines merged in file order.
    pub logoutput: Vec<LogDest>,
    /// `errorlog:` destinations.
    pub errorlog: Vec<LogDest>,
    /// `debug:` level.
    pub debug: Option<u32>,
    /// Global `timeout.*` settings.
    pub timeout: Timeouts,
    /// `udp.connectdst:` (default yes).
    pub udp_connectdst: bool,
    /// `compatibility: sameport`: BIND may use the privileged port the client asked for.
    /// `libwrap.hosts_access: yes`: hosts.allow/hosts.deny checked for every client.
    pub libwrap_hosts_access: bool,
    /// `libwrap.allow:` / `libwrap.deny:`: other files than /etc/hosts.allow and .deny.
    pub libwrap_allow: Option<PathBuf>,
    pub libwrap_deny: Option<PathBuf>,
    /// `extension: bind`: Dante's BIND extension (several peers per BIND, forwarded to the
    /// client's own port; the request names 255.255.255.255).
    pub extension_bind: bool,
    pub compat_sameport: bool,
    /// `compatibility: draft-5.05`: a UDP ASSOCIATE whose RSV byte has draft-05's
    /// USECLIENTSPORT flag gets an external UDP port equal to the client's, when free.
    pub compat_draft505: bool,
    /// `srchost:` checks on every client (Dante's semantics).
    pub srchost: Srchost,
    /// Global `internal.log.<level>.error:` / `external.log.<level>.error:`.
    pub error_logs: Vec<ErrorLog>,
    /// Global socket options: `internal.` ones on the listening sockets before bind,
    /// `external.` ones on every outgoing socket before bind or connect.
    pub sockopts: Vec<SockOpt>,
    /// `rsockd.announce.udp:` (our extension): the address put in UDP ASSOCIATE replies instead
    /// of the relay socket's own, for NAT, containers and load balancers.
    pub announce_udp: Option<IpAddr>,
    /// `rsockd.announce.bind:` (our extension): likewise for the first BIND reply.
    pub announce_bind: Option<IpAddr>,
    /// `rsockd.proxyprotocol.from:` (our extension): TCP peers in these networks are load
    /// balancers that start every connection with a PROXY protocol v1/v2 header.
    pub proxyprotocol_from: Vec<ipnet::IpNet>,
    /// `rsockd.agent:` (our extension): HAProxy agent-check listeners.
    pub agent: Vec<ListenAddr>,
    /// `rsockd.metrics:` (our extension): admin HTTP listeners for `/metrics` and `/healthz`.
    pub metrics: Vec<ListenAddr>,
    /// `rsockd.metrics.users:` (our extension): users with byte counters of their own; None =
    /// the default (1000).
    pub metrics_users: Option<u32>,
    /// `rsockd.log.format:` (our extension): Dante's lines or one JSON object per line.
    pub log_format: LogFormat,
    /// `rsockd.drain.timeout:` (our extension): seconds established sessions may run on after
    /// SIGTERM; None = the default (30), 0 = end them at once (Dante's behaviour).
    pub drain_timeout: Option<u32>,
    /// Global `pam.servicename:` (Dante's default `sockd` applies when unset).
    pub pam_servicename: Option<String>,
    /// `rsockd.users.file:` (our extension): method `username` checks this file of
    /// `user:hash` lines instead of the system password database.
    pub users_file: Option<PathBuf>,
    /// `rsockd.route.credentials:` (our extension): a root-only file of `host:port user:pass`
    /// lines, the credentials a route with `method: username` gives that upstream.
    pub route_credentials: Option<PathBuf>,
    /// `client pass|block { }` rules in file order.
    pub client_rules: Vec<Rule>,
    /// `socks pass|block { }` rules in file order.
    pub socks_rules: Vec<Rule>,
    /// `route { }` in file order (Dante numbers them from 1).
    pub routes: Vec<Rule>,
    /// `route.maxfail:` failures before a route is marked bad (Dante: 1; 0 = never).
    pub route_maxfail: u32,
    /// `route.badexpire:` seconds a bad route stays bad (Dante: 300; 0 = for ever).
    pub route_badexpire: u64,
    /// `monitor { }` objects in file order.
    pub monitors: Vec<Monitor>,
    /// `child.maxrequests`: a relay takes at most this many sessions, then is replaced.
    pub child_maxrequests: Option<u64>,
    /// `child.maxlifetime`: a relay takes new sessions for at most this many seconds.
    pub child_maxlifetime: Option<u64>,
    /// `cpu.schedule.<process>` and `cpu.mask.<process>`, per process role.
    pub cpu: Cpu,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            internal: Vec::new(),
            internal_protocol: Families::default(),
            external: Vec::new(),
            external_protocol: Families::default(),
            external_prefixes: Vec::new(),
            external_rotation: Rotation::None,
            socksmethod: Vec::new(),
            clientmethod: Vec::new(),
            user_privileged: None,
            user_unprivileged: None,
            user_libwrap: None,
            logoutput: Vec::new(),
            errorlog: Vec::new(),
            debug: None,
            timeout: Timeouts::default(),
            udp_connectdst: true,
            libwrap_hosts_access: false,
            libwrap_allow: None,
            libwrap_deny: None,
            extension_bind: false,
            compat_sameport: false,
            compat_draft505: false,
            srchost: Srchost::default(),
            error_logs: Vec::new(),
            sockopts: Vec::new(),
            announce_udp: None,
            announce_bind: None,
            proxyprotocol_from: Vec::new(),
            agent: Vec::new(),
            metrics: Vec::new(),
            metrics_users: None,
            log_format: LogFormat::Dante,
            drain_timeout: None,
            pam_servicename: None,
            users_file: None,
            route_credentials: None,
            client_rules: Vec::new(),
            socks_rules: Vec::new(),
            routes: Vec::new(),
            route_maxfail: 1,
            route_badexpire: 300,
            monitors: Vec::new(),
            child_maxrequests: None,
            child_maxlifetime: None,
            cpu: Cpu::default(),
        }
    }
}

impl Config {
    /// The clientmethod list in force: the global list, or `none` when the file sets none
    /// (what Dante 1.4.2 derives, observed with every socksmethod combination).
    pub fn effective_clientmethod(&self) -> Vec<Method> {
        if self.clientmethod.is_empty() {
            vec![Method::None]
        } else {
            self.clientmethod.clone()
        }
    }

    /// A copy with every `line` field set to 0, for comparing configs that came from
    /// different text (e.g. print → parse round trips).
    pub fn without_lines(&self) -> Config {
        let mut c = self.clone();
        c.internal.iter_mut().for_each(|a| a.line = 0);
        c.agent.iter_mut().for_each(|a| a.line = 0);
        c.metrics.iter_mut().for_each(|a| a.line = 0);
        c.external.iter_mut().for_each(|a| a.line = 0);
        c.client_rules.iter_mut().for_each(|r| r.line = 0);
        c.socks_rules.iter_mut().for_each(|r| r.line = 0);
        c.routes.iter_mut().for_each(|r| r.line = 0);
        c
    }
}

/// Address families allowed when expanding interface names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Families {
    pub ipv4: bool,
    pub ipv6: bool,
}

impl Default for Families {
    fn default() -> Self {
        Families {
            ipv4: true,
            ipv6: true,
        }
    }
}

/// One `internal:` address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenAddr {
    pub host: HostSpec,
    /// Default 1080.
    pub port: u16,
    /// Line of the `internal:` keyword (0 when not from a file).
    pub line: u32,
}

/// One `external:` address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalAddr {
    pub host: HostSpec,
    pub line: u32,
}

/// An `internal:`/`external:` address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostSpec {
    Ip(IpAddr),
    /// Interface name or host name (also an IPv6 literal with a `%scope`); the server decides
    /// with if_nametoindex / getaddrinfo.
    Name(String),
}

/// `external.rotation:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Rotation {
    #[default]
    None,
    Route,
    SameSame,
    /// Our extension: a fresh source address per session, from an `external:` prefix (or
    /// one of the listed addresses).
    Random,
    /// Our extension: the same address for the same authenticated user (the client address
    /// when there is none), from a stable hash.
    User,
}

/// A `logoutput:`/`errorlog:` destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LogDest {
    /// `syslog` or `syslog/FACILITY`.
    Syslog {
        facility: Option<String>,
    },
    Stdout,
    Stderr,
    File(PathBuf),
}

/// `timeout.*` values in seconds; `None` = not set here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Timeouts {
    pub negotiate: Option<u32>,
    pub connect: Option<u32>,
    pub io_tcp: Option<u32>,
    pub io_udp: Option<u32>,
    pub tcp_fin_wait: Option<u32>,
}

impl Timeouts {
    /// True when no timeout is set.
    pub fn is_empty(&self) -> bool {
        *self == Timeouts::default()
    }
}

/// At most `sessions` new sessions per `seconds` (`session.throttle: N/S`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Throttle {
    pub sessions: u32,
    pub seconds: u32,
}

/// What `session.state.*` limits are counted per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKey {
    /// The client's address (Dante's `from`).
    From,
    /// The authenticated user (our extension).
    User,
}

impl StateKey {
    pub fn name(self) -> &'static str {
        match self {
            StateKey::From => "from",
            StateKey::User => "user",
        }
    }
}

/// A rule's `session.*` keywords; `None` = not set in the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SessionLimits {
    pub max: Option<u32>,
    pub throttle: Option<Throttle>,
    pub state_key: Option<StateKey>,
    pub state_max: Option<u32>,
    pub state_throttle: Option<Throttle>,
    /// `session.inheritable:`; Dante's default is yes.
    pub inheritable: Option<bool>,
}

impl SessionLimits {
    /// True when the rule limits anything (`inheritable` alone limits nothing).
    pub fn limits(&self) -> bool {
        self.max.is_some()
            || self.throttle.is_some()
            || self.state_max.is_some()
            || self.state_throttle.is_some()
    }

    /// Whether a client rule's limits carry over to the socks rule (Dante's default: yes).
    pub fn inherits(&self) -> bool {
        self.inheritable.unwrap_or(true)
    }
}

/// `srchost: nodnsmismatch nodnsunknown checkreplyauth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Srchost {
    /// Refuse clients whose reverse-mapped name does not resolve back to their address.
    pub nodnsmismatch: bool,
    /// Refuse clients whose address has no reverse-mapped name.
    pub nodnsunknown: bool,
    /// Apply the session's authentication method and user to `bindreply`/`udpreply` rules
    /// too (without it, reply rules match whatever the method).
    pub checkreplyauth: bool,
}

impl Srchost {
    pub fn any_dns(&self) -> bool {
        self.nodnsmismatch || self.nodnsunknown
    }
}

/// `rsockd.log.format:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Dante's text lines (the default).
    #[default]
    Dante,
    /// One JSON object per line, the Dante text in `msg`.
    Json,
}

impl LogFormat {
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Dante => "dante",
            LogFormat::Json => "json",
        }
    }
}

/// Authentication methods, with Dante's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    None,
    Username,
    Gssapi,
    Rfc931,
    PamAny,
    PamAddress,
    PamUsername,
    BsdAuth,
    LdapAuth,
}

impl Method {
    /// Every method, in Dante's documentation order.
    pub const ALL: [Method; 9] = [
        Method::None,
        Method::Username,
        Method::Gssapi,
        Method::Rfc931,
        Method::PamAny,
        Method::PamAddress,
        Method::PamUsername,
        Method::BsdAuth,
        Method::LdapAuth,
    ];

    /// Dante's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Method::None => "none",
            Method::Username => "username",
            Method::Gssapi => "gssapi",
            Method::Rfc931 => "rfc931",
            Method::PamAny => "pam.any",
            Method::PamAddress => "pam.address",
            Method::PamUsername => "pam.username",
            Method::BsdAuth => "bsdauth",
            Method::LdapAuth => "ldapauth",
        }
    }

    /// Parses Dante's spelling (not the deprecated `pam`).
    /// A stable number for the method (its place in [`Method::ALL`]), for IPC messages.
    pub fn code(self) -> u8 {
        Method::ALL.iter().position(|m| *m == self).unwrap_or(0) as u8
    }

    /// The method of [`Method::code`].
    pub fn from_code(c: u8) -> Option<Method> {
        Method::ALL.get(usize::from(c)).copied()
    }

    pub fn from_name(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Dante accepts only these before SOCKS negotiation starts (no SOCKS data needed).
    pub fn valid_as_clientmethod(self) -> bool {
        matches!(
            self,
            Method::None | Method::Rfc931 | Method::PamAddress | Method::PamAny
        )
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which rule list a rule belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleKind {
    Client,
    Socks,
    /// `route { }`: where a session's traffic leaves (server chaining).
    Route,
}

impl RuleKind {
    /// The keyword that starts such a rule.
    pub fn name(self) -> &'static str {
        match self {
            RuleKind::Client => "client",
            RuleKind::Socks => "socks",
            RuleKind::Route => "route",
        }
    }
}

/// `pass` or `block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Pass,
    Block,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Block => "block",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// SOCKS commands, including the pseudo-commands for replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Command {
    Bind,
    BindReply,
    Connect,
    UdpAssociate,
    UdpReply,
}

impl Command {
    pub const ALL: [Command; 5] = [
        Command::Bind,
        Command::BindReply,
        Command::Connect,
        Command::UdpAssociate,
        Command::UdpReply,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Command::Bind => "bind",
            Command::BindReply => "bindreply",
            Command::Connect => "connect",
            Command::UdpAssociate => "udpassociate",
            Command::UdpReply => "udpreply",
        }
    }

    pub fn from_name(s: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The transport a command uses: what `protocol:` in a rule is compared with.
    pub fn protocol(self) -> Protocol {
        match self {
            Command::Bind | Command::BindReply | Command::Connect => Protocol::Tcp,
            Command::UdpAssociate | Command::UdpReply => Protocol::Udp,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `protocol:` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// `proxyprotocol:` values valid in rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProxyProtocol {
    SocksV4,
    SocksV5,
}

impl ProxyProtocol {
    pub fn name(self) -> &'static str {
        match self {
            ProxyProtocol::SocksV4 => "socks_v4",
            ProxyProtocol::SocksV5 => "socks_v5",
        }
    }
}

/// A `client` or `socks` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub kind: RuleKind,
    pub verdict: Verdict,
    /// 1-based, counted per kind in file order, as Dante numbers rules in log lines.
    pub number: u32,
    /// Line of the rule's first keyword.
    pub line: u32,
    pub from: RuleAddr,
    pub to: RuleAddr,
    /// Empty = all commands.
    pub command: Vec<Command>,
    /// Empty = all protocols.
    pub protocol: Vec<Protocol>,
    /// Empty = all SOCKS versions.
    pub proxyprotocol: Vec<ProxyProtocol>,
    /// Empty = not set in the rule (the global list applies).
    pub socksmethod: Vec<Method>,
    /// Empty = not set in the rule.
    pub clientmethod: Vec<Method>,
    /// Empty = any user.
    pub user: Vec<String>,
    /// Empty = any group.
    pub group: Vec<String>,
    pub log: LogFlags,
    pub timeout: Timeouts,
    pub udp_portrange: Option<(u16, u16)>,
    /// `pam.servicename:` in the rule; None = the global one.
    pub pam_servicename: Option<String>,
    pub session: SessionLimits,
    /// `bandwidth:` bytes per second shared by every session of the rule.
    pub bandwidth: Option<u64>,
    /// `redirect from: ADDR [port = P]`: the external address (and port) the session uses.
    pub redirect_from: Option<Redirect>,
    /// `redirect to: ADDR [port = P]`: the target the session goes to instead; without a
    /// port, the requested one.
    pub redirect_to: Option<Redirect>,
    /// `internal.log.<level>.error:` / `external.log.<level>.error:` of this rule; when
    /// empty, the global ones apply.
    pub error_logs: Vec<ErrorLog>,
    /// Socket options of this rule (client side after accept, target side before connect).
    pub sockopts: Vec<SockOpt>,
    /// `libwrap: LINE`: libwrap options (`spawn ...`, `deny`, ...) run when the rule matches.
    pub libwrap: Option<String>,
    /// Routes only: `via:`.
    pub via: Option<Via>,
    /// Routes only: `proxyprotocol:`, the upstream's protocols in preference order (empty:
    /// socks_v5 then socks_v4, Dante's default).
    pub upstream: Vec<Upstream>,
}

/// Which connection of a session an error happened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's (`internal.`).
    Internal,
    /// The target's (`external.`): connecting to it, resolving its name.
    External,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Internal => "internal",
            Side::External => "external",
        }
    }
}

/// How a route reaches its target: directly, or through an upstream proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Direct,
    /// `via: HOST port = P`: an address or a name.
    Proxy {
        host: String,
        port: u16,
    },
}

/// A route's upstream protocol (`proxyprotocol:` in a route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    SocksV4,
    SocksV5,
    /// HTTP CONNECT (`http`, `http_v1.0`).
    Http,
}

impl Upstream {
    pub fn name(self) -> &'static str {
        match self {
            Upstream::SocksV4 => "socks_v4",
            Upstream::SocksV5 => "socks_v5",
            Upstream::Http => "http",
        }
    }
}

/// A socket option's name: one of `sockopts::OPTIONS`, or the kernel's number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptName {
    Named(String),
    Number(i32),
}

/// `<side>.<level>.<option>[.<subfield>]: VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockOpt {
    pub side: Side,
    pub level: crate::sockopts::SockLevel,
    pub option: OptName,
    /// The value as the kernel gets it (for `ip_tos` subfields, the TOS byte they make).
    pub value: u32,
}

impl SockOpt {
    /// How the value is passed (`Int` for numbered options).
    pub fn kind(&self) -> crate::sockopts::ValueKind {
        match &self.option {
            OptName::Named(n) => {
                crate::sockopts::find(self.level, n).unwrap_or(crate::sockopts::ValueKind::Int)
            }
            OptName::Number(_) => crate::sockopts::ValueKind::Int,
        }
    }

    /// The option's name (or number) as written after the level.
    pub fn option_name(&self) -> String {
        match &self.option {
            OptName::Named(n) => n.clone(),
            OptName::Number(n) => n.to_string(),
        }
    }

    /// True for the options Dante sets at any time; the others matter before the connection
    /// is made, so on a client's socket (set after accept) Dante warns about them.
    pub fn anytime(&self) -> bool {
        matches!(&self.option, OptName::Named(n) if n == "so_debug" || n == "ip_tos")
    }

    /// `internal.tcp.tcp_nodelay`, as written.
    pub fn key(&self) -> String {
        let opt = self.option_name();
        format!("{}.{}.{opt}", self.side.name(), self.level.name())
    }
}

/// What a `<side>.log.<level>.<what>:` line watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogWhat {
    /// `.error`: errno and getaddrinfo errors.
    #[default]
    Error,
    /// `.tcp.enabled`: TCP options the connection has.
    TcpEnabled,
    /// `.tcp.disabled`: TCP options it lacks.
    TcpDisabled,
}

impl LogWhat {
    pub fn name(self) -> &'static str {
        match self {
            LogWhat::Error => "error",
            LogWhat::TcpEnabled => "tcp.enabled",
            LogWhat::TcpDisabled => "tcp.disabled",
        }
    }
}

/// `<side>.log.<level>.error: SYMBOL...`: errors matching the symbols are logged at `level`;
/// `<side>.log.<level>.tcp.enabled|disabled: OPTION...`: connections with (without) those TCP
/// options (`ecn`, `sack`, `timestamps`, `wscale`) are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLog {
    pub side: Side,
    /// The syslog level name as written (`emerg` .. `debug`).
    pub level: String,
    /// The symbols as written (errno names, `EAI_*`, `no-route`, `system-any`, `dns-any`; for
    /// the tcp forms, option names).
    pub symbols: Vec<String>,
    pub what: LogWhat,
}

impl ErrorLog {
    /// The syslog level names Dante takes here.
    pub const LEVELS: [&'static str; 8] = [
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
    ];

    /// The TCP option names `.tcp.enabled`/`.tcp.disabled` take.
    pub const TCP_OPTIONS: [&'static str; 4] = ["ecn", "sack", "timestamps", "wscale"];

    /// Whether errno `e` is one of ours.
    pub fn has_errno(&self, e: i32) -> bool {
        self.what == LogWhat::Error
            && self
                .symbols
                .iter()
                .any(|s| crate::errsyms::expand(s).is_some_and(|(v, _)| v.contains(&e)))
    }

    /// Whether getaddrinfo error `e` is one of ours.
    pub fn has_gai(&self, e: i32) -> bool {
        self.what == LogWhat::Error
            && self
                .symbols
                .iter()
                .any(|s| crate::errsyms::expand(s).is_some_and(|(_, v)| v.contains(&e)))
    }
}

/// An address of `redirect from:` or `redirect to:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Redirect {
    pub ip: std::net::IpAddr,
    pub port: Option<u16>,
}

impl Rule {
    /// A rule matching everything, with nothing else set.
    pub fn new(kind: RuleKind, verdict: Verdict, number: u32, line: u32) -> Rule {
        Rule {
            kind,
            verdict,
            number,
            line,
            from: RuleAddr::any(),
            to: RuleAddr::any(),
            command: Vec::new(),
            protocol: Vec::new(),
            proxyprotocol: Vec::new(),
            socksmethod: Vec::new(),
            clientmethod: Vec::new(),
            user: Vec::new(),
            group: Vec::new(),
            log: LogFlags::default(),
            timeout: Timeouts::default(),
            udp_portrange: None,
            pam_servicename: None,
            session: SessionLimits::default(),
            bandwidth: None,
            redirect_from: None,
            redirect_to: None,
            error_logs: Vec::new(),
            sockopts: Vec::new(),
            libwrap: None,
            via: None,
            upstream: Vec::new(),
        }
    }

    /// The socksmethod list that applies to this rule: its own, else the global one.
    pub fn effective_socksmethod<'a>(&'a self, global: &'a [Method]) -> &'a [Method] {
        if self.socksmethod.is_empty() {
            global
        } else {
            &self.socksmethod
        }
    }
}

/// A `from:`/`to:` value: address plus optional port condition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleAddr {
    pub addr: AddrMatch,
    pub port: PortMatch,
}

impl RuleAddr {
    /// `0/0`, any port.
    pub fn any() -> RuleAddr {
        RuleAddr {
            addr: AddrMatch::Any,
            port: PortMatch::Any,
        }
    }
}

/// The address part of a rule address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AddrMatch {
    /// `0/0`: every IPv4 and IPv6 address (unlike `0.0.0.0/0`, which is IPv4 only).
    Any,
    /// An IPv4 or IPv6 network, as written (host bits are kept; matching masks them).
    Net(ipnet::IpNet),
    /// A host name or an interface name, as written.
    Name(String),
    /// `.example.com`: the domain and every name under it; stored lower-case without the dot.
    Domain(String),
}

/// A port condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortMatch {
    Any,
    Eq(u16),
    Ne(u16),
    Ge(u16),
    Le(u16),
    Gt(u16),
    Lt(u16),
    /// Inclusive range; start <= end.
    Range(u16, u16),
}

impl PortMatch {
    /// Whether `port` satisfies the condition.
    pub fn matches(self, port: u16) -> bool {
        match self {
            PortMatch::Any => true,
            PortMatch::Eq(p) => port == p,
            PortMatch::Ne(p) => port != p,
            PortMatch::Ge(p) => port >= p,
            PortMatch::Le(p) => port <= p,
            PortMatch::Gt(p) => port > p,
            PortMatch::Lt(p) => port < p,
            PortMatch::Range(a, b) => (a..=b).contains(&port),
        }
    }
}

/// `log:` flags of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LogFlags {
    pub connect: bool,
    pub disconnect: bool,
    pub data: bool,
    pub error: bool,
    /// `iooperation` (alias `ioop`).
    pub iooperation: bool,
    pub tcpinfo: bool,
}

impl LogFlags {
    /// True when nothing is logged.
    pub fn is_empty(&self) -> bool {
        *self == LogFlags::default()
    }

    /// The set flags by their Dante names, in a fixed order.
    pub fn names(&self) -> Vec<&'static str> {
        let all = [
            (self.connect, "connect"),
            (self.disconnect, "disconnect"),
            (self.data, "data"),
            (self.error, "error"),
            (self.iooperation, "iooperation"),
            (self.tcpinfo, "tcpinfo"),
        ];
        all.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect()
    }
}

/// `monitor { from: .. to: .. alarms }`: traffic alarms over the sessions it matches (each
/// session is watched by the first monitor that matches it, at most one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    /// Number as Dante logs it (`monitor(1)`), 1-based in file order.
    pub number: u32,
    pub line: u32,
    pub from: RuleAddr,
    pub to: RuleAddr,
    /// Empty = every protocol.
    pub protocol: Vec<Protocol>,
    /// Empty = every command.
    pub command: Vec<Command>,
    pub data: Vec<DataAlarm>,
    pub disconnect: Vec<DisconnectAlarm>,
}

/// Which interfaces an alarm watches: `internal.` (clients), `external.` (targets), or,
/// without a prefix, both summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AlarmSides {
    pub internal: bool,
    pub external: bool,
}

/// `[internal.|external.]alarm.data[.recv|.send]: BYTES in SECONDS`: a warning while at most
/// BYTES move in a period of SECONDS (without `.recv`/`.send`, both summed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataAlarm {
    pub sides: AlarmSides,
    pub recv: bool,
    pub send: bool,
    pub bytes: u64,
    pub seconds: u32,
}

/// `[internal.|external.]alarm.disconnect: MINCOUNT/SESSIONS in SECONDS`: a warning when, in
/// a period, at least MINCOUNT sessions were closed by the peer on that side and that is at
/// least MINCOUNT out of every SESSIONS sessions of the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DisconnectAlarm {
    pub sides: AlarmSides,
    pub min: u32,
    pub sessions: u32,
    pub seconds: u32,
}

impl AlarmSides {
    /// The side as Dante's lines name it: `internal`, `external`, or empty for both.
    pub fn name(&self) -> &'static str {
        match (self.internal, self.external) {
            (true, false) => "internal",
            (false, true) => "external",
            _ => "",
        }
    }
}

impl DataAlarm {
    /// The watched direction(s) as Dante's lines name them: `internal.recv`, `recv`,
    /// `internal`, or empty when everything is summed.
    pub fn name(&self) -> String {
        let op = match (self.recv, self.send) {
            (true, false) => "recv",
            (false, true) => "send",
            _ => "",
        };
        match (self.sides.name(), op) {
            ("", op) => op.to_string(),
            (side, "") => side.to_string(),
            (side, op) => format!("{side}.{op}"),
        }
    }
}

/// Our process roles as `cpu.*` names them. Dante's names map onto them: `negotiate`,
/// `request` and `monitor` are done by our mothers, `io` by our relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuRole {
    Mother,
    Relay,
    /// Our auth helper (no Dante counterpart); its parent sets it, as the helper does not
    /// read the configuration.
    AuthHelper,
}

impl CpuRole {
    /// The role a `cpu.schedule.<name>` / `cpu.mask.<name>` suffix means.
    pub fn from_name(name: &str) -> Option<CpuRole> {
        match name {
            "mother" | "negotiate" | "request" | "monitor" => Some(CpuRole::Mother),
            "relay" | "io" => Some(CpuRole::Relay),
            "auth-helper" => Some(CpuRole::AuthHelper),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CpuRole::Mother => "mother",
            CpuRole::Relay => "relay",
            CpuRole::AuthHelper => "auth-helper",
        }
    }
}

/// A scheduling policy of `cpu.schedule.*` (sched(7)), in Dante's lower-case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedPolicy {
    Other,
    Fifo,
    Rr,
    Batch,
    Idle,
}

impl SchedPolicy {
    pub fn from_name(name: &str) -> Option<SchedPolicy> {
        match name {
            "other" => Some(SchedPolicy::Other),
            "fifo" => Some(SchedPolicy::Fifo),
            "rr" => Some(SchedPolicy::Rr),
            "batch" => Some(SchedPolicy::Batch),
            "idle" => Some(SchedPolicy::Idle),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SchedPolicy::Other => "other",
            SchedPolicy::Fifo => "fifo",
            SchedPolicy::Rr => "rr",
            SchedPolicy::Batch => "batch",
            SchedPolicy::Idle => "idle",
        }
    }
}

/// What `cpu.*` sets for one role: a policy and priority, and the CPUs it may run on
/// (None: any).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuSettings {
    pub schedule: Option<(SchedPolicy, u32)>,
    pub mask: Option<Vec<u32>>,
}

/// `cpu.*` for every role.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cpu {
    pub mother: CpuSettings,
    pub relay: CpuSettings,
    pub auth_helper: CpuSettings,
}

impl Cpu {
    pub fn of(&self, role: CpuRole) -> &CpuSettings {
        match role {
            CpuRole::Mother => &self.mother,
            CpuRole::Relay => &self.relay,
            CpuRole::AuthHelper => &self.auth_helper,
        }
    }

    pub fn of_mut(&mut self, role: CpuRole) -> &mut CpuSettings {
        match role {
            CpuRole::Mother => &mut self.mother,
            CpuRole::Relay => &mut self.relay,
            CpuRole::AuthHelper => &mut self.auth_helper,
        }
    }
}
