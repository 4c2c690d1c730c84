//! The admin HTTP port (`rsockd.metrics:`): `/metrics` in Prometheus text and `/healthz`.
//! The numbers come from the shared counters region (scoreboard/counters.rs), so whichever
//! mother answers a scrape gives the whole server's totals.

pub mod exposition;
pub mod health;
pub mod http;
