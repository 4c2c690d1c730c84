//! Fuzz target: `rsockd_proto::oracle::rfc1929` — the decoder never panics, keeps its stream
//! properties (prefixes, appended junk, sticky errors) and round-trips decode → encode → decode.
//! The same oracle replays the committed corpus in crates/proto/tests/corpus.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rsockd_proto::oracle::rfc1929(data);
});
