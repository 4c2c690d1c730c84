//! Whether this node takes new sessions, as `/healthz` and the agent-check say it.

/// A mother's view of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Every SOCKS listener accepts and a relay is ready.
    Serving,
    /// Asked to drain (`rsockd --drain`): sessions go on, new ones please elsewhere.
    Draining,
    /// Stopping (SIGTERM or an upgrade): running sessions drain, listeners are closed.
    Stopping,
    /// No SOCKS listener is accepting.
    NoListener,
    /// No relay process is ready to take a session.
    NoRelay,
}

impl Health {
    /// Whether a balancer or service manager should send new sessions here.
    pub fn ok(self) -> bool {
        self == Health::Serving
    }

    /// The one-line reason `/healthz` gives.
    pub fn reason(self) -> &'static str {
        match self {
            Health::Serving => "ok",
            Health::Draining => "draining (rsockd --drain)",
            Health::Stopping => "stopping",
            Health::NoListener => "no SOCKS listener accepting",
            Health::NoRelay => "no relay process ready",
        }
    }
}
