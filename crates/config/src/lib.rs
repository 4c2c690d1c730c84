//! rsockd-config: Dante 1.4 `sockd.conf` → validated [`Config`], and back ([`Config`] implements
//! `Display` as sockd.conf text).
//!
//! Pure: no I/O except reading the files in [`load`]. Which Dante keywords are implemented,
//! warned about or refused is decided in one place, the [`support`] table.

#![forbid(unsafe_code)]

mod diag;
pub mod errsyms;
mod lexer;
pub mod manual;
mod model;
mod number;
mod parser;
mod print;
mod services;
pub mod sockopts;
pub mod support;
mod validate;

pub use diag::{ConfigError, Diagnostic};
pub use model::{
    AddrMatch, AlarmSides, Command, Config, Cpu, CpuRole, CpuSettings, DataAlarm, DisconnectAlarm,
    ErrorLog, ExternalAddr, Families, HostSpec, ListenAddr, LogDest, LogFlags, LogFormat, LogWhat,
    Method, Monitor, OptName, PortMatch, Protocol, ProxyProtocol, Redirect, Rotation, Rule,
    RuleAddr, RuleKind, SchedPolicy, SessionLimits, Side, SockOpt, Srchost, StateKey, Throttle,
    Timeouts, Upstream, Verdict, Via,
};
pub use services::Services;
pub use validate::check_startable;

use std::path::Path;

/// A parsed config and the warnings it produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Parser knobs; the default is what the server uses.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// Accept keywords and methods the support table marks "not supported yet" (parsing them
    /// into the model where it has a field). For tests and for printing the effective config;
    /// never for running a server.
    pub allow_unsupported: bool,
    /// Service names for `port = NAME`.
    pub services: Services,
}

/// Reads and parses a config file; service names also come from the host's /etc/services.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        diagnostics: vec![Diagnostic::whole_file(
            &name,
            format!("cannot read the config file: {e}"),
        )],
    })?;
    // /etc/services is the host's business: if it is missing, the built-in names still work.
    let services = std::fs::read_to_string("/etc/services")
        .map(|t| Services::with_etc_services(&t))
        .unwrap_or_default();
    let opts = ParseOptions {
        allow_unsupported: false,
        services,
    };
    parse_str_with(&name, &text, &opts)
}

/// Parses config text with the built-in service names; `file_name` is used in diagnostics.
pub fn parse_str(file_name: &str, text: &str) -> Result<Loaded, ConfigError> {
    parse_str_with(file_name, text, &ParseOptions::default())
}

/// [`parse_str`] with explicit options.
pub fn parse_str_with(
    file_name: &str,
    text: &str,
    opts: &ParseOptions,
) -> Result<Loaded, ConfigError> {
    let out = parser::parse(file_name, text, opts);
    if !out.errors.is_empty() {
        return Err(ConfigError {
            diagnostics: out.errors,
        });
    }
    let mut warnings = out.warnings;
    warnings.extend(validate::warnings(file_name, &out.config));
    Ok(Loaded {
        config: out.config,
        warnings,
    })
}
