//! Which way a request leaves when routes exist: the matching routes in file order, routes
//! marked bad skipped, a failing upstream charged and the next route tried, all within
//! `timeout.connect`. CONNECT goes through any upstream kind; BIND and UDP ASSOCIATE through
//! SOCKS5 upstreams only (or `via: direct`). A route's health lives in the scoreboard, so
//! every mother sees the marks any of them set (`scoreboard/routes.rs`).

use std::net::{IpAddr, SocketAddr};

use rsockd_config::{Command, Method, Rule, Via};
use rsockd_proto::Reply;
use rsockd_rules::Dest;
use tokio::io::{AsyncRead, AsyncWrite};

use super::request::{choose_source, refuse_failed, Client, Failing};
use crate::log::{self, addr};
use crate::negotiate::Wire;
use crate::net::chain::{self, Ask, ChainError};
use crate::net::connect::{Attempt, Outgoing};
use crate::net::resolve::Resolver;
use crate::scoreboard::routes as health;
use crate::settings::Settings;

/// What the routes say about a request.
pub(super) enum Routed {
    /// The first usable matching route is `via: direct` (or, for a CONNECT to a name we
    /// could not resolve, no route matches: it fails as it would without routes).
    Direct,
    /// Through an upstream: the connection and the attempt that made it (to the upstream).
    Chained(chain::Chained, Attempt),
    /// Refused (answered and logged).
    Refused,
}

/// One request's way through the routes. `ask` makes the request for an upstream, given the
/// upstream's address and the source address we reach it from (a UDP ASSOCIATE binds its
/// external socket there first).
#[allow(clippy::too_many_arguments)]
pub(super) async fn routed<S, F>(
    wire: &mut Wire<S>,
    s: &Settings,
    resolver: &impl Resolver,
    client: &Client,
    failing: &Failing<'_>,
    command: Command,
    dst: &Dest<'_>,
    srule: Option<&Rule>,
    mut ask: F,
) -> Routed
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(SocketAddr, Option<IpAddr>) -> Result<Ask, ChainError>,
{
    let matching = s.rules.routes_for(client.peer, command, dst);
    let connect = command == Command::Connect;
    if matching.is_empty() && connect && dst.ip.is_none() {
        return Routed::Direct;
    }
    // Only SOCKS5 carries BIND and UDP ASSOCIATE.
    let routes: Vec<&Rule> = matching
        .iter()
        .copied()
        .filter(|r| {
            connect
                || match &r.via {
                    Some(Via::Proxy { .. }) => {
                        r.upstream.is_empty()
                            || r.upstream.contains(&rsockd_config::Upstream::SocksV5)
                    }
                    _ => true,
                }
        })
        .collect();
    if routes.is_empty() && !connect {
        let why = format!(
            "serverchain failed: command {} is not supported by serverchaining and no direct \
             route found",
            command.name()
        );
        refuse_failed(wire, client, failing, &why, Reply::GeneralFailure).await;
        return Routed::Refused;
    }
    let out = Outgoing::new(s.keepalive(), &s.config.sockopts, srule);
    let deadline = s
        .connect_timeout(srule)
        .map(|d| tokio::time::Instant::now() + d);
    let mut last: Option<ChainError> = None;
    for r in routes {
        if !usable(s, r.number) {
            continue;
        }
        // Out of time: the routes left are not tried, so not charged either.
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            if last.is_none() {
                last = Some(ChainError {
                    reply: Reply::TtlExpired,
                    text: "timeout.connect passed before a proxy server could be tried".into(),
                    upstream_failed: true,
                });
            }
            break;
        }
        let (host, port) = match &r.via {
            Some(Via::Proxy { host, port }) => (host, *port),
            _ => return Routed::Direct,
        };
        let upstream = match host.parse::<IpAddr>() {
            Ok(ip) => Some(SocketAddr::new(ip, port)),
            Err(_) => resolver
                .forward(host, port)
                .await
                .ok()
                .and_then(|v| v.into_iter().next()),
        };
        let charge = |why: &str| failed(s, r.number, why);
        let Some(upstream) = upstream else {
            let why = format!("could not resolve proxy server \"{host}\"");
            charge(&why);
            last = Some(ChainError {
                reply: Reply::HostUnreachable,
                text: why,
                upstream_failed: true,
            });
            continue;
        };
        let source =
            choose_source(s, upstream.ip(), client.local).filter(|ip| !ip.is_unspecified());
        let request = match ask(upstream, source) {
            Ok(a) => a,
            Err(e) => {
                // Our side failed (no socket): not the upstream's fault.
                last = Some(e);
                break;
            }
        };
        let offers =
            |m| r.socksmethod.is_empty() && m == Method::None || r.socksmethod.contains(&m);
        // `method: username`: the route's own credentials if the file has them, else the
        // client's (Dante's way).
        let fixed = match (&client.route_link, offers(Method::Username)) {
            (Some(link), true) => route_credentials(link, host, port).await,
            _ => None,
        };
        let auth = chain::Auth {
            none: offers(Method::None),
            username: fixed
                .as_ref()
                .map(|c| (c.user.as_slice(), c.password.as_slice()))
                .or_else(|| {
                    client
                        .route_creds
                        .as_ref()
                        .filter(|_| offers(Method::Username))
                        .map(|c| (c.user.as_slice(), c.password.as_slice()))
                }),
        };
        let attempt = chain::connect(upstream, source, &r.upstream, &auth, &request, &out);
        let result = match deadline {
            Some(d) => match tokio::time::timeout_at(d, attempt).await {
                Ok(r) => r,
                Err(_) => Err(ChainError {
                    reply: Reply::TtlExpired,
                    text: format!(
                        "proxy server {} did not complete the negotiation in time",
                        addr(&upstream)
                    ),
                    upstream_failed: true,
                }),
            },
            None => attempt.await,
        };
        match result {
            Ok(c) => {
                succeeded(s, r.number);
                if log::debugging(1) {
                    log::debug(&format!(
                        "serverchain: route #{} via {} for client {}",
                        r.number,
                        addr(&upstream),
                        addr(&client.peer)
                    ));
                }
                let won = Attempt {
                    target: upstream,
                    source,
                    source_port: 0,
                };
                return Routed::Chained(c, won);
            }
            Err(e) if !e.upstream_failed => {
                // The upstream works and said no: that is the answer.
                succeeded(s, r.number);
                last = Some(e);
                break;
            }
            Err(e) => {
                charge(&e.text);
                last = Some(e);
            }
        }
    }
    let (why, rep) = match last {
        Some(e) => (format!("serverchain failed: {}", e.text), e.reply),
        None => (
            "could not bind address to use on external side: no usable serverchain route to \
             target found"
                .to_string(),
            Reply::NetworkUnreachable,
        ),
    };
    refuse_failed(wire, client, failing, &why, rep).await;
    Routed::Refused
}

/// With routes configured, a request we never chain (the BIND extension) needs a matching
/// `via: direct` route; otherwise it is refused with Dante's words. True when it may go on.
pub(super) async fn direct_route_ok<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    s: &Settings,
    client: &Client,
    failing: &Failing<'_>,
    command: rsockd_config::Command,
    target: SocketAddr,
) -> bool {
    if !s.rules.has_routes() {
        return true;
    }
    let dst = rsockd_rules::Dest {
        ip: Some(target.ip()),
        name: None,
        port: target.port(),
        names: &[],
    };
    let direct = s
        .rules
        .routes_for(client.peer, command, &dst)
        .into_iter()
        .find(|r| usable(s, r.number))
        .is_some_and(|r| matches!(r.via, Some(rsockd_config::Via::Direct)));
    if direct {
        return true;
    }
    let why = format!(
        "serverchain failed: command {} is not supported by serverchaining and no direct route \
         found",
        command.name()
    );
    refuse_failed(wire, client, failing, &why, Reply::GeneralFailure).await;
    false
}

/// The credentials `rsockd.route.credentials` holds for upstream `host` `port`, asked of the
/// auth helper (which alone may read the file). A helper that cannot answer is logged, and the
/// client's own credentials are used, as without the file.
async fn route_credentials(
    link: &crate::auth::link::AuthLink,
    host: &str,
    port: u16,
) -> Option<super::auth::RouteCreds> {
    let key = crate::auth::route_credentials::upstream_key(host, port);
    match link.route_credentials(&key).await {
        Ok(found) => found.map(|(user, password)| super::auth::RouteCreds { user, password }),
        Err(e) => {
            log::warning(&format!("route credentials for {key} not available: {e}"));
            None
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether route `number` may be tried (it is not marked bad, or its mark expired).
pub(super) fn usable(s: &Settings, number: u32) -> bool {
    let Some(w) = s.board.as_ref().and_then(|b| b.route(number)) else {
        return true;
    };
    match health::usable(w, now_secs()) {
        health::Usable::Yes => true,
        health::Usable::Bad(_) => false,
        health::Usable::Expired => {
            log::info(&format!(
                "route #{number}: bad mark expired, trying it again"
            ));
            true
        }
    }
}

/// Counts a failure of route `number`; marks it bad after `route.maxfail` in a row.
fn failed(s: &Settings, number: u32, why: &str) {
    let Some(w) = s.board.as_ref().and_then(|b| b.route(number)) else {
        return;
    };
    let (maxfail, badexpire) = (s.config.route_maxfail, s.config.route_badexpire);
    if health::fail(w, maxfail, badexpire, now_secs()) {
        log::info(&format!(
            "socks_blacklist(): blacklisting route #{number}.  Reason: {why}"
        ));
    }
}

/// A success of route `number`: its failures are forgotten.
fn succeeded(s: &Settings, number: u32) {
    if let Some(w) = s.board.as_ref().and_then(|b| b.route(number)) {
        health::succeed(w);
    }
}

/// `route #N: bad ...` lines for SIGUSR1, the whole server's.
pub(super) fn state_lines(s: &Settings) -> Vec<String> {
    let now = now_secs();
    s.config
        .routes
        .iter()
        .filter_map(|r| {
            let w = s.board.as_ref()?.route(r.number)?;
            Some(format!("route #{}: {}", r.number, health::state(w, now)?))
        })
        .collect()
}
