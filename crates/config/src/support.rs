//! The support table: every Dante 1.4 keyword, where it may appear, and what rsockd does with it.
//!
//! This is the one place that decides whether a recognised keyword is implemented, warned about,
//! rejected like Dante rejects it, or "not supported yet". When the server learns a feature,
//! flip its entry from `NotYet` to `Implemented` (keywords with a model field, such as
//! `udp.portrange`, `user`, `group` and the methods, are already parsed into the model).

use crate::model::Method;

/// What rsockd does with a keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Parsed into the model and acted upon.
    Implemented,
    /// Another spelling of `of`, applied silently (Dante does not warn either).
    Alias { of: &'static str },
    /// Deprecated spelling of `replacement`: applied as that keyword, with a warning.
    Deprecated { replacement: &'static str },
    /// Accepted with a warning and no effect, as Dante only warns.
    Ignored { reason: &'static str },
    /// A hard error, as in Dante.
    Rejected { reason: &'static str },
    /// Recognised, not implemented by rsockd yet: an error naming the keyword.
    NotYet { detail: &'static str },
    /// Depends on the value: see [`value_status`].
    ByValue,
}

/// Where a keyword may appear (bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place(u8);

impl Place {
    pub const GLOBAL: Place = Place(1);
    pub const CLIENT: Place = Place(2);
    pub const SOCKS: Place = Place(4);
    pub const HOSTID: Place = Place(8);
    pub const ROUTE: Place = Place(16);
    pub const MONITOR: Place = Place(32);
    /// Top-level objects (`client`, `socks`, `route`, ...).
    pub const OBJECT: Place = Place(64);

    const fn or(self, o: Place) -> Place {
        Place(self.0 | o.0)
    }

    /// True if every place in `o` is in `self`.
    pub fn contains(self, o: Place) -> bool {
        self.0 & o.0 == o.0
    }
}

const G: Place = Place::GLOBAL;
const C: Place = Place::CLIENT;
const S: Place = Place::SOCKS;
const H: Place = Place::HOSTID;
const R: Place = Place::ROUTE;
const M: Place = Place::MONITOR;
const O: Place = Place::OBJECT;
const RULES: Place = C.or(S).or(H);
const GRULES: Place = G.or(RULES);

/// One keyword (or, with `prefix`, a family of keywords sharing a prefix such as `ldap.`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub key: &'static str,
    pub prefix: bool,
    pub place: Place,
    pub status: Status,
}

const fn e(key: &'static str, place: Place, status: Status) -> Entry {
    Entry {
        key,
        prefix: false,
        place,
        status,
    }
}

const fn family(key: &'static str, place: Place, status: Status) -> Entry {
    Entry {
        key,
        prefix: true,
        place,
        status,
    }
}

const IMPL: Status = Status::Implemented;
const NOT_YET: Status = Status::NotYet { detail: "" };
const NO_HOSTID: Status = Status::Rejected {
    reason: "hostid is not supported on this system (it needs the TCP IP-address option of \
             Solaris and some BSDs); Dante's Linux build refuses it too",
};
const NO_BSDAUTH: Status = Status::Rejected {
    reason: "bsdauth needs BSD Authentication (bsd_auth(3), OpenBSD), which Linux lacks; \
             Dante's Linux build refuses it too",
};
const LIBWRAP_UID: &str =
    "libwrap lines run as the user the relays and mothers run as (user.unprivileged)";

/// Every keyword rsockd recognises.
pub static KEYWORDS: &[Entry] = &[
    // Objects.
    e("client", O, IMPL),
    e("socks", O, IMPL),
    e(
        "pass",
        O,
        Status::Deprecated {
            replacement: "socks pass",
        },
    ),
    e(
        "block",
        O,
        Status::Deprecated {
            replacement: "socks block",
        },
    ),
    e(
        "deny",
        O,
        Status::Rejected {
            reason: "'deny' is not a verdict; use 'block'",
        },
    ),
    e("route", O, IMPL),
    e("monitor", O, IMPL),
    e("hostid", O.or(RULES).or(M), NO_HOSTID),
    // Addresses and the server's own addresses.
    e("internal", G, IMPL),
    e("internal.protocol", G, IMPL),
    e("external", G, IMPL),
    e("external.protocol", G, IMPL),
    e("external.rotation", G, IMPL),
    // Methods and users.
    e("socksmethod", GRULES, IMPL),
    e("clientmethod", GRULES, IMPL),
    e(
        "method",
        GRULES.or(R),
        Status::Deprecated {
            replacement: "socksmethod",
        },
    ),
    e("user.privileged", G, IMPL),
    e("user.unprivileged", G, IMPL),
    e(
        "user.notprivileged",
        G,
        Status::Alias {
            of: "user.unprivileged",
        },
    ),
    e(
        "user.libwrap",
        G,
        Status::Ignored {
            reason: LIBWRAP_UID,
        },
    ),
    // Logging.
    e("logoutput", G, IMPL),
    e("errorlog", G, IMPL),
    e("debug", G, IMPL),
    family("internal.log.", GRULES, IMPL),
    family("external.log.", GRULES, IMPL),
    // Timeouts.
    e("timeout.negotiate", GRULES, IMPL),
    e("timeout.connect", GRULES, IMPL),
    e("timeout.io", GRULES, IMPL),
    e("timeout.io.tcp", GRULES, IMPL),
    e("timeout.io.udp", GRULES, IMPL),
    e("timeout.tcp_fin_wait", GRULES, IMPL),
    e(
        "connecttimeout",
        GRULES,
        Status::Deprecated {
            replacement: "timeout.connect",
        },
    ),
    e(
        "iotimeout",
        GRULES,
        Status::Deprecated {
            replacement: "timeout.io",
        },
    ),
    // Misc server settings.
    e("udp.connectdst", G, IMPL),
    // Our own keywords, namespaced so that no Dante file collides with them.
    e("rsockd.announce.udp", G, IMPL),
    e("rsockd.announce.bind", G, IMPL),
    e("rsockd.proxyprotocol.from", G, IMPL),
    e("rsockd.agent", G, IMPL),
    e("rsockd.metrics", G, IMPL),
    e("rsockd.metrics.users", G, IMPL),
    e("rsockd.log.format", G, IMPL),
    e("rsockd.drain.timeout", G, IMPL),
    e("rsockd.users.file", G, IMPL),
    e("rsockd.route.credentials", G, IMPL),
    e(
        "child.maxidle",
        G,
        Status::Ignored {
            reason: "obsolete since Dante 1.4.0; idle processes are always reaped",
        },
    ),
    e("localdomain", G, Status::Ignored { reason: "obsolete" }),
    e(
        "resolveprotocol",
        G,
        Status::Ignored {
            reason: "only the Dante client library uses it",
        },
    ),
    e("libwrap.hosts_access", G, Status::ByValue),
    e("libwrap.allow", G, IMPL),
    e("libwrap.deny", G, IMPL),
    e("compatibility", G, Status::ByValue),
    e("extension", G.or(R), Status::ByValue),
    e("srchost", G, IMPL),
    family("cpu.", G, IMPL),
    e("child.maxrequests", G, IMPL),
    e("child.maxlifetime", G, IMPL),
    e("route.maxfail", G, IMPL),
    e("route.badexpire", G, IMPL),
    family(
        "socket.recvbuf.",
        G,
        Status::Rejected {
            reason: "the old buffer syntax is no longer supported; use the socket option \
                 syntax, e.g. 'internal.tcp.so_rcvbuf'",
        },
    ),
    family(
        "socket.sendbuf.",
        G,
        Status::Rejected {
            reason: "the old buffer syntax is no longer supported; use the socket option \
                 syntax, e.g. 'external.tcp.so_sndbuf'",
        },
    ),
    e(
        "realm",
        G,
        Status::Rejected {
            reason: "'realm' is only used by Covenant, not by a SOCKS server",
        },
    ),
    // Socket options: <side>.<level>.<option>[.<subfield>].
    family("internal.socket.", GRULES.or(R), IMPL),
    family("internal.ip.", GRULES.or(R), IMPL),
    family("internal.tcp.", GRULES.or(R), IMPL),
    family("internal.udp.", GRULES.or(R), IMPL),
    family("external.socket.", GRULES.or(R), IMPL),
    family("external.ip.", GRULES.or(R), IMPL),
    family("external.tcp.", GRULES.or(R), IMPL),
    family("external.udp.", GRULES.or(R), IMPL),
    // Rule conditions and actions.
    e("from", RULES.or(R).or(M), IMPL),
    e("to", RULES.or(R).or(M), IMPL),
    e("command", S.or(R).or(M), IMPL),
    e("protocol", S.or(R).or(M), IMPL),
    e("proxyprotocol", S.or(R), IMPL),
    e("log", RULES, IMPL),
    e("user", RULES, IMPL),
    e("group", RULES, IMPL),
    e("udp.portrange", S, IMPL),
    e("hostindex", RULES.or(M), NO_HOSTID),
    e("libwrap", RULES, IMPL),
    e("bandwidth", RULES, IMPL),
    e("redirect", S, IMPL),
    e("session.max", RULES, IMPL),
    e("session.throttle", RULES, IMPL),
    e("session.state.key", RULES, IMPL),
    e("session.state.max", RULES, IMPL),
    e("session.state.throttle", RULES, IMPL),
    e("session.state.key.hostindex", RULES, NO_HOSTID),
    e("session.inheritable", RULES, IMPL),
    e("pam.servicename", G.or(RULES), IMPL),
    e(
        "pamservicename",
        RULES,
        Status::Deprecated {
            replacement: "pam.servicename",
        },
    ),
    e("bsdauth.stylename", S, NO_BSDAUTH),
    e("gssapi.servicename", RULES.or(R), NOT_YET),
    e("gssapi.keytab", RULES.or(R), NOT_YET),
    e("gssapi.enctype", RULES.or(R), NOT_YET),
    e("clientcompatibility", C.or(H).or(R), NOT_YET),
    family("ldap.", S, NOT_YET),
    family(
        "pac.",
        RULES,
        Status::Rejected {
            reason: "pac.* (Windows PAC checks) is not in Dante's Linux build, which refuses it \
                     as a syntax error",
        },
    ),
    // Route-only and monitor-only keywords.
    e("via", R, IMPL),
    family("alarm.", M, IMPL),
    family("internal.alarm.", M, IMPL),
    family("external.alarm.", M, IMPL),
];

/// Status of a value of a [`Status::ByValue`] keyword, e.g. `("compatibility", "reuseaddr")`.
pub static VALUES: &[(&str, &str, Status)] = &[
    ("compatibility", "sameport", IMPL),
    ("compatibility", "draft-5.05", IMPL),
    (
        "compatibility",
        "reuseaddr",
        Status::Rejected {
            reason:
                "'compatibility: reuseaddr' is no longer supported (Dante 1.4 rejects it too); \
                     remove it",
        },
    ),
    ("extension", "bind", IMPL),
    ("libwrap.hosts_access", "yes", IMPL),
    ("libwrap.hosts_access", "no", IMPL),
];

/// Looks a keyword up: exact entries first, then families by prefix.
pub fn lookup(word: &str) -> Option<&'static Entry> {
    KEYWORDS
        .iter()
        .find(|e| !e.prefix && e.key == word)
        .or_else(|| {
            KEYWORDS
                .iter()
                .find(|e| e.prefix && word.starts_with(e.key) && word.len() > e.key.len())
        })
}

/// The status of `value` given to a [`Status::ByValue`] keyword; `None` = not a valid value.
pub fn value_status(keyword: &str, value: &str) -> Option<Status> {
    VALUES
        .iter()
        .find(|(k, v, _)| *k == keyword && *v == value)
        .map(|(_, _, s)| *s)
}

/// The valid values of a [`Status::ByValue`] keyword.
pub fn values_of(keyword: &str) -> Vec<&'static str> {
    VALUES
        .iter()
        .filter(|(k, _, _)| *k == keyword)
        .map(|(_, v, _)| *v)
        .collect()
}

/// Whether rsockd implements an authentication method yet.
pub fn method_status(m: Method) -> Status {
    match m {
        Method::None
        | Method::Username
        | Method::PamUsername
        | Method::PamAddress
        | Method::PamAny
        | Method::Rfc931 => Status::Implemented,
        Method::BsdAuth => NO_BSDAUTH,
        Method::Gssapi | Method::LdapAuth => Status::NotYet { detail: "" },
    }
}

/// The closest known keyword, for "did you mean" hints.
pub fn suggest(word: &str) -> Option<&'static str> {
    let word = word.to_ascii_lowercase();
    let budget = match word.len() {
        0..=3 => 1,
        4..=8 => 2,
        _ => 3,
    };
    KEYWORDS
        .iter()
        .filter(|e| !e.prefix)
        .map(|e| (edit_distance(&word, e.key), e.key))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Optimal-string-alignment distance: typos such as `lgo` for `log` count as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, v) in d[0].iter_mut().enumerate() {
        *v = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_exact_and_family() {
        assert_eq!(lookup("internal").map(|e| e.key), Some("internal"));
        assert_eq!(
            lookup("internal.tcp.so_rcvbuf").map(|e| e.key),
            Some("internal.tcp.")
        );
        assert_eq!(lookup("ldap.").map(|e| e.key), None);
        assert!(lookup("nosuch").is_none());
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("sockmethod"), Some("socksmethod"));
        assert_eq!(suggest("interal"), Some("internal"));
        assert_eq!(suggest("xyzzy-plugh"), None);
        assert_eq!(suggest("lgo"), Some("log"));
    }

    #[test]
    fn every_byvalue_keyword_has_values() {
        for k in KEYWORDS.iter().filter(|e| e.status == Status::ByValue) {
            assert!(!values_of(k.key).is_empty(), "{}", k.key);
        }
    }
}
