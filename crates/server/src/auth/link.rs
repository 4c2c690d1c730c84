//! A mother's channel to the auth helper: many checks in flight on one SEQPACKET socket,
//! answers matched by id.
//!
//! When the helper dies, every check in flight fails at once (the client gets a clean RFC 1929
//! failure) and new checks wait briefly for the channel to the re-spawned helper, which the
//! lead process installs with [`AuthLink::install`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use rsockd_ipc::{AuthAnswer, AuthQuery};
use tokio::sync::oneshot;

use crate::channel::Channel;
use crate::log;

/// How long a check waits for a helper channel when there is none (one being re-spawned).
const WAIT_FOR_HELPER: Duration = Duration::from_secs(2);
/// How long a check waits for its answer. A stuck PAM module must not hold a client forever.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

struct Conn {
    chan: Channel,
    pending: RefCell<HashMap<u64, oneshot::Sender<AuthAnswer>>>,
}

#[derive(Default)]
pub struct AuthLink {
    conn: RefCell<Option<Rc<Conn>>>,
    next_id: Cell<u64>,
    installed: tokio::sync::Notify,
}

impl AuthLink {
    pub fn new() -> Rc<AuthLink> {
        Rc::new(AuthLink::default())
    }

    /// Uses `fd` as the channel from now on (the helper was started or re-spawned).
    pub fn install(self: &Rc<Self>, fd: OwnedFd) {
        let chan = match Channel::new(fd, "auth helper") {
            Ok(c) => c,
            Err(e) => {
                log::error(&format!("auth helper channel: {e}"));
                return;
            }
        };
        let conn = Rc::new(Conn {
            chan,
            pending: RefCell::new(HashMap::new()),
        });
        *self.conn.borrow_mut() = Some(conn.clone());
        self.installed.notify_waiters();
        tokio::task::spawn_local(read_answers(self.clone(), conn));
    }

    pub fn is_connected(&self) -> bool {
        self.conn.borrow().is_some()
    }

    /// Sends one check and waits for its verdict. `Err` is the reason for the log line.
    pub async fn check(&self, q: AuthQuery) -> Result<(), String> {
        self.ask(q).await.map(|_| ())
    }

    /// The user name and password `rsockd.route.credentials` holds for the upstream a route
    /// names `host:port`; None when it has no line for it.
    pub async fn route_credentials(&self, key: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>, String> {
        let q = AuthQuery {
            id: 0,
            source: rsockd_ipc::AuthSource::Route,
            service: key.to_string(),
            user: None,
            password: None,
            client: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        match self.ask(q).await {
            Ok(a) => Ok(a.secret),
            // The helper answers "not found" as a failed check without a reason.
            Err(r) if r.is_empty() => Ok(None),
            Err(r) => Err(r),
        }
    }

    async fn ask(&self, mut q: AuthQuery) -> Result<AuthAnswer, String> {
        let conn = match self.current() {
            Some(c) => c,
            None => {
                let wait = self.installed.notified();
                let _ = tokio::time::timeout(WAIT_FOR_HELPER, wait).await;
                self.current()
                    .ok_or_else(|| "the auth helper is not available".to_string())?
            }
        };
        let id = self.next_id.get().wrapping_add(1);
        self.next_id.set(id);
        q.id = id;
        let (tx, rx) = oneshot::channel();
        conn.pending.borrow_mut().insert(id, tx);
        let sent = conn.chan.send(&q.encode(), &[]).await;
        // The query held the password: do not leave it in this buffer's memory longer.
        if let Some(p) = q.password.as_mut() {
            p.fill(0);
        }
        if let Err(e) = sent {
            conn.pending.borrow_mut().remove(&id);
            return Err(format!("cannot reach the auth helper: {e}"));
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
            Ok(Ok(a)) if a.ok => Ok(a),
            Ok(Ok(a)) => Err(a.reason),
            Ok(Err(_)) => Err("the auth helper exited before answering".into()),
            Err(_) => {
                conn.pending.borrow_mut().remove(&id);
                Err(format!(
                    "the auth helper did not answer within {} seconds",
                    ANSWER_TIMEOUT.as_secs()
                ))
            }
        }
    }

    fn current(&self) -> Option<Rc<Conn>> {
        self.conn.borrow().clone()
    }
}

async fn read_answers(link: Rc<AuthLink>, conn: Rc<Conn>) {
    while let Some((a, _)) = conn.chan.recv::<AuthAnswer>().await {
        if let Some(tx) = conn.pending.borrow_mut().remove(&a.id) {
            let _ = tx.send(a);
        }
    }
    // Dropping the senders fails every check in flight.
    conn.pending.borrow_mut().clear();
    let mut cur = link.conn.borrow_mut();
    if cur.as_ref().is_some_and(|c| Rc::ptr_eq(c, &conn)) {
        *cur = None;
    }
}
