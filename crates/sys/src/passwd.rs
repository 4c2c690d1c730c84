//! The system password database and crypt(3): what `socksmethod: username` checks against.
//!
//! Debian's shadow writes yescrypt (`$y$`) hashes today, which no pure-Rust crate we trust
//! verifies, so hashing goes through libxcrypt's re-entrant `crypt_rn`, which also knows
//! `$6$`, `$5$`, `$2b$` and `$1$`. Reading `/etc/shadow` needs root: the server calls these
//! functions only in its privileged auth helper.

use std::ffi::{CStr, CString};
use std::io;
use std::os::raw::{c_char, c_int, c_ulong};

#[link(name = "crypt")]
extern "C" {
    fn crypt_rn(
        phrase: *const c_char,
        setting: *const c_char,
        data: *mut libc::c_void,
        size: c_int,
    ) -> *mut c_char;
    fn crypt_gensalt_rn(
        prefix: *const c_char,
        count: c_ulong,
        rbytes: *const c_char,
        nrbytes: c_int,
        output: *mut c_char,
        output_size: c_int,
    ) -> *mut c_char;
}

/// `sizeof(struct crypt_data)` in libxcrypt (fixed by its ABI).
const CRYPT_DATA_SIZE: usize = 32768;
/// `CRYPT_GENSALT_OUTPUT_SIZE`.
const GENSALT_OUTPUT_SIZE: usize = 192;

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

/// Hashes `phrase` with the method and salt in `setting` (a full hash may be given: crypt(3)
/// reads only its setting part). Fails for an unknown or malformed setting and for a phrase
/// holding a NUL byte, which crypt(3) cannot take.
pub fn crypt(phrase: &[u8], setting: &str) -> io::Result<String> {
    let phrase = CString::new(phrase).map_err(|_| invalid("password holds a NUL byte"))?;
    let setting = CString::new(setting).map_err(|_| invalid("hash holds a NUL byte"))?;
    // The work area holds intermediate secrets; zeroed before use as libxcrypt asks, and
    // dropped (freed) right after the result is copied out.
    let mut data = vec![0u8; CRYPT_DATA_SIZE];
    // SAFETY: both strings are NUL-terminated and live across the call; `data` is a writable
    // buffer of exactly the size passed, which is sizeof(struct crypt_data). crypt_rn returns
    // NULL on failure or a pointer into `data` to a NUL-terminated string.
    let out = unsafe {
        crypt_rn(
            phrase.as_ptr(),
            setting.as_ptr(),
            data.as_mut_ptr().cast(),
            CRYPT_DATA_SIZE as c_int,
        )
    };
    let result = if out.is_null() {
        Err(invalid("unsupported or malformed password hash"))
    } else {
        // SAFETY: non-NULL results point at a NUL-terminated string inside `data`, which is
        // still alive here.
        let s = unsafe { CStr::from_ptr(out) };
        Ok(s.to_string_lossy().into_owned())
    };
    data.fill(0);
    result
}

/// A new random setting (salt) for hashing with `prefix` (`$y$`, `$6$`, `$5$`, `$2b$`, `$1$`);
/// `count` 0 means the method's default cost. Random bytes come from the kernel.
pub fn gensalt(prefix: &str, count: u64) -> io::Result<String> {
    let prefix = CString::new(prefix).map_err(|_| invalid("prefix holds a NUL byte"))?;
    let mut out = vec![0u8; GENSALT_OUTPUT_SIZE];
    // SAFETY: `prefix` is NUL-terminated; rbytes NULL with nrbytes 0 asks libxcrypt to read
    // random bytes itself; `out` is writable for the size passed. Returns NULL on failure or
    // `out`'s address with a NUL-terminated setting in it.
    let r = unsafe {
        crypt_gensalt_rn(
            prefix.as_ptr(),
            count as c_ulong,
            std::ptr::null(),
            0,
            out.as_mut_ptr().cast(),
            GENSALT_OUTPUT_SIZE as c_int,
        )
    };
    if r.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot make a salt for {:?} with cost {count}",
                prefix.to_string_lossy()
            ),
        ));
    }
    let end = out.iter().position(|&b| b == 0).unwrap_or(out.len());
    Ok(String::from_utf8_lossy(&out[..end]).into_owned())
}

/// The password hash of system user `name`: the shadow entry when there is one (needs root),
/// else the passwd entry's field. `Ok(None)`: no such user.
pub fn system_hash(name: &str) -> io::Result<Option<String>> {
    let cname = CString::new(name).map_err(|_| invalid("user name holds a NUL byte"))?;
    if let Some(h) = shadow_hash(&cname)? {
        return Ok(Some(h));
    }
    match nix::unistd::User::from_name(name).map_err(io::Error::from)? {
        None => Ok(None),
        Some(u) => Ok(Some(u.passwd.to_string_lossy().into_owned())),
    }
}

fn shadow_hash(name: &CStr) -> io::Result<Option<String>> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: an all-zero spwd is a valid value (null pointers and zero numbers); it is
        // only read after getspnam_r filled it.
        let mut sp: libc::spwd = unsafe { std::mem::zeroed() };
        let mut res: *mut libc::spwd = std::ptr::null_mut();
        // SAFETY: `name` is NUL-terminated; `sp`, `buf` (of the length passed) and `res` are
        // valid for writes for the duration of the call.
        let rc = unsafe {
            libc::getspnam_r(
                name.as_ptr(),
                &mut sp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut res,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if res.is_null() {
            // ENOENT/0: no entry; EACCES: not root (the caller falls back to passwd).
            return match rc {
                0 | libc::ENOENT | libc::EACCES | libc::EPERM => Ok(None),
                e => Err(io::Error::from_raw_os_error(e)),
            };
        }
        if sp.sp_pwdp.is_null() {
            return Ok(Some(String::new()));
        }
        // SAFETY: on success sp_pwdp points at a NUL-terminated string inside `buf`, alive here.
        let h = unsafe { CStr::from_ptr(sp.sp_pwdp) };
        let out = h.to_string_lossy().into_owned();
        buf.fill(0);
        return Ok(Some(out));
    }
}

/// The groups of system user `name`: its primary group and every supplementary one, by name
/// (groups without a name are left out). `Ok(None)`: no such user.
pub fn user_groups(name: &str) -> io::Result<Option<Vec<String>>> {
    let Some(u) = nix::unistd::User::from_name(name).map_err(io::Error::from)? else {
        return Ok(None);
    };
    let cname = CString::new(name).map_err(|_| invalid("user name holds a NUL byte"))?;
    let gids = nix::unistd::getgrouplist(&cname, u.gid).map_err(io::Error::from)?;
    let mut names = Vec::with_capacity(gids.len());
    for g in std::iter::once(u.gid).chain(gids) {
        if let Ok(Some(gr)) = nix::unistd::Group::from_gid(g) {
            if !names.contains(&gr.name) {
                names.push(gr.name);
            }
        }
    }
    Ok(Some(names))
}

/// Whether system user `name` exists (no privileges needed).
pub fn user_exists(name: &str) -> io::Result<bool> {
    Ok(nix::unistd::User::from_name(name)
        .map_err(io::Error::from)?
        .is_some())
}

/// Reads one line from standard input as a password. On a terminal, `prompt` goes to stderr
/// and echo is off while typing; from a pipe the line is read as is. The line end is dropped.
pub fn read_password(prompt: &str) -> io::Result<Vec<u8>> {
    use std::io::{BufRead, Write};
    let stdin = io::stdin();
    let tty = rustix::termios::isatty(&stdin);
    let saved = if tty {
        let _ = write!(io::stderr(), "{prompt}");
        let old = rustix::termios::tcgetattr(&stdin)?;
        let mut quiet = old.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet)?;
        Some(old)
    } else {
        None
    };
    let mut line = Vec::new();
    let read = stdin.lock().read_until(b'\n', &mut line);
    if let Some(old) = saved {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &old);
        let _ = writeln!(io::stderr());
    }
    read?;
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(line)
}

/// Compares two byte strings in time that depends only on their lengths, so a wrong guess does
/// not reveal how many leading bytes were right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_debian_hash_kind_round_trips() {
        for prefix in ["$y$", "$6$", "$5$", "$2b$", "$1$"] {
            let setting = gensalt(prefix, 0).expect("gensalt");
            assert!(setting.starts_with(prefix), "{setting}");
            let h = crypt(b"s3cret", &setting).expect("crypt");
            assert!(h.starts_with(prefix));
            assert_eq!(crypt(b"s3cret", &h).expect("verify"), h, "{prefix}");
            assert_ne!(crypt(b"s3creT", &h).expect("verify"), h, "{prefix}");
        }
    }

    #[test]
    fn bad_settings_and_nul_bytes_are_errors() {
        assert!(crypt(b"x", "$9$nonsense").is_err());
        assert!(crypt(b"a\0b", "$6$abc").is_err());
        assert!(crypt(b"x", "*").is_err());
        assert!(crypt(b"x", "!").is_err());
        assert!(gensalt("$zz$", 0).is_err());
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"\0"));
    }

    #[test]
    fn root_can_read_its_own_shadow_entry() {
        if !crate::privs::is_root() {
            return;
        }
        // root always has an entry; its field may be "*", "!" or a hash.
        assert!(system_hash("root").expect("lookup").is_some());
        assert!(system_hash("no-such-user-rsockd")
            .expect("lookup")
            .is_none());
        let g = user_groups("root").expect("groups").expect("root exists");
        assert!(g.iter().any(|n| n == "root"), "{g:?}");
    }
}
