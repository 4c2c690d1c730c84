//! rsockd-bench: runs rsockd, danted and microsocks side by side with the direct path, repeats
//! every scenario in interleaved rounds, and prints medians with ratios (a table, then JSON
//! lines). Not a test: no thresholds. See README.md.
//!
//! No `unsafe` here: the system calls the worker roles and the floor make go through safe,
//! inlined wrappers in rsockd-sys (`epoll`, `fdio`, `process`, `privs`, `sockopt`).

#![forbid(unsafe_code)]

mod args;
mod floor;
mod hold;
mod paced;
mod procs;
mod scenarios;
mod socks;
mod workers;

use std::collections::BTreeMap;
use std::path::PathBuf;

use scenarios::Sample;

struct Args {
    rounds: usize,
    quick: bool,
    scenarios: Vec<String>,
    rsockd: PathBuf,
    udp_flows: usize,
    udp_window: usize,
    /// Sessions held by `idle` and `scale` (None: the default for a full or a --quick run).
    idle_sessions: Option<u64>,
    scale_sessions: Option<u64>,
    /// Exit 1 when a proxy does not start or a scenario fails (the CI smoke run).
    strict: bool,
    /// Only these proxies (None: all), to profile one server under the same load.
    proxies: Option<Vec<String>>,
    /// Seconds each proxy runs `rate` and `rate-auth` (None: 3, or 0.5 with --quick); longer
    /// runs leave time to attach a profiler.
    rate_secs: Option<f64>,
}

fn usage() -> ! {
    eprintln!(
        "usage: rsockd-bench [--rounds N] [--quick] [--scenarios udp,bind] [--rsockd PATH]\n\
         \x20      [--proxies rsockd,danted] [--rate-secs S (3)]\n\
         \x20      [--udp-flows N (4)] [--udp-window N (16)] [--strict]\n\
         \x20      [--idle-sessions N (10000; 1000 with --quick)]\n\
         \x20      [--scale-sessions N (100000; 5000 with --quick)]\n\
         Scenarios: bulk1, bulk8 (1 or 8 streams through an echo target, every byte checked),\n\
         rate (50 workers: connect + CONNECT + 64-byte echo + close), rate-auth (the same with\n\
         username/password: a system account, and rsockd's own password file), latency (32-byte\n\
         echoes on one session), udp (datagram round trips), bind (BIND set-up), idle and scale\n\
         (that many sessions held at once, then all echo: memory per session), bw1, bw10, bw100\n\
         (1, 10 or 100 sessions through a rule with bandwidth: 50 MB/s; not run by default)."
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let own = std::env::current_exe().unwrap_or_default();
    let mut a = Args {
        rounds: 3,
        quick: false,
        // `rate` last: it leaves tens of thousands of TIME_WAIT sockets on ephemeral ports of
        // 127.0.0.1 behind, and danted binds each outgoing socket to a port of its own, so
        // idle and scale go before it (they leave theirs on listening ports: see hold.rs).
        scenarios: [
            "bulk1",
            "bulk8",
            "latency",
            "udp",
            "bind",
            "idle",
            "scale",
            "rate",
            "rate-auth",
        ]
        .map(String::from)
        .to_vec(),
        rsockd: own.with_file_name("rsockd"),
        udp_flows: 4,
        udp_window: 16,
        idle_sessions: None,
        scale_sessions: None,
        strict: false,
        proxies: None,
        rate_secs: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--rounds" => {
                a.rounds = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--quick" => a.quick = true,
            "--rate-secs" => {
                a.rate_secs = match it.next().and_then(|v| v.parse().ok()) {
                    Some(v) if (0.1..=600.0).contains(&v) => Some(v),
                    _ => usage(),
                }
            }
            "--proxies" => {
                let v: Vec<String> = it
                    .next()
                    .unwrap_or_else(|| usage())
                    .split(',')
                    .map(String::from)
                    .collect();
                if let Some(bad) = v.iter().find(|p| !PROXIES.contains(&p.as_str())) {
                    eprintln!("unknown proxy {bad}; known: {}", PROXIES.join(","));
                    usage()
                }
                a.proxies = Some(v);
            }
            "--strict" => a.strict = true,
            "--scenarios" => {
                a.scenarios = it
                    .next()
                    .unwrap_or_else(|| usage())
                    .split(',')
                    .map(str::to_string)
                    .collect()
            }
            "--udp-flows" => {
                a.udp_flows = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--udp-window" => {
                a.udp_window = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--idle-sessions" => a.idle_sessions = Some(sessions(it.next())),
            "--scale-sessions" => a.scale_sessions = Some(sessions(it.next())),
            "--rsockd" => a.rsockd = PathBuf::from(it.next().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    a
}

/// A count of sessions for `idle` or `scale`, within what the address plan holds.
fn sessions(v: Option<String>) -> u64 {
    match v.and_then(|v| v.parse().ok()) {
        Some(n) if (1..=hold::MAX_SESSIONS).contains(&n) => n,
        _ => {
            eprintln!("sessions: 1 to {}", hold::MAX_SESSIONS);
            usage()
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Which proxies speak which scenario (microsocks has neither UDP nor BIND). The rsockd engine
/// variants (64 KiB pipes, read/write) only matter where bytes flow in bulk. The floor runs
/// `rate` and `latency` only: it has neither UDP nor BIND, holding sessions is not what it
/// measures, and its read/write relay would be no floor for rsockd's splice in bulk.
fn supports(proxy: &str, scenario: &str) -> bool {
    if proxy == "floor" {
        return scenario == "rate" || scenario == "latency";
    }
    if proxy == "rsockd-max" || proxy == "rsockd-pp2" {
        return scenario == "rate";
    }
    if proxy == "rsockd-chain" || proxy == "danted-chain" {
        return scenario == "rate" || scenario == "bulk8";
    }
    if proxy == "rsockd-nocount" {
        return scenario == "rate" || scenario == "bulk8";
    }
    if proxy == "rsockd-metrics" {
        return scenario == "rate" || scenario == "bulk8" || scenario == "scale";
    }
    if scenario.starts_with("bw") {
        return proxy == "rsockd-bw";
    }
    if proxy == "rsockd-bw" {
        return false;
    }
    if proxy == "rsockd-pipe64k" || proxy == "rsockd-copy" {
        return scenario == "bulk1" || scenario == "bulk8";
    }
    !(proxy == "microsocks" && (scenario == "udp" || scenario == "bind"))
}

/// The order the proxies run a scenario in: as listed, except that danted goes first in idle
/// and scale. It binds each outgoing socket to a port of its own, which a TIME_WAIT socket on
/// that port forbids, and the sessions another proxy refuses when it tops out can leave
/// thousands of those behind (rsockd closes the target connection it had opened).
fn run_order<'a>(scenario: &str, names: &'a [String]) -> Vec<&'a String> {
    let mut order: Vec<&String> = names.iter().collect();
    if scenario == "idle" || scenario == "scale" {
        order.sort_by_key(|n| n.as_str() != "danted");
    }
    order
}

/// The proxies under test, by the names the tables use.
/// `rsockd` relays by splice(2) through 1 MiB pipes; `rsockd-pipe64k` and `rsockd-copy` are the
/// same server with 64 KiB pipes and with read/write, for the bulk scenarios only. `floor` is
/// the least any SOCKS5 server can do per session (floor.rs), in `rate` and `latency` only.
/// `rsockd-max` has `session.max` and `session.throttle` in its socks rule, in `rate` only:
/// what a limited rule costs per session. `rsockd-bw` has `bandwidth:` (paced.rs), in the
/// `bw1`, `bw10` and `bw100` scenarios only, which no other proxy runs. `rsockd-pp2` trusts
/// the load generator as a balancer (`rsockd.proxyprotocol.from`), which sends a PROXY v2
/// header first, in `rate` only: what the header costs per session. `rsockd-nocount` keeps no
/// server totals (`RSOCKD_COUNTERS=off`) and `rsockd-metrics` has an admin port scraped once a
/// second, in `rate` and `bulk8`: what counting and serving `/metrics` cost beside `rsockd`;
/// `rsockd-metrics` also holds the `scale` sessions and times scrapes of them.
/// `rsockd-chain` and `danted-chain` send every session through a microsocks upstream of their
/// own (a `route { via: }`), in `rate` and `bulk8`: what server chaining costs.
const PROXIES: [&str; 14] = [
    "rsockd",
    "rsockd-nocount",
    "rsockd-metrics",
    "rsockd-N2",
    "rsockd-max",
    "rsockd-pp2",
    "rsockd-bw",
    "danted",
    "microsocks",
    "floor",
    "rsockd-pipe64k",
    "rsockd-copy",
    "rsockd-chain",
    "danted-chain",
];

/// The `latency` servers take turns in this many slices of the echoes.
const LATENCY_SLICES: usize = 20;

/// Starts one proxy (the rate-auth variants are started by closures over the bench user).
type Starter<'a> = dyn Fn() -> Result<procs::Proxy, String> + 'a;

fn start_proxy(name: &str, rsockd: &std::path::Path) -> Result<procs::Proxy, String> {
    match name {
        "rsockd" => procs::rsockd(rsockd, 1),
        "rsockd-N2" => procs::rsockd(rsockd, 2),
        "rsockd-max" => procs::rsockd_limited(rsockd),
        "rsockd-pp2" => procs::rsockd_behind_balancer(rsockd),
        "rsockd-nocount" => procs::rsockd_uncounted(rsockd),
        "rsockd-metrics" => procs::rsockd_scraped(rsockd),
        "rsockd-bw" => procs::rsockd_paced(rsockd, paced::LIMIT),
        "rsockd-pipe64k" => procs::rsockd_engine(rsockd, "rsockd-pipe64k", "64k"),
        "rsockd-copy" => procs::rsockd_engine(rsockd, "rsockd-copy", "copy"),
        "danted" => procs::danted(),
        "rsockd-chain" | "danted-chain" => {
            let n = if name == "danted-chain" {
                "danted-chain"
            } else {
                "rsockd-chain"
            };
            procs::chained(rsockd, n)
        }
        "microsocks" => procs::microsocks(),
        // The floor is this binary, re-executed.
        "floor" => std::env::current_exe()
            .map_err(|e| format!("floor: cannot find the bench binary: {e}"))
            .and_then(|bin| procs::floor(&bin)),
        other => Err(format!("unknown proxy {other}")),
    }
}

/// After `idle` or `scale` a proxy is replaced by a fresh one: what it grew to hold the
/// sessions must not bleed into later scenarios (danted keeps its hundreds of forked
/// children, and their upkeep tripled its CPU per session in `rate`). False if it could not
/// be restarted (it is then gone).
fn restart(proxies: &mut Vec<procs::Proxy>, name: &str, rsockd: &std::path::Path) -> bool {
    let Some(i) = proxies.iter().position(|p| p.name == name) else {
        return true;
    };
    // The old one goes first: its processes and port.
    drop(proxies.remove(i));
    match start_proxy(name, rsockd) {
        Ok(p) => {
            proxies.insert(i, p);
            true
        }
        Err(e) => {
            eprintln!("{name}: cannot restart: {e}");
            false
        }
    }
}

fn main() {
    // The idle and scale scenarios' load generators and targets are this binary, re-executed.
    workers::run_if_asked();
    let args = parse_args();
    if !args.rsockd.exists() {
        eprintln!(
            "rsockd binary not found at {} (build it with `cargo build --release`, or pass --rsockd)",
            args.rsockd.display()
        );
        std::process::exit(1);
    }
    let mut failures = 0;
    let mut proxies = Vec::new();
    // The chained pair starts two servers each: only when asked for by name.
    let wanted = |n: &str| match args.proxies.as_ref() {
        Some(v) => v.iter().any(|p| p == n),
        None => !n.ends_with("-chain"),
    };
    for name in PROXIES.into_iter().filter(|n| wanted(n)) {
        match start_proxy(name, &args.rsockd) {
            Ok(p) => proxies.push(p),
            Err(e) => {
                eprintln!("skipped: {e}");
                failures += 1;
            }
        }
    }
    let echo = match scenarios::udp_echo() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot start the UDP echo server: {e}");
            std::process::exit(1);
        }
    };
    let tcp_echo = match scenarios::tcp_echo() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot start the TCP echo server: {e}");
            std::process::exit(1);
        }
    };
    let sink = match paced::sink() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start the sink: {e}");
            std::process::exit(1);
        }
    };
    let bulk_target = match scenarios::bulk_target() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot start the bulk target: {e}");
            std::process::exit(1);
        }
    };
    // Username/password: the same system account for rsockd and danted, plus rsockd with our
    // own password file and microsocks with its built-in user.
    let auth = if args.scenarios.iter().any(|s| s == "rate-auth") {
        match procs::BenchUser::create() {
            Ok(user) => {
                let mut ps = Vec::new();
                // danted first: it binds each outgoing socket to a port of its own, so it must
                // not follow the others' TIME_WAIT sockets.
                let starts: [(&str, &Starter); 5] = [
                    ("danted", &procs::danted_auth),
                    ("rsockd", &|| {
                        procs::rsockd_auth(&args.rsockd, &user, false, 1)
                    }),
                    ("rsockd", &|| {
                        procs::rsockd_auth(&args.rsockd, &user, true, 1)
                    }),
                    ("rsockd-N2", &|| {
                        procs::rsockd_auth(&args.rsockd, &user, true, 2)
                    }),
                    ("microsocks", &|| procs::microsocks_auth(&user)),
                ];
                for (_, start) in starts.iter().filter(|(n, _)| wanted(n)) {
                    match start() {
                        Ok(p) => ps.push(p),
                        Err(e) => {
                            eprintln!("skipped: {e}");
                            failures += 1;
                        }
                    }
                }
                Some((user, ps))
            }
            Err(e) => {
                eprintln!("rate-auth skipped: {e}");
                failures += 1;
                None
            }
        }
    } else {
        None
    };
    let (udp_secs, bind_n) = if args.quick { (0.5, 30) } else { (3.0, 300) };
    // Bulk: 1 GiB each way in total, split over the streams.
    let bulk_bytes: u64 = if args.quick { 16 << 20 } else { 1 << 30 };
    let (rate_secs, latency_n) = if args.quick {
        (0.5, 200)
    } else {
        (3.0, 20_000)
    };
    let rate_secs = args.rate_secs.unwrap_or(rate_secs);
    let idle_n = args
        .idle_sessions
        .unwrap_or(if args.quick { 1000 } else { 10_000 });
    let scale_n = args
        .scale_sessions
        .unwrap_or(if args.quick { 5000 } else { 100_000 });
    // (scenario, proxy) -> samples
    let mut results: BTreeMap<(String, String), Vec<Sample>> = BTreeMap::new();
    let names: Vec<String> = proxies
        .iter()
        .map(|p| p.name.to_string())
        .chain(["direct".to_string()])
        .collect();
    for round in 0..args.rounds {
        if round > 0
            && !args.quick
            && args
                .scenarios
                .iter()
                .any(|s| s == "rate" || s == "rate-auth")
        {
            // Let the last round's TIME_WAIT sockets expire: danted binds every outgoing socket
            // to a port of its own and would start the round with none left.
            eprintln!("cooling down 60 s (TIME_WAIT)");
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
        eprintln!("round {}/{}", round + 1, args.rounds);
        for sc in &args.scenarios {
            if sc == "rate-auth" {
                let Some((user, auth)) = &auth else { continue };
                if !args.quick && args.scenarios.iter().any(|s| s == "rate") {
                    eprintln!("cooling down 60 s (TIME_WAIT of rate)");
                    std::thread::sleep(std::time::Duration::from_secs(60));
                }
                for p in auth {
                    let cpu = || p.cpu();
                    let client = socks::Client {
                        creds: user.creds(),
                        proxy_header: false,
                    };
                    let r = scenarios::rate(Some(p.addr), tcp_echo, 50, rate_secs, &cpu, &client);
                    record(&mut results, &mut failures, sc, p.name, r);
                }
                continue;
            }
            if sc == "latency" {
                // The servers take turns within the scenario (see scenarios::latency).
                let present: Vec<(&String, Option<&procs::Proxy>)> = names
                    .iter()
                    .filter(|n| supports(n, sc))
                    .map(|n| (n, proxies.iter().find(|p| p.name == n.as_str())))
                    .filter(|(n, p)| p.is_some() || n.as_str() == "direct")
                    .collect();
                let clocks: Vec<Box<dyn Fn() -> f64>> = present
                    .iter()
                    .map(|(_, p)| -> Box<dyn Fn() -> f64> {
                        match p {
                            Some(p) => Box::new(move || p.cpu()),
                            None => Box::new(|| 0.0),
                        }
                    })
                    .collect();
                let cs: Vec<scenarios::Contender<'_>> = present
                    .iter()
                    .zip(&clocks)
                    .map(|((_, p), cpu)| scenarios::Contender {
                        addr: p.map(|p| p.addr),
                        cpu: cpu.as_ref(),
                    })
                    .collect();
                let samples = scenarios::latency(&cs, tcp_echo, latency_n, LATENCY_SLICES);
                for ((name, _), r) in present.iter().zip(samples) {
                    record(&mut results, &mut failures, sc, name, r);
                }
                continue;
            }
            for name in run_order(sc, &names) {
                if !supports(name, sc) {
                    continue;
                }
                let p = proxies.iter().find(|p| p.name == name.as_str());
                if p.is_none() && name != "direct" {
                    // Gone: it could not be restarted after idle or scale.
                    continue;
                }
                let addr = p.map(|p| p.addr);
                let cpu = || p.map_or(0.0, |p| p.cpu());
                let memory = || p.and_then(|p| p.memory_kib());
                let r = match sc.as_str() {
                    "bulk1" => scenarios::bulk(addr, bulk_target, 1, bulk_bytes, &cpu),
                    "bulk8" => scenarios::bulk(addr, bulk_target, 8, bulk_bytes / 8, &cpu),
                    "rate" => {
                        let client = socks::Client {
                            creds: None,
                            proxy_header: name == "rsockd-pp2",
                        };
                        scenarios::rate(addr, tcp_echo, 50, rate_secs, &cpu, &client)
                    }
                    "udp" => scenarios::udp(
                        addr,
                        echo.addr,
                        args.udp_flows,
                        args.udp_window,
                        64,
                        udp_secs,
                        &cpu,
                    ),
                    "bind" => scenarios::bind(addr, bind_n, &cpu),
                    "bw1" => paced::paced(addr, &sink, 1, rate_secs, &cpu),
                    "bw10" => paced::paced(addr, &sink, 10, rate_secs, &cpu),
                    "bw100" => paced::paced(addr, &sink, 100, rate_secs, &cpu),
                    "idle" | "scale" => {
                        let n = if sc == "idle" { idle_n } else { scale_n };
                        // rsockd-metrics is scraped while it holds them: the cost of a scrape
                        // of a full server.
                        let admin = p.and_then(|p| p.admin);
                        let probe = || admin.map(|a| scrape_cost(a, n, &cpu));
                        hold::hold(&format!("{sc}/{name}"), addr, n, &cpu, &memory, &probe)
                    }
                    other => Err(format!("unknown scenario {other}")),
                };
                record(&mut results, &mut failures, sc, name, r);
                if (sc == "idle" || sc == "scale") && !restart(&mut proxies, name, &args.rsockd) {
                    failures += 1;
                }
            }
        }
    }
    let mut all_names = names.clone();
    // rate-auth's extra rows (a name without results prints no row).
    all_names.insert(1, "rsockd-file".to_string());
    all_names.insert(2, "rsockd-file-N2".to_string());
    // The proxies go before the user they authenticate as is removed.
    drop(auth);
    report(&args.scenarios, &all_names, &results, &|sc| match sc {
        "idle" => idle_n,
        _ => scale_n,
    });
    if args.strict && failures > 0 {
        eprintln!("{failures} failure(s)");
        std::process::exit(1);
    }
}

/// The server's CPU-ms per `/metrics` scrape, over 20 scrapes in a row (its CPU clock ticks
/// in 10 ms, too coarse for one), and the body's size, printed as a note. Whatever else the
/// process tree does meanwhile counts too: an upper bound.
fn scrape_cost(admin: std::net::SocketAddr, held: u64, cpu: &dyn Fn() -> f64) {
    const SCRAPES: u32 = 20;
    let mut size = 0;
    let t0 = std::time::Instant::now();
    let before = cpu();
    for _ in 0..SCRAPES {
        match procs::scrape(admin) {
            Ok(n) => size = n,
            Err(e) => {
                eprintln!("scrape while holding sessions: {e}");
                return;
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64() * 1000.0 / f64::from(SCRAPES);
    // The clock is read from /proc: let the last tick land.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let ms = (cpu() - before) * 1000.0 / f64::from(SCRAPES);
    println!(
        "note: a /metrics scrape of rsockd-metrics holding {held} sessions: {ms:.2} ms CPU and \
         {wall:.2} ms wall each (over {SCRAPES}), {size} bytes"
    );
}

type Results = BTreeMap<(String, String), Vec<Sample>>;

/// Keeps a sample of (scenario, proxy), or reports and counts its failure.
fn record(
    results: &mut Results,
    failures: &mut u32,
    sc: &str,
    name: &str,
    r: Result<Sample, String>,
) {
    match r {
        Ok(s) => results
            .entry((sc.to_string(), name.to_string()))
            .or_default()
            .push(s),
        Err(e) => {
            eprintln!("{sc}/{name}: {e}");
            *failures += 1;
        }
    }
}

/// The median over the rounds of one number of (scenario, proxy).
fn med_of(results: &Results, sc: &str, name: &str, f: &dyn Fn(&Sample) -> f64) -> f64 {
    let mut v: Vec<f64> = results
        .get(&(sc.to_string(), name.to_string()))
        .map(|s| s.iter().map(f).collect())
        .unwrap_or_default();
    median(&mut v)
}

/// A JSON number, or null for NaN (no such number: memory of the direct path).
fn json_num(x: f64, prec: usize) -> String {
    if x.is_nan() {
        "null".into()
    } else {
        format!("{x:.prec$}")
    }
}

/// The table of `idle` or `scale` (`asked` sessions) and its JSON lines.
fn report_held(sc: &str, asked: u64, names: &[String], results: &Results, json: &mut Vec<String>) {
    let med = |name: &str, f: &dyn Fn(&Sample) -> f64| med_of(results, sc, name, f);
    let held = |name: &str, f: &dyn Fn(&scenarios::Held) -> f64| {
        med(name, &|s| s.held.as_ref().map_or(f64::NAN, f))
    };
    println!("\n## {sc}: {asked} sessions asked for (medians)");
    println!(
        "| proxy | sessions held | echoed OK | RSS KiB/session | PSS KiB/session | RSS KiB/session after echo | proxy CPU-µs/session | s to establish | proxy processes |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let kib = |x: f64| {
        if x.is_nan() {
            "n/a".to_string()
        } else {
            format!("{x:.2}")
        }
    };
    for name in names {
        let Some(runs) = results.get(&(sc.to_string(), name.clone())) else {
            continue;
        };
        let sessions = med(name, &|s| s.rate);
        let echoed = held(name, &|h| h.echoed);
        let (rss, pss) = (held(name, &|h| h.rss_kib), held(name, &|h| h.pss_kib));
        let rss_echo = held(name, &|h| h.rss_echo_kib);
        let open_s = held(name, &|h| h.open_secs);
        let procs = held(name, &|h| h.procs);
        let cpu = if name == "direct" {
            f64::NAN
        } else {
            med(name, &|s| s.cpu_us_per_op)
        };
        let failed: u64 = runs.iter().map(|s| s.failed).sum();
        println!(
            "| {name} | {sessions:.0} | {echoed:.0} | {} | {} | {} | {} | {open_s:.1} | {} |",
            kib(rss),
            kib(pss),
            kib(rss_echo),
            if cpu.is_nan() {
                "-".into()
            } else {
                format!("{cpu:.1}")
            },
            if procs.is_nan() {
                "-".into()
            } else {
                format!("{procs:.0}")
            },
        );
        json.push(format!(
            "{{\"scenario\":\"{sc}\",\"proxy\":\"{name}\",\"unit\":\"sessions held\",\"asked\":{asked},\"rate\":{sessions:.0},\"echoed\":{echoed:.0},\"rss_kib_per_session\":{},\"pss_kib_per_session\":{},\"rss_kib_per_session_after_echo\":{},\"open_s\":{open_s:.2},\"processes\":{},\"cpu\":{},\"cpu_unit\":\"CPU-µs/session\",\"failed\":{failed},\"runs\":{}}}",
            json_num(rss, 3),
            json_num(pss, 3),
            json_num(rss_echo, 3),
            json_num(procs, 0),
            json_num(cpu, 3),
            runs.len()
        ));
    }
}

fn report(scenarios: &[String], names: &[String], results: &Results, asked: &dyn Fn(&str) -> u64) {
    let med = |sc: &str, name: &str, f: &dyn Fn(&Sample) -> f64| med_of(results, sc, name, f);
    let mut json = Vec::new();
    for sc in scenarios {
        if sc == "idle" || sc == "scale" {
            report_held(sc, asked(sc), names, results, &mut json);
            continue;
        }
        let (unit, lat, cpu_unit) = match sc.as_str() {
            "bulk1" | "bulk8" => ("Gbit/s", false, "CPU-s/GiB"),
            "rate" | "rate-auth" => ("sessions/s", true, "CPU-µs/session"),
            "latency" => ("echoes/s", true, "CPU-µs/echo"),
            "udp" => ("round trips/s", false, "CPU-µs/round trip"),
            "bind" => ("set-ups/s", true, "CPU-µs/set-up"),
            "bw1" | "bw10" | "bw100" => ("MB/s (limit 50)", false, "CPU-µs/MB"),
            _ => ("ops/s", false, "CPU-µs/op"),
        };
        println!("\n## {sc} (medians)");
        println!(
            "| proxy | {unit} | vs direct | vs danted | p50 µs | p99 µs | proxy {cpu_unit} | CPU vs danted | failed |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        let direct = med(sc, "direct", &|s| s.rate);
        let dante = med(sc, "danted", &|s| s.rate);
        let dante_cpu = med(sc, "danted", &|s| s.cpu_us_per_op);
        for name in names {
            if !results.contains_key(&(sc.clone(), name.clone())) {
                continue;
            }
            let rate = med(sc, name, &|s| s.rate);
            let cpu = med(sc, name, &|s| s.cpu_us_per_op);
            let (p50, p99) = if lat {
                (med(sc, name, &|s| s.p50_us), med(sc, name, &|s| s.p99_us))
            } else {
                (f64::NAN, f64::NAN)
            };
            let fmt = |x: f64| {
                if x.is_nan() {
                    "-".to_string()
                } else {
                    format!("{x:.0}")
                }
            };
            let ratio = |a: f64, b: f64| {
                if a.is_nan() || b.is_nan() || b == 0.0 {
                    "-".to_string()
                } else {
                    format!("{:.2}×", a / b)
                }
            };
            let is_direct = name == "direct";
            let prec = if rate < 100.0 { 2 } else { 0 };
            let cprec = if cpu < 10.0 { 2 } else { 1 };
            let failed: u64 = results
                .get(&(sc.clone(), name.clone()))
                .map_or(0, |v| v.iter().map(|s| s.failed).sum());
            println!(
                "| {name} | {:.prec$} | {} | {} | {} | {} | {} | {} | {failed} |",
                rate,
                ratio(rate, direct),
                ratio(rate, dante),
                fmt(p50),
                fmt(p99),
                // Zero: less than one clock tick in all (a --quick run), not free.
                if is_direct || cpu == 0.0 {
                    "-".into()
                } else {
                    format!("{cpu:.cprec$}")
                },
                if is_direct {
                    "-".into()
                } else {
                    ratio(cpu, dante_cpu)
                },
            );
            json.push(format!(
                "{{\"scenario\":\"{sc}\",\"proxy\":\"{name}\",\"unit\":\"{unit}\",\"rate\":{rate:.3},\"p50_us\":{},\"p99_us\":{},\"cpu\":{cpu:.3},\"cpu_unit\":\"{cpu_unit}\",\"runs\":{}}}",
                if p50.is_nan() { "null".into() } else { format!("{p50:.1}") },
                if p99.is_nan() { "null".into() } else { format!("{p99:.1}") },
                results.get(&(sc.clone(), name.clone())).map_or(0, |v| v.len())
            ));
        }
    }
    println!();
    for j in json {
        println!("{j}");
    }
}
