//! `rsockd.route.credentials` (our extension): the name and password a route with
//! `method: username` gives its upstream, instead of forwarding the client's own (Dante's only
//! way). One `host:port user:password` line per upstream (`[v6addr]:port` for IPv6); `#`
//! starts a comment; the password is the rest of the line after the first `:` of its field,
//! so it may hold colons but not blanks.
//!
//! The file holds secrets for other systems: it must belong to root and be readable by its
//! owner alone, or it is refused. Only the auth helper (which keeps `user.privileged`) reads
//! it; a mother asks for one upstream's credentials when a chained request needs them. No
//! error message and no `Debug` output shows a password.

use std::fmt;
use std::path::{Path, PathBuf};

/// One upstream's credentials; the password is wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// The upstream as routes write it in `via:` (a name in lower case, or an address).
    pub host: String,
    pub port: u16,
    pub user: Vec<u8>,
    pub password: Vec<u8>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.password.fill(0);
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A loaded credentials file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCredentials {
    pub path: PathBuf,
    entries: Vec<Entry>,
}

/// A bad line, or a file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rsockd.route.credentials {path}{}: {message}", line_part(*.line))]
pub struct CredentialsError {
    pub path: String,
    /// 0 when the whole file is at fault.
    pub line: usize,
    pub message: String,
}

fn line_part(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}")
    }
}

/// The key routes and lines are compared by: names without case, addresses canonical.
fn host_key(host: &str) -> String {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_canonical().to_string(),
        Err(_) => host.to_ascii_lowercase(),
    }
}

impl RouteCredentials {
    /// Reads `path`, refusing a file that is not root's alone.
    pub fn load(path: &Path) -> Result<RouteCredentials, CredentialsError> {
        use std::os::unix::fs::MetadataExt;
        let whole = |message: String| CredentialsError {
            path: path.display().to_string(),
            line: 0,
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| whole(format!("cannot read: {e}")))?;
        if meta.uid() != 0 {
            return Err(whole(format!(
                "must belong to root (it belongs to uid {}): it holds passwords for other systems",
                meta.uid()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(whole(format!(
                "must be readable by root alone (mode {:o}; chmod 600)",
                meta.mode() & 0o7777
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| whole(format!("cannot read: {e}")))?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<RouteCredentials, CredentialsError> {
        let mut entries: Vec<Entry> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let err = |message: &str| CredentialsError {
                path: path.display().to_string(),
                line: i + 1,
                message: message.to_string(),
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(upstream), Some(login), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(err("expected \"host:port user:password\""));
            };
            let (host, port) = match upstream.rsplit_once(':') {
                Some((h, p)) => (h, p),
                None => return Err(err("expected \"host:port\" before the credentials")),
            };
            let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
            let host = bracketed.unwrap_or(host);
            let v6_ok = bracketed.is_some() && host.parse::<std::net::Ipv6Addr>().is_ok();
            if host.is_empty() || (host.contains(':') && !v6_ok) {
                return Err(err(
                    "bad upstream host (an IPv6 address is written [address]:port)",
                ));
            }
            let port: u16 = match port.parse() {
                Ok(p) if p != 0 => p,
                _ => return Err(err("bad upstream port")),
            };
            let Some((user, password)) = login.split_once(':') else {
                return Err(err("expected \"user:password\" after the upstream"));
            };
            // RFC 1929 carries 1 to 255 bytes of each.
            if user.is_empty() || user.len() > 255 || password.is_empty() || password.len() > 255 {
                return Err(err(
                    "the user name and the password must be 1 to 255 bytes each",
                ));
            }
            let host = host_key(host);
            if entries.iter().any(|e| e.host == host && e.port == port) {
                return Err(err("this upstream is listed twice"));
            }
            entries.push(Entry {
                host,
                port,
                user: user.as_bytes().to_vec(),
                password: password.as_bytes().to_vec(),
            });
        }
        Ok(RouteCredentials {
            path: path.to_path_buf(),
            entries,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The credentials for the upstream a route names as `host` (as written) and `port`.
    pub fn lookup(&self, host: &str, port: u16) -> Option<&Entry> {
        let host = host_key(host);
        self.entries
            .iter()
            .find(|e| e.port == port && e.host == host)
    }
}

/// `host:port` as a route names its upstream, the key of a query to the helper.
pub fn upstream_key(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Splits [`upstream_key`] back.
pub fn split_key(key: &str) -> Option<(&str, u16)> {
    let (h, p) = key.rsplit_once(':')?;
    let h = h
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h);
    Some((h, p.parse().ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RouteCredentials, CredentialsError> {
        RouteCredentials::parse(Path::new("/etc/rsockd.routes"), text)
    }

    #[test]
    fn lines_and_lookups() {
        let f = parse(
            "# upstreams\n\nProxy.Example:1080 alice:s3:cr3t\n[2001:db8::1]:1080 bob:pw\n\
             10.0.0.1:3128 carol:x\n",
        )
        .unwrap();
        assert_eq!(f.len(), 3);
        let e = f.lookup("proxy.example", 1080).unwrap();
        assert_eq!(
            (&e.user[..], &e.password[..]),
            (&b"alice"[..], &b"s3:cr3t"[..])
        );
        assert_eq!(f.lookup("2001:db8:0::1", 1080).unwrap().user, b"bob");
        assert!(f.lookup("10.0.0.1", 1080).is_none(), "another port");
        assert!(f.lookup("10.0.0.2", 3128).is_none());
        assert_eq!(
            split_key(&upstream_key("2001:db8::1", 1080)),
            Some(("2001:db8::1", 1080))
        );
        assert_eq!(
            split_key(&upstream_key("a.example", 1)),
            Some(("a.example", 1))
        );
    }

    #[test]
    fn bad_lines_name_the_line_and_never_the_password() {
        for (text, want) in [
            ("proxy:1080\n", "expected \"host:port user:password\""),
            (
                "proxy:1080 alice:pw extra\n",
                "expected \"host:port user:password\"",
            ),
            ("proxy alice:pw\n", "expected \"host:port\""),
            ("proxy:x alice:pw\n", "bad upstream port"),
            ("proxy:0 alice:pw\n", "bad upstream port"),
            ("2001:db8::1:1080 alice:pw\n", "bad upstream host"),
            ("proxy:1080 alicepw\n", "expected \"user:password\""),
            ("proxy:1080 alice:\n", "1 to 255 bytes"),
            ("proxy:1080 a:pw\nPROXY:1080 b:pw2\n", "listed twice"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.to_string().contains(want), "{text:?}: {e}");
            assert!(!e.to_string().contains("pw"), "{e}");
        }
        let e = parse("# c\nproxy:1080\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("rsockd.route.credentials /etc/rsockd.routes:2: "),
            "{e}"
        );
        let f = parse("p:1 alice:hunter2\n").unwrap();
        assert!(!format!("{f:?}").contains("hunter2"));
    }

    proptest::proptest! {
        /// Any text: no panic, and an error never repeats a field that could be a password.
        #[test]
        fn any_text_parses_or_names_its_line(lines in proptest::collection::vec("[ -~]{0,40}", 0..6)) {
            let text = lines.join("\n");
            if let Err(e) = parse(&text) {
                let msg = e.to_string();
                proptest::prop_assert!(e.line >= 1 && e.line <= lines.len());
                for l in &lines {
                    if let Some((_, pw)) = l.split_whitespace().nth(1).and_then(|f| f.split_once(':')) {
                        if pw.len() >= 8 {
                            proptest::prop_assert!(!msg.contains(pw), "{msg}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn only_a_root_only_file_is_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("routes");
        std::fs::write(&p, "proxy:1080 alice:pw\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let is_root = rsockd_sys::privs::is_root();
        let e = RouteCredentials::load(&p).unwrap_err().to_string();
        if is_root {
            assert!(
                e.contains("readable by root alone (mode 640; chmod 600)"),
                "{e}"
            );
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert_eq!(RouteCredentials::load(&p).unwrap().len(), 1);
        } else {
            assert!(e.contains("must belong to root"), "{e}");
        }
    }
}
