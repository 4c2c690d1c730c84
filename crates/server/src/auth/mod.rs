//! Authentication: who checks passwords, and how the networking processes reach it.
//!
//! DESIGN §1: password checks that need privileges (shadow, PAM) run in one auth helper process
//! that keeps `user.privileged`; mothers run unprivileged and send it queries over a
//! SEQPACKET channel each ([`link`]). The process that starts mothers also starts, re-spawns
//! and reloads the helper and hands every mother its channel (`roles::auth_helper::keeper`). The helper does
//! the checks on blocking threads ([`verify`]); `rsockd.users.file` is parsed by
//! [`users_file`]. The ident lookup of `rfc931` needs no privileges and stays in the mother.

pub mod link;
pub mod route_credentials;
pub mod users_file;
pub mod verify;

use rsockd_config::{Config, Method};

/// Default `pam.servicename` of Dante 1.4 (its manual says `danted`; the binary uses `sockd`).
pub const DEFAULT_PAM_SERVICE: &str = "sockd";

/// Whether a configuration needs the auth helper: a method that checks passwords or PAM, or
/// route credentials (only the helper may read them).
pub fn needs_helper(cfg: &Config) -> bool {
    cfg.route_credentials.is_some()
        || cfg.socksmethod.iter().chain(&cfg.clientmethod).any(|m| {
            matches!(
                m,
                Method::Username | Method::PamUsername | Method::PamAddress | Method::PamAny
            )
        })
}

/// Whether this build has the PAM methods (cargo feature `pam`).
pub const PAM_BUILT: bool = cfg!(feature = "pam");

/// Start-up and reload checks of the authentication settings that the config parser cannot
/// make: PAM compiled in, and (when `read_users_file`) the password file readable and
/// well-formed. Returns warnings; `Err` refuses the configuration.
pub fn check(cfg: &Config, read_users_file: bool) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    let pam = cfg
        .socksmethod
        .iter()
        .chain(&cfg.clientmethod)
        .find(|m| matches!(m, Method::PamUsername | Method::PamAddress | Method::PamAny));
    if let (Some(m), false) = (pam, PAM_BUILT) {
        return Err(format!(
            "method {m} needs PAM, but this rsockd was built without it (cargo feature \"pam\")"
        ));
    }
    crate::net::libwrap::check(cfg)?;
    if let Some(path) = &cfg.route_credentials {
        let with_username = cfg
            .routes
            .iter()
            .any(|r| r.socksmethod.contains(&Method::Username));
        if !with_username {
            warnings.push(format!(
                "rsockd.route.credentials {} is set, but no route has method username, so no \
                 upstream is given them",
                path.display()
            ));
        }
        if read_users_file {
            let f = route_credentials::RouteCredentials::load(path).map_err(|e| e.to_string())?;
            for r in &cfg.routes {
                if let (Some(rsockd_config::Via::Proxy { host, port }), true) =
                    (&r.via, r.socksmethod.contains(&Method::Username))
                {
                    if f.lookup(host, *port).is_none() {
                        warnings.push(format!(
                            "route #{} (line {}): rsockd.route.credentials has no line for {}; \
                             the client's own credentials are forwarded",
                            r.number,
                            r.line,
                            route_credentials::upstream_key(host, *port)
                        ));
                    }
                }
            }
        }
    }
    if let Some(path) = &cfg.users_file {
        if !cfg.socksmethod.contains(&Method::Username) {
            warnings.push(format!(
                "rsockd.users.file {} is set, but method 'username' is not in socksmethod, so \
                 nothing checks it",
                path.display()
            ));
        }
        if read_users_file {
            let f = users_file::UsersFile::load(path).map_err(|e| e.to_string())?;
            if f.is_empty() {
                warnings.push(format!(
                    "rsockd.users.file {} lists no users: every username login fails",
                    path.display()
                ));
            }
            warnings.extend(users_file::permission_warning(path));
        }
    }
    Ok(warnings)
}
