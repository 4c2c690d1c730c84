//! Recursive-descent parser: drives the scanner and fills the model.
//!
//! Layout: this file has the driver (top-level statements, support-table gating, shared value
//! readers); `settings` has the server settings, `rule` the rule bodies, `address` the address
//! and port forms, `methods` the method lists.
//!
//! Errors do not stop the parse: the rest of the line (or block) is skipped and parsing goes on,
//! so one run reports every problem it can.

mod address;
mod errorlog;
mod methods;
mod monitor;
mod rule;
mod settings;
mod sockopt;

use crate::diag::Diagnostic;
use crate::lexer::{Scanner, Tok};
use crate::model::{Config, RuleKind};
use crate::number::{self, NumberError};
use crate::support::{self, Entry, Place, Status};
use crate::ParseOptions;

/// Stop after this many errors: later ones are usually fallout of the first.
const MAX_ERRORS: usize = 50;

/// What a parse produced; `errors` empty means the config is usable.
pub(crate) struct Outcome {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
    pub errors: Vec<Diagnostic>,
}

/// Where a keyword is being read; decides what is valid and what `method` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctx {
    Global,
    Rule(RuleKind),
}

impl Ctx {
    fn place(self) -> Place {
        match self {
            Ctx::Global => Place::GLOBAL,
            Ctx::Rule(RuleKind::Client) => Place::CLIENT,
            Ctx::Rule(RuleKind::Socks) => Place::SOCKS,
            Ctx::Rule(RuleKind::Route) => Place::ROUTE,
        }
    }
}

pub(crate) struct Parser<'a> {
    sc: Scanner<'a>,
    file: &'a str,
    opts: &'a ParseOptions,
    cfg: Config,
    warnings: Vec<Diagnostic>,
    errors: Vec<Diagnostic>,
    /// Line of the first rule, route or monitor: settings after it are errors.
    first_object_line: Option<u32>,
    first_internal_line: Option<u32>,
    first_external_line: Option<u32>,
    /// Lines of the global method lists, to warn when a later line replaces one.
    socksmethod_line: Option<u32>,
    clientmethod_line: Option<u32>,
}

pub(crate) fn parse(file: &str, text: &str, opts: &ParseOptions) -> Outcome {
    let mut p = Parser {
        sc: Scanner::new(text),
        file,
        opts,
        cfg: Config::default(),
        warnings: Vec::new(),
        errors: Vec::new(),
        first_object_line: None,
        first_internal_line: None,
        first_external_line: None,
        socksmethod_line: None,
        clientmethod_line: None,
    };
    p.run();
    Outcome {
        config: p.cfg,
        warnings: p.warnings,
        errors: p.errors,
    }
}

impl<'a> Parser<'a> {
    fn diag(&self, at: Tok<'_>, message: String) -> Diagnostic {
        Diagnostic {
            file: self.file.to_string(),
            line: at.line,
            column: at.col,
            token: at.text.to_string(),
            message,
        }
    }

    fn error(&mut self, at: Tok<'_>, message: impl Into<String>) {
        let d = self.diag(at, message.into());
        self.errors.push(d);
    }

    fn warn(&mut self, at: Tok<'_>, message: impl Into<String>) {
        let d = self.diag(at, message.into());
        self.warnings.push(d);
    }

    /// Errors only when support is enforced (tests of the full model turn it off).
    fn not_yet(&mut self, at: Tok<'_>, what: &str, detail: &str) {
        if self.opts.allow_unsupported {
            return;
        }
        let msg = if detail.is_empty() {
            format!("'{what}' is not supported yet")
        } else {
            format!("'{what}' is not supported yet: {detail}")
        };
        self.error(at, msg);
    }

    fn run(&mut self) {
        loop {
            if self.errors.len() >= MAX_ERRORS {
                let at = self.sc.here();
                self.error(at, "too many errors; giving up");
                return;
            }
            self.sc.skip_space();
            if self.sc.at_eof() {
                return;
            }
            let kw = self.sc.ident();
            if kw.text.is_empty() {
                let t = self.sc.next_token();
                self.error(t, "expected a keyword");
                self.sc.skip_block();
                continue;
            }
            self.statement(kw);
        }
    }

    fn mark_object(&mut self, at: Tok<'_>) {
        if self.first_object_line.is_none() {
            self.first_object_line = Some(at.line);
        }
    }

    /// A top-level statement starting with keyword `kw`.
    fn statement(&mut self, kw: Tok<'a>) {
        match kw.text {
            "client" => {
                self.mark_object(kw);
                self.rule_header(kw, Some(RuleKind::Client));
            }
            "socks" => {
                self.mark_object(kw);
                self.rule_header(kw, Some(RuleKind::Socks));
            }
            "hostid" if !self.keyword_follows() => {
                self.mark_object(kw);
                self.rule_header(kw, None);
            }
            "pass" | "block" | "deny" => {
                self.mark_object(kw);
                self.bare_verdict_rule(kw);
            }
            "monitor" => {
                self.mark_object(kw);
                self.monitor(kw);
            }
            "route" => {
                self.mark_object(kw);
                self.route(kw);
            }
            _ => self.setting(kw),
        }
    }

    /// True if a `:` comes next, i.e. the word just read was `keyword:`.
    fn keyword_follows(&self) -> bool {
        let mut s = self.sc.clone();
        s.eat(':')
    }

    /// True if the next thing on the line is `word:`: a new keyword, which ends a list.
    fn at_keyword(&self) -> bool {
        let mut s = self.sc.clone();
        !s.ident().text.is_empty() && s.eat(':')
    }

    /// Like [`Self::at_keyword`] for a word the support table knows: inside addresses, where
    /// `fe80:` or `2001:` may start an IPv6 address.
    fn at_known_keyword(&self) -> bool {
        let mut s = self.sc.clone();
        let w = s.ident();
        support::lookup(w.text).is_some() && s.eat(':')
    }

    fn unknown_keyword(&mut self, kw: Tok<'_>, ctx: Ctx) {
        let place = match ctx {
            Ctx::Global => "server setting",
            Ctx::Rule(_) => "rule keyword",
        };
        let mut msg = format!("unknown {place} '{}'", kw.text);
        if let Some(s) = support::suggest(kw.text) {
            msg.push_str(&format!("; did you mean '{s}'?"));
        }
        self.error(kw, msg);
    }

    /// Explains why a known keyword cannot appear in `ctx`.
    fn misplaced(&mut self, kw: Tok<'_>, entry: &Entry, ctx: Ctx) {
        let p = entry.place;
        let msg = if p.contains(Place::ROUTE) && !p.contains(Place::SOCKS) {
            format!("'{}' is only valid in routes", kw.text)
        } else if p.contains(Place::MONITOR) && !p.contains(Place::SOCKS) {
            format!("'{}' is only valid in monitors", kw.text)
        } else if ctx == Ctx::Global && p.contains(Place::SOCKS) && p.contains(Place::CLIENT) {
            format!("'{}' is only valid inside rules", kw.text)
        } else if ctx == Ctx::Global && p.contains(Place::SOCKS) {
            format!("'{}' is only valid inside socks rules", kw.text)
        } else if ctx == Ctx::Global && p.contains(Place::CLIENT) {
            format!("'{}' is only valid inside client rules", kw.text)
        } else if p.contains(Place::GLOBAL) {
            format!(
                "'{}' is a server setting; it cannot appear inside a rule",
                kw.text
            )
        } else if let Ctx::Rule(k) = ctx {
            format!("'{}' is not valid in a {} rule", kw.text, k.name())
        } else {
            format!("'{}' cannot appear here", kw.text)
        };
        self.error(kw, msg);
    }

    /// Applies the support table to keyword `kw`; returns the keyword whose handler should read
    /// the value, or `None` when the value is to be skipped.
    fn admit(&mut self, kw: Tok<'_>, entry: &'static Entry, ctx: Ctx) -> Option<&'static str> {
        match entry.status {
            Status::Implemented | Status::ByValue => Some(entry.key),
            Status::Alias { of } => Some(of),
            Status::Deprecated { replacement } => {
                let replacement = if entry.key == "method" && ctx == Ctx::Rule(RuleKind::Client) {
                    "clientmethod"
                } else {
                    replacement
                };
                self.warn(
                    kw,
                    format!("'{}' is deprecated; assuming '{replacement}'", kw.text),
                );
                let target = support::lookup(replacement)?;
                let t = Tok {
                    text: replacement,
                    ..kw
                };
                self.admit(t, target, ctx)
            }
            Status::Ignored { reason } => {
                self.warn(kw, format!("'{}' is ignored: {reason}", kw.text));
                has_handler(entry.key).then_some(entry.key)
            }
            Status::Rejected { reason } => {
                self.error(kw, reason);
                None
            }
            Status::NotYet { detail } => {
                let name = if entry.prefix { kw.text } else { entry.key };
                self.not_yet(kw, name, detail);
                has_handler(entry.key).then_some(entry.key)
            }
        }
    }

    /// After a single-valued setting: the line must end, or another `keyword:` follow.
    fn end_of_value(&mut self, kw: Tok<'_>) {
        if self.sc.at_value_end() || self.at_keyword() {
            return;
        }
        let t = self.sc.next_token();
        self.error(
            t,
            format!("unexpected text after the value of '{}'", kw.text),
        );
        self.sc.skip_value();
    }

    /// Error recovery inside a rule: skips to the next `keyword:` on the line (or its end).
    fn skip_to_keyword(&mut self) {
        while !self.sc.at_value_end() && !self.at_keyword() {
            if self.sc.word(&['}']).text.is_empty() {
                self.sc.next_token();
            }
        }
    }

    /// List items: every word up to the end of the line, a `}` or the next `keyword:`.
    fn list_items(&mut self, kw: Tok<'_>) -> Vec<Tok<'a>> {
        let mut items = Vec::new();
        loop {
            if self.sc.at_value_end() || self.at_keyword() {
                break;
            }
            let t = self.sc.word(&[':', '}']);
            if t.text.is_empty() {
                let t = self.sc.next_token();
                self.error(
                    t,
                    format!("unexpected '{}' in the value of '{}'", t.text, kw.text),
                );
                continue;
            }
            items.push(t);
        }
        if items.is_empty() {
            let t = self.sc.next_token();
            self.error(t, format!("expected a value after '{}:'", kw.text));
        }
        items
    }

    /// A number in Dante's forms that fits `max`.
    fn number(&mut self, after: &str, max: u64) -> Option<u64> {
        let t = self.sc.number();
        self.check_number(t, after, max)
    }

    fn check_number(&mut self, t: Tok<'_>, after: &str, max: u64) -> Option<u64> {
        if t.text.is_empty() {
            let t = self.sc.next_token();
            self.error(t, format!("expected a number after '{after}'"));
            return None;
        }
        match number::parse(t.text) {
            Ok(n) if n <= max => Some(n),
            Ok(_) | Err(NumberError::TooLarge) => {
                self.error(t, format!("number is too large; the maximum is {max}"));
                None
            }
            Err(NumberError::NotANumber) => {
                self.error(t, format!("expected a number after '{after}'"));
                None
            }
        }
    }

    /// `yes` or `no`.
    fn yes_no(&mut self, kw: Tok<'_>) -> Option<bool> {
        let t = self.sc.ident();
        match t.text {
            "yes" => Some(true),
            "no" => Some(false),
            _ => {
                let t = if t.text.is_empty() {
                    self.sc.next_token()
                } else {
                    t
                };
                self.error(t, format!("expected 'yes' or 'no' after '{}:'", kw.text));
                None
            }
        }
    }

    /// Reads `:` after a keyword.
    fn colon(&mut self, kw: Tok<'_>) -> bool {
        if self.sc.eat(':') {
            return true;
        }
        let t = self.sc.next_token();
        self.error(t, format!("expected ':' after '{}'", kw.text));
        false
    }
}

/// Keywords with a value reader in this parser (others are skipped after their diagnostic).
fn has_handler(key: &str) -> bool {
    settings::has_global_handler(key) || rule::has_rule_handler(key)
}
