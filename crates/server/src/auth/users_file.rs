//! `rsockd.users.file` (our extension): one `user:hash` line per user, crypt(3)-style hashes.
//!
//! For hosts and containers without system accounts. Plain-text passwords are refused: every
//! entry must be a hash of a kind libxcrypt verifies and that is still fit for passwords
//! (yescrypt, scrypt, bcrypt, SHA-512/256-crypt). `rsockd --hash-password` writes such lines.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Hash prefixes we accept, strongest first. MD5-crypt and DES are refused: both fall to
/// brute force on a laptop.
pub const KINDS: &[(&str, &str)] = &[
    ("$y$", "yescrypt"),
    ("$gy$", "gost-yescrypt"),
    ("$7$", "scrypt"),
    ("$2b$", "bcrypt"),
    ("$2y$", "bcrypt"),
    ("$2a$", "bcrypt"),
    ("$6$", "sha512crypt"),
    ("$5$", "sha256crypt"),
];

/// A loaded password file.
#[derive(Clone, PartialEq, Eq)]
pub struct UsersFile {
    pub path: PathBuf,
    entries: HashMap<String, String>,
    /// The hash checked for unknown users, so that a failed login costs the same whether or
    /// not the user exists (the file's first entry: with one hash kind and cost, exact).
    dummy: Option<String>,
}

impl fmt::Debug for UsersFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hashes stay out of debug output.
        f.debug_struct("UsersFile")
            .field("path", &self.path)
            .field("users", &self.entries.len())
            .finish()
    }
}

/// A bad line, or a file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: {message}")]
pub struct UsersFileError {
    pub path: String,
    /// 0 when the whole file is at fault.
    pub line: usize,
    pub message: String,
}

/// The kind name of a hash, if we accept it.
pub fn kind_of(hash: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(p, _)| hash.starts_with(p))
        .map(|(_, k)| *k)
}

impl UsersFile {
    /// Parses the text of a password file. Blank lines and lines starting with `#` are
    /// skipped; every other line is `user:hash`.
    pub fn parse(path: &Path, text: &str) -> Result<UsersFile, UsersFileError> {
        let err = |line: usize, message: String| UsersFileError {
            path: path.display().to_string(),
            line,
            message,
        };
        let mut entries = HashMap::new();
        let mut dummy = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(err(n, "expected 'user:hash'".into()));
            };
            if user.is_empty() || user.len() > 255 {
                return Err(err(n, "the user name must be 1 to 255 bytes".into()));
            }
            if user.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(err(
                    n,
                    "the user name holds a space or control character".into(),
                ));
            }
            if hash.contains(':') || hash.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(err(
                    n,
                    format!(
                        "the hash of user \"{user}\" holds ':', a space or a control character"
                    ),
                ));
            }
            if kind_of(hash).is_none() {
                let what = if hash.starts_with('$') {
                    "an unsupported hash kind"
                } else {
                    "not a crypt(3) hash (plain-text passwords are refused)"
                };
                return Err(err(
                    n,
                    format!(
                        "the entry of user \"{user}\" is {what}; use yescrypt ($y$), bcrypt \
                         ($2b$) or SHA-512 ($6$), for example from 'rsockd --hash-password'"
                    ),
                ));
            }
            if entries.contains_key(user) {
                return Err(err(n, format!("user \"{user}\" is listed twice")));
            }
            if dummy.is_none() {
                dummy = Some(hash.to_string());
            }
            entries.insert(user.to_string(), hash.to_string());
        }
        Ok(UsersFile {
            path: path.to_path_buf(),
            entries,
            dummy,
        })
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<UsersFile, UsersFileError> {
        let text = std::fs::read(path).map_err(|e| UsersFileError {
            path: path.display().to_string(),
            line: 0,
            message: format!("cannot read the password file: {e}"),
        })?;
        let text = String::from_utf8(text).map_err(|_| UsersFileError {
            path: path.display().to_string(),
            line: 0,
            message: "the password file is not UTF-8 text".into(),
        })?;
        UsersFile::parse(path, &text)
    }

    /// The stored hash of `user`.
    pub fn hash(&self, user: &str) -> Option<&str> {
        self.entries.get(user).map(String::as_str)
    }

    /// The hash to check unknown users against (None for an empty file).
    pub fn dummy(&self) -> Option<&str> {
        self.dummy.as_deref()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Warns when others can read the file: the hashes are offline-guessable.
pub fn permission_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o004 != 0).then(|| {
        format!(
            "rsockd.users.file {} is readable by every user (mode {:o}); consider chmod 600",
            path.display(),
            mode & 0o777
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<UsersFile, UsersFileError> {
        UsersFile::parse(Path::new("/etc/rsockd.users"), text)
    }

    const Y: &str = "$y$j9T$abcdefghijklmnopqrstu.$0123456789012345678901234567890123456789012";

    #[test]
    fn good_file() {
        let f = parse(&format!(
            "# comment\n\nalice:{Y}\n  bob:$2b$05$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234\ncarol:$6$salt$xyz\n"
        ))
        .expect("parses");
        assert_eq!(f.len(), 3);
        assert_eq!(f.hash("alice"), Some(Y));
        assert!(f.hash("bob").is_some_and(|h| h.starts_with("$2b$")));
        assert_eq!(f.hash("dave"), None);
        assert_eq!(f.dummy(), Some(Y));
        assert!(
            !format!("{f:?}").contains("j9T"),
            "hashes stay out of Debug"
        );
    }

    #[test]
    fn bad_lines_name_the_line() {
        for (text, line, msg) in [
            ("alice\n", 1, "expected 'user:hash'"),
            (":$6$x$y\n", 1, "1 to 255 bytes"),
            ("#x\nalice:secret\n", 2, "plain-text passwords are refused"),
            ("alice:$1$abc$def\n", 1, "unsupported hash kind"),
            ("alice:$6$a$b:extra\n", 1, "holds ':'"),
            ("al ice:$6$a$b\n", 1, "space or control"),
            ("alice:$6$a$b\nalice:$6$c$d\n", 2, "listed twice"),
            ("alice:\n", 1, "plain-text"),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.message.contains(msg), "{text}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("/etc/rsockd.users:{line}: ")),
                "{e}"
            );
        }
        let long = format!("{}:$6$a$b\n", "u".repeat(256));
        assert!(parse(&long).is_err());
    }

    #[test]
    fn empty_file_has_no_dummy() {
        let f = parse("# nobody yet\n").expect("parses");
        assert!(f.is_empty());
        assert_eq!(f.dummy(), None);
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let e = UsersFile::load(Path::new("/nonexistent/rsockd.users")).expect_err("missing");
        assert!(e.message.contains("cannot read the password file"), "{e}");
    }
}
