//! rsockd-bench: runs rsockd, danted and microsocks side by side with the direct path, repeats
//! every scenario in interleaved rounds, and prints medians with ratios (a table, then JSON
//! lines). Not a test: no thresholds. See README.md.

mod procs;
mod scenarios;
mod socks;

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
    /// Exit 1 when a proxy does not start or a scenario fails (the CI smoke run).
    strict: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: rsockd-bench [--rounds N] [--quick] [--scenarios udp,bind] [--rsockd PATH]\n\
         \x20      [--udp-flows N (4)] [--udp-window N (16)] [--strict]\n\
         Scenarios: udp (datagram round trips/s and CPU per datagram), bind (BIND set-up time)."
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let own = std::env::current_exe().unwrap_or_default();
    let mut a = Args {
        rounds: 3,
        quick: false,
        scenarios: vec!["udp".into(), "bind".into()],
        rsockd: own.with_file_name("rsockd"),
        udp_flows: 4,
        udp_window: 16,
        strict: false,
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
            "--rsockd" => a.rsockd = PathBuf::from(it.next().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    a
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Which proxies speak which scenario (microsocks has neither UDP nor BIND).
fn supports(proxy: &str, scenario: &str) -> bool {
    !(proxy == "microsocks" && (scenario == "udp" || scenario == "bind"))
}

fn main() {
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
    for start in [
        &(|| procs::rsockd(&args.rsockd, 1)) as &dyn Fn() -> Result<procs::Proxy, String>,
        &|| procs::rsockd(&args.rsockd, 2),
        &procs::danted,
        &procs::microsocks,
    ] {
        match start() {
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
    let (udp_secs, bind_n) = if args.quick { (0.5, 30) } else { (3.0, 300) };
    // (scenario, proxy) -> samples
    let mut results: BTreeMap<(String, String), Vec<Sample>> = BTreeMap::new();
    let names: Vec<String> = proxies
        .iter()
        .map(|p| p.name.to_string())
        .chain(["direct".to_string()])
        .collect();
    for round in 0..args.rounds {
        eprintln!("round {}/{}", round + 1, args.rounds);
        for sc in &args.scenarios {
            for name in &names {
                if !supports(name, sc) {
                    continue;
                }
                let p = proxies.iter().find(|p| p.name == name.as_str());
                let addr = p.map(|p| p.addr);
                let cpu = || p.map_or(0.0, |p| p.cpu());
                let r = match sc.as_str() {
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
                    other => Err(format!("unknown scenario {other}")),
                };
                match r {
                    Ok(s) => results
                        .entry((sc.clone(), name.clone()))
                        .or_default()
                        .push(s),
                    Err(e) => {
                        eprintln!("{sc}/{name}: {e}");
                        failures += 1;
                    }
                }
            }
        }
    }
    report(&args.scenarios, &names, &results);
    if args.strict && failures > 0 {
        eprintln!("{failures} failure(s)");
        std::process::exit(1);
    }
}

fn report(
    scenarios: &[String],
    names: &[String],
    results: &BTreeMap<(String, String), Vec<Sample>>,
) {
    let med = |sc: &str, name: &str, f: &dyn Fn(&Sample) -> f64| -> f64 {
        let mut v: Vec<f64> = results
            .get(&(sc.to_string(), name.to_string()))
            .map(|s| s.iter().map(f).collect())
            .unwrap_or_default();
        median(&mut v)
    };
    let mut json = Vec::new();
    for sc in scenarios {
        let (unit, lat) = match sc.as_str() {
            "udp" => ("round trips/s", false),
            "bind" => ("set-ups/s", true),
            _ => ("ops/s", false),
        };
        println!("\n## {sc} (medians)");
        println!(
            "| proxy | {unit} | vs direct | vs danted | p50 µs | p99 µs | proxy CPU-µs/op | CPU vs danted |"
        );
        println!("|---|---|---|---|---|---|---|---|");
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
            println!(
                "| {name} | {:.0} | {} | {} | {} | {} | {} | {} |",
                rate,
                ratio(rate, direct),
                ratio(rate, dante),
                fmt(p50),
                fmt(p99),
                if is_direct {
                    "-".into()
                } else {
                    format!("{cpu:.1}")
                },
                if is_direct {
                    "-".into()
                } else {
                    ratio(cpu, dante_cpu)
                },
            );
            json.push(format!(
                "{{\"scenario\":\"{sc}\",\"proxy\":\"{name}\",\"rate\":{rate:.1},\"p50_us\":{},\"p99_us\":{},\"cpu_us_per_op\":{cpu:.2},\"runs\":{}}}",
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
