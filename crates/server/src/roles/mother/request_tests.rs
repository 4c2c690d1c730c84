//! The request path of a CONNECT, resolve → socks rules → connect, on in-memory client pipes
//! with a resolver and a connector of the test's own: which addresses are tried, and every
//! reply byte the client sees when it is refused.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};

use rsockd_config::Method;
use rsockd_ipc::RuleRef;
use rsockd_proto::TargetAddr;
use tokio::io::{duplex, AsyncReadExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};

use super::connect::{establish, Connected};
use super::request::Client;
use crate::negotiate::{Cmd, Request, Wire};
use crate::net::connect::{Attempt, ConnectError, Connector};
use crate::net::resolve::Resolver;
use crate::settings::{Flags, Settings};

const CONFIG: &str = "\
internal: 127.0.0.1 port = 1080
external: 127.0.0.1
socksmethod: none
client pass { from: 0/0 to: 0/0 }
socks block { from: 0/0 to: 10.0.0.0/8 }
socks pass { from: 0/0 to: 0/0 }
";

/// Names from a table; anything else does not resolve.
struct Names(HashMap<&'static str, Vec<SocketAddr>>);

impl Resolver for Names {
    async fn forward(&self, name: &str, _port: u16) -> io::Result<Vec<SocketAddr>> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "Name or service not known"))
    }
    async fn reverse_confirmed(&self, _ip: IpAddr) -> Vec<String> {
        Vec::new()
    }
}

/// Records what it is asked to try; connects to `up` if that is among the attempts, else
/// refuses.
struct Recorder {
    tried: RefCell<Vec<Vec<Attempt>>>,
    up: Option<SocketAddr>,
}

impl Connector for Recorder {
    async fn connect(
        &self,
        attempts: &[Attempt],
        _out: &crate::net::connect::Outgoing,
    ) -> Result<(TcpStream, Attempt), ConnectError> {
        self.tried.borrow_mut().push(attempts.to_vec());
        match attempts.iter().find(|a| Some(a.target) == self.up) {
            Some(a) => Ok((TcpStream::connect(a.target).await.unwrap(), *a)),
            None => Err(ConnectError {
                target: attempts[0].target,
                source: attempts[0].source,
                error: io::Error::from_raw_os_error(libc::ECONNREFUSED),
            }),
        }
    }
}

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn client() -> Client {
    Client {
        peer: a("127.0.0.1:40000"),
        via: None,
        probe: false,
        local: a("127.0.0.1:1080"),
        crule: RuleRef::default(),
        names: Vec::new(),
        who: None,
        accept_who: None,
        pending_pam: None,
        slots: Default::default(),
        wrap_fd: None,
        route_creds: None,
        route_link: None,
        inherits: true,
        tally: Default::default(),
    }
}

fn request(version: u8, target: TargetAddr) -> Request {
    Request {
        version,
        command: Cmd::Connect,
        target,
        method: Method::None,
        user: None,
        groups: Vec::new(),
        flag: 0,
    }
}

/// Runs the request path; returns its outcome and what the client was sent.
async fn run(
    names: &Names,
    connector: &Recorder,
    req: Request,
) -> (Option<Connected>, Vec<u8>, DuplexStream) {
    let (s, _) = Settings::build("test.conf", CONFIG.to_string(), 1, Flags::default()).unwrap();
    let (mut client_end, server_end) = duplex(4096);
    let mut wire = Wire::new(server_end);
    let out = establish(&mut wire, &s, names, connector, &client(), &req).await;
    drop(wire);
    let mut sent = Vec::new();
    client_end.read_to_end(&mut sent).await.unwrap();
    (out, sent, client_end)
}

#[tokio::test(flavor = "current_thread")]
async fn a_name_that_does_not_resolve_gets_04_and_no_connect() {
    let names = Names(HashMap::new());
    let rec = Recorder {
        tried: RefCell::new(Vec::new()),
        up: None,
    };
    let req = request(5, TargetAddr::Domain("nowhere.test".into(), 80));
    let (out, sent, _) = run(&names, &rec, req).await;
    assert!(out.is_none());
    assert_eq!(sent, [5, 4, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert!(rec.tried.borrow().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn only_the_addresses_a_rule_passes_are_tried() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    let names = Names(HashMap::from([(
        "two.test",
        vec![SocketAddr::new("10.1.2.3".parse().unwrap(), up.port()), up],
    )]));
    let rec = Recorder {
        tried: RefCell::new(Vec::new()),
        up: Some(up),
    };
    let req = request(5, TargetAddr::Domain("two.test".into(), up.port()));
    let (out, sent, _) = run(&names, &rec, req).await;
    let c = out.expect("connected");
    assert_eq!(c.won.target, up);
    assert_eq!(c.rule.number, 2, "the pass rule");
    assert_eq!(c.resolved.name.as_deref(), Some("two.test"));
    let tried = rec.tried.borrow();
    assert_eq!(tried.len(), 1);
    let targets: Vec<SocketAddr> = tried[0].iter().map(|t| t.target).collect();
    assert_eq!(targets, [up], "the blocked 10.1.2.3 is never tried");
    assert_eq!(tried[0][0].source, Some("127.0.0.1".parse().unwrap()));
    assert!(
        sent.is_empty(),
        "the relay, not the mother, writes the success reply"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_target_no_rule_passes_gets_02_and_no_connect() {
    let names = Names(HashMap::new());
    let rec = Recorder {
        tried: RefCell::new(Vec::new()),
        up: None,
    };
    let (out, sent, _) = run(&names, &rec, request(5, TargetAddr::Ip(a("10.9.9.9:80")))).await;
    assert!(out.is_none());
    assert_eq!(sent, [5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert!(rec.tried.borrow().is_empty());
    // SOCKS v4 has one failure code.
    let (out, sent, _) = run(&names, &rec, request(4, TargetAddr::Ip(a("10.9.9.9:80")))).await;
    assert!(out.is_none());
    assert_eq!(sent, [0, 91, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_refused_connect_gets_05() {
    let names = Names(HashMap::new());
    let rec = Recorder {
        tried: RefCell::new(Vec::new()),
        up: None,
    };
    let (out, sent, _) = run(&names, &rec, request(5, TargetAddr::Ip(a("127.0.0.1:9")))).await;
    assert!(out.is_none());
    assert_eq!(sent, [5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(rec.tried.borrow().len(), 1);
}
