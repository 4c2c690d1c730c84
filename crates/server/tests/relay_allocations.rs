//! The relay's steady state allocates nothing per read or write: once a session's first
//! messages have taken pipes and buffers into the relay's pools and tokio has its
//! registrations, thousands more messages, small ones and bursts large enough to fill a pipe,
//! cost no heap allocation at all, through either engine. dhat counts every allocation of the
//! process; the relay and both peers run on this one thread, so nothing else allocates.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rsockd_server::relay::pipes::{self, Engine};
use rsockd_server::relay::tcp::{relay, End, Options, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const WARM_UP: usize = 300;
const STEADY: usize = 3000;
/// The largest message: more than a 64 KiB buffer, and enough to fill socket queues.
const BIG: usize = 256 << 10;

/// Message `i`'s length: mostly small (short splice reads), every 50th a big burst.
fn len_of(i: usize) -> usize {
    if i % 50 == 49 {
        BIG
    } else {
        1 + (i * 7) % 300
    }
}

async fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
    let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (b, _) = l.accept().await.unwrap();
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

/// Heap blocks allocated so far by the whole process.
fn blocks() -> u64 {
    dhat::HeapStats::get().total_blocks
}

/// Runs `WARM_UP + STEADY` request/response messages through `engine`; returns the blocks
/// allocated during the steady part.
async fn steady_allocations(engine: Engine, see_bytes: bool) -> u64 {
    pipes::set_engine(engine);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (mut outer_c, relay_c) = pair(&l).await;
    let (relay_t, mut outer_t) = pair(&l).await;
    let stats = Stats::default();
    let opts = Options {
        see_bytes,
        ..Options::default()
    };
    let job = relay(&relay_c, &relay_t, &stats, opts, &|_, _| {});
    // Every buffer the peers use exists before the first message.
    let msg: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    let mut at_client = vec![0u8; BIG];
    let mut at_target = vec![0u8; BIG];
    let mut before_steady = 0u64;
    let client = async {
        for i in 0..WARM_UP + STEADY {
            if i == WARM_UP {
                before_steady = blocks();
            }
            let n = len_of(i);
            outer_c.write_all(&msg[..n]).await.unwrap();
            outer_c.read_exact(&mut at_client[..n]).await.unwrap();
            assert!(at_client[..n] == msg[..n], "message {i} came back changed");
        }
        let after = blocks();
        outer_c.shutdown().await.unwrap();
        after
    };
    let target = async {
        for i in 0..WARM_UP + STEADY {
            let n = len_of(i);
            outer_t.read_exact(&mut at_target[..n]).await.unwrap();
            outer_t.write_all(&at_target[..n]).await.unwrap();
        }
        let mut rest = [0u8; 1];
        assert_eq!(outer_t.read(&mut rest).await.unwrap(), 0);
        outer_t.shutdown().await.unwrap();
    };
    let all = async { tokio::join!(job, client, target) };
    let (end, after, ()) = tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("the relay stalled");
    assert!(matches!(end, End::ClientClosed), "{end:?}");
    let sent: u64 = (0..WARM_UP + STEADY).map(|i| len_of(i) as u64).sum();
    assert_eq!(stats.to_target.get(), sent);
    assert_eq!(stats.to_client.get(), sent);
    pipes::set_engine(Engine::Splice(pipes::DEFAULT_PIPE_SIZE));
    after - before_steady
}

#[test]
fn steady_relaying_allocates_nothing() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, engine, see_bytes) in [
        ("splice, 1 MiB pipes", Engine::Splice(1 << 20), false),
        ("splice, 64 KiB pipes", Engine::Splice(64 << 10), false),
        ("read/write", Engine::Copy, false),
        (
            "read/write for a rule that logs data",
            Engine::Splice(1 << 20),
            true,
        ),
    ] {
        let n = rt.block_on(steady_allocations(engine, see_bytes));
        assert_eq!(
            n, 0,
            "{name}: {n} heap allocations in {STEADY} steady messages"
        );
    }
}
