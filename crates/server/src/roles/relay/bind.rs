use std::os::fd::OwnedFd;
use rsockd_ipc::Handoff;
use crate::relay::tcp::Stats;
use super::Relay;
pub(super) async fn run(_r: &Relay, _h: &Handoff, _fds: Vec<OwnedFd>, _stats: &Stats) {}
