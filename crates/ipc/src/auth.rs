//! Messages to and from the auth helper, the one process that keeps `user.privileged` so it can
//! read shadow and run PAM while every networking process runs unprivileged.
//!
//! Mothers send [`AuthQuery`] on their own channel and get one [`AuthAnswer`] per query,
//! matched by `id`, so one channel carries many checks at once. Mother 1 also sends
//! [`HelperControl`] on the helper's control channel: new client channels (a mother started or
//! re-spawned) and the password file to use.

use std::net::SocketAddr;

use crate::codec::{DecodeError, Reader, Writer};
use crate::message::VERSION;

/// What to check the credentials against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSource {
    /// The system password database (getpwnam/getspnam + crypt).
    System,
    /// Our own password file (`rsockd.users.file`).
    File,
    /// PAM with the given service (`pam.servicename`).
    Pam,
    /// Not a check: the credentials `rsockd.route.credentials` holds for the upstream named
    /// `host:port` in `service`; the answer carries them in `secret`.
    Route,
}

impl AuthSource {
    fn code(self) -> u8 {
        match self {
            AuthSource::System => 1,
            AuthSource::File => 2,
            AuthSource::Pam => 3,
            AuthSource::Route => 4,
        }
    }
    fn from_code(c: u8) -> Result<Self, DecodeError> {
        match c {
            1 => Ok(AuthSource::System),
            2 => Ok(AuthSource::File),
            3 => Ok(AuthSource::Pam),
            4 => Ok(AuthSource::Route),
            _ => Err(DecodeError::Field("source")),
        }
    }
}

/// One credential check. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthQuery {
    pub id: u64,
    pub source: AuthSource,
    /// PAM service name (empty unless `source` is PAM).
    pub service: String,
    /// The user name as the client sent it; `None` for PAM checks by address only.
    pub user: Option<Vec<u8>>,
    /// `None` when the method has no password (PAM by address).
    pub password: Option<Vec<u8>>,
    /// The client, for PAM_RHOST and log lines.
    pub client: SocketAddr,
}

impl std::fmt::Debug for AuthQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthQuery")
            .field("id", &self.id)
            .field("source", &self.source)
            .field("service", &self.service)
            .field(
                "user",
                &self.user.as_ref().map(|u| String::from_utf8_lossy(u)),
            )
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("client", &self.client)
            .finish()
    }
}

/// The verdict on one [`AuthQuery`]. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthAnswer {
    pub id: u64,
    pub ok: bool,
    /// Why the check failed, worded for the session's log line (never holds the password).
    pub reason: String,
    /// For [`AuthSource::Route`]: the upstream's user name and password.
    pub secret: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for AuthAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthAnswer")
            .field("id", &self.id)
            .field("ok", &self.ok)
            .field("reason", &self.reason)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Mother 1 to the auth helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperControl {
    /// A new mother channel: one descriptor comes with it.
    Client,
    /// The password file to check `AuthSource::File` queries against (re-read now: SIGHUP).
    UsersFile { path: Option<String> },
    /// The `rsockd.route.credentials` file to answer `AuthSource::Route` from (re-read now).
    RouteCredentials { path: Option<String> },
}

const K_QUERY: u8 = 40;
const K_ANSWER: u8 = 41;
const K_CLIENT: u8 = 42;
const K_USERS: u8 = 43;
const K_ROUTES: u8 = 44;

fn start(kind: u8) -> Writer {
    let mut w = Writer::default();
    w.u8(VERSION);
    w.u8(kind);
    w
}

fn open<'a>(buf: &'a [u8], want: &[u8]) -> Result<(Reader<'a>, u8), DecodeError> {
    let mut r = Reader::new(buf);
    let v = r.u8()?;
    if v != VERSION {
        return Err(DecodeError::Version(v));
    }
    let k = r.u8()?;
    if !want.contains(&k) {
        return Err(DecodeError::Kind(k));
    }
    Ok((r, k))
}

fn opt_bytes(w: &mut Writer, v: Option<&[u8]>) {
    match v {
        None => w.u8(0),
        Some(b) => {
            w.u8(1);
            w.bytes(b);
        }
    }
}

fn read_opt_bytes(r: &mut Reader<'_>) -> Result<Option<Vec<u8>>, DecodeError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.bytes()?)),
        _ => Err(DecodeError::Field("option")),
    }
}

impl AuthQuery {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = start(K_QUERY);
        w.u64(self.id);
        w.u8(self.source.code());
        w.bytes(self.service.as_bytes());
        opt_bytes(&mut w, self.user.as_deref());
        opt_bytes(&mut w, self.password.as_deref());
        w.addr(self.client);
        w.buf
    }

    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, _) = open(buf, &[K_QUERY])?;
        let q = AuthQuery {
            id: r.u64()?,
            source: AuthSource::from_code(r.u8()?)?,
            service: String::from_utf8(r.bytes()?).map_err(|_| DecodeError::Field("service"))?,
            user: read_opt_bytes(&mut r)?,
            password: read_opt_bytes(&mut r)?,
            client: r.addr("client")?,
        };
        r.finish()?;
        Ok(q)
    }
}

impl AuthAnswer {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = start(K_ANSWER);
        w.u64(self.id);
        w.u8(u8::from(self.ok));
        w.bytes(self.reason.as_bytes());
        match &self.secret {
            None => w.u8(0),
            Some((u, p)) => {
                w.u8(1);
                w.bytes(u);
                w.bytes(p);
            }
        }
        w.buf
    }

    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, _) = open(buf, &[K_ANSWER])?;
        let a = AuthAnswer {
            id: r.u64()?,
            ok: match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(DecodeError::Field("ok")),
            },
            reason: String::from_utf8(r.bytes()?).map_err(|_| DecodeError::Field("reason"))?,
            secret: match r.u8()? {
                0 => None,
                1 => Some((r.bytes()?, r.bytes()?)),
                _ => return Err(DecodeError::Field("secret")),
            },
        };
        r.finish()?;
        Ok(a)
    }
}

impl HelperControl {
    /// Number of descriptors that must accompany this message.
    pub fn fds(&self) -> usize {
        match self {
            HelperControl::Client => 1,
            HelperControl::UsersFile { .. } | HelperControl::RouteCredentials { .. } => 0,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            HelperControl::Client => start(K_CLIENT).buf,
            HelperControl::UsersFile { path } => {
                let mut w = start(K_USERS);
                w.opt_str(path.as_deref());
                w.buf
            }
            HelperControl::RouteCredentials { path } => {
                let mut w = start(K_ROUTES);
                w.opt_str(path.as_deref());
                w.buf
            }
        }
    }

    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, k) = open(buf, &[K_CLIENT, K_USERS, K_ROUTES])?;
        let m = match k {
            K_CLIENT => HelperControl::Client,
            K_USERS => HelperControl::UsersFile {
                path: r.opt_str("path")?,
            },
            _ => HelperControl::RouteCredentials {
                path: r.opt_str("path")?,
            },
        };
        r.finish()?;
        Ok(m)
    }
}

impl crate::Message for AuthQuery {
    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        AuthQuery::decode(buf)
    }
}

impl crate::Message for AuthAnswer {
    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        AuthAnswer::decode(buf)
    }
}

impl crate::Message for HelperControl {
    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        HelperControl::decode(buf)
    }
    fn fds(&self) -> usize {
        HelperControl::fds(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn query() -> AuthQuery {
        AuthQuery {
            id: 99,
            source: AuthSource::Pam,
            service: "sockd".into(),
            user: Some(b"alice".to_vec()),
            password: Some(b"s3cret\xff".to_vec()),
            client: "[::1]:4000".parse().expect("addr"),
        }
    }

    #[test]
    fn round_trips() {
        let q = query();
        assert_eq!(AuthQuery::decode(&q.encode()), Ok(q));
        let q = AuthQuery {
            user: None,
            password: None,
            source: AuthSource::System,
            ..query()
        };
        assert_eq!(AuthQuery::decode(&q.encode()), Ok(q));
        let a = AuthAnswer {
            id: 5,
            ok: false,
            reason: "wrong".into(),
            secret: None,
        };
        assert_eq!(AuthAnswer::decode(&a.encode()), Ok(a));
        let a = AuthAnswer {
            id: 6,
            ok: true,
            reason: String::new(),
            secret: Some((b"alice".to_vec(), b"hunter2".to_vec())),
        };
        assert_eq!(AuthAnswer::decode(&a.encode()), Ok(a.clone()));
        assert!(!format!("{a:?}").contains("hunter2"));
        for c in [
            HelperControl::Client,
            HelperControl::UsersFile { path: None },
            HelperControl::UsersFile {
                path: Some("/etc/rsockd.users".into()),
            },
            HelperControl::RouteCredentials {
                path: Some("/etc/rsockd.routes".into()),
            },
        ] {
            assert_eq!(HelperControl::decode(&c.encode()), Ok(c));
        }
    }

    #[test]
    fn debug_redacts_the_password() {
        let s = format!("{:?}", query());
        assert!(!s.contains("s3cret"), "{s}");
        assert!(s.contains("alice"));
    }

    #[test]
    fn kinds_are_not_confused() {
        assert_eq!(
            AuthAnswer::decode(&query().encode()),
            Err(DecodeError::Kind(K_QUERY))
        );
        assert!(HelperControl::decode(&query().encode()).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = AuthQuery::decode(&b);
            let _ = AuthAnswer::decode(&b);
            let _ = HelperControl::decode(&b);
        }

        #[test]
        fn truncations_are_refused(cut in 0usize..40) {
            let e = query().encode();
            if cut < e.len() {
                prop_assert!(AuthQuery::decode(&e[..cut]).is_err());
            }
        }
    }
}
