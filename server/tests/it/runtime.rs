//! The runtime's cross-executor wake-ups. zoocore's glommio (vendor/glommio)
//! replaced the membarrier an executor issued every time it parked with a
//! pair of fences: if that pairing were wrong, a sender could miss that its
//! receiver is going to sleep, and the receiver would sleep with a message
//! waiting. Here two executors that never spin exchange more than 10^7
//! messages through small channels, so both park all the time; a lost
//! wake-up stops the exchange, and the watchdog turns that hang into a
//! failure that says where it stopped. The exchange runs twice: with the
//! main rings set up as the server sets them up by default, and with
//! `zoocore.deferTaskrun` (DEFER_TASKRUN), whose completions arrive only
//! when the executor asks for them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};

/// Messages streamed one way through a channel of `STREAM_CAPACITY`: the
/// receiver parks when it is empty, the sender when it is full.
const STREAMED: u64 = 10_000_000;
const STREAM_CAPACITY: usize = 8;
/// Round trips of one message each way afterwards: each side parks on
/// every message.
const ROUND_TRIPS: u64 = 200_000;
/// No message at all for this long means an executor sleeps on one.
const STALL: Duration = Duration::from_secs(60);

fn executor(name: &str) -> LocalExecutorBuilder {
    // No spinning: every wait is a park and every send may have to wake.
    LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .io_memory(1 << 16)
}

/// The ring setup is process-wide: the two exchanges take turns.
static RING_SETUP: Mutex<()> = Mutex::new(());

#[test]
fn executors_that_never_spin_pass_ten_million_messages_without_losing_a_wake_up() {
    exchange(false);
}

#[test]
fn executors_with_deferred_task_work_pass_ten_million_messages_without_losing_a_wake_up() {
    exchange(true);
}

fn exchange(defer_taskrun: bool) {
    let _turn = RING_SETUP.lock().unwrap_or_else(|p| p.into_inner());
    glommio::set_defer_taskrun(defer_taskrun);
    let progress = Arc::new(AtomicU64::new(0));
    let (to_b, from_a) = shared_channel::new_bounded::<u64>(STREAM_CAPACITY);
    let (back_to_a, from_b) = shared_channel::new_bounded::<u64>(1);
    let (done, finished) = mpsc::channel::<&'static str>();

    let (seen, done_a) = (progress.clone(), done.clone());
    let a = executor("wake-a")
        .spawn(move || async move {
            let to_b = to_b.connect().await;
            let from_b = from_b.connect().await;
            for i in 0..STREAMED {
                to_b.send(i).await.expect("b is gone");
            }
            for i in 0..ROUND_TRIPS {
                to_b.send(STREAMED + i).await.expect("b is gone");
                let echo = from_b.recv().await.expect("b is gone");
                assert_eq!(echo, STREAMED + i, "round trip {i} answered out of order");
                seen.fetch_add(1, Ordering::Relaxed);
            }
            let _ = done_a.send("a");
        })
        .expect("start executor a");
    let (seen, done_b) = (progress.clone(), done);
    let b = executor("wake-b")
        .spawn(move || async move {
            let from_a = from_a.connect().await;
            let back_to_a = back_to_a.connect().await;
            for i in 0..STREAMED {
                let got = from_a.recv().await.expect("a is gone");
                assert_eq!(got, i, "message {i} arrived out of order");
                seen.fetch_add(1, Ordering::Relaxed);
            }
            for _ in 0..ROUND_TRIPS {
                let got = from_a.recv().await.expect("a is gone");
                back_to_a.send(got).await.expect("a is gone");
            }
            let _ = done_b.send("b");
        })
        .expect("start executor b");

    let mut remaining = 2;
    let mut last = 0;
    while remaining > 0 {
        match finished.recv_timeout(STALL) {
            Ok(_) => remaining -= 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = progress.load(Ordering::Relaxed);
                assert!(
                    now > last,
                    "no message for {STALL:?} after {now} of {} \
                     (a lost wake-up: an executor sleeps with a message waiting)",
                    STREAMED + ROUND_TRIPS
                );
                last = now;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!(
                    "an executor panicked after {} messages",
                    progress.load(Ordering::Relaxed)
                )
            }
        }
    }
    a.join().expect("executor a");
    b.join().expect("executor b");
    assert_eq!(progress.load(Ordering::Relaxed), STREAMED + ROUND_TRIPS);
}
