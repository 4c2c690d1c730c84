//! The `idle` and `scale` scenarios: many established sessions held through the proxy at once,
//! then every one echoes a small message; the proxy's memory is read between the phases.
//!
//! The sessions are spread over worker processes (`workers.rs`) because of two limits: a
//! process may hold 20,000 descriptors at most (hard limit, cannot be raised), and a (source
//! address, destination address:port) pair has only the ~28,000 ports of 32768-60999. So each
//! generator binds to an address of its own (127.0.0.2, .3, ...), each echo target listens on
//! one (127.0.0.130, .131, ...), and each holds at most PER_PROCESS sessions: no pair of
//! addresses needs more than that many ports, on the proxy's client side (generator ->
//! 127.0.0.1) as on its outgoing side (its `external:` 127.0.0.1 -> one target).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use rsockd_sys::fdio;

use crate::procs::Memory;
use crate::scenarios::{Held, Sample};

/// Sessions per worker process: one socket each, well under the 20,000 descriptors.
const PER_PROCESS: u64 = 8000;
const FIRST_SOURCE: u64 = 2;
const FIRST_TARGET: u64 = 130;
/// The most sessions the address plan has room for (generators from 127.0.0.2 up to the
/// targets from 127.0.0.130, and those up to .250).
pub const MAX_SESSIONS: u64 = PER_PROCESS * (FIRST_TARGET - FIRST_SOURCE);
/// The whole establishing phase and the whole echo phase stop after these; what was reached
/// by then is reported (a proxy that tops out never hangs the run).
const OPEN_SECS: f64 = 120.0;
const ECHO_SECS: f64 = 60.0;
/// Time for the proxy to pass on the targets' closes before the generators close anyway.
const CLOSE_SECS: f64 = 10.0;
/// Extra time a worker gets to answer past its own deadline before it is given up on.
const GRACE: Duration = Duration::from_secs(30);

/// A worker process (this binary with `--role`), answering one line per command.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn spawn(args: &[String]) -> Result<Worker, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own binary: {e}"))?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start a worker: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("worker without pipes".into());
        };
        Ok(Worker {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
        })
    }

    fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("worker stdin closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("worker {}: {e}", self.child.id()))
    }

    /// The next answer line, waiting at most `timeout` for it to start.
    fn recv(&mut self, timeout: Duration) -> Result<String, String> {
        let pid = self.child.id();
        if self.stdout.buffer().is_empty()
            && !fdio::poll_ready(self.stdout.get_ref().as_fd(), libc::POLLIN, timeout)
        {
            return Err(format!("worker {pid} did not answer within {timeout:?}"));
        }
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err(format!("worker {pid} exited")),
            Ok(_) => Ok(line.trim_end().to_string()),
            Err(e) => Err(format!("worker {pid}: {e}")),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // End of stdin ends the worker; a worker that does not go is killed (by its pid).
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `cmd` to every worker, then collects their answers, so they work in parallel.
fn all(workers: &mut [Worker], cmd: &str, secs: f64) -> Result<Vec<String>, String> {
    for w in workers.iter_mut() {
        w.send(cmd)?;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(secs) + GRACE;
    workers
        .iter_mut()
        .map(|w| w.recv(deadline.saturating_duration_since(Instant::now())))
        .collect()
}

/// The numbers after `key` in an answer such as "opened 10 failed 2".
fn field(answer: &str, key: &str) -> Result<u64, String> {
    let mut words = answer.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("bad answer {answer:?}"));
        }
    }
    Err(format!("unexpected answer {answer:?}"))
}

fn sum(answers: &[String], key: &str) -> Result<u64, String> {
    answers.iter().map(|a| field(a, key)).sum()
}

/// KiB of (RSS, PSS) per session between two readings; NaN without readings or sessions.
fn per_session(before: Option<Memory>, after: Option<Memory>, sessions: u64) -> (f64, f64) {
    match (before, after) {
        (Some(b), Some(a)) if sessions > 0 => {
            let n = sessions as f64;
            (
                (a.rss_kib as f64 - b.rss_kib as f64) / n,
                (a.pss_kib as f64 - b.pss_kib as f64) / n,
            )
        }
        _ => (f64::NAN, f64::NAN),
    }
}

/// The echo targets, and their addresses.
fn start_targets(n: u64) -> Result<(Vec<Worker>, Vec<String>), String> {
    let mut targets = Vec::new();
    let mut addrs = Vec::new();
    for j in 0..n {
        let mut w = Worker::spawn(&[
            "--role".into(),
            "echo".into(),
            "--listen".into(),
            format!("127.0.0.{}", FIRST_TARGET + j),
        ])?;
        let a = w.recv(Duration::from_secs(10))?;
        let addr = a
            .strip_prefix("listening ")
            .ok_or_else(|| format!("echo target: {a}"))?;
        addrs.push(addr.to_string());
        targets.push(w);
    }
    Ok((targets, addrs))
}

/// `sessions` sessions through `proxy` (None: straight to the targets) held at once, then
/// all echo. Rate: sessions held; CPU: proxy CPU-µs per session held (establishing and echo);
/// failed: sessions asked for that were not held or did not echo. `label` names the run in
/// progress notes.
pub fn hold(
    label: &str,
    proxy: Option<SocketAddr>,
    sessions: u64,
    cpu: &dyn Fn() -> f64,
    memory: &dyn Fn() -> Option<Memory>,
    while_held: &dyn Fn() -> Option<()>,
) -> Result<Sample, String> {
    if sessions == 0 || sessions > MAX_SESSIONS {
        return Err(format!("sessions must be 1..={MAX_SESSIONS}"));
    }
    let procs = sessions.div_ceil(PER_PROCESS);
    let per = sessions.div_ceil(procs);
    let (mut targets, addrs) = start_targets(procs)?;
    let mut gens = (0..procs)
        .map(|k| {
            Worker::spawn(&[
                "--role".into(),
                "gen".into(),
                "--source".into(),
                format!("127.0.0.{}", FIRST_SOURCE + k),
                "--proxy".into(),
                proxy.map_or("direct".into(), |p| p.to_string()),
                "--targets".into(),
                addrs.join(","),
                // Consecutive indices per generator, so its sessions cycle through all targets.
                "--first".into(),
                (k * per).to_string(),
            ])
        })
        .collect::<Result<Vec<_>, _>>()?;
    let base = memory();
    let cpu0 = cpu();
    let t0 = Instant::now();
    for (k, g) in gens.iter_mut().enumerate() {
        let n = per.min(sessions - (k as u64 * per).min(sessions));
        g.send(&format!("open {n} {OPEN_SECS}"))?;
    }
    let deadline = t0 + Duration::from_secs_f64(OPEN_SECS) + GRACE;
    let opened = gens
        .iter_mut()
        .map(|g| g.recv(deadline.saturating_duration_since(Instant::now())))
        .collect::<Result<Vec<_>, _>>()?;
    let open_secs = t0.elapsed().as_secs_f64();
    if let Some(e) = opened.iter().find_map(|a| a.split_once(" error: ")) {
        eprintln!(
            "{label}: {} sessions failed to open; the first error: {}",
            sum(&opened, "failed")?,
            e.1
        );
    }
    let held = sum(&opened, "opened")?;
    // Let the proxy finish what it does after the last reply before its memory is read.
    std::thread::sleep(Duration::from_secs(1));
    let loaded = memory();
    let (rss, pss) = per_session(base, loaded, held);
    // Its CPU is taken out of the session's share.
    let probe_cpu0 = cpu();
    let probed = while_held().is_some();
    let probe_cpu = if probed { cpu() - probe_cpu0 } else { 0.0 };
    let echoed = all(&mut gens, &format!("echo {ECHO_SECS}"), ECHO_SECS)?;
    let (rss_echo, _) = per_session(base, memory(), held);
    let used = cpu() - cpu0 - probe_cpu;
    let ok = sum(&echoed, "echoed")?;
    let corrupt = sum(&echoed, "corrupt")?;
    // Targets first: see close_group in workers.rs for why.
    all(&mut targets, "close", 5.0)?;
    let closed = all(&mut gens, &format!("close {CLOSE_SECS}"), CLOSE_SECS)?;
    let (n, eof) = (sum(&closed, "closed")?, sum(&closed, "eof")?);
    if eof < n {
        eprintln!(
            "{label}: {} of {n} sessions were not closed by the proxy within {CLOSE_SECS} s of their target's close",
            n - eof
        );
    }
    drop(gens);
    drop(targets);
    if corrupt > 0 {
        return Err(format!("{corrupt} sessions echoed the wrong bytes"));
    }
    if held == 0 {
        return Err("no session established".into());
    }
    Ok(Sample {
        rate: held as f64,
        cpu_us_per_op: used * 1e6 / held as f64,
        failed: sessions - ok.min(sessions),
        held: Some(Held {
            echoed: ok as f64,
            rss_kib: rss,
            pss_kib: pss,
            rss_echo_kib: rss_echo,
            open_secs,
            procs: loaded.map_or(f64::NAN, |m| m.procs as f64),
        }),
        ..Sample::default()
    })
}
