//! Answering Kong's requests: the dispatcher and the plugins it serves, their instances, the
//! events that run phase handlers as coroutines on the loops, and the connections those events
//! answer on as they move between them; statistics and the limits they are counted against.
//!
//! Each module uses only those after it: `dispatch` (Kong's methods) → `events` (handlers and
//! their Steps) → `protobuf` (a ProtoBuf:1 event's calls) → `connection` (Kong's sockets) →
//! `loops` (the threads that watch them and run handlers as coroutines).

pub(crate) mod connection;
pub(crate) mod dispatch;
pub(crate) mod events;
pub(crate) mod ids;
pub(crate) mod instances;
pub(crate) mod loops;
pub(crate) mod memory;
pub(crate) mod metrics;
pub(crate) mod place;
pub(crate) mod protobuf;
#[cfg(all(test, feature = "fuzzing"))]
mod scenarios;
pub(crate) mod sharded;
pub(crate) mod status;
pub(crate) mod throttle;

/// Seconds since the Unix epoch: Kong's `StartTime`s.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds on the kernel's coarse monotonic clock: a few ms of resolution is plenty for
/// deadlines of milliseconds and more, and reading it costs no timer access on the per-call path.
pub(crate) fn coarse_ms() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
        .expect("a monotonic clock");
    now.tv_sec() as u64 * 1000 + now.tv_nsec() as u64 / 1_000_000
}
