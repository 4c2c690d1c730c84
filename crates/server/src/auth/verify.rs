//! The credential checks themselves, as the auth helper runs them on its blocking threads.
//!
//! Timing: a failed login costs one full hash whether or not the user exists (unknown users are
//! hashed against a stand-in of the same kind), and hashes are compared in constant time.
//!
//! Password-file successes are cached: the file only changes on SIGHUP, which empties the
//! cache, so a cached answer is always the answer a fresh hash would give, at a fraction of
//! the CPU. Entries are keyed digests of the password, never the password itself.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};

use rsockd_ipc::{AuthQuery, AuthSource};
use rsockd_sys::passwd;

use super::route_credentials::RouteCredentials;
use super::users_file::UsersFile;

/// Most cached password-file successes; past this the cache starts afresh.
const CACHE_MAX: usize = 100_000;

/// Two independently keyed SipHash digests: 128 bits an attacker cannot compute without the
/// keys, which never leave this process.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Digest(u64, u64);

struct Cache {
    keys: (
        std::collections::hash_map::RandomState,
        std::collections::hash_map::RandomState,
    ),
    ok: HashMap<String, Digest>,
}

impl Cache {
    fn digest(&self, user: &str, password: &[u8]) -> Digest {
        let one = |k: &std::collections::hash_map::RandomState| {
            let mut h = k.build_hasher();
            user.hash(&mut h);
            password.hash(&mut h);
            h.finish()
        };
        Digest(one(&self.keys.0), one(&self.keys.1))
    }
}

/// Everything the helper checks against.
pub struct Verifier {
    users: RwLock<Option<Arc<UsersFile>>>,
    /// `rsockd.route.credentials`, looked up for mothers' chained requests.
    routes: RwLock<Option<Arc<RouteCredentials>>>,
    cache: Mutex<Cache>,
    /// The last real system hash seen: unknown system users are hashed against it, so they
    /// cost what a real user costs on this system.
    system_dummy: Mutex<Option<String>>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new()
    }
}

impl Verifier {
    pub fn new() -> Verifier {
        Verifier {
            users: RwLock::new(None),
            routes: RwLock::new(None),
            cache: Mutex::new(Cache {
                keys: Default::default(),
                ok: HashMap::new(),
            }),
            system_dummy: Mutex::new(None),
        }
    }

    /// Installs a (re)loaded password file and forgets every cached success.
    pub fn set_users(&self, f: Option<UsersFile>) {
        if let Ok(mut u) = self.users.write() {
            *u = f.map(Arc::new);
        }
        if let Ok(mut c) = self.cache.lock() {
            c.ok.clear();
        }
    }

    /// Installs (re)loaded route credentials.
    pub fn set_routes(&self, f: Option<RouteCredentials>) {
        if let Ok(mut r) = self.routes.write() {
            *r = f.map(Arc::new);
        }
    }

    pub fn has_routes(&self) -> bool {
        self.routes.read().is_ok_and(|r| r.is_some())
    }

    /// The credentials for the upstream `key` (`host:port`, as a route names it).
    pub fn route_secret(&self, key: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        let (host, port) = super::route_credentials::split_key(key)?;
        let routes = self.routes.read().ok()?.clone()?;
        routes
            .lookup(host, port)
            .map(|e| (e.user.clone(), e.password.clone()))
    }

    pub fn users_path(&self) -> Option<std::path::PathBuf> {
        self.users
            .read()
            .ok()
            .and_then(|u| u.as_ref().map(|f| f.path.clone()))
    }

    /// Checks one query. `Err` carries the reason for the session's log line.
    pub fn check(&self, q: &AuthQuery) -> Result<(), String> {
        let (r, delay) = self.check_deferring_delay(q);
        std::thread::sleep(delay);
        r
    }

    /// As [`Verifier::check`], with the failure delay a PAM module asked for returned rather
    /// than slept, so the helper can wait it out without holding a thread.
    pub fn check_deferring_delay(
        &self,
        q: &AuthQuery,
    ) -> (Result<(), String>, std::time::Duration) {
        match q.source {
            AuthSource::File => (self.check_file(q), std::time::Duration::ZERO),
            AuthSource::System => (self.check_system(q), std::time::Duration::ZERO),
            AuthSource::Pam => self.check_pam(q),
            AuthSource::Route => (
                Err("not a credential check".into()),
                std::time::Duration::ZERO,
            ),
        }
    }

    fn check_file(&self, q: &AuthQuery) -> Result<(), String> {
        let (user, password) = credentials(q)?;
        let Some(file) = self.users.read().ok().and_then(|u| u.clone()) else {
            return Err("no password file is loaded".into());
        };
        let Ok(name) = std::str::from_utf8(user) else {
            burn(password, file.dummy());
            return Err(format!(
                "user \"{}\" is not in the password file {}",
                crate::log::escape(user),
                file.path.display()
            ));
        };
        // One lock for the digest and the look-up: this is the path every repeat login takes.
        let digest = match self.cache.lock() {
            Ok(c) => {
                let d = c.digest(name, password);
                if c.ok.get(name) == Some(&d) {
                    return Ok(());
                }
                Some(d)
            }
            Err(_) => None,
        };
        let Some(stored) = file.hash(name) else {
            burn(password, file.dummy());
            return Err(format!(
                "user \"{}\" is not in the password file {}",
                crate::log::escape(user),
                file.path.display()
            ));
        };
        if !matches(password, stored) {
            return Err(format!(
                "password authentication failed for user \"{}\" (password file {})",
                crate::log::escape(user),
                file.path.display()
            ));
        }
        if let (Some(d), Ok(mut c)) = (digest, self.cache.lock()) {
            if c.ok.len() >= CACHE_MAX {
                c.ok.clear();
            }
            c.ok.insert(name.to_string(), d);
        }
        Ok(())
    }

    fn check_system(&self, q: &AuthQuery) -> Result<(), String> {
        let (user, password) = credentials(q)?;
        let shown = crate::log::escape(user);
        let dummy = self.system_dummy.lock().ok().and_then(|d| d.clone());
        let no_records = |why: &str| {
            format!(
                "could not access user \"{shown}\"'s records in the system password file: {why}"
            )
        };
        // Dante's wording, errno text included ("no system error" for a user that is not
        // there), so that existing log watchers keep matching.
        let Ok(name) = std::str::from_utf8(user) else {
            burn(password, dummy.as_deref());
            return Err(no_records("no system error"));
        };
        let stored = match passwd::system_hash(name) {
            Ok(Some(h)) => h,
            Ok(None) => {
                burn(password, dummy.as_deref());
                return Err(no_records("no system error"));
            }
            Err(e) => {
                burn(password, dummy.as_deref());
                return Err(no_records(&e.to_string()));
            }
        };
        // "*", "!..." (locked), "x" without shadow access, or empty: never a match, and an
        // empty password field must not mean "any password".
        if !stored.starts_with('$') {
            burn(password, dummy.as_deref());
            return Err(format!(
                "system password authentication failed for user \"{shown}\": the account has \
                 no usable password"
            ));
        }
        if let Ok(mut d) = self.system_dummy.lock() {
            *d = Some(stored.clone());
        }
        if matches(password, &stored) {
            Ok(())
        } else {
            Err(format!(
                "system password authentication failed for user \"{shown}\""
            ))
        }
    }

    #[cfg(feature = "pam")]
    fn check_pam(&self, q: &AuthQuery) -> (Result<(), String>, std::time::Duration) {
        let user = match &q.user {
            Some(u) => match std::str::from_utf8(u) {
                Ok(s) => Some(s.to_string()),
                Err(_) => {
                    return (
                        Err("the user name is not UTF-8".to_string()),
                        std::time::Duration::ZERO,
                    )
                }
            },
            None => None,
        };
        let rhost = q.client.ip().to_string();
        let req = rsockd_sys::pam::PamRequest {
            service: &q.service,
            user: user.as_deref(),
            password: q.password.as_deref(),
            rhost: Some(&rhost),
        };
        let (r, delay) = rsockd_sys::pam::authenticate_deferring_delay(&req);
        // Dante: `pam_authenticate() for user "alice" failed: Authentication failure`.
        let r = r.map_err(|e| {
            let who = user.as_deref().unwrap_or("rhostusr");
            match e {
                rsockd_sys::pam::PamError::Pam { step, message, .. } => {
                    format!(
                        "{step}() for user \"{}\" failed: {message}",
                        crate::log::escape(who.as_bytes()),
                    )
                }
                other => format!("pam: {other}"),
            }
        });
        (r, delay)
    }

    #[cfg(not(feature = "pam"))]
    fn check_pam(&self, _q: &AuthQuery) -> (Result<(), String>, std::time::Duration) {
        (
            Err("rsockd was built without PAM support (cargo feature \"pam\")".into()),
            std::time::Duration::ZERO,
        )
    }
}

fn credentials(q: &AuthQuery) -> Result<(&[u8], &[u8]), String> {
    match (&q.user, &q.password) {
        (Some(u), Some(p)) => Ok((u, p)),
        _ => Err("no username and password were given".into()),
    }
}

/// Whether `password` hashes to `stored`, compared in constant time.
fn matches(password: &[u8], stored: &str) -> bool {
    match passwd::crypt(password, stored) {
        Ok(h) => passwd::constant_time_eq(h.as_bytes(), stored.as_bytes()),
        Err(_) => false,
    }
}

/// Spends the time a real check would, for users that do not exist.
fn burn(password: &[u8], like: Option<&str>) {
    let setting = match like {
        Some(h) => h.to_string(),
        None => passwd::gensalt("$y$", 0).unwrap_or_default(),
    };
    let _ = std::hint::black_box(matches(password, &setting));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn query(source: AuthSource, user: &str, pw: &str) -> AuthQuery {
        AuthQuery {
            id: 1,
            source,
            service: String::new(),
            user: Some(user.as_bytes().to_vec()),
            password: Some(pw.as_bytes().to_vec()),
            client: "127.0.0.1:5000".parse().expect("addr"),
        }
    }

    fn file_with(entries: &[(&str, &str, &str)]) -> UsersFile {
        let mut text = String::new();
        for (user, pw, prefix) in entries {
            let salt =
                passwd::gensalt(prefix, if *prefix == "$2b$" { 4 } else { 0 }).expect("gensalt");
            let h = passwd::crypt(pw.as_bytes(), &salt).expect("crypt");
            text.push_str(&format!("{user}:{h}\n"));
        }
        UsersFile::parse(Path::new("/t/users"), &text).expect("parses")
    }

    #[test]
    fn password_file_every_kind() {
        let v = Verifier::new();
        v.set_users(Some(file_with(&[
            ("yes", "pw-y", "$y$"),
            ("bee", "pw-b", "$2b$"),
            ("six", "pw-6", "$6$"),
            ("five", "pw-5", "$5$"),
        ])));
        for (u, p) in [
            ("yes", "pw-y"),
            ("bee", "pw-b"),
            ("six", "pw-6"),
            ("five", "pw-5"),
        ] {
            assert_eq!(v.check(&query(AuthSource::File, u, p)), Ok(()), "{u}");
            // Twice: the second answer comes from the cache and must agree.
            assert_eq!(v.check(&query(AuthSource::File, u, p)), Ok(()), "{u}");
            let e = v
                .check(&query(AuthSource::File, u, "wrong"))
                .expect_err("wrong password");
            assert!(e.contains("password authentication failed"), "{e}");
            assert!(
                !e.contains("wrong"),
                "the password never reaches a message: {e}"
            );
        }
        let e = v
            .check(&query(AuthSource::File, "nobody-here", "pw-y"))
            .expect_err("unknown");
        assert!(e.contains("not in the password file /t/users"), "{e}");
        // A cached success for one password does not let another through.
        assert!(v.check(&query(AuthSource::File, "yes", "pw-y2")).is_err());
        // Swapping the file empties the cache: the old password no longer works.
        v.set_users(Some(file_with(&[("yes", "new", "$6$")])));
        assert!(v.check(&query(AuthSource::File, "yes", "pw-y")).is_err());
        assert_eq!(v.check(&query(AuthSource::File, "yes", "new")), Ok(()));
        v.set_users(None);
        assert!(v.check(&query(AuthSource::File, "yes", "new")).is_err());
    }

    #[test]
    fn system_unknown_user_and_missing_password() {
        let v = Verifier::new();
        let e = v
            .check(&query(AuthSource::System, "no-such-user-rsockd", "x"))
            .expect_err("unknown");
        assert!(
            e.ends_with(
                "could not access user \"no-such-user-rsockd\"'s records in the system password \
                 file: no system error"
            ),
            "{e}"
        );
        let mut q = query(AuthSource::System, "root", "x");
        q.password = None;
        assert!(v.check(&q).is_err());
    }
}
