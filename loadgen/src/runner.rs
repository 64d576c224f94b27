//! One load thread: an event loop (mio) over its share of the sessions.
//!
//! Closed loop: each session keeps `depth` requests in flight and sends the
//! next one as a reply arrives. Open loop: requests are due at a fixed rate
//! whether or not the server keeps up; each is sent on a session with room
//! and its latency is counted from when it was due, not when it could be
//! sent, so a stalled server is charged for the requests it held back
//! (coordinated-omission correction).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustls::ClientConfig;
use zoocore_net::{EventType, Request};

use crate::session::{Incoming, Purpose, Session};
use crate::stats::{Class, Recorder};
use crate::workload::{get_data, path, Rng, SessionOps, Spec, Workload};

/// Open-loop requests that may wait for a free session before the run is
/// called off: the target is far below the asked rate.
const MAX_BACKLOG: usize = 1 << 20;
/// How long replies still in flight at the end are waited for.
const DRAIN: Duration = Duration::from_secs(10);
const TIMER: Token = Token(usize::MAX);

pub struct Plan {
    pub addr: SocketAddr,
    pub spec: Spec,
    /// Global numbers of this thread's sessions.
    pub sessions: Vec<usize>,
    pub depth: usize,
    /// This thread's share of the open-loop rate (requests per second).
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub seconds: u64,
    pub seed: u64,
    pub session_timeout_ms: i32,
    /// TLS to the server, with this configuration.
    pub tls: Option<Arc<ClientConfig>>,
}

/// What the threads of one run share.
pub struct Shared {
    /// Every thread has its sessions connected.
    pub ready: Barrier,
    /// The common start, taken by the first thread past `ready`.
    pub epoch: OnceLock<Instant>,
    /// Completions so far (warm-up included), for the progress line.
    pub completed: AtomicU64,
    pub errors: AtomicU64,
}

impl Shared {
    pub fn new(threads: usize) -> Self {
        Shared {
            ready: Barrier::new(threads + 1),
            epoch: OnceLock::new(),
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }
}

/// A one-shot high-resolution timer (timerfd): epoll's millisecond timeout
/// would add up to 1 ms to every open-loop latency.
struct Timer(OwnedFd);

impl Timer {
    fn new() -> std::io::Result<Timer> {
        // SAFETY: timerfd_create returns a new fd or -1.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a new descriptor nobody else owns.
        Ok(Timer(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn arm(&self, after: Duration) {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: a valid timerfd and itimerspec.
        unsafe { libc::timerfd_settime(self.0.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }

    fn clear(&self) {
        let mut expirations = [0u8; 8];
        // SAFETY: reads at most 8 bytes into the buffer; EAGAIN is fine.
        unsafe { libc::read(self.0.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
    }
}

struct Window {
    measure: Instant,
    end: Instant,
}

impl Window {
    /// How far into the measured window `now` is, if it is inside it.
    fn offset(&self, now: Instant) -> Option<Duration> {
        (now >= self.measure && now < self.end).then(|| now - self.measure)
    }
}

/// The watch workload's round: the writer sets, every watcher hears it and re-arms.
struct WatchRound {
    watchers: usize,
    armed: usize,
    set_at: Option<Instant>,
}

struct Thread {
    plan: Plan,
    poll: Poll,
    sessions: Vec<Option<Session>>,
    /// Storm slots whose close was answered: they end on the server's EOF.
    closed: Vec<bool>,
    ops: Vec<SessionOps>,
    rng: Rng,
    value: Vec<u8>,
    recorder: Recorder,
    completed: u64,
    errors: u64,
}

pub fn run(plan: Plan, shared: &Shared) -> Result<Recorder, String> {
    let count = plan.sessions.len();
    let poll = match Poll::new() {
        Ok(poll) => poll,
        Err(e) => {
            // Reach the barrier anyway, or the other threads wait forever.
            shared.ready.wait();
            return Err(format!("epoll: {e}"));
        }
    };
    let mut t = Thread {
        poll,
        sessions: (0..count).map(|_| None).collect(),
        closed: vec![false; count],
        ops: (0..count).map(|_| SessionOps::default()).collect(),
        rng: Rng::new(plan.seed),
        value: vec![b'w'; plan.spec.value_size],
        recorder: Recorder::new(plan.seconds),
        completed: 0,
        errors: 0,
        plan,
    };
    let storm = t.plan.spec.workload == Workload::Connect;
    let mut watch = (t.plan.spec.workload == Workload::Watch).then(|| WatchRound {
        watchers: count.saturating_sub(1),
        armed: 0,
        set_at: None,
    });
    let prepared = if storm {
        Ok(())
    } else {
        t.connect_all(watch.as_mut())
    };
    shared.ready.wait();
    prepared?;
    let epoch = *shared.epoch.get_or_init(Instant::now);
    let window = Window {
        measure: epoch + t.plan.warmup,
        end: epoch + t.plan.warmup + Duration::from_secs(t.plan.seconds),
    };
    let timer = Timer::new().map_err(|e| format!("timerfd: {e}"))?;
    t.poll
        .registry()
        .register(
            &mut SourceFd(&timer.0.as_raw_fd()),
            TIMER,
            Interest::READABLE,
        )
        .map_err(|e| format!("epoll: {e}"))?;
    let mut backlog: VecDeque<Instant> = VecDeque::new();
    let mut due_count: u64 = 0;
    let mut next_slot = 0;
    if storm {
        for i in 0..count {
            t.open(i)?;
        }
    } else if t.plan.rate.is_none() && watch.is_none() {
        for i in 0..count {
            t.fill(i, epoch);
        }
    }
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        let in_flight: usize = t.sessions.iter().flatten().map(Session::in_flight).sum();
        if now >= window.end && (in_flight == 0 || now >= window.end + DRAIN || storm) {
            break;
        }
        if let Some(round) = watch.as_mut() {
            t.next_watch_round(round, now, &window);
        }
        if let Some(rate) = t.plan.rate {
            loop {
                let due = epoch + Duration::from_secs_f64(due_count as f64 / rate);
                if due > now || due >= window.end {
                    if due < window.end {
                        timer.arm(due - now);
                    }
                    break;
                }
                backlog.push_back(due);
                due_count += 1;
            }
            if backlog.len() > MAX_BACKLOG {
                return Err(format!(
                    "more than {MAX_BACKLOG} requests waiting for a session: the target is far below --rate"
                ));
            }
            while let Some(&due) = backlog.front() {
                let Some(i) = t.free_session(&mut next_slot) else {
                    break;
                };
                t.send_next(i, due);
                backlog.pop_front();
            }
        }
        t.flush_all()?;
        let timeout = (window.end.max(now) - now).min(Duration::from_millis(50));
        t.poll
            .poll(&mut events, Some(timeout.max(Duration::from_millis(1))))
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::Interrupted => Ok(()),
                _ => Err(format!("epoll: {e}")),
            })?;
        for event in events.iter() {
            if event.token() == TIMER {
                timer.clear();
                continue;
            }
            let i = event.token().0;
            let result = t.receive(i, event.is_read_closed(), &window, watch.as_mut());
            match result {
                Ok(()) => {}
                Err(_) if storm && t.closed[i] => {
                    t.sessions[i] = None;
                    t.closed[i] = false;
                    if Instant::now() < window.end {
                        t.open(i)?;
                    }
                }
                Err(e) => return Err(format!("session {}: {e}", t.plan.sessions[i])),
            }
        }
        shared
            .completed
            .fetch_add(std::mem::take(&mut t.completed), Ordering::Relaxed);
        shared
            .errors
            .fetch_add(std::mem::take(&mut t.errors), Ordering::Relaxed);
    }
    if !storm {
        t.close_all()?;
    }
    Ok(t.recorder)
}

impl Thread {
    /// Opens every session of this thread and waits for their handshakes;
    /// watchers also set their first watch.
    fn connect_all(&mut self, mut watch: Option<&mut WatchRound>) -> Result<(), String> {
        for i in 0..self.sessions.len() {
            self.open(i)?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut events = Events::with_capacity(1024);
        let mut armed_sent = false;
        loop {
            self.flush_all()?;
            let connected = self
                .sessions
                .iter()
                .flatten()
                .filter(|s| s.is_connected())
                .count();
            if connected == self.sessions.len() {
                match watch.as_deref_mut() {
                    Some(round) if !armed_sent => {
                        let now = Instant::now();
                        for s in self.sessions.iter_mut().skip(1).flatten() {
                            s.send(&get_data(path(0), true), Purpose::Arm, now);
                        }
                        armed_sent = true;
                        round.armed = 0;
                        continue;
                    }
                    Some(round) if round.armed < round.watchers => {}
                    _ => return Ok(()),
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{connected} of {} sessions connected within 30 s",
                    self.sessions.len()
                ));
            }
            self.poll
                .poll(&mut events, Some(Duration::from_millis(50)))
                .map_err(|e| format!("epoll: {e}"))?;
            let before = Window {
                measure: deadline,
                end: deadline,
            };
            for event in events.iter() {
                self.receive(
                    event.token().0,
                    event.is_read_closed(),
                    &before,
                    watch.as_deref_mut(),
                )
                .map_err(|e| format!("session {}: {e}", self.plan.sessions[event.token().0]))?;
            }
        }
    }

    fn open(&mut self, i: usize) -> Result<(), String> {
        let mut session = Session::connect(
            self.plan.addr,
            self.plan.session_timeout_ms,
            self.plan.tls.as_ref(),
        )
        .map_err(|e| format!("connect {}: {e}", self.plan.addr))?;
        self.poll
            .registry()
            .register(
                &mut session.stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("epoll: {e}"))?;
        self.sessions[i] = Some(session);
        Ok(())
    }

    fn flush_all(&mut self) -> Result<(), String> {
        for (i, s) in self.sessions.iter_mut().enumerate() {
            if let Some(s) = s.as_mut().filter(|s| s.has_output()) {
                if let Err(e) = s.flush() {
                    if !self.closed[i] {
                        return Err(format!("session {}: {e}", self.plan.sessions[i]));
                    }
                }
            }
        }
        Ok(())
    }

    /// Closed loop: tops session `i` up to `depth` requests in flight.
    fn fill(&mut self, i: usize, now: Instant) {
        while self.sessions[i]
            .as_ref()
            .is_some_and(|s| s.in_flight() < self.plan.depth)
            && self.plan.spec.ready(&self.ops[i])
        {
            self.send_next(i, now);
        }
    }

    fn send_next(&mut self, i: usize, at: Instant) {
        let (request, purpose) = self.plan.spec.next(
            self.plan.sessions[i],
            &mut self.ops[i],
            &mut self.rng,
            &self.value,
        );
        if let Some(s) = self.sessions[i].as_mut() {
            s.send(&request, purpose, at);
        }
    }

    /// Open loop: a session with room, taken round robin.
    fn free_session(&mut self, next: &mut usize) -> Option<usize> {
        let n = self.sessions.len();
        let start = *next;
        let found = (0..n).map(|k| (start + k) % n).find(|&i| {
            self.sessions[i]
                .as_ref()
                .is_some_and(|s| s.in_flight() < self.plan.depth)
                && self.plan.spec.ready(&self.ops[i])
        })?;
        *next = (found + 1) % n;
        Some(found)
    }

    fn next_watch_round(&mut self, round: &mut WatchRound, now: Instant, window: &Window) {
        let writer_idle = self.sessions[0]
            .as_ref()
            .is_some_and(|s| s.in_flight() == 0);
        if writer_idle && round.armed == round.watchers && now < window.end {
            round.armed = 0;
            round.set_at = Some(now);
            let request = crate::workload::set_data(path(0), &self.value);
            if let Some(s) = self.sessions[0].as_mut() {
                s.send(&request, Purpose::Measure(Class::Write), now);
            }
        }
    }

    /// Handles what arrived on session `i`.
    fn receive(
        &mut self,
        i: usize,
        peer_closed: bool,
        window: &Window,
        mut watch: Option<&mut WatchRound>,
    ) -> std::io::Result<()> {
        let Some(session) = self.sessions[i].as_mut() else {
            return Ok(());
        };
        let closed_loop = self.plan.rate.is_none();
        let storm = self.plan.spec.workload == Workload::Connect;
        let mut refill = false;
        let (recorder, ops, completed, errors, closed) = (
            &mut self.recorder,
            &mut self.ops[i],
            &mut self.completed,
            &mut self.errors,
            &mut self.closed[i],
        );
        let result = session.receive(peer_closed, |s, incoming| {
            let now = Instant::now();
            let mut record = |class: Class, latency: Duration, err: i32| {
                *completed += 1;
                *errors += u64::from(err != 0);
                if let Some(into) = window.offset(now) {
                    recorder.record(class, latency, into, err);
                }
            };
            match incoming {
                Incoming::Connected { started } => {
                    if storm {
                        record(Class::Connect, now - started, 0);
                        s.send(&Request::CloseSession, Purpose::Close, now);
                    }
                }
                Incoming::Reply {
                    pending,
                    err,
                    created,
                } => match pending.purpose {
                    Purpose::Measure(class) => {
                        record(class, now - pending.at, err);
                        refill = closed_loop;
                    }
                    Purpose::CreateToDelete => {
                        record(Class::Write, now - pending.at, err);
                        ops.creating = ops.creating.saturating_sub(1);
                        ops.to_delete.extend(created);
                        refill = closed_loop;
                    }
                    Purpose::Arm => {
                        if let Some(round) = watch.as_deref_mut() {
                            round.armed += 1;
                        }
                    }
                    Purpose::Close => {
                        if storm {
                            record(Class::Close, now - pending.at, err);
                            *closed = true;
                        }
                    }
                },
                Incoming::Event(event) => {
                    if event.event_type == EventType::NodeDataChanged as i32 {
                        if let Some(set_at) = watch.as_deref().and_then(|r| r.set_at) {
                            record(Class::Event, now - set_at, 0);
                        }
                        s.send(&get_data(path(0), true), Purpose::Arm, now);
                    }
                }
            }
        });
        let now = Instant::now();
        if refill && now < window.end && watch.is_none() {
            self.fill(i, now);
        }
        result
    }

    /// Closes every session (closeSession, so the server frees it at once)
    /// and waits briefly for the answers.
    fn close_all(&mut self) -> Result<(), String> {
        let now = Instant::now();
        for s in self.sessions.iter_mut().flatten() {
            s.send(&Request::CloseSession, Purpose::Close, now);
        }
        for c in self.closed.iter_mut() {
            *c = true;
        }
        self.flush_all()?;
        let deadline = now + Duration::from_secs(5);
        let mut events = Events::with_capacity(1024);
        let past = Window {
            measure: now,
            end: now,
        };
        while Instant::now() < deadline && self.sessions.iter().flatten().any(|s| s.in_flight() > 0)
        {
            if self
                .poll
                .poll(&mut events, Some(Duration::from_millis(50)))
                .is_err()
            {
                break;
            }
            for event in events.iter() {
                let i = event.token().0;
                if self
                    .receive(i, event.is_read_closed(), &past, None)
                    .is_err()
                {
                    self.sessions[i] = None;
                }
            }
        }
        Ok(())
    }
}
