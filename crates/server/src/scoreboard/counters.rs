//! The server's running totals, for `/metrics` and the SIGUSR1 dump (DESIGN §5). Unlike the
//! limit tables, which belong to one configuration generation, this region lives as long as
//! the server: the top process (mother 1, or the supervisor) creates it before its first
//! child, and every child maps it at exec from descriptor [`COUNTERS_FD`], passing it on to
//! its own children the same way. So no counter starts again on SIGHUP.
//!
//! Counters (sessions, bytes, failures) are shared words every process adds to as things
//! happen: what a process counted stays when it dies. Gauges (sessions running, clients
//! negotiating) are kept in one row per process, written only by that process; a row whose
//! process is gone is cleared by its reaper and is never summed, so a SIGKILLed relay's
//! sessions leave the gauges at once. Readers sum without stopping anyone.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use rsockd_config::Method;
use rsockd_sys::shm::SharedWords;

use super::keys::Key;

/// Where a child finds the region at exec (3 is its control channel).
pub const COUNTERS_FD: i32 = 4;

/// `rsockd.metrics.users`' default.
pub const DEFAULT_USERS: usize = 1000;

const MAGIC: u64 = 0x7273_6f63_6b64_4331;
const HEADER: usize = 4;
/// Process rows: mothers, relays, auth helpers, the supervisor.
const ROWS: usize = 1024;
const ROW_WORDS: usize = 4;
/// Rule numbers counted one by one; higher ones share the last entry.
pub const RULES: usize = 1024;
/// A user entry: state (0 empty, [`WRITING`], or the name's hash), name length, the name
/// (up to [`NAME_MAX`] bytes), bytes client to target, bytes target to client.
const NAME_MAX: usize = 256;
const USER_WORDS: usize = 2 + NAME_MAX / 8 + 2;
const WRITING: u64 = u64::MAX;
const WRITE_SPINS: u32 = 100_000;

/// Upper bounds of the handshake histogram's buckets, in microseconds (the last is +Inf).
pub const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];
const HIST_WORDS: usize = BUCKETS_US.len() + 1 + 2;

/// The process roles metrics name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcRole {
    Mother = 0,
    Relay = 1,
    AuthHelper = 2,
    Supervisor = 3,
}

impl ProcRole {
    pub const ALL: [ProcRole; 4] = [
        ProcRole::Mother,
        ProcRole::Relay,
        ProcRole::AuthHelper,
        ProcRole::Supervisor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ProcRole::Mother => "mother",
            ProcRole::Relay => "relay",
            ProcRole::AuthHelper => "auth_helper",
            ProcRole::Supervisor => "supervisor",
        }
    }
}

/// A request's command as metrics label it; `None` for clients that never got as far as a
/// request (client rules, negotiation errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    Connect = 0,
    Bind = 1,
    UdpAssociate = 2,
    None = 3,
}

impl Cmd {
    pub const ALL: [Cmd; 4] = [Cmd::Connect, Cmd::Bind, Cmd::UdpAssociate, Cmd::None];

    pub fn name(self) -> &'static str {
        match self {
            Cmd::Connect => "connect",
            Cmd::Bind => "bind",
            Cmd::UdpAssociate => "udpassociate",
            Cmd::None => "none",
        }
    }

    pub fn of(c: rsockd_ipc::Command) -> Cmd {
        match c {
            rsockd_ipc::Command::Connect => Cmd::Connect,
            rsockd_ipc::Command::Bind => Cmd::Bind,
            rsockd_ipc::Command::UdpAssociate => Cmd::UdpAssociate,
        }
    }
}

/// How a client's visit to a mother ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Handed to a relay.
    Ok = 0,
    /// Turned away by a rule (or a rule's limit).
    Blocked = 1,
    /// Anything else: a protocol error, a timeout, a target that could not be reached.
    Failed = 2,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Blocked, Outcome::Failed];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Blocked => "blocked",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleType {
    Client = 0,
    Socks = 1,
}

impl RuleType {
    pub fn name(self) -> &'static str {
        match self {
            RuleType::Client => "client",
            RuleType::Socks => "socks",
        }
    }
}

/// Where each part starts, in words; follows from the user table's size alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    rows: usize,
    sessions_total: usize,
    bytes: usize,
    hist: usize,
    auth: usize,
    restarts: usize,
    rules: usize,
    users_rest: usize,
    users: usize,
    users_cap: usize,
    words: usize,
}

impl Layout {
    fn of(users_cap: usize) -> Layout {
        let rows = HEADER;
        let sessions_total = rows + ROWS * ROW_WORDS;
        let bytes = sessions_total + Cmd::ALL.len() * Outcome::ALL.len();
        let hist = bytes + 2;
        let auth = hist + HIST_WORDS;
        let restarts = auth + Method::ALL.len();
        let rules = restarts + ProcRole::ALL.len();
        let users_rest = rules + 2 * RULES;
        let users = users_rest + 2;
        let words = users + users_cap * USER_WORDS;
        Layout {
            rows,
            sessions_total,
            bytes,
            hist,
            auth,
            restarts,
            rules,
            users_rest,
            users,
            users_cap,
            words,
        }
    }
}

/// The mapped region.
pub struct Counters {
    shm: SharedWords,
    layout: Layout,
}

static REGION: OnceLock<Counters> = OnceLock::new();
/// This process's row, or `usize::MAX` while it has none.
static ROW: AtomicUsize = AtomicUsize::new(usize::MAX);

impl Counters {
    fn w(&self, i: usize) -> &AtomicU64 {
        &self.shm.words()[i]
    }

    fn add(&self, i: usize, n: u64) {
        self.w(i).fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self, i: usize) -> u64 {
        self.w(i).load(Ordering::Relaxed)
    }

    fn new(users_cap: usize) -> io::Result<Counters> {
        let layout = Layout::of(users_cap);
        let shm = SharedWords::create("rsockd.counters", layout.words)?;
        let c = Counters { shm, layout };
        c.w(0).store(MAGIC, Ordering::Relaxed);
        c.w(1).store(users_cap as u64, Ordering::Release);
        Ok(c)
    }

    fn adopt(fd: OwnedFd) -> io::Result<Counters> {
        let shm = SharedWords::adopt(fd)?;
        let words = shm.words();
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
        if words.len() < HEADER || words[0].load(Ordering::Relaxed) != MAGIC {
            return Err(bad("not a counters region"));
        }
        let users_cap = usize::try_from(words[1].load(Ordering::Acquire))
            .map_err(|_| bad("bad user table size"))?;
        let layout = Layout::of(users_cap);
        if layout.words != words.len() {
            return Err(bad("counters region of the wrong size"));
        }
        Ok(Counters { shm, layout })
    }

    fn row_word(&self, row: usize, k: usize) -> &AtomicU64 {
        self.w(self.layout.rows + row * ROW_WORDS + k)
    }

    /// Takes a free row (or one whose process is gone) for this process.
    fn claim_row(&self, role: ProcRole) -> Option<usize> {
        let me = u64::from(std::process::id());
        let id = me | ((role as u64 + 1) << 32);
        for pass in 0..2 {
            for row in 0..ROWS {
                let w = self.row_word(row, 0);
                let cur = w.load(Ordering::Acquire);
                let free = cur == 0 || (pass == 1 && !rsockd_sys::process::exists(cur as u32));
                if !free {
                    continue;
                }
                if w.compare_exchange(cur, id, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    for k in 1..ROW_WORDS {
                        self.row_word(row, k).store(0, Ordering::Relaxed);
                    }
                    return Some(row);
                }
            }
        }
        None
    }

    fn clear_rows_of(&self, pid: u32) {
        for row in 0..ROWS {
            let w = self.row_word(row, 0);
            let cur = w.load(Ordering::Acquire);
            if cur != 0 && cur as u32 == pid {
                for k in 1..ROW_WORDS {
                    self.row_word(row, k).store(0, Ordering::Relaxed);
                }
                let _ = w.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }

    fn user_base(&self, entry: usize) -> usize {
        self.layout.users + entry * USER_WORDS
    }

    fn name_matches(&self, base: usize, name: &[u8]) -> bool {
        self.get(base + 1) == name.len() as u64 && self.read_name(base) == name
    }

    fn read_name(&self, base: usize) -> Vec<u8> {
        let len = (self.get(base + 1) as usize).min(NAME_MAX);
        let mut out = Vec::with_capacity(len);
        for i in 0..len.div_ceil(8) {
            out.extend_from_slice(&self.get(base + 2 + i).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// The user's entry, made if the table has room; None: counted with the rest.
    fn user_entry(&self, name: &str) -> Option<usize> {
        let cap = self.layout.users_cap;
        let bytes = name.as_bytes();
        if cap == 0 || bytes.len() > NAME_MAX {
            return None;
        }
        let [a, b] = Key::User(name.to_string()).words();
        let hash = (a ^ b.rotate_left(17)).clamp(1, WRITING - 1);
        let home = (hash % cap as u64) as usize;
        for probe in 0..cap {
            let entry = (home + probe) % cap;
            let base = self.user_base(entry);
            let state = self.w(base);
            let mut spins = 0;
            loop {
                match state.load(Ordering::Acquire) {
                    0 => {
                        if state
                            .compare_exchange(0, WRITING, Ordering::AcqRel, Ordering::Relaxed)
                            .is_err()
                        {
                            continue;
                        }
                        let mut padded = bytes.to_vec();
                        padded.resize(bytes.len().div_ceil(8) * 8, 0);
                        for (i, chunk) in padded.chunks(8).enumerate() {
                            let mut word = [0u8; 8];
                            word.copy_from_slice(chunk);
                            self.w(base + 2 + i)
                                .store(u64::from_le_bytes(word), Ordering::Relaxed);
                        }
                        self.w(base + 1)
                            .store(bytes.len() as u64, Ordering::Relaxed);
                        state.store(hash, Ordering::Release);
                        return Some(entry);
                    }
                    WRITING if spins < WRITE_SPINS => {
                        spins += 1;
                        std::hint::spin_loop();
                    }
                    // A writer that died half-way leaves its entry to nobody.
                    WRITING => break,
                    h if h == hash && self.name_matches(base, bytes) => return Some(entry),
                    _ => break,
                }
            }
        }
        None
    }

    fn snapshot(&self) -> Snapshot {
        let l = &self.layout;
        let mut s = Snapshot::default();
        for row in 0..ROWS {
            let id = self.row_word(row, 0).load(Ordering::Acquire);
            if id == 0 || !rsockd_sys::process::exists(id as u32) {
                continue;
            }
            let role = ((id >> 32) as usize).saturating_sub(1);
            if let Some(p) = s.processes.get_mut(role) {
                *p += 1;
            }
            s.negotiating += self.row_word(row, 1).load(Ordering::Relaxed);
            let packed = self.row_word(row, 2).load(Ordering::Relaxed);
            for (c, slot) in s.sessions.iter_mut().enumerate() {
                *slot += (packed >> (c * 21)) & GAUGE_MASK;
            }
        }
        for c in 0..Cmd::ALL.len() {
            for o in 0..Outcome::ALL.len() {
                s.sessions_total[c][o] = self.get(l.sessions_total + c * Outcome::ALL.len() + o);
            }
        }
        s.bytes = [self.get(l.bytes), self.get(l.bytes + 1)];
        for (i, b) in s.buckets.iter_mut().enumerate() {
            *b = self.get(l.hist + i);
        }
        s.handshake_sum_us = self.get(l.hist + BUCKETS_US.len() + 1);
        s.handshake_count = self.get(l.hist + BUCKETS_US.len() + 2);
        for (i, m) in Method::ALL.iter().enumerate() {
            let n = self.get(l.auth + i);
            if n > 0 {
                s.auth_failures.push((m.name(), n));
            }
        }
        for (i, r) in s.restarts.iter_mut().enumerate() {
            *r = self.get(l.restarts + i);
        }
        for (t, ty) in [RuleType::Client, RuleType::Socks].into_iter().enumerate() {
            for n in 0..RULES {
                let v = self.get(l.rules + t * RULES + n);
                if v > 0 {
                    s.rule_sessions.push((ty, n as u32, v));
                }
            }
        }
        s.users_rest = [self.get(l.users_rest), self.get(l.users_rest + 1)];
        for e in 0..l.users_cap {
            let base = self.user_base(e);
            let st = self.w(base).load(Ordering::Acquire);
            if st == 0 || st == WRITING {
                continue;
            }
            let name = String::from_utf8_lossy(&self.read_name(base)).into_owned();
            s.users.push((
                name,
                [
                    self.get(base + 2 + NAME_MAX / 8),
                    self.get(base + 3 + NAME_MAX / 8),
                ],
            ));
        }
        s
    }
}

/// Sessions of one command in one row are kept in 21 bits of one word, so a row's three
/// gauges change with one atomic add each.
const GAUGE_MASK: u64 = (1 << 21) - 1;

/// What the counters say now, summed over every process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Sessions running, by [`Cmd`] (connect, bind, udpassociate).
    pub sessions: [u64; 3],
    pub negotiating: u64,
    /// By [`Cmd`], then [`Outcome`].
    pub sessions_total: [[u64; 3]; 4],
    /// Client to target, target to client.
    pub bytes: [u64; 2],
    /// Handshakes per bucket of [`BUCKETS_US`] (not cumulative), the last for longer ones.
    pub buckets: [u64; BUCKETS_US.len() + 1],
    pub handshake_sum_us: u64,
    pub handshake_count: u64,
    /// By method name; only methods that failed.
    pub auth_failures: Vec<(&'static str, u64)>,
    /// Replacements started, by [`ProcRole`].
    pub restarts: [u64; 4],
    /// Processes alive, by [`ProcRole`].
    pub processes: [u64; 4],
    /// Sessions per rule that decided them; only rules that did.
    pub rule_sessions: Vec<(RuleType, u32, u64)>,
    /// Bytes of users with entries of their own, and of the rest.
    pub users: Vec<(String, [u64; 2])>,
    pub users_rest: [u64; 2],
}

impl Snapshot {
    /// The numbers `/metrics` shows, as SIGUSR1 dump lines.
    pub fn summary(&self) -> Vec<String> {
        let cmds = &Cmd::ALL[..3];
        let running: Vec<String> = cmds
            .iter()
            .zip(self.sessions)
            .map(|(c, n)| format!("{} {n}", c.name()))
            .collect();
        let mut out = vec![format!(
            "sessions running: {}, clients negotiating: {}",
            running.join(", "),
            self.negotiating
        )];
        for (c, by) in Cmd::ALL.iter().zip(self.sessions_total) {
            if by == [0; 3] {
                continue;
            }
            let parts: Vec<String> = Outcome::ALL
                .iter()
                .zip(by)
                .map(|(o, n)| format!("{} {n}", o.name()))
                .collect();
            out.push(format!("sessions of {}: {}", c.name(), parts.join(", ")));
        }
        out.push(format!(
            "bytes client to target: {}, target to client: {}",
            self.bytes[0], self.bytes[1]
        ));
        if self.handshake_count > 0 {
            out.push(format!(
                "handshakes: {}, average {:.3} ms",
                self.handshake_count,
                self.handshake_sum_us as f64 / self.handshake_count as f64 / 1000.0
            ));
        }
        if !self.auth_failures.is_empty() {
            let parts: Vec<String> = self
                .auth_failures
                .iter()
                .map(|(m, n)| format!("{m} {n}"))
                .collect();
            out.push(format!("authentication failures: {}", parts.join(", ")));
        }
        if !self.rule_sessions.is_empty() {
            let parts: Vec<String> = self
                .rule_sessions
                .iter()
                .map(|(ty, n, v)| format!("{} #{n} {v}", ty.name()))
                .collect();
            out.push(format!("sessions per rule: {}", parts.join(", ")));
        }
        if !self.users.is_empty() || self.users_rest != [0; 2] {
            // The ten busiest by name; /metrics has them all.
            let mut users: Vec<&(String, [u64; 2])> = self.users.iter().collect();
            users.sort_by_key(|(_, b)| std::cmp::Reverse(b[0] + b[1]));
            let mut parts: Vec<String> = users
                .iter()
                .take(10)
                .map(|(u, b)| format!("\"{}\" {}/{}", crate::log::escape(u.as_bytes()), b[0], b[1]))
                .collect();
            if users.len() > 10 {
                parts.push(format!("{} more", users.len() - 10));
            }
            parts.push(format!(
                "others {}/{}",
                self.users_rest[0], self.users_rest[1]
            ));
            out.push(format!(
                "user bytes (client to target/target to client): {}",
                parts.join(", ")
            ));
        }
        let procs: Vec<String> = ProcRole::ALL
            .iter()
            .zip(self.processes)
            .zip(self.restarts)
            .filter(|((_, n), r)| *n > 0 || *r > 0)
            .map(|((role, n), r)| format!("{} {n} ({r} restarted)", role.name()))
            .collect();
        out.push(format!("processes: {}", procs.join(", ")));
        out
    }
}

fn region() -> Option<&'static Counters> {
    REGION.get()
}

/// In the top process, before its first child: a new region with room for `users` users.
pub fn create(users: usize, role: ProcRole) -> io::Result<()> {
    if REGION.get().is_none() {
        let _ = REGION.set(Counters::new(users)?);
    }
    claim_row(role);
    Ok(())
}

/// In a child, at start: maps the region our parent mapped at [`COUNTERS_FD`]. Without one
/// (a parent from before this feature), counting is off in this process.
pub fn attach_inherited(role: ProcRole) {
    if let Some(fd) = rsockd_sys::spawn::inherited_fd(COUNTERS_FD) {
        if let Err(e) = adopt(fd, role) {
            crate::log::warning(&format!("counters not mapped: {e}"));
        }
    }
}

/// Maps the region behind `fd` (a parent's, or the family's we take over from in an
/// upgrade) as this process's, so its totals go on from where they were.
pub fn adopt(fd: OwnedFd, role: ProcRole) -> io::Result<()> {
    let c = Counters::adopt(fd)?;
    let _ = REGION.set(c);
    claim_row(role);
    Ok(())
}

fn claim_row(role: ProcRole) {
    let Some(c) = region() else { return };
    match c.claim_row(role) {
        Some(row) => ROW.store(row, Ordering::Relaxed),
        None => crate::log::warning(
            "counters: no process row free; this process's sessions are not in the gauges",
        ),
    }
}

/// A duplicate of the region's descriptor, for a child's [`COUNTERS_FD`].
pub fn dup_fd() -> Option<OwnedFd> {
    region().and_then(|c| c.shm.dup_fd().ok())
}

fn my_row(k: usize) -> Option<&'static AtomicU64> {
    let c = region()?;
    let row = ROW.load(Ordering::Relaxed);
    (row < ROWS).then(|| c.row_word(row, k))
}

/// This mother's clients still negotiating.
pub fn set_negotiating(n: u32) {
    if let Some(w) = my_row(1) {
        w.store(u64::from(n), Ordering::Relaxed);
    }
}

/// A relay began (`true`) or ended a session of `cmd`.
pub fn session_running(cmd: Cmd, began: bool) {
    let Some(w) = my_row(2) else { return };
    let shift = match cmd {
        Cmd::Connect => 0,
        Cmd::Bind => 21,
        Cmd::UdpAssociate => 42,
        Cmd::None => return,
    };
    if began {
        w.fetch_add(1 << shift, Ordering::Relaxed);
    } else {
        w.fetch_sub(1 << shift, Ordering::Relaxed);
    }
}

/// A client left its mother: handed on, turned away, or failed.
pub fn request_done(cmd: Cmd, outcome: Outcome) {
    if let Some(c) = region() {
        c.add(
            c.layout.sessions_total + cmd as usize * Outcome::ALL.len() + outcome as usize,
            1,
        );
    }
}

/// From accept to the hand-off of a session to its relay, in microseconds.
pub fn handshake(us: u64) {
    let Some(c) = region() else { return };
    let bucket = BUCKETS_US
        .iter()
        .position(|&b| us <= b)
        .unwrap_or(BUCKETS_US.len());
    c.add(c.layout.hist + bucket, 1);
    c.add(c.layout.hist + BUCKETS_US.len() + 1, us);
    c.add(c.layout.hist + BUCKETS_US.len() + 2, 1);
}

/// A client's authentication with `method` failed.
pub fn auth_failed(method: Method) {
    if let Some(c) = region() {
        c.add(
            c.layout.auth + method.code() as usize % Method::ALL.len(),
            1,
        );
    }
}

/// A replacement for a dead `role` process was started.
pub fn restarted(role: ProcRole) {
    if let Some(c) = region() {
        c.add(c.layout.restarts + role as usize, 1);
    }
}

/// Rule `number` of `ty` decided a client's or a request's fate.
pub fn rule_matched(ty: RuleType, number: u32) {
    if let Some(c) = region() {
        let n = (number as usize).min(RULES - 1);
        c.add(c.layout.rules + ty as usize * RULES + n, 1);
    }
}

/// A user's place in the user table: their own entry, or the rest's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserSlot(Option<usize>);

/// The slot `user`'s bytes are counted in (an entry is made on first sight while there is
/// room; after that newcomers share the rest's).
pub fn user_slot(user: &str) -> UserSlot {
    UserSlot(region().and_then(|c| c.user_entry(user)))
}

/// Bytes moved: `[client to target, target to client]`, and for whom when authenticated.
pub fn bytes(delta: [u64; 2], user: Option<UserSlot>) {
    let Some(c) = region() else { return };
    if delta == [0, 0] {
        return;
    }
    let l = &c.layout;
    for (i, d) in delta.into_iter().enumerate() {
        if d == 0 {
            continue;
        }
        c.add(l.bytes + i, d);
        match user {
            Some(UserSlot(Some(e))) => c.add(c.user_base(e) + 2 + NAME_MAX / 8 + i, d),
            Some(UserSlot(None)) => c.add(l.users_rest + i, d),
            None => {}
        }
    }
}

/// Process `pid` was reaped: its row leaves the gauges. What it counted stays.
pub fn process_gone(pid: i32) {
    if let (Some(c), Ok(pid)) = (region(), u32::try_from(pid)) {
        c.clear_rows_of(pid);
    }
}

/// The totals now; None when this process has no region.
pub fn snapshot() -> Option<Snapshot> {
    region().map(Counters::snapshot)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn layout_parts_do_not_overlap() {
        let l = Layout::of(10);
        let starts = [
            l.rows,
            l.sessions_total,
            l.bytes,
            l.hist,
            l.auth,
            l.restarts,
            l.rules,
            l.users_rest,
            l.users,
            l.words,
        ];
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
        assert_eq!(l.words - l.users, 10 * USER_WORDS);
    }

    #[test]
    fn a_second_mapping_sees_the_first_ones_counts_and_users() {
        let a = Counters::new(4).unwrap();
        let b = Counters::adopt(a.shm.dup_fd().unwrap()).unwrap();
        let e = a.user_entry("alice").unwrap();
        assert_eq!(
            b.user_entry("alice"),
            Some(e),
            "the same user finds the same entry"
        );
        a.add(a.user_base(e) + 2 + NAME_MAX / 8, 7);
        let f = b.user_entry("bob").unwrap();
        assert_ne!(e, f);
        let snap = b.snapshot();
        let mut users = snap.users.clone();
        users.sort();
        assert_eq!(
            users,
            vec![("alice".to_string(), [7, 0]), ("bob".to_string(), [0, 0])]
        );
    }

    #[test]
    fn a_full_user_table_counts_newcomers_with_the_rest() {
        let c = Counters::new(2).unwrap();
        assert!(c.user_entry("a").is_some());
        assert!(c.user_entry("b").is_some());
        assert_eq!(c.user_entry("c"), None);
        assert!(c.user_entry("a").is_some(), "old users keep their entries");
        assert_eq!(c.user_entry(&"x".repeat(NAME_MAX + 1)), None);
    }

    #[test]
    fn a_region_of_another_kind_is_refused() {
        let other = SharedWords::create("other", 64).unwrap();
        assert!(Counters::adopt(other.dup_fd().unwrap()).is_err());
    }

    #[test]
    fn rows_of_a_gone_process_are_cleared_and_not_summed() {
        let c = Counters::new(0).unwrap();
        let row = c.claim_row(ProcRole::Relay).unwrap();
        c.row_word(row, 2).fetch_add(3 << 21, Ordering::Relaxed);
        assert_eq!(c.snapshot().sessions, [0, 3, 0]);
        assert_eq!(c.snapshot().processes, [0, 1, 0, 0]);
        c.clear_rows_of(std::process::id());
        assert_eq!(c.snapshot().sessions, [0, 0, 0]);
        assert_eq!(c.snapshot().processes, [0, 0, 0, 0]);
    }
}
