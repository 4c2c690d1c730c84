//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use rsockd_config::{parse_str, parse_str_with, Config, Diagnostic, Loaded, ParseOptions};

/// Parses, panicking with the diagnostics on error.
pub fn ok(text: &str) -> Loaded {
    match parse_str("t.conf", text) {
        Ok(l) => l,
        Err(e) => panic!("unexpected error:\n{e}\n--- in:\n{text}"),
    }
}

/// Parses with the support gate off.
pub fn ok_all(text: &str) -> Loaded {
    let opts = ParseOptions {
        allow_unsupported: true,
        ..Default::default()
    };
    match parse_str_with("t.conf", text, &opts) {
        Ok(l) => l,
        Err(e) => panic!("unexpected error:\n{e}\n--- in:\n{text}"),
    }
}

pub fn cfg(text: &str) -> Config {
    ok(text).config
}

/// The errors of a config that must fail.
pub fn errs(text: &str) -> Vec<Diagnostic> {
    match parse_str("t.conf", text) {
        Ok(l) => panic!("expected an error, got {:?}\n--- in:\n{text}", l.config),
        Err(e) => e.diagnostics,
    }
}

/// The single error of a config; checks its position and that the message contains `msg`.
pub fn err_at(text: &str, line: u32, column: u32, msg: &str) -> Diagnostic {
    let e = errs(text);
    assert_eq!(e.len(), 1, "expected one error, got:\n{e:#?}");
    let d = e.into_iter().next().unwrap();
    assert!(
        d.message.contains(msg),
        "message {:?} does not contain {msg:?}",
        d.message
    );
    assert_eq!((d.line, d.column), (line, column), "position of {d}");
    d
}

/// The warnings (messages only) of a config that must parse.
pub fn warnings(text: &str) -> Vec<String> {
    ok(text).warnings.into_iter().map(|w| w.message).collect()
}

/// A config with one socks rule whose body is `body`, and methods `none`.
pub fn socks_rule(body: &str) -> String {
    format!("socksmethod: none\nsocks pass {{ {body} }}\n")
}

/// Line and column (1-based) of the first occurrence of `needle` in `text`.
pub fn find(text: &str, needle: &str) -> (u32, u32) {
    let off = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {text:?}"));
    let before = &text[..off];
    let line = before.matches('\n').count() as u32 + 1;
    let col = before.rsplit('\n').next().unwrap().chars().count() as u32 + 1;
    (line, col)
}

/// The single error of `text` is at the first `needle`, names it as its token, and its message
/// contains `msg`.
pub fn err_near(text: &str, needle: &str, msg: &str) -> Diagnostic {
    let (line, col) = find(text, needle);
    let d = err_at(text, line, col, msg);
    assert_eq!(d.token, needle, "token of {d}");
    d
}
