//! The keyword part of `rsockd.conf(5)`, generated from the support table (`support.rs`), the
//! one source the config README's table also follows. A test compares the committed manual
//! page with this text (`RSOCKD_BLESS=1` rewrites it), so the page cannot drift.

use crate::support::{Entry, Place, Status, KEYWORDS, VALUES};

/// Marks the generated part of the page.
pub const BEGIN: &str = ".\\\" BEGIN GENERATED KEYWORDS (crates/config/src/manual.rs)";
pub const END: &str = ".\\\" END GENERATED KEYWORDS";

/// roff-safe text: backslashes and hyphens escaped, no line starting with a control char.
fn roff(s: &str) -> String {
    let t = s.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

fn places(p: Place) -> String {
    let names = [
        (Place::GLOBAL, "global"),
        (Place::CLIENT, "client rules"),
        (Place::SOCKS, "socks rules"),
        (Place::HOSTID, "hostid rules"),
        (Place::ROUTE, "routes"),
        (Place::MONITOR, "monitors"),
        (Place::OBJECT, "top level (an object)"),
    ];
    names
        .iter()
        .filter(|(bit, _)| p.contains(*bit))
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

fn status(s: Status) -> String {
    match s {
        Status::Implemented => "implemented".into(),
        Status::Alias { of } => format!("another spelling of {of}"),
        Status::Deprecated { replacement } => {
            format!("deprecated: read as {replacement}, with a warning")
        }
        Status::Ignored { reason } => format!("accepted with a warning and no effect: {reason}"),
        Status::Rejected { reason } => format!("an error, as in Dante: {reason}"),
        Status::NotYet { detail: "" } => "not supported yet (an error naming it)".into(),
        Status::NotYet { detail } => format!("not supported yet: {detail}"),
        Status::ByValue => "depends on the value (see below)".into(),
    }
}

fn entry(e: &Entry) -> String {
    let name = if e.prefix {
        format!("{}*", e.key)
    } else {
        e.key.to_string()
    };
    format!(
        ".TP\n.B {}\n{}; {}.\n",
        roff(&name),
        roff(&places(e.place)),
        roff(&status(e.status))
    )
}

/// The generated section, markers included.
pub fn keyword_section() -> String {
    let mut out = format!("{BEGIN}\n.SH KEYWORDS\nEvery keyword rsockd knows, where it may appear, and what it does with it.\n");
    for e in KEYWORDS {
        out.push_str(&entry(e));
    }
    out.push_str(".SS Values with a status of their own\n");
    for (k, v, s) in VALUES {
        out.push_str(&format!(
            ".TP\n.B {}: {}\n{}.\n",
            roff(k),
            roff(v),
            roff(&status(*s))
        ));
    }
    out.push_str(END);
    out.push('\n');
    out
}
