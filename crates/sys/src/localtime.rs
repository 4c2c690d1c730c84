//! Local wall-clock time for log line prefixes (`Nov 25 00:07:52`), as Dante prints it.

use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Formats `t` as `Mon DD HH:MM:SS` in the local time zone (day padded with a space, like
/// syslog), and returns it with the seconds and microseconds since the epoch.
pub fn stamp(t: SystemTime) -> (String, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let micros = d.subsec_micros();
    let tt = secs as libc::time_t;
    // SAFETY: `tm` is plain old data that localtime_r fully initialises on success; we pass
    // valid pointers to a local time_t and a local tm, and localtime_r is thread-safe.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&tt, &mut tm).is_null() {
            None
        } else {
            Some(tm)
        }
    };
    let text = match tm {
        Some(tm) => format!(
            "{} {:>2} {:02}:{:02}:{:02}",
            MONTHS[(tm.tm_mon.clamp(0, 11)) as usize],
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        ),
        None => String::from("Jan  1 00:00:00"),
    };
    (text, secs, micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let (s, secs, _) = stamp(SystemTime::now());
        assert_eq!(s.len(), 15, "{s}");
        assert!(secs > 1_700_000_000);
    }
}
