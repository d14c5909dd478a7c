//! At most one log line per second for a condition that can repeat on every request (a limit
//! reached under load), so the host cannot flood Kong's error log.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

#[derive(Default)]
pub struct Throttle {
    /// Unix second of the last line let through.
    last: AtomicU64,
}

impl Throttle {
    /// True at most once per wall-clock second.
    pub fn allow(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.last.swap(now, Ordering::AcqRel) != now
    }
}
