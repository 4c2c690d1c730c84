//! systemd socket activation (`sd_listen_fds(3)`): listening sockets the service manager
//! passed as descriptors 3, 4, ... (`LISTEN_FDS`, for `LISTEN_PID`, named by `LISTEN_FDNAMES`).
//! Each is used for the configured address it matches instead of binding one, so rsockd needs
//! no root for port 1080 or 80; a configured address without a passed socket is still bound,
//! and a passed socket that matches no configured address is an error naming it.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const FIRST: i32 = 3;

/// A socket the service manager passed.
pub struct Passed {
    pub fd: OwnedFd,
    pub addr: SocketAddr,
    /// Its `FileDescriptorName=` (the socket unit's name by default).
    pub name: String,
}

impl Passed {
    fn describe(&self) -> String {
        format!(
            "descriptor {} ({}, name \"{}\")",
            std::os::fd::AsRawFd::as_raw_fd(&self.fd),
            crate::log::addr(&self.addr),
            self.name
        )
    }
}

/// Takes the sockets passed to this process, if any, and clears the variables so that no child
/// takes them for its own. Must run before any other descriptor >= 3 is opened.
pub fn take() -> Result<Vec<Passed>, String> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(Vec::new());
    };
    // Meant for another process (we were started by one that did not clear them).
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(Vec::new());
    }
    let n: i32 = count
        .trim()
        .parse()
        .map_err(|_| format!("socket activation: LISTEN_FDS=\"{count}\" is not a number"))?;
    let names: Vec<&str> = names.split(':').collect();
    let mut out = Vec::new();
    for i in 0..n.max(0) {
        let fd = FIRST + i;
        let Some(owned) = rsockd_sys::spawn::inherited_fd(fd) else {
            return Err(format!("socket activation: descriptor {fd} is not open"));
        };
        let sock = socket2::SockRef::from(&owned);
        let listening = sock.is_listener().unwrap_or(false);
        let stream = sock.r#type().ok() == Some(socket2::Type::STREAM);
        let addr = sock.local_addr().ok().and_then(|a| a.as_socket());
        let name = names.get(i as usize).unwrap_or(&"unknown").to_string();
        match addr {
            Some(addr) if listening && stream => out.push(Passed {
                fd: owned,
                addr,
                name,
            }),
            _ => {
                return Err(format!(
                    "socket activation: descriptor {fd} (name \"{name}\") is not a listening TCP \
                     socket; rsockd takes ListenStream= sockets only"
                ))
            }
        }
    }
    Ok(out)
}

/// Pairs configured addresses with passed sockets: a socket serves the address equal to its
/// own, or one with the same IP and port 0 ("whatever port the manager chose"). Returns, for
/// each configured address, its socket if one was passed; a passed socket left over is an
/// error.
pub fn assign(
    configured: &[SocketAddr],
    passed: Vec<Passed>,
) -> Result<Vec<(SocketAddr, Option<OwnedFd>)>, String> {
    let mut passed: Vec<Option<Passed>> = passed.into_iter().map(Some).collect();
    let mut out = Vec::new();
    for a in configured {
        let hit = passed.iter_mut().find(|p| {
            p.as_ref()
                .is_some_and(|p| p.addr == *a || (a.port() == 0 && p.addr.ip() == a.ip()))
        });
        out.push((*a, hit.and_then(Option::take).map(|p| p.fd)));
    }
    if let Some(p) = passed.into_iter().flatten().next() {
        return Err(format!(
            "socket activation: passed {} matches no internal: or rsockd.agent: address",
            p.describe()
        ));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn passed(addr: &str, name: &str) -> Passed {
        let l = std::net::TcpListener::bind(addr).unwrap();
        Passed {
            addr: l.local_addr().unwrap(),
            fd: OwnedFd::from(l),
            name: name.into(),
        }
    }

    #[test]
    fn sockets_serve_the_addresses_they_match_and_the_rest_are_bound() {
        let a = passed("127.0.0.1:0", "a");
        let b = passed("127.0.0.2:0", "b");
        let (aa, ba) = (a.addr, b.addr);
        let own: SocketAddr = "127.0.0.3:1080".parse().unwrap();
        // `b` by its exact address, `a` by its IP under a configured port 0.
        let wanted = [SocketAddr::new(aa.ip(), 0), ba, own];
        let got = assign(&wanted, vec![a, b]).unwrap();
        assert_eq!(got.len(), 3);
        assert!(got[0].1.is_some() && got[1].1.is_some());
        assert!(got[2].1.is_none(), "nobody passed {own}: it is bound");
    }

    #[test]
    fn a_socket_matching_nothing_is_an_error_naming_it() {
        let a = passed("127.0.0.1:0", "rsockd.socket");
        let addr = a.addr;
        let wanted = ["127.0.0.9:1080".parse().unwrap()];
        let Err(e) = assign(&wanted, vec![a]) else {
            panic!("accepted a stray socket")
        };
        assert!(e.contains(&crate::log::addr(&addr)), "{e}");
        assert!(e.contains("name \"rsockd.socket\""), "{e}");
        assert!(
            e.contains("matches no internal: or rsockd.agent: address"),
            "{e}"
        );
    }
}
