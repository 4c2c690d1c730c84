//! Method lists (`socksmethod:`, `clientmethod:`, deprecated `method:`), global and in rules.

use super::Parser;
use crate::lexer::Tok;
use crate::model::Method;
use crate::support::{self, Status};

/// Which list a method is read into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum List {
    Socks,
    Client,
}

impl List {
    fn name(self) -> &'static str {
        match self {
            List::Socks => "socksmethod",
            List::Client => "clientmethod",
        }
    }
}

impl<'a> Parser<'a> {
    /// A global method list; replaces any earlier line, as in Dante.
    pub(super) fn global_methods(&mut self, kw: Tok<'a>, client: bool) -> Vec<Method> {
        let list = if client { List::Client } else { List::Socks };
        let mut out = Vec::new();
        for (m, _) in self.method_items(kw, list) {
            out.push(m);
        }
        out
    }

    /// Methods of a rule list, appended to `into`; each must be in the global list.
    pub(super) fn rule_methods(&mut self, kw: Tok<'a>, list: List, into: &mut Vec<Method>) {
        let global = match list {
            List::Socks => self.cfg.socksmethod.clone(),
            List::Client => self.cfg.effective_clientmethod(),
        };
        for (m, t) in self.method_items(kw, list) {
            if into.contains(&m) {
                self.warn(t, format!("duplicate method '{m}' ignored"));
                continue;
            }
            if !global.contains(&m) {
                let names: Vec<&str> = global.iter().map(|m| m.name()).collect();
                self.error(
                    t,
                    format!(
                        "method '{m}' is not in the global {} list ({}); a rule can only use \
                         methods of that list",
                        list.name(),
                        if names.is_empty() {
                            "empty".to_string()
                        } else {
                            names.join(" ")
                        }
                    ),
                );
                continue;
            }
            into.push(m);
        }
    }

    /// Reads the method names of one line, dropping duplicates and reporting bad names.
    fn method_items(&mut self, kw: Tok<'a>, list: List) -> Vec<(Method, Tok<'a>)> {
        let mut out: Vec<(Method, Tok<'a>)> = Vec::new();
        for t in self.list_items(kw) {
            let m = if t.text == "pam" {
                self.warn(t, "method 'pam' is deprecated; assuming 'pam.username'");
                Method::PamUsername
            } else if let Some(m) = Method::from_name(t.text) {
                m
            } else {
                let all: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                self.error(
                    t,
                    format!("unknown method; expected one of: {}", all.join(" ")),
                );
                continue;
            };
            if list == List::Client && !m.valid_as_clientmethod() {
                self.error(
                    t,
                    format!(
                        "'{m}' cannot be a clientmethod; expected none, rfc931, pam.address or \
                         pam.any"
                    ),
                );
                continue;
            }
            if out.iter().any(|(o, _)| *o == m) {
                self.warn(t, format!("duplicate method '{m}' ignored"));
                continue;
            }
            match support::method_status(m) {
                Status::NotYet { detail } => self.not_yet(t, m.name(), detail),
                Status::Rejected { reason } => {
                    self.error(t, format!("method '{m}': {reason}"));
                    continue;
                }
                _ => {}
            }
            out.push((m, t));
        }
        out
    }
}
