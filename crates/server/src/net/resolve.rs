//! Name resolution without blocking the runtime: getaddrinfo (NSS, /etc/hosts, search domains,
//! the same answers Dante gets) on the blocking pool, bounded in concurrency and time.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::Semaphore;

/// At most this many lookups run at once per process, so a slow resolver cannot make the
/// blocking pool grow without bound.
const MAX_CONCURRENT: usize = 32;
/// A lookup that takes longer is given up (the thread finishes in the background).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

fn permits() -> &'static Semaphore {
    static SEM: OnceLock<Semaphore> = OnceLock::new();
    SEM.get_or_init(|| Semaphore::new(MAX_CONCURRENT))
}

/// Resolves `name` to every address it has, in resolver order.
pub async fn forward(name: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let _permit = permits()
        .acquire()
        .await
        .map_err(|_| io::Error::other("resolver closed"))?;
    let lookup = tokio::net::lookup_host((name.to_string(), port));
    let addrs = tokio::time::timeout(LOOKUP_TIMEOUT, lookup)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "name lookup timed out"))?
        .map_err(|e| {
            // std prefixes getaddrinfo's text; Dante logs only gai_strerror's.
            let text = e.to_string();
            let text = text
                .strip_prefix("failed to lookup address information: ")
                .unwrap_or(&text)
                .to_string();
            io::Error::new(e.kind(), text)
        })?;
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in addrs {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    if out.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "Name or service not known",
        ));
    }
    Ok(out)
}

/// Reverse-resolves `ip` and keeps the name only if it resolves back to `ip` (forward
/// confirmation, so a client cannot pass a name rule with a forged PTR record).
pub async fn reverse_confirmed(ip: IpAddr) -> Vec<String> {
    let Some(name) = reverse(ip).await else {
        return Vec::new();
    };
    if resolves_back(&name, ip).await {
        vec![name]
    } else {
        Vec::new()
    }
}

/// The name `ip` reverse-maps to (getnameinfo with NI_NAMEREQD), if any.
pub async fn reverse(ip: IpAddr) -> Option<String> {
    let _permit = permits().acquire().await.ok()?;
    let job = tokio::task::spawn_blocking(move || rsockd_sys::dns::reverse(ip));
    match tokio::time::timeout(LOOKUP_TIMEOUT, job).await {
        Ok(Ok(n)) => n,
        _ => None,
    }
}

/// Whether `name` resolves to `ip` among its addresses.
pub async fn resolves_back(name: &str, ip: IpAddr) -> bool {
    forward(name, 0).await.is_ok_and(|addrs| {
        addrs
            .iter()
            .any(|a| a.ip().to_canonical() == ip.to_canonical())
    })
}

/// Where names come from: the seam that lets the request path be tested without a resolver
/// (DESIGN §3). The server uses [`SystemResolver`].
pub trait Resolver {
    /// Every address of `name`, in resolver order.
    fn forward(&self, name: &str, port: u16) -> impl Future<Output = io::Result<Vec<SocketAddr>>>;
    /// The forward-confirmed names of `ip`.
    fn reverse_confirmed(&self, ip: IpAddr) -> impl Future<Output = Vec<String>>;
}

/// getaddrinfo and getnameinfo through the bounded blocking pool above.
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn forward(&self, name: &str, port: u16) -> impl Future<Output = io::Result<Vec<SocketAddr>>> {
        forward(name, port)
    }
    fn reverse_confirmed(&self, ip: IpAddr) -> impl Future<Output = Vec<String>> {
        reverse_confirmed(ip)
    }
}
