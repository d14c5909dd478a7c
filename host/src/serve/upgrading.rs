//! A serving process's side of being replaced (`serve --upgrade`): once the successor accepts,
//! this process's connections move to it one by one. The upgrade module drives it; the
//! connections only ask whether to move and hand themselves over.

use parking_lot::Mutex;
use std::{os::fd::OwnedFd, sync::mpsc};
use tokio::sync::{watch, Notify};

/// A Kong connection on its way to the successor.
pub(crate) struct MovingConnection {
    /// The socket it was accepted on, which tells the successor what it serves.
    pub(crate) name: String,
    /// What this process read of it and did not answer: the successor reads it first.
    pub(crate) buffered: Vec<u8>,
    /// Its serverPid notification is still owed: the successor sends it ahead of its first reply.
    pub(crate) greet: bool,
    pub(crate) fd: OwnedFd,
}

#[derive(Default)]
pub(crate) struct Upgrading {
    /// True once the successor accepts: from then on connections move to it.
    pub(crate) ready: watch::Sender<bool>,
    /// Where connections go to be sent; set just before `ready`.
    moving: Mutex<Option<mpsc::Sender<MovingConnection>>>,
    /// Notified when the successor holds every connection and no event is left here.
    pub(crate) finished: Notify,
}

impl Upgrading {
    /// Whether connections move to a successor now.
    pub(crate) fn under_way(&self) -> bool {
        *self.ready.borrow()
    }

    /// The successor accepts: connections start moving, arriving on the returned receiver.
    pub(crate) fn begin(&self) -> mpsc::Receiver<MovingConnection> {
        let (moving, moved) = mpsc::channel();
        *self.moving.lock() = Some(moving);
        self.ready.send_replace(true);
        moved
    }

    pub(crate) fn hand_over(&self, connection: MovingConnection) {
        if let Some(moving) = &*self.moving.lock() {
            let _ = moving.send(connection);
        }
    }
}
