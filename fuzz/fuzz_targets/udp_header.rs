//! Fuzz target: `rsockd_proto::oracle::udp_header` — the datagram decoder never panics, and a
//! decoded header re-encodes (with the same payload) to a datagram that decodes the same.
//! The same oracle replays the committed corpus in crates/proto/tests/corpus.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rsockd_proto::oracle::udp_header(data);
});
