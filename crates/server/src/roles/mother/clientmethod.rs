//! Client rules whose `clientmethod` is more than `none` (`rfc931`, `pam.address`, `pam.any`):
//! checked right after accept, before any SOCKS byte is read, as Dante does. The client rules
//! whose addresses match are tried in order; a rule matches when one of its methods passes
//! and its `user:`/`group:` (if any) admit the name that method gave. The answer of each
//! lookup is kept for the connection, so the ident server is asked once however many rules
//! name `rfc931`, and a socks method that is the same as the one that passed here is not
//! asked again (Dante: one ident query for `clientmethod: rfc931` with `socksmethod: rfc931`).

use std::collections::HashMap;
use std::net::SocketAddr;

use rsockd_config::Method;
use rsockd_rules::{user_matches, ClientQuery, Match};

use super::auth::{groups_of, Accepted, MotherAuth};
use super::state::Mother;
use crate::log;
use crate::negotiate::Credentials;
use crate::settings::Settings;

/// The client rule of a new connection and what its method found, or the default block.
pub(super) async fn choose<'a>(
    m: &Mother,
    s: &'a Settings,
    q: &ClientQuery<'_>,
    peer: SocketAddr,
    local: SocketAddr,
) -> (Match<'a>, Option<Accepted>) {
    // (method, PAM service) -> the verdict of that check for this connection.
    let mut done: HashMap<(Method, String), Result<Option<String>, String>> = HashMap::new();
    for (cand, methods) in s.rules.client_candidates(q) {
        for &method in methods {
            if method == Method::None {
                if user_matches_any(cand.rule, None, &[]) {
                    return (cand, None);
                }
                continue;
            }
            let auth = MotherAuth::new(m, s, cand.rule, peer, local);
            let key = (method, auth.service.clone());
            let verdict = match done.get(&key) {
                Some(v) => v.clone(),
                None => {
                    let v = auth
                        .verify(Credentials {
                            method,
                            user: None,
                            password: None,
                        })
                        .await;
                    if log::debugging(1) {
                        log::debug(&format!(
                            "accept-time method {method} for client {}: {}",
                            log::addr(&peer),
                            match &v {
                                Ok(Some(u)) => format!("user \"{}\"", log::escape(u.as_bytes())),
                                Ok(None) => "passed".to_string(),
                                Err(e) => format!("failed: {e}"),
                            }
                        ));
                    }
                    done.insert(key, v.clone());
                    v
                }
            };
            let Ok(user) = verdict else { continue };
            let groups = match (&user, cand.rule) {
                (Some(u), Some(r)) if !r.group.is_empty() => groups_of(u).await,
                _ => Vec::new(),
            };
            if user_matches_any(cand.rule, user.as_deref(), &groups) {
                return (cand, Some(Accepted { method, user }));
            }
        }
    }
    (
        Match {
            verdict: rsockd_config::Verdict::Block,
            number: 0,
            rule: None,
        },
        None,
    )
}

fn user_matches_any(
    rule: Option<&rsockd_config::Rule>,
    user: Option<&str>,
    groups: &[String],
) -> bool {
    rule.is_none_or(|r| user_matches(r, user, groups))
}
