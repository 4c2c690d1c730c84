//! A mother's [`Authenticator`]: password and PAM checks go to the auth helper, `rfc931` asks
//! the client's ident server, and the groups of an authenticated user are looked up for
//! `group:` rules.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use rsockd_config::Method;
use rsockd_ipc::{AuthQuery, AuthSource};

use super::state::Mother;
use crate::auth::link::AuthLink;
use crate::negotiate::{Authenticator, Credentials};
use crate::scoreboard::counters;
use crate::settings::Settings;

/// How long an ident server may take (Dante gives it the negotiate timeout; a short bound
/// keeps a silent client host from holding the session).
const IDENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Who a client's accept-time method said the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Accepted {
    pub method: Method,
    /// The name it gave (`rfc931`); none for PAM by address alone.
    pub user: Option<String>,
}

/// A client's RFC 1929 name and password, kept for routes with `method: username` (Dante
/// forwards them to the upstream); wiped when dropped.
pub(super) struct RouteCreds {
    pub user: Vec<u8>,
    pub password: Vec<u8>,
}

impl Drop for RouteCreds {
    fn drop(&mut self) {
        self.password.fill(0);
    }
}

/// PAM credentials kept until the socks rule is known: when socks rules name their own
/// `pam.servicename`, Dante accepts the RFC 1929 exchange and runs PAM at request time with
/// the matched rule's service. The password is wiped when this is dropped.
pub(super) struct PendingPam {
    pub link: Rc<AuthLink>,
    pub user: Vec<u8>,
    pub password: Vec<u8>,
    /// The service when the matched rule names none.
    pub default_service: String,
    pub client: SocketAddr,
    /// The method the client chose (for the failure counters).
    pub method: Method,
}

impl Drop for PendingPam {
    fn drop(&mut self) {
        self.password.fill(0);
    }
}

impl PendingPam {
    /// Runs PAM with `rule`'s service (or the default).
    pub async fn check(&self, rule: Option<&rsockd_config::Rule>) -> Result<(), String> {
        let service = rule
            .and_then(|r| r.pam_servicename.clone())
            .unwrap_or_else(|| self.default_service.clone());
        self.link
            .check(AuthQuery {
                id: 0,
                source: AuthSource::Pam,
                service,
                user: Some(self.user.clone()),
                password: Some(self.password.clone()),
                client: self.client,
            })
            .await
    }
}

pub(super) struct MotherAuth<'a> {
    pub link: &'a Rc<AuthLink>,
    /// Set when PAM waits for the socks rule (see [`PendingPam`]).
    pub pending: RefCell<Option<PendingPam>>,
    pub settings: &'a Settings,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// `pam.servicename` in force: the client rule's, else the global one, else `sockd`.
    pub service: String,
    /// What the client's accept-time method found: the same method chosen at the SOCKS
    /// level is not checked again.
    pub accepted: Option<Accepted>,
    /// The client's RFC 1929 credentials, kept when some route forwards them.
    pub route_creds: RefCell<Option<RouteCreds>>,
}

impl<'a> MotherAuth<'a> {
    pub fn new(
        m: &'a Mother,
        settings: &'a Settings,
        crule: Option<&rsockd_config::Rule>,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Self {
        let service = crule
            .and_then(|r| r.pam_servicename.clone())
            .or_else(|| settings.config.pam_servicename.clone())
            .unwrap_or_else(|| crate::auth::DEFAULT_PAM_SERVICE.to_string());
        MotherAuth {
            link: &m.auth,
            pending: RefCell::new(None),
            settings,
            peer,
            local,
            service,
            accepted: None,
            route_creds: RefCell::new(None),
        }
    }

    fn query(&self, source: AuthSource, user: Option<&[u8]>, pw: Option<&[u8]>) -> AuthQuery {
        AuthQuery {
            id: 0,
            source,
            service: if source == AuthSource::Pam {
                self.service.clone()
            } else {
                String::new()
            },
            user: user.map(<[u8]>::to_vec),
            password: pw.map(<[u8]>::to_vec),
            client: self.peer,
        }
    }
}

impl Authenticator for MotherAuth<'_> {
    async fn authenticate(&self, c: Credentials<'_>) -> Result<Option<String>, String> {
        let method = c.method;
        if let (Some(user), Some(password)) = (c.user, c.password) {
            let forwards = self
                .settings
                .config
                .routes
                .iter()
                .any(|r| r.socksmethod.contains(&rsockd_config::Method::Username));
            if forwards {
                *self.route_creds.borrow_mut() = Some(RouteCreds {
                    user: user.to_vec(),
                    password: password.to_vec(),
                });
            }
        }
        if let Some(a) = self.accepted.as_ref().filter(|a| a.method == method) {
            return Ok(a.user.clone());
        }
        let verdict = self.verify(c).await;
        if verdict.is_err() {
            counters::auth_failed(method);
        }
        verdict
    }
}

impl MotherAuth<'_> {
    pub(super) async fn verify(&self, c: Credentials<'_>) -> Result<Option<String>, String> {
        match c.method {
            Method::Username => {
                let source = if self.settings.config.users_file.is_some() {
                    AuthSource::File
                } else {
                    AuthSource::System
                };
                self.link
                    .check(self.query(source, c.user, c.password))
                    .await
                    .map(|()| None)
            }
            Method::PamUsername | Method::PamAny => {
                let per_rule = self
                    .settings
                    .config
                    .socks_rules
                    .iter()
                    .any(|r| r.pam_servicename.is_some());
                if let (true, Some(user), Some(password)) = (per_rule, c.user, c.password) {
                    *self.pending.borrow_mut() = Some(PendingPam {
                        link: self.link.clone(),
                        user: user.to_vec(),
                        password: password.to_vec(),
                        default_service: self.service.clone(),
                        client: self.peer,
                        method: c.method,
                    });
                    return Ok(None);
                }
                self.link
                    .check(self.query(AuthSource::Pam, c.user, c.password))
                    .await
                    .map(|()| None)
            }
            // The address is all PAM gets, whatever the client sent.
            Method::PamAddress => self
                .link
                .check(self.query(AuthSource::Pam, None, None))
                .await
                .map(|()| None),
            Method::Rfc931 => {
                let name = crate::net::ident::lookup(self.peer, self.local, IDENT_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?;
                let lookup = name.clone();
                let exists =
                    tokio::task::spawn_blocking(move || rsockd_sys::passwd::user_exists(&lookup))
                        .await
                        .map_err(|_| "user lookup failed".to_string())?;
                match exists {
                    Ok(true) => Ok(Some(name)),
                    Ok(false) => Err(format!(
                        "no user \"{}\" found in system password file",
                        crate::log::escape(name.as_bytes())
                    )),
                    Err(e) => Err(format!("cannot look up user \"{name}\": {e}")),
                }
            }
            m => Err(format!("method {m} is not supported")),
        }
    }
}

/// The groups of `user` (primary included) for `group:` rules; none for names that are not
/// system accounts (users of `rsockd.users.file`).
pub(super) async fn groups_of(user: &str) -> Vec<String> {
    let name = user.to_string();
    tokio::task::spawn_blocking(move || rsockd_sys::passwd::user_groups(&name))
        .await
        .ok()
        .and_then(|r| r.ok().flatten())
        .unwrap_or_default()
}
