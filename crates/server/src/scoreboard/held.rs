//! The slots one session holds, from the mother that admits it to the relay that ends it.
//! Dropping a [`SessionSlots`] gives them back for the process holding them, so every path
//! out of the mother (a refusal, a failed connect, no relay to take the session) and every
//! end of a session in a relay frees its slots without being told.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use rsockd_config::RuleKind;

use super::{Held, Key, Refusal, Scoreboard};

thread_local! {
    /// Every scoreboard this process has mapped and still uses, to free what a dead process
    /// held in any of them.
    static BOARDS: RefCell<Vec<Weak<Scoreboard>>> = const { RefCell::new(Vec::new()) };
}

/// Remembers a scoreboard this process maps (each generation's, as it arrives).
pub fn register(b: &Rc<Scoreboard>) {
    BOARDS.with(|v| {
        let mut v = v.borrow_mut();
        v.retain(|w| w.strong_count() > 0);
        v.push(Rc::downgrade(b));
    });
}

/// The scoreboard of configuration `generation`, if this process still has it.
pub fn of_generation(generation: u64) -> Option<Rc<Scoreboard>> {
    BOARDS.with(|v| {
        v.borrow()
            .iter()
            .filter_map(Weak::upgrade)
            .find(|b| b.generation() == generation)
    })
}

/// Frees, in every scoreboard this process maps, the slots of `pid`, which died.
pub fn clear_dead(pid: i32) -> usize {
    let Ok(pid) = u32::try_from(pid) else {
        return 0;
    };
    BOARDS.with(|v| {
        v.borrow()
            .iter()
            .filter_map(Weak::upgrade)
            .map(|b| b.clear(pid))
            .sum()
    })
}

fn me() -> u32 {
    std::process::id()
}

/// The slots of one session in one scoreboard: the client rule's part and the socks rule's.
#[derive(Default)]
pub struct SessionSlots {
    board: Option<Rc<Scoreboard>>,
    client: Held,
    socks: Held,
    /// The `bandwidth:` the session is paced by: its word and rate.
    pace: Option<(u32, u64)>,
}

impl SessionSlots {
    /// Admits a new client from `from` under client rule `number`; nothing is held without a
    /// scoreboard or when the rule limits nothing.
    pub fn for_client(
        board: Option<&Rc<Scoreboard>>,
        number: u32,
        from: std::net::IpAddr,
    ) -> Result<SessionSlots, Refusal> {
        let mut s = SessionSlots {
            board: board.cloned(),
            client: Held::default(),
            socks: Held::default(),
            pace: board.and_then(|b| b.pace(RuleKind::Client, number)),
        };
        if let Some(b) = &s.board {
            b.admit(
                RuleKind::Client,
                number,
                Some(&Key::Addr(from)),
                me(),
                &mut s.client,
            )?;
        }
        Ok(s)
    }

    /// Admits the request under socks rule `number`. The client rule's slot stays with the
    /// session only if it `inherits` and the socks rule sets no limit of its own (Dante's
    /// `session.inheritable`); otherwise it is given back here.
    pub fn for_request(
        &mut self,
        number: u32,
        inherits: bool,
        key: impl Fn(rsockd_config::StateKey) -> Key,
    ) -> Result<(), Refusal> {
        let Some(b) = self.board.clone() else {
            return Ok(());
        };
        let own = b.limits(RuleKind::Socks, number);
        if own {
            let key = b.state_key(RuleKind::Socks, number).map(key);
            b.admit(RuleKind::Socks, number, key.as_ref(), me(), &mut self.socks)?;
        }
        if own || !inherits {
            b.release(&std::mem::take(&mut self.client).0, me());
        }
        // A socks rule's own bandwidth replaces the one inherited from the client rule.
        if let Some(p) = b.pace(RuleKind::Socks, number) {
            self.pace = Some(p);
        }
        Ok(())
    }

    /// For the hand-off message: the scoreboard's generation, the slot words held (empty:
    /// none) and the pace (word and rate) if the session's rule has a bandwidth.
    pub fn wire(&self) -> (u64, Vec<u32>, Option<(u32, u64)>) {
        let gen = self.board.as_ref().map_or(0, |b| b.generation());
        let words = self.client.0.iter().chain(&self.socks.0).copied().collect();
        (gen, words, self.pace)
    }

    /// Hands the slots to process `to`, the relay the session is about to be sent to: if it
    /// gets the session, they are its to give back (or its reaper's). Call before sending, so
    /// no moment exists where a live process holds the session and nobody holds its slots.
    pub fn lend(&self, to: u32) {
        if let Some(b) = &self.board {
            b.give(&self.client.0, me(), to);
            b.give(&self.socks.0, me(), to);
        }
    }

    /// The send failed: the slots come back from `to`.
    pub fn take_back(&self, to: u32) {
        if let Some(b) = &self.board {
            b.give(&self.client.0, to, me());
            b.give(&self.socks.0, to, me());
        }
    }

    /// The session was sent: its slots are no longer ours to give back.
    pub fn sent(mut self) {
        self.board = None;
    }
}

/// A relay gives back the slots of a session that ended (`generation`'s scoreboard, the words
/// its hand-off named). A relay that dies first leaves them to its reaper.
pub fn session_ended(generation: u64, words: &[u32]) {
    if words.is_empty() {
        return;
    }
    if let Some(b) = of_generation(generation) {
        b.release(words, me());
    }
}

impl Drop for SessionSlots {
    fn drop(&mut self) {
        if let Some(b) = self.board.take() {
            b.release(&self.client.0, me());
            b.release(&self.socks.0, me());
        }
    }
}
