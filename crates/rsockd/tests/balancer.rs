//! Two rsockd nodes behind a real HAProxy (TCP mode, `send-proxy-v2`, the SOCKS5 `tcp-check`,
//! `agent-check` on `rsockd.agent`), each machine a network namespace of its own: client,
//! balancer, two nodes, target. Checks: sessions land on both nodes and the nodes' rules and
//! lines see the client's address; UDP ASSOCIATE and BIND work through the announced node
//! addresses; SIGKILL of a node while a prober opens a session every 100 ms fails no new
//! session; draining a node through the agent fails no new session and its sessions go on.
//!
//! Skips (passing, with a note) where the machine cannot make namespaces; needs `haproxy`
//! (scripts/deps.sh installs it). Everything it starts is ended by PID, namespaces deleted,
//! whether it passes or not.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::procs::{wait_until, SIGKILL};
use common::*;
use rsockd_testkit::netns::{descendants, Lab};

const LB: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 10);
const N1: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 11);
const N2: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 12);
const TARGET: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 20);
const ECHO_PORT: u16 = 7;
const AGENT_PORT: u16 = 5555;

fn frontend() -> SocketAddr {
    SocketAddr::from((LB, 1080))
}

fn echo_addr() -> SocketAddr {
    SocketAddr::from((TARGET, ECHO_PORT))
}

/// One rsockd node in its namespace.
struct Node {
    child: Child,
    log: PathBuf,
    pidfile: PathBuf,
}

impl Node {
    fn start(lab: &Lab, dir: &Path, name: &str, addr: Ipv4Addr, run: u32) -> Node {
        let log = dir.join(format!("{name}-{run}.log"));
        let conf = dir.join(format!("{name}.conf"));
        let pidfile = dir.join(format!("{name}.pid"));
        std::fs::write(
            &conf,
            format!(
                "logoutput: {log}\n\
                 internal: {addr} port = 1080\nexternal: {addr}\nsocksmethod: none\n\
                 rsockd.proxyprotocol.from: {LB}/32\n\
                 rsockd.agent: {addr} port = {AGENT_PORT}\n\
                 rsockd.announce.udp: {addr}\nrsockd.announce.bind: {addr}\n\
                 client pass {{ from: {CLIENT}/32 to: 0/0 log: connect disconnect error }}\n\
                 client pass {{ from: {LB}/32 to: 0/0 log: connect disconnect error }}\n\
                 client block {{ from: 0/0 to: 0/0 log: connect error }}\n\
                 socks pass {{ from: 0/0 to: 0/0 command: bindreply udpreply log: connect error }}\n\
                 socks pass {{ from: {CLIENT}/32 to: 0/0 log: connect disconnect error }}\n\
                 socks block {{ from: 0/0 to: 0/0 log: connect error }}\n",
                log = log.display()
            ),
        )
        .unwrap();
        let child = lab
            .command(name, BIN)
            .arg("-f")
            .arg(&conf)
            .args(["-N", "2", "-p"])
            .arg(&pidfile)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        lab.track(child.id() as i32);
        let node = Node {
            child,
            log,
            pidfile,
        };
        wait_until(&format!("{name} running"), 30, || {
            node.log_text().contains("rsockd/server[1/2]")
        });
        node
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Accept lines of sessions from the client (not the balancer's checks).
    fn sessions(&self) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains("tcp/accept [: "))
            .count()
    }

    /// The node's own process and everything below it, SIGKILLed at once: the machine died.
    fn kill(&mut self) {
        let root = self.child.id() as i32;
        let mut tree = vec![root];
        tree.extend(descendants(root));
        for p in tree {
            unsafe_free_kill(p, SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// HAProxy in the balancer's namespace, with an admin socket for its view of the servers.
struct Haproxy {
    stats: PathBuf,
}

impl Haproxy {
    fn start(lab: &Lab, dir: &Path) -> Haproxy {
        let stats = dir.join("haproxy.sock");
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n\
                 \tstats socket {stats} mode 600 level admin\n\
                 defaults\n\
                 \tmode tcp\n\
                 \ttimeout connect 1s\n\
                 \ttimeout client 60s\n\
                 \ttimeout server 60s\n\
                 \tretries 3\n\
                 \toption redispatch 1\n\
                 frontend socks\n\
                 \tbind {LB}:1080\n\
                 \tdefault_backend nodes\n\
                 backend nodes\n\
                 \tbalance roundrobin\n\
                 \toption tcp-check\n\
                 \ttcp-check send-binary 050100\n\
                 \ttcp-check expect binary 0500\n\
                 \tdefault-server send-proxy-v2 check inter 200ms fall 1 rise 2 \
                 agent-check agent-port {AGENT_PORT} agent-inter 200ms\n\
                 \tserver n1 {N1}:1080\n\
                 \tserver n2 {N2}:1080\n",
                stats = stats.display()
            ),
        )
        .unwrap();
        let out = std::fs::File::create(dir.join("haproxy.out")).unwrap();
        let child = lab
            .command("lb", "haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        lab.track(child.id() as i32);
        // Reaped by nobody else: a thread waits for it so it never lingers as a zombie.
        thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        Haproxy { stats }
    }

    /// Server name -> status (`UP`, `DOWN`, `DRAIN`, ...) from `show stat`.
    fn status(&self) -> Vec<(String, String)> {
        let Ok(mut s) = UnixStream::connect(&self.stats) else {
            return Vec::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"show stat\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f.first() == Some(&"nodes") && f.len() > 17 && f[1] != "BACKEND")
                    .then(|| (f[1].to_string(), f[17].to_string()))
            })
            .collect()
    }

    fn wait_status(&self, want: &[(&str, &str)], secs: u64) {
        let start = Instant::now();
        loop {
            let st = self.status();
            if want
                .iter()
                .all(|(n, s)| st.iter().any(|(a, b)| a == n && b.starts_with(s)))
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "haproxy's servers: {st:?}, wanted {want:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The TCP echo and a UDP echo on the target machine.
fn start_target(lab: &Lab) {
    let (tcp, udp) = lab.run_in("t", || {
        (
            TcpListener::bind(echo_addr()).unwrap(),
            UdpSocket::bind(echo_addr()).unwrap(),
        )
    });
    thread::spawn(move || {
        for s in tcp.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
        }
    });
}

/// A CONNECT through the balancer to the echo, from the client machine; the stream and the
/// client's own address (how node logs name it).
fn session(lab: &Lab) -> Result<(TcpStream, SocketAddr), String> {
    lab.run_in("c", || -> Result<(TcpStream, SocketAddr), String> {
        let mut s = TcpStream::connect_timeout(&frontend(), Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let SocketAddr::V4(t) = echo_addr() else {
            unreachable!()
        };
        let mut req = vec![5, 1, 0, 5, 1, 0, 1];
        req.extend_from_slice(&t.ip().octets());
        req.extend_from_slice(&t.port().to_be_bytes());
        s.write_all(&req).map_err(|e| format!("request: {e}"))?;
        let mut rep = [0u8; 12];
        s.read_exact(&mut rep).map_err(|e| format!("reply: {e}"))?;
        if rep[..2] != [5, 0] || rep[3] != 0 {
            return Err(format!("refused: {rep:?}"));
        }
        s.write_all(b"ping").map_err(|e| format!("write: {e}"))?;
        let mut back = [0u8; 4];
        s.read_exact(&mut back).map_err(|e| format!("echo: {e}"))?;
        if &back != b"ping" {
            return Err(format!("echo: {back:?}"));
        }
        let me = s.local_addr().map_err(|e| e.to_string())?;
        Ok((s, me))
    })
}

fn still_echoes(s: &mut TcpStream, msg: &[u8]) -> bool {
    if s.write_all(msg).is_err() {
        return false;
    }
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).is_ok() && back == msg
}

/// Opens a new session every 100 ms, `count` times, each under `gate` (so that the test can
/// act between sessions, never during one). Returns (ok, failures with reasons).
fn prober(
    lab: Arc<Lab>,
    gate: Arc<Mutex<()>>,
    count: usize,
    done: Arc<AtomicUsize>,
) -> thread::JoinHandle<(usize, Vec<String>)> {
    thread::spawn(move || {
        let mut ok = 0;
        let mut failed = Vec::new();
        for i in 0..count {
            {
                let _g = gate.lock().unwrap();
                match session(&lab) {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(format!("probe {i}: {e}")),
                }
            }
            done.fetch_add(1, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(100));
        }
        (ok, failed)
    })
}

fn on_node(node: &Node, client: SocketAddr) -> bool {
    node.log_text()
        .contains(&format!("tcp/accept [: {} via ", dante_addr(client)))
}

#[test]
fn two_nodes_behind_haproxy_with_proxy_protocol_failover_and_drain() {
    if !rsockd_testkit::is_root() {
        eprintln!("skipped: namespaces need root");
        return;
    }
    assert!(
        tool("haproxy"),
        "haproxy is not installed: run scripts/deps.sh (Debian package haproxy)"
    );
    let hosts = [
        ("c", CLIENT),
        ("lb", LB),
        ("n1", N1),
        ("n2", N2),
        ("t", TARGET),
    ];
    let lab = match Lab::new("rb", &hosts) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("skipped: this machine cannot make network namespaces: {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    start_target(&lab);
    let mut n1 = Node::start(&lab, dir.path(), "n1", N1, 1);
    let n2 = Node::start(&lab, dir.path(), "n2", N2, 1);
    let hap = Haproxy::start(&lab, dir.path());
    hap.wait_status(&[("n1", "UP"), ("n2", "UP")], 30);

    // 1. Sessions land on both nodes, which see the client's address through the header
    // (their socks rules block everything but the client, the balancer included; client
    // rules let the balancer's health checks in, and those leave no info line).
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(session(&lab).unwrap());
    }
    let (a, b) = (n1.sessions(), n2.sessions());
    assert_eq!(a + b, 10, "health checks leave no accept lines");
    assert!(a >= 3 && b >= 3, "round robin over both nodes: {a} and {b}");
    for n in [&n1, &n2] {
        let t = n.log_text();
        assert!(t.contains(&format!("tcp/accept [: {CLIENT}.")), "{t}");
        assert!(t.contains(&format!(" via {LB}.")), "{t}");
        assert!(!t.contains("block("), "nothing refused:\n{t}");
    }

    // 2. UDP ASSOCIATE: the reply names the node itself; datagrams go there directly.
    let (udp_ok, relay_ip) = lab.run_in("c", || {
        let mut ctl = TcpStream::connect(frontend()).unwrap();
        ctl.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let udp = UdpSocket::bind((CLIENT, 0)).unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let SocketAddr::V4(me) = udp.local_addr().unwrap() else {
            unreachable!()
        };
        let mut req = vec![5, 1, 0, 5, 3, 0, 1];
        req.extend_from_slice(&me.ip().octets());
        req.extend_from_slice(&me.port().to_be_bytes());
        ctl.write_all(&req).unwrap();
        let mut sel = [0u8; 2];
        ctl.read_exact(&mut sel).unwrap();
        let (rep, relay) = read_socks5_reply_bound(&mut ctl);
        assert_eq!(rep, 0);
        let relay = relay.unwrap();
        let mut d = vec![0, 0, 0, 1];
        d.extend_from_slice(&TARGET.octets());
        d.extend_from_slice(&ECHO_PORT.to_be_bytes());
        d.extend_from_slice(b"datagram");
        udp.send_to(&d, relay).unwrap();
        let mut buf = [0u8; 256];
        let n = udp.recv(&mut buf).unwrap_or(0);
        (n >= 10 && buf[10..n] == *b"datagram", relay.ip())
    });
    assert!(udp_ok, "the datagram's echo came back through the node");
    assert!(relay_ip == N1 || relay_ip == N2, "announced {relay_ip}");

    // 3. BIND: the first reply names the node; the target connects there.
    let (ctl, bnd) = lab.run_in("c", || {
        let mut ctl = TcpStream::connect(frontend()).unwrap();
        ctl.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = vec![5, 1, 0, 5, 2, 0, 1];
        req.extend_from_slice(&TARGET.octets());
        req.extend_from_slice(&0u16.to_be_bytes());
        ctl.write_all(&req).unwrap();
        let mut sel = [0u8; 2];
        ctl.read_exact(&mut sel).unwrap();
        let (rep, bnd) = read_socks5_reply_bound(&mut ctl);
        assert_eq!(rep, 0);
        (ctl, bnd.unwrap())
    });
    assert!(bnd.ip() == N1 || bnd.ip() == N2, "announced {bnd}");
    let mut peer = lab.run_in("t", move || TcpStream::connect(bnd).unwrap());
    let mut ctl = ctl;
    let (rep, _) = read_socks5_reply_bound(&mut ctl);
    assert_eq!(rep, 0, "second BIND reply");
    peer.write_all(b"from the peer").unwrap();
    let mut got = [0u8; 13];
    ctl.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"from the peer");

    // 4. SIGKILL of node 1 while a new session opens every 100 ms: none fails.
    let on_n2: Vec<usize> = (0..held.len())
        .filter(|&i| on_node(&n2, held[i].1))
        .collect();
    assert!(!on_n2.is_empty());
    let gate = Arc::new(Mutex::new(()));
    let done = Arc::new(AtomicUsize::new(0));
    let probes = prober(lab.clone(), gate.clone(), 40, done.clone());
    wait_until("10 probes", 30, || done.load(Ordering::SeqCst) >= 10);
    {
        let _g = gate.lock().unwrap();
        n1.kill();
    }
    let (ok, failed) = probes.join().unwrap();
    assert!(failed.is_empty(), "new sessions failed: {failed:?}");
    assert_eq!(ok, 40);
    eprintln!("failover: {ok} of 40 probe sessions succeeded across the SIGKILL of node 1");
    for &i in &on_n2 {
        assert!(
            still_echoes(&mut held[i].0, b"node 2 untouched"),
            "a session on node 2 survives node 1's death"
        );
    }
    hap.wait_status(&[("n1", "DOWN")], 10);

    // 5. Node 1 back, then node 2 drained through its agent: no new session fails, none
    // lands on node 2, and its running sessions go on.
    n1 = Node::start(&lab, dir.path(), "n1", N1, 2);
    hap.wait_status(&[("n1", "UP"), ("n2", "UP")], 30);
    let order = std::process::Command::new(BIN)
        .arg("--drain")
        .arg("-p")
        .arg(&n2.pidfile)
        .output()
        .unwrap();
    assert!(order.status.success(), "{order:?}");
    hap.wait_status(&[("n2", "DRAIN")], 10);
    let before = n2.sessions();
    let done = Arc::new(AtomicUsize::new(0));
    let probes = prober(lab.clone(), gate, 20, done);
    let (ok, failed) = probes.join().unwrap();
    assert!(
        failed.is_empty(),
        "new sessions failed while draining: {failed:?}"
    );
    assert_eq!(ok, 20);
    assert_eq!(n2.sessions(), before, "no new session on the drained node");
    eprintln!("drain: {ok} of 20 probe sessions succeeded, all on node 1");
    for &i in &on_n2 {
        assert!(still_echoes(&mut held[i].0, b"drained, still served"));
    }
    let (s, me) = held.swap_remove(on_n2[0]);
    drop(s);
    wait_until(
        "the drained node's session to end with its line",
        10,
        || {
            n2.log_text()
                .lines()
                .any(|l| l.contains("tcp/connect ]: ") && l.contains(&dante_addr(me)))
        },
    );
    drop(held);
    drop(n1);
    drop(n2);
}
