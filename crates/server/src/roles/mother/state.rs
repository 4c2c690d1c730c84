//! What every task of one mother process shares: its place among the mothers, its relay
//! pool, its listening sockets and accept loops, the clients it is still negotiating with,
//! and its links to the other mothers and the auth helper.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use tokio::task::JoinHandle;

use super::family::{Family, Listeners};
use super::pool::Pool;
use crate::auth::link::AuthLink;
use crate::log;
use crate::metrics::health::Health;
use crate::roles::auth_helper::keeper::Keeper;
use crate::settings::Settings;

pub struct Mother {
    pub index: u32,
    pub of: u32,
    pub pool: Rc<Pool>,
    pub(super) next_id: Cell<u64>,
    pub(super) accepting: RefCell<HashMap<SocketAddr, JoinHandle<()>>>,
    /// A copy of each listening socket, for the mothers we start and for reloads.
    pub(super) listeners: Listeners,
    pub(super) family: Option<Rc<Family>>,
    /// Clients accepted and not yet handed off or refused: lost if this process dies.
    pub(super) negotiating: Cell<u32>,
    pub(super) negotiating_changed: tokio::sync::Notify,
    /// This mother's channel to the auth helper.
    pub auth: Rc<AuthLink>,
    /// The lead mother starts, re-spawns and reloads the auth helper.
    pub(super) keeper: Option<Rc<Keeper>>,
    /// `rsockd --drain`: the agent answers `drain` (sessions go on being served).
    pub(super) draining: Cell<bool>,
    /// Stopping because a new family took over (an upgrade): the agent socket is theirs too.
    pub(super) handing_over: Cell<bool>,
    /// Stopping (SIGTERM, the lead's order, an upgrade): the SOCKS listeners are closed.
    pub(super) stopping: Cell<bool>,
    /// `srchost:` lookups this mother made, kept for a while.
    pub(super) srchost: crate::net::srchost::Checker,
}

impl Mother {
    pub fn settings(&self) -> Rc<Settings> {
        Settings::current().unwrap_or_else(unreachable_settings)
    }

    pub fn next_session_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        (u64::from(self.index) << 48) | id
    }

    /// This mother's view of the node, for the agent-check and `/healthz`.
    pub(super) fn health(&self) -> Health {
        if self.stopping.get() {
            return Health::Stopping;
        }
        if self.draining.get() {
            return Health::Draining;
        }
        let s = self.settings();
        if !self.accepting.borrow().keys().any(|a| s.is_socks(a)) {
            Health::NoListener
        } else if !self.pool.any_ready() {
            Health::NoRelay
        } else {
            Health::Serving
        }
    }

    pub(super) fn title(&self) -> String {
        format!("rsockd: mother {}/{}", self.index, self.of)
    }
}

/// Settings are installed before any task runs; this exists only to avoid a panic path.
fn unreachable_settings() -> Rc<Settings> {
    log::alert("internal error: no configuration installed");
    std::process::exit(1)
}
