//! Places under a limit: events in flight per plugin, open connections, threads holding idle
//! connections. Each holder keeps its place until dropped, however it ends.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

/// One of `max` places counted by a shared counter, given back when dropped.
pub struct Place(Arc<AtomicUsize>);

impl Place {
    /// A place among `max`, if one is free.
    pub fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Place> {
        if count.fetch_add(1, Ordering::AcqRel) < max {
            Some(Place(Arc::clone(count)))
        } else {
            count.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
