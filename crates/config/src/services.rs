//! Service names for `port = http`: a built-in table, optionally extended from /etc/services.
//!
//! `parse_str` stays pure with the built-in table; `load` adds the host's /etc/services, which
//! is what Dante consults (getservbyname).

use std::collections::HashMap;

/// Common names, so configs parse identically on hosts without /etc/services (containers).
const BUILTIN: &[(&str, u16)] = &[
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("whois", 43),
    ("domain", 53),
    ("tftp", 69),
    ("gopher", 70),
    ("finger", 79),
    ("http", 80),
    ("www", 80),
    ("kerberos", 88),
    ("pop3", 110),
    ("nntp", 119),
    ("ntp", 123),
    ("imap", 143),
    ("imap2", 143),
    ("snmp", 161),
    ("ldap", 389),
    ("https", 443),
    ("submissions", 465),
    ("rtsp", 554),
    ("nntps", 563),
    ("submission", 587),
    ("ldaps", 636),
    ("rsync", 873),
    ("imaps", 993),
    ("pop3s", 995),
    ("socks", 1080),
    ("mysql", 3306),
    ("sip", 5060),
    ("xmpp-client", 5222),
    ("postgresql", 5432),
    ("ircd", 6667),
    ("http-alt", 8080),
];

/// A service-name → port table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Services {
    extra: HashMap<String, u16>,
}

impl Services {
    /// The built-in table only.
    pub fn builtin() -> Services {
        Services::default()
    }

    /// The built-in table plus the names and aliases in `text` (the format of /etc/services).
    /// Malformed lines are skipped: the file belongs to the host, not to the config.
    pub fn with_etc_services(text: &str) -> Services {
        let mut extra = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut fields = line.split_whitespace();
            let (Some(name), Some(port_proto)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Some((port, proto)) = port_proto.split_once('/') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            if proto != "tcp" && proto != "udp" {
                continue;
            }
            for n in std::iter::once(name).chain(fields) {
                extra.entry(n.to_string()).or_insert(port);
            }
        }
        Services { extra }
    }

    /// The port of a service name.
    pub fn lookup(&self, name: &str) -> Option<u16> {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .or_else(|| self.extra.get(name).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_and_etc_services() {
        let s = Services::builtin();
        assert_eq!(s.lookup("http"), Some(80));
        assert_eq!(s.lookup("socks"), Some(1080));
        assert_eq!(s.lookup("gopherx"), None);
        let s = Services::with_etc_services("foo 1234/tcp bar # c\nbad line\nx y/z\n");
        assert_eq!(s.lookup("foo"), Some(1234));
        assert_eq!(s.lookup("bar"), Some(1234));
        assert_eq!(s.lookup("https"), Some(443));
    }
}
