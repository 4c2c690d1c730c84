//! Turns config rules into matchers: interface names become networks, names are normalised,
//! command/protocol/version conditions become bit sets, and the method list is resolved.

use crate::addr::{normalize_name, AddrM, Side};
use ipnet::IpNet;
use rsockd_config::{AddrMatch, Command, Config, Method, ProxyProtocol, Rule, RuleAddr, RuleKind};

/// Why a config's rules cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// The rule uses a condition this matcher cannot evaluate; refusing it is safer than
    /// ignoring it (an ignored condition on a block rule would let traffic through).
    #[error("{kind}-rule #{number} (line {line}): {what} is not supported by the rule matcher")]
    Unsupported {
        kind: &'static str,
        number: u32,
        line: u32,
        what: String,
    },
    /// The rule cannot match anything as written (Dante refuses it too).
    #[error("{kind}-rule #{number} (line {line}): {what}")]
    Invalid {
        kind: &'static str,
        number: u32,
        line: u32,
        what: String,
    },
    /// A host or interface name that cannot name anything.
    #[error("{kind}-rule #{number} (line {line}): invalid name {name:?}")]
    InvalidName {
        kind: &'static str,
        number: u32,
        line: u32,
        name: String,
    },
}

/// A rule ready for matching.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub rule: Rule,
    pub from: Side,
    pub to: Side,
    /// Bit per [`Command`] (index in `Command::ALL`): commands the rule applies to.
    pub commands: u8,
    /// Bit per [`ProxyProtocol`]: SOCKS versions the rule applies to.
    pub versions: u8,
    /// The rule's socksmethod list, else the global one; for client rules, the clientmethod
    /// list.
    pub methods: Vec<Method>,
}

pub(crate) fn command_bit(c: Command) -> u8 {
    let i = Command::ALL.iter().position(|x| *x == c).unwrap_or(0);
    1 << i
}

pub(crate) fn version_bit(v: ProxyProtocol) -> u8 {
    match v {
        ProxyProtocol::SocksV4 => 1,
        ProxyProtocol::SocksV5 => 2,
    }
}

fn kind_name(r: &Rule) -> &'static str {
    r.kind.name()
}

fn side(
    r: &Rule,
    a: &RuleAddr,
    iface: &dyn Fn(&str) -> Option<Vec<IpNet>>,
) -> Result<Side, CompileError> {
    let bad_name = |name: &str| CompileError::InvalidName {
        kind: kind_name(r),
        number: r.number,
        line: r.line,
        name: name.to_string(),
    };
    let addr = match &a.addr {
        AddrMatch::Any => AddrM::Any,
        AddrMatch::Net(n) => AddrM::Nets(vec![*n]),
        AddrMatch::Name(n) => {
            if n.is_empty() || n.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad_name(n));
            }
            match iface(n) {
                Some(nets) => AddrM::Nets(nets),
                None => AddrM::Host(normalize_name(n)),
            }
        }
        AddrMatch::Domain(d) => {
            let d = normalize_name(d.trim_start_matches('.'));
            if d.is_empty() {
                return Err(bad_name(&d));
            }
            AddrM::Domain(d)
        }
    };
    Ok(Side { addr, port: a.port })
}

pub(crate) fn compile_rule(
    cfg: &Config,
    r: &Rule,
    iface: &dyn Fn(&str) -> Option<Vec<IpNet>>,
) -> Result<Compiled, CompileError> {
    let from = side(r, &r.from, iface)?;
    let to = side(r, &r.to, iface)?;
    let mut methods = r.effective_socksmethod(&cfg.socksmethod).to_vec();
    if r.kind == RuleKind::Client {
        // A client rule's methods are its clientmethod list (checked at accept).
        methods = if r.clientmethod.is_empty() {
            cfg.effective_clientmethod()
        } else {
            r.clientmethod.clone()
        };
        if (!r.user.is_empty() || !r.group.is_empty()) && methods.contains(&Method::None) {
            // Dante's words.
            return Err(CompileError::Invalid {
                kind: kind_name(r),
                number: r.number,
                line: r.line,
                what: "the settings in this client-rule requires the client to provide a \
                 user/group-name in some way, but this rule specifies, implicitly or explicitly, \
                 the clientmethod none, which cannot be depended on to provide this information"
                    .to_string(),
            });
        }
    }
    let mut commands = 0u8;
    for c in Command::ALL {
        let listed = r.command.is_empty() || r.command.contains(&c);
        let proto_ok = r.protocol.is_empty() || r.protocol.contains(&c.protocol());
        if listed && proto_ok {
            commands |= command_bit(c);
        }
    }
    let mut versions = 0u8;
    for v in [ProxyProtocol::SocksV4, ProxyProtocol::SocksV5] {
        if r.proxyprotocol.is_empty() || r.proxyprotocol.contains(&v) {
            versions |= version_bit(v);
        }
    }
    Ok(Compiled {
        rule: r.clone(),
        from,
        to,
        commands,
        versions,
        methods,
    })
}
