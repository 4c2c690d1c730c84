//! One loaded configuration, ready to use: the parsed file, its compiled rules, the expanded
//! interface names, and the command-line overrides. A reload builds a new `Settings` and swaps
//! it in whole; sessions already running keep what they were handed.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use rsockd_config::{Config, HostSpec, LogDest, Rule};
use rsockd_rules::RuleSet;

use crate::log::{self, Dest, Outputs};
use crate::net::ifaces::Interfaces;
use crate::scoreboard::{held, Scoreboard};

/// Dante's defaults, in seconds (0 = no limit).
pub const DEFAULT_NEGOTIATE: u32 = 30;
pub const DEFAULT_CONNECT: u32 = 30;
pub const DEFAULT_IO_TCP: u32 = 0;
pub const DEFAULT_IO_UDP: u32 = 86400;
pub const DEFAULT_FIN_WAIT: u32 = 0;
/// `rsockd.drain.timeout`'s default, in seconds.
pub const DEFAULT_DRAIN: u32 = 30;

/// What the command line says that the config file cannot override.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    /// `-d N`, which overrides `debug:`.
    pub debug: Option<u32>,
    /// `-n`: no TCP keep-alive.
    pub no_keepalive: bool,
}

impl Flags {
    /// The same flags as arguments for a child process.
    pub fn to_args(self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(d) = self.debug {
            v.push("-d".to_string());
            v.push(d.to_string());
        }
        if self.no_keepalive {
            v.push("-n".to_string());
        }
        v
    }
}

pub struct Settings {
    /// Bumped on every successful reload, so children can tell configurations apart.
    pub generation: u64,
    pub file: String,
    /// The text the configuration came from; children get this exact text.
    pub text: String,
    pub config: Config,
    pub rules: RuleSet,
    pub ifaces: Interfaces,
    /// `external:` expanded to addresses, in file order.
    pub externals: Vec<IpAddr>,
    pub flags: Flags,
    /// The session limits' shared counters, when a rule limits sessions (see scoreboard/).
    pub board: Option<Rc<Scoreboard>>,
    /// `rsockd.agent:` expanded to addresses: listened on like `internal:`, answered by the
    /// agent-check responder instead of SOCKS.
    pub agents: Vec<SocketAddr>,
    /// `rsockd.metrics:` expanded to addresses: listened on like `internal:`, answered by the
    /// admin HTTP server (`/metrics`, `/healthz`).
    pub metrics: Vec<SocketAddr>,
}

/// What a listening socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// `internal:`: SOCKS clients.
    Socks,
    /// `rsockd.agent:`: HAProxy's agent-check.
    Agent,
    /// `rsockd.metrics:`: `/metrics` and `/healthz`.
    Metrics,
}

thread_local! {
    /// The configuration in force in this process. Every process runs its roles on one
    /// thread, so this is the process's configuration.
    static CURRENT: RefCell<Option<Rc<Settings>>> = const { RefCell::new(None) };
}

/// A configuration that cannot be used; the text names file, line and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

fn expand(
    host: &HostSpec,
    port: u16,
    ifaces: &Interfaces,
    v4: bool,
    v6: bool,
) -> Result<Vec<SocketAddr>, String> {
    let keep = |ip: &IpAddr| (ip.is_ipv4() && v4) || (ip.is_ipv6() && v6);
    match host {
        HostSpec::Ip(ip) => Ok(vec![SocketAddr::new(*ip, port)]),
        HostSpec::Name(name) => {
            if let Some(addrs) = ifaces.addrs(name) {
                let out: Vec<SocketAddr> = addrs
                    .into_iter()
                    .filter(keep)
                    // Link-local IPv6 addresses need a scope id we do not carry; skip them.
                    .filter(|ip| match ip {
                        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
                        IpAddr::V4(_) => true,
                    })
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect();
                return Ok(out);
            }
            let addrs = (name.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve \"{name}\": {e}"))?;
            Ok(addrs.filter(|a| keep(&a.ip())).collect())
        }
    }
}

/// `rsockd.agent:` or `rsockd.metrics:` lines expanded to addresses, each once.
fn admin_addrs(
    lines: &[rsockd_config::ListenAddr],
    ifaces: &Interfaces,
    file: &str,
    keyword: &str,
) -> Result<Vec<SocketAddr>, SettingsError> {
    let mut out = Vec::new();
    for l in lines {
        let addrs = expand(&l.host, l.port, ifaces, true, true)
            .map_err(|m| SettingsError(format!("{file}:{}: {keyword}: {m}", l.line)))?;
        for a in addrs {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

impl Settings {
    /// Parses and checks `text` as `file`; warnings are returned for the caller to log.
    pub fn build(
        file: &str,
        text: String,
        generation: u64,
        flags: Flags,
    ) -> Result<(Settings, Vec<String>), SettingsError> {
        let loaded =
            rsockd_config::parse_str(file, &text).map_err(|e| SettingsError(e.to_string()))?;
        rsockd_config::check_startable(&loaded.config).map_err(|e| SettingsError(e.to_string()))?;
        let warnings = loaded.warnings.iter().map(|w| w.to_string()).collect();
        let config = loaded.config;
        let ifaces = Interfaces::read();
        let rules = RuleSet::compile(&config, &|name: &str| ifaces.nets(name))
            .map_err(|e| SettingsError(format!("{file}: {e}")))?;
        let mut externals = Vec::new();
        for e in &config.external {
            let addrs = expand(
                &e.host,
                0,
                &ifaces,
                config.external_protocol.ipv4,
                config.external_protocol.ipv6,
            )
            .map_err(|m| SettingsError(format!("{file}:{}: external: {m}", e.line)))?;
            // Our extension: a wildcard external address (Dante refuses it) means "let the
            // kernel choose the source address", which the built-in default config uses.
            for a in addrs {
                if !externals.contains(&a.ip()) {
                    externals.push(a.ip());
                }
            }
        }
        let agents = admin_addrs(&config.agent, &ifaces, file, "rsockd.agent")?;
        let metrics = admin_addrs(&config.metrics, &ifaces, file, "rsockd.metrics")?;
        Ok((
            Settings {
                generation,
                file: file.to_string(),
                text,
                config,
                rules,
                ifaces,
                externals,
                flags,
                board: None,
                agents,
                metrics,
            },
            warnings,
        ))
    }

    /// Reads and builds from a file.
    pub fn load(
        file: &str,
        generation: u64,
        flags: Flags,
    ) -> Result<(Settings, Vec<String>), SettingsError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| SettingsError(format!("{file}: cannot read configuration: {e}")))?;
        let (mut s, warnings) = Self::build(file, text, generation, flags)?;
        // Only the lead process reads the file, so it creates the scoreboard its children map.
        s.board = Scoreboard::create(file, &s.config, generation)
            .map_err(SettingsError)?
            .map(Rc::new);
        if let Some(b) = &s.board {
            held::register(b);
        }
        Ok((s, warnings))
    }

    /// An upgrade's first configuration: read from the file like [`Settings::load`], keeping
    /// the old family's scoreboard (its sessions still hold slots) when it fits this
    /// configuration; otherwise limits start afresh, with a warning.
    pub fn load_inheriting(
        file: &str,
        generation: u64,
        flags: Flags,
        board: Option<OwnedFd>,
    ) -> Result<(Settings, Vec<String>), SettingsError> {
        let Some(fd) = board else {
            return Self::load(file, generation, flags);
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| SettingsError(format!("{file}: cannot read configuration: {e}")))?;
        let (mut s, mut warnings) = Self::build(file, text, generation, flags)?;
        match Scoreboard::adopt(fd, file, &s.config, generation) {
            Ok(b) => s.board = Some(Rc::new(b)),
            Err(e) => {
                warnings.push(format!(
                    "upgrade: the old scoreboard is not used ({e}); session limits start afresh"
                ));
                s.board = Scoreboard::create(file, &s.config, generation)
                    .map_err(SettingsError)?
                    .map(Rc::new);
            }
        }
        if let Some(b) = &s.board {
            held::register(b);
        }
        Ok((s, warnings))
    }

    /// The configuration in force in this process: the newest one installed with
    /// [`Settings::make_current`].
    pub fn current() -> Option<Rc<Settings>> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// Puts this configuration in force: new sessions use it, sessions running keep theirs.
    pub fn make_current(self: &Rc<Self>) {
        CURRENT.with(|c| *c.borrow_mut() = Some(self.clone()));
    }

    /// The text as a memfd, the way a configuration travels to a child process.
    pub fn to_memfd(&self) -> std::io::Result<OwnedFd> {
        rsockd_sys::spawn::memfd_with("rsockd.conf", self.text.as_bytes())
    }

    /// A configuration received from our parent (see [`Settings::to_memfd`]), built and put in
    /// force with its log outputs. The parent validated the text; an error here means this
    /// process's environment differs (an interface vanished), and the running configuration
    /// stays.
    pub fn adopt(
        file: &str,
        generation: u64,
        flags: Flags,
        memfd: OwnedFd,
        board: Option<OwnedFd>,
    ) -> Result<Rc<Settings>, SettingsError> {
        let text = rsockd_sys::spawn::read_memfd(memfd)
            .map_err(|e| SettingsError(format!("cannot read configuration: {e}")))?;
        let (mut new, _warnings) = Self::build(
            file,
            String::from_utf8_lossy(&text).into_owned(),
            generation,
            flags,
        )?;
        if let Some(fd) = board {
            let b = Rc::new(
                Scoreboard::adopt(fd, file, &new.config, generation).map_err(SettingsError)?,
            );
            held::register(&b);
            new.board = Some(b);
        }
        if let Err(e) = new.install_logging() {
            crate::log::error(&format!("{e}; keeping the old log outputs"));
        }
        let new = Rc::new(new);
        new.make_current();
        Ok(new)
    }

    /// Whether `peer` is a trusted load balancer that sends a PROXY protocol header.
    pub fn from_balancer(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.config
            .proxyprotocol_from
            .iter()
            .any(|n| n.contains(&peer))
    }

    /// What a listening socket serves.
    pub fn port(&self, addr: &SocketAddr) -> Port {
        if self.agents.contains(addr) {
            Port::Agent
        } else if self.metrics.contains(addr) {
            Port::Metrics
        } else {
            Port::Socks
        }
    }

    /// Whether a listening socket takes SOCKS clients (not an agent or admin port). Those
    /// others stay open while a stopping server drains, to say so.
    pub fn is_socks(&self, addr: &SocketAddr) -> bool {
        self.port(addr) == Port::Socks
    }

    /// Every address to listen on: the `internal:` ones, then the `rsockd.agent:` and the
    /// `rsockd.metrics:` ones, each on a port of its own.
    pub fn listen_addrs(&self) -> Result<Vec<SocketAddr>, SettingsError> {
        let mut out: Vec<(SocketAddr, &str)> = self
            .internal_addrs()?
            .into_iter()
            .map(|a| (a, "internal:"))
            .collect();
        for (keyword, addrs) in [
            ("rsockd.agent:", &self.agents),
            ("rsockd.metrics:", &self.metrics),
        ] {
            for a in addrs {
                if let Some((_, other)) = out.iter().find(|(b, _)| b == a) {
                    let what = if keyword == "rsockd.agent:" {
                        "the agent"
                    } else {
                        "the admin port"
                    };
                    let article = if other.starts_with('i') { "an" } else { "a" };
                    return Err(SettingsError(format!(
                        "{}: {keyword} {} is also {article} {other} address; {what} needs a port \
                         of its own",
                        self.file,
                        log::addr(a)
                    )));
                }
                out.push((*a, keyword));
            }
        }
        Ok(out.into_iter().map(|(a, _)| a).collect())
    }

    /// The `internal:` addresses to listen on.
    fn internal_addrs(&self) -> Result<Vec<SocketAddr>, SettingsError> {
        let mut out = Vec::new();
        for l in &self.config.internal {
            let addrs = expand(
                &l.host,
                l.port,
                &self.ifaces,
                self.config.internal_protocol.ipv4,
                self.config.internal_protocol.ipv6,
            )
            .map_err(|m| SettingsError(format!("{}:{}: internal: {m}", self.file, l.line)))?;
            for a in addrs {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        if out.is_empty() {
            return Err(SettingsError(format!(
                "{}: no usable internal address: the interfaces named have no address of the \
                 families allowed",
                self.file
            )));
        }
        Ok(out)
    }

    /// How long established sessions may run on after SIGTERM.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(
            self.config.drain_timeout.unwrap_or(DEFAULT_DRAIN),
        ))
    }

    pub fn debug(&self) -> u32 {
        self.flags.debug.or(self.config.debug).unwrap_or(0)
    }

    pub fn keepalive(&self) -> bool {
        !self.flags.no_keepalive
    }

    /// Opens the `logoutput`/`errorlog` destinations.
    pub fn outputs(&self) -> std::io::Result<Outputs> {
        let open = |dests: &[LogDest]| -> std::io::Result<Vec<Dest>> {
            let mut v = Vec::new();
            for d in dests {
                v.push(match d {
                    LogDest::Stderr => Dest::Stderr,
                    LogDest::Stdout => Dest::Stdout,
                    LogDest::File(p) => {
                        let p = p.to_string_lossy();
                        Outputs::open_file(&p).map_err(|e| {
                            std::io::Error::new(e.kind(), format!("cannot open log file {p}: {e}"))
                        })?
                    }
                    LogDest::Syslog { facility } => {
                        rsockd_sys::syslog::open("rsockd");
                        let f = facility
                            .as_deref()
                            .and_then(rsockd_sys::syslog::facility)
                            .unwrap_or(libc::LOG_DAEMON);
                        Dest::Syslog { facility: f }
                    }
                });
            }
            Ok(v)
        };
        Ok(Outputs::new(
            open(&self.config.logoutput)?,
            open(&self.config.errorlog)?,
            self.config.log_format == rsockd_config::LogFormat::Json,
        ))
    }

    /// SIGHUP, first half: re-read the file and check it can be served (its `internal:` addresses
    /// expand). A bad file is logged and None returned: the running configuration stays (Dante
    /// exits here). On success the new log outputs are already in use.
    pub fn load_for_reload(&self) -> Option<(Settings, Vec<SocketAddr>)> {
        log::info("SIGHUP [: reloading config");
        let loaded = Settings::load(&self.file, self.generation + 1, self.flags)
            .map_err(|e| e.to_string())
            .and_then(|(s, mut w)| {
                // The password file is re-read by the auth helper, which can read it; we may not.
                w.extend(crate::auth::check(&s.config, false)?);
                s.listen_addrs()
                    .map(|a| (s, w, a))
                    .map_err(|e| e.to_string())
            });
        let (new, warnings, addrs) = match loaded {
            Ok(ok) => ok,
            Err(e) => {
                log::error(&format!(
                    "SIGHUP: configuration not reloaded, keeping the running one: {e}"
                ));
                return None;
            }
        };
        for w in &warnings {
            log::warning(w);
        }
        if let Err(e) = new.install_logging() {
            log::error(&format!("SIGHUP: {e}; keeping the old log outputs"));
        }
        Some((new, addrs))
    }

    /// Installs this configuration's log outputs in the process logger.
    pub fn install_logging(&self) -> std::io::Result<()> {
        let out = self.outputs()?;
        crate::log::install(out, self.debug());
        Ok(())
    }

    fn pick(rule: Option<u32>, global: Option<u32>, default: u32) -> Option<Duration> {
        let secs = rule.or(global).unwrap_or(default);
        (secs > 0).then(|| Duration::from_secs(secs.into()))
    }

    pub fn negotiate_timeout(&self, client_rule: Option<&Rule>) -> Option<Duration> {
        Self::pick(
            client_rule.and_then(|r| r.timeout.negotiate),
            self.config.timeout.negotiate,
            DEFAULT_NEGOTIATE,
        )
    }

    pub fn connect_timeout(&self, rule: Option<&Rule>) -> Option<Duration> {
        Self::pick(
            rule.and_then(|r| r.timeout.connect),
            self.config.timeout.connect,
            DEFAULT_CONNECT,
        )
    }

    pub fn io_timeout(&self, rule: Option<&Rule>) -> u32 {
        rule.and_then(|r| r.timeout.io_tcp)
            .or(self.config.timeout.io_tcp)
            .unwrap_or(DEFAULT_IO_TCP)
    }

    /// `timeout.io.udp` (Dante's default: a day).
    pub fn io_udp_timeout(&self, rule: Option<&Rule>) -> u32 {
        rule.and_then(|r| r.timeout.io_udp)
            .or(self.config.timeout.io_udp)
            .unwrap_or(DEFAULT_IO_UDP)
    }

    pub fn fin_wait_timeout(&self, rule: Option<&Rule>) -> u32 {
        rule.and_then(|r| r.timeout.tcp_fin_wait)
            .or(self.config.timeout.tcp_fin_wait)
            .unwrap_or(DEFAULT_FIN_WAIT)
    }
}
