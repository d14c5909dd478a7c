//! Ids that never repeat across host restarts.
//!
//! Kong's workers keep instance ids across a plugin-server restart; if a new process handed out
//! the same ids, a stale id would silently run another route's config (Kong issue #8370). Instance
//! ids stay within i32 (protocol.md §9.4) and are reserved in blocks recorded in a state file in
//! the socket dir before any id of the block is handed out, so even a `kill -9` cannot cause
//! reuse.
//! Event ids need no file: they live for one request, so starting each process at the current
//! time in microseconds keeps them apart (and below 2^53, which Kong's Lua numbers hold exactly).

use nix::fcntl::{Flock, FlockArg};
use parking_lot::Mutex;
use std::{
    fs::OpenOptions,
    io::{Read, Seek, Write},
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

/// Ids reserved per write of the state file.
const BLOCK: i64 = 4096;

pub struct InstanceIds {
    state_file: PathBuf,
    /// Next id to hand out and the end (exclusive) of the reserved block.
    range: Mutex<(i64, i64)>,
}

impl InstanceIds {
    pub fn new(state_file: PathBuf) -> Self {
        InstanceIds {
            state_file,
            range: Mutex::new((0, 0)),
        }
    }

    pub fn next(&self) -> i64 {
        let mut range = self.range.lock();
        if range.0 >= range.1 {
            let start = self.reserve().unwrap_or_else(|error| {
                let start = time_seeded_start();
                tracing::warn!(
                    "cannot record instance ids in {} ({error}); starting from a time-based id {start}, \
                     which avoids reuse across restarts only probabilistically",
                    self.state_file.display()
                );
                start
            });
            *range = (start, start + BLOCK);
        }
        let id = range.0;
        range.0 += 1;
        id
    }

    /// Reserves the next block under an exclusive lock (several hosts may share a socket dir).
    fn reserve(&self) -> std::io::Result<i64> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.state_file)?;
        // Released when `file` is dropped.
        let mut file = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| std::io::Error::from(errno))?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let last: i64 = text.trim().parse().unwrap_or(0);
        let start = if last <= 0 || last > i32::MAX as i64 - BLOCK {
            1
        } else {
            last + 1
        };
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", start + BLOCK - 1)?;
        file.sync_all()?;
        Ok(start)
    }
}

fn time_seeded_start() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    (secs % (i32::MAX as u64 / 2)) as i64 * 4 % (i32::MAX as i64 - BLOCK) + 1
}

pub struct EventIds(AtomicU64);

impl EventIds {
    /// Starts at the current time in microseconds: apart from any earlier process's ids.
    pub fn starting_now() -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        EventIds(AtomicU64::new(micros))
    }

    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_allocator_never_repeats_an_id() {
        let file = std::env::temp_dir().join(format!("kong-rust-host-ids-{}", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let first = InstanceIds::new(file.clone());
        let before: Vec<i64> = (0..10).map(|_| first.next()).collect();
        drop(first);
        let second = InstanceIds::new(file.clone());
        let after = second.next();
        assert!(
            before.iter().all(|&id| id < after),
            "{before:?} then {after}"
        );
        assert!(after <= i32::MAX as i64);
        std::fs::remove_file(file).unwrap();
    }
}
