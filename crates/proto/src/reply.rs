//! The outcome of a request as the server answers it: the SOCKS5 reply code ([`Reply`], RFC 1928
//! §6) and the SOCKS4 one ([`Socks4Reply`]), with the mapping from one to the other and from a
//! failed `connect(2)`/`bind(2)` errno.
//!
//! Every codec's error says which reply the server should send before closing; they all name
//! the types here, which import nothing else of the crate, so no codec has to import another
//! for them.

use std::fmt;

/// SOCKS5 reply codes (RFC 1928 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reply {
    /// 00 succeeded.
    Succeeded,
    /// 01 general SOCKS server failure.
    GeneralFailure,
    /// 02 connection not allowed by ruleset (Dante also uses it for session limits).
    NotAllowed,
    /// 03 network unreachable.
    NetworkUnreachable,
    /// 04 host unreachable.
    HostUnreachable,
    /// 05 connection refused.
    ConnectionRefused,
    /// 06 TTL expired (Dante: connect timed out).
    TtlExpired,
    /// 07 command not supported.
    CommandNotSupported,
    /// 08 address type not supported.
    AddressTypeNotSupported,
}

impl Reply {
    /// All replies, in code order.
    pub const ALL: [Reply; 9] = [
        Reply::Succeeded,
        Reply::GeneralFailure,
        Reply::NotAllowed,
        Reply::NetworkUnreachable,
        Reply::HostUnreachable,
        Reply::ConnectionRefused,
        Reply::TtlExpired,
        Reply::CommandNotSupported,
        Reply::AddressTypeNotSupported,
    ];

    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Reply::Succeeded => 0,
            Reply::GeneralFailure => 1,
            Reply::NotAllowed => 2,
            Reply::NetworkUnreachable => 3,
            Reply::HostUnreachable => 4,
            Reply::ConnectionRefused => 5,
            Reply::TtlExpired => 6,
            Reply::CommandNotSupported => 7,
            Reply::AddressTypeNotSupported => 8,
        }
    }

    /// From a wire code; `None` for unassigned codes 09..FF.
    pub fn from_code(code: u8) -> Option<Reply> {
        Reply::ALL.get(usize::from(code)).copied()
    }

    /// Maps a failed `connect(2)`/`bind(2)` errno to a reply exactly as Dante's
    /// `errno2reply()` does (lib/util.c, Dante 1.4.x):
    ///
    /// | errno                     | reply                   |
    /// |---------------------------|-------------------------|
    /// | ENETDOWN, ENETUNREACH     | 03 network unreachable  |
    /// | EHOSTDOWN, EHOSTUNREACH   | 04 host unreachable     |
    /// | ECONNREFUSED, ECONNRESET  | 05 connection refused   |
    /// | ETIMEDOUT                 | 06 TTL expired          |
    /// | anything else             | 01 general failure      |
    ///
    /// "Anything else" deliberately includes EACCES, EPERM (firewall rejects), EAFNOSUPPORT,
    /// EADDRNOTAVAIL and EINVAL: Dante answers 01 for them and clients of a drop-in replacement
    /// must see the same. Where Dante answers 02 or 08 it does so from explicit checks (rules,
    /// session limits, "no IPv6 external address"), not from an errno; the server must do the
    /// same before it connects.
    pub fn from_errno(errno: i32) -> Reply {
        match errno {
            libc::ENETDOWN | libc::ENETUNREACH => Reply::NetworkUnreachable,
            libc::EHOSTDOWN | libc::EHOSTUNREACH => Reply::HostUnreachable,
            libc::ECONNREFUSED | libc::ECONNRESET => Reply::ConnectionRefused,
            libc::ETIMEDOUT => Reply::TtlExpired,
            _ => Reply::GeneralFailure,
        }
    }

    /// The SOCKS4 code for this outcome: 90 on success, 91 otherwise ("v4 is not very
    /// specific", as Dante's `sockscode()` puts it).
    pub fn to_socks4(self) -> Socks4Reply {
        match self {
            Reply::Succeeded => Socks4Reply::Granted,
            _ => Socks4Reply::Rejected,
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reply::Succeeded => "succeeded",
            Reply::GeneralFailure => "general SOCKS server failure",
            Reply::NotAllowed => "connection not allowed by ruleset",
            Reply::NetworkUnreachable => "network unreachable",
            Reply::HostUnreachable => "host unreachable",
            Reply::ConnectionRefused => "connection refused",
            Reply::TtlExpired => "TTL expired",
            Reply::CommandNotSupported => "command not supported",
            Reply::AddressTypeNotSupported => "address type not supported",
        })
    }
}

/// SOCKS4 reply codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Socks4Reply {
    /// 90 request granted.
    Granted,
    /// 91 request rejected or failed.
    Rejected,
    /// 92 rejected: cannot connect to identd on the client.
    NoIdentd,
    /// 93 rejected: identd and client report different user-ids.
    IdentMismatch,
}

impl Socks4Reply {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Socks4Reply::Granted => 90,
            Socks4Reply::Rejected => 91,
            Socks4Reply::NoIdentd => 92,
            Socks4Reply::IdentMismatch => 93,
        }
    }

    /// From a wire code; `None` for anything but 90..=93.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            90 => Some(Socks4Reply::Granted),
            91 => Some(Socks4Reply::Rejected),
            92 => Some(Socks4Reply::NoIdentd),
            93 => Some(Socks4Reply::IdentMismatch),
            _ => None,
        }
    }
}

impl From<Reply> for Socks4Reply {
    fn from(r: Reply) -> Self {
        r.to_socks4()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes() {
        for (i, r) in Reply::ALL.iter().enumerate() {
            assert_eq!(usize::from(r.code()), i);
            assert_eq!(Reply::from_code(r.code()), Some(*r));
        }
        assert_eq!(Reply::from_code(9), None);
        assert_eq!(Reply::from_code(255), None);
        assert_eq!(Reply::Succeeded.to_socks4(), Socks4Reply::Granted);
        for r in &Reply::ALL[1..] {
            assert_eq!(Socks4Reply::from(*r), Socks4Reply::Rejected);
        }
        assert_eq!(Reply::TtlExpired.to_string(), "TTL expired");
    }

    #[test]
    fn errno_mapping_matches_dante() {
        assert_eq!(
            Reply::from_errno(libc::ENETUNREACH),
            Reply::NetworkUnreachable
        );
        assert_eq!(Reply::from_errno(libc::ENETDOWN), Reply::NetworkUnreachable);
        assert_eq!(
            Reply::from_errno(libc::EHOSTUNREACH),
            Reply::HostUnreachable
        );
        assert_eq!(Reply::from_errno(libc::EHOSTDOWN), Reply::HostUnreachable);
        assert_eq!(
            Reply::from_errno(libc::ECONNREFUSED),
            Reply::ConnectionRefused
        );
        assert_eq!(
            Reply::from_errno(libc::ECONNRESET),
            Reply::ConnectionRefused
        );
        assert_eq!(Reply::from_errno(libc::ETIMEDOUT), Reply::TtlExpired);
        for e in [
            libc::EACCES,
            libc::EPERM,
            libc::EAFNOSUPPORT,
            libc::EADDRNOTAVAIL,
            libc::EINVAL,
            0,
            -1,
        ] {
            assert_eq!(Reply::from_errno(e), Reply::GeneralFailure, "errno {e}");
        }
    }
}
