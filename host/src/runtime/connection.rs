//! A Kong connection as a thing that moves between threads.
//!
//! Kong sends nothing on a connection until it has the reply to its previous request, and it
//! almost always sends an event's next Step on the connection that carried the event's previous
//! message (its keepalive pool hands back the connection returned last). So whoever writes a
//! reply on a connection is the natural reader of its next message: a [`Conn`] is owned by
//! exactly one place at a time — the handler that replied last and now reads it, a waiting
//! event it is being handed to, or the loop that watches it while it is idle ([`Home::park`])
//! — and it carries the bytes read of it with it.
//!
//! A handler waits on its connection *and* on its [`Waker`], so a Step that arrives on another
//! connection (Kong may hop) still reaches it; the wait suspends its coroutine (`loops`).

use crate::{
    runtime::loops::{self, Parked, Waker, Watch, Woke},
    runtime::place::Place,
    runtime::throttle::Throttle,
    wire::frame::Frames,
    wire::rpc::{self, RequestError},
    wire::{Message, Protocol},
};
use nix::poll::{poll, PollFd, PollFlags};
use std::{
    cell::RefCell,
    io::{self, Read as _, Write},
    os::{
        fd::{AsFd, AsRawFd},
        unix::net::UnixStream,
    },
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

/// Which plugins a socket serves: its own (Kong 3.9+: a socket per plugin) or every plugin
/// (Kong 3.0–3.8 single-entry setups, where StartInstance's `Name` picks the plugin).
#[derive(Clone, Debug)]
pub enum Serves {
    One(Arc<str>),
    All,
}

/// Where a connection goes when the thread holding it lets it go: the server it came in on.
pub trait Home: Send + Sync {
    /// A message the holding thread will not answer itself (it belongs to another event, or
    /// the holder is busy with its own): sent where it is answered, with the connection.
    fn route(self: Arc<Self>, conn: Conn, message: Message);
    /// An idle connection: watched by a loop until Kong sends on it again.
    fn park(self: Arc<Self>, conn: Conn);
}

/// A Kong connection, boxed: it moves between threads and through every reply path, so it
/// moves as a pointer.
pub type Conn = Box<Connection>;

/// A Kong connection between two requests, or with a request in progress.
pub struct Connection {
    /// Its registration with the loop watching it: first, so it leaves the loop's epoll while
    /// the descriptor is still open.
    watch: Watch,
    /// Non-blocking: a loop's epoll watches it, idle or while a handler waits on it.
    pub(crate) stream: UnixStream,
    /// Bytes read and not yet consumed as messages: they travel with the connection.
    pub(crate) frames: Frames,
    /// The socket it came in on, for a successor to know what it serves.
    pub name: Arc<str>,
    /// What that socket serves: StartInstance is checked against it.
    pub serves: Serves,
    /// Where the connection goes when its holder lets it go.
    pub(crate) home: Arc<dyn Home>,
    /// Its place under `--max-connections`, given back when the connection closes; none for
    /// a successor's forwarding connection, which is not Kong's.
    pub(crate) slot: Option<Place>,
    /// Whether Kong still needs the `serverPid` notification (protocol.md §7.6): a MsgPack:1
    /// connection gets it ahead of its first reply. Not earlier: until Kong's first bytes
    /// arrive, the connection may be ProtoBuf:1's, which has no notifications.
    pub(crate) greet: bool,
}

/// What waiting on a connection gave.
pub enum Read {
    /// The next whole message Kong sent.
    Message(Message),
    /// The waiting handler's [`Waker`] was woken: something was delivered to it.
    Woken,
    /// Nothing arrived in time.
    Idle,
    /// Kong closed the connection, or sent bytes that cannot be followed (logged).
    Closed,
}

/// How long a reply may wait for Kong to make room, in ms; Kong's own read timeout is 60 s.
const SEND_TIMEOUT_MS: u16 = 60_000;

impl Connection {
    pub(crate) fn new(
        stream: UnixStream,
        frames: Frames,
        name: Arc<str>,
        serves: Serves,
        home: Arc<dyn Home>,
        slot: Option<Place>,
    ) -> Connection {
        Connection {
            watch: Watch::new(stream.as_raw_fd()),
            stream,
            frames,
            name,
            serves,
            home,
            slot,
            greet: false,
        }
    }

    /// The next message, waiting for it until `timeout` passes without a byte arriving and,
    /// with a `waker`, only until that is woken.
    pub fn read(&mut self, waker: Option<&Waker>, timeout: Duration) -> Read {
        loop {
            match self.frames.next_message() {
                Ok(Some(message)) => return Read::Message(message),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!("closing a connection: {error}");
                    return Read::Closed;
                }
            }
            match loops::suspend_until(Some(&mut self.watch), waker, timeout) {
                Woke::Readable => {}
                Woke::Waker => return Read::Woken,
                Woke::Timeout => return Read::Idle,
            }
            if let Fill::Closed = self.fill() {
                return Read::Closed;
            }
        }
    }

    /// Reads what the socket has into the buffer.
    pub(crate) fn fill(&mut self) -> Fill {
        let read = SCRATCH.with_borrow_mut(|scratch| loop {
            match (&self.stream).read(&mut scratch[..]) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Ok(n) => {
                    self.frames.buffer().extend_from_slice(&scratch[..n]);
                    break Ok(n);
                }
                Err(error) => break Err(error),
            }
        });
        match read {
            Ok(0) => {
                let partial = self.frames.buffer().len();
                if partial > 0 {
                    tracing::warn!(
                        "connection closed in the middle of a message ({partial} bytes)"
                    );
                }
                Fill::Closed
            }
            Ok(n) => {
                // A short read emptied the socket: Kong's next bytes make a new edge.
                if n < READ_CHUNK {
                    self.watch.drained();
                }
                Fill::Read
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                self.watch.drained();
                Fill::Empty
            }
            Err(error) => {
                tracing::debug!("connection read failed: {error}");
                Fill::Closed
            }
        }
    }

    /// What the connection speaks, once Kong's first bytes told.
    pub fn protocol(&self) -> Option<Protocol> {
        self.frames.protocol()
    }

    /// Writes one whole reply; false when Kong closed the connection (logged).
    pub fn send(&mut self, reply: &[u8]) -> bool {
        if std::mem::take(&mut self.greet) && self.protocol() == Some(Protocol::MsgPack) {
            let mut greeted = rpc::server_pid_notification(std::process::id());
            greeted.extend_from_slice(reply);
            return self.write_all(&greeted);
        }
        self.write_all(reply)
    }

    fn write_all(&mut self, reply: &[u8]) -> bool {
        let mut rest = reply;
        while !rest.is_empty() {
            match (&self.stream).write(rest) {
                Ok(0) => return false,
                Ok(written) => rest = &rest[written..],
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLOUT)];
                    // Rare (Kong reads every reply at once): a loop caught here this long has its
                    // other work moved away.
                    if poll(&mut fds, SEND_TIMEOUT_MS) == Ok(0) {
                        tracing::warn!("Kong did not read a reply within 60s; closing");
                        return false;
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        "Kong closed the connection before the reply was written: {error}"
                    );
                    return false;
                }
            }
        }
        true
    }

    /// Leaves the loop watching it: it is going to another process.
    pub(crate) fn unwatch(&mut self) {
        self.watch.forget();
    }

    /// Whether it moves to a successor (`serve --upgrade`): Kong's connections do; a
    /// successor's forwarding connection is how it reaches this process's events, and stays.
    pub fn transferable(&self) -> bool {
        self.slot.is_some()
    }

    /// Writes `reply` and keeps the connection, unless Kong closed it.
    pub fn answer(mut self: Box<Self>, reply: &[u8]) -> Option<Conn> {
        self.send(reply).then_some(self)
    }

    /// Answers a request that cannot be served: with an error when it has an id to answer
    /// to, else by closing the connection. Either way the reason is logged.
    pub fn refuse(self: Box<Self>, refused: RequestError) -> Option<Conn> {
        match refused {
            RequestError::Unanswerable(reason) => {
                tracing::warn!("closing a connection: {reason}");
                None
            }
            RequestError::Invalid { msgid, message } => {
                tracing::warn!("refused a request: {message}");
                self.answer(&rpc::error_reply(msgid, &message))
            }
        }
    }

    /// Lets the connection go: sends `message` where it is answered.
    pub fn route(self: Box<Self>, message: Message) {
        Arc::clone(&self.home).route(self, message)
    }

    /// Lets the idle connection go: a loop watches it.
    pub fn park(mut self: Box<Self>) {
        self.frames.release();
        Arc::clone(&self.home).park(self)
    }
}

/// What a read gave.
pub(crate) enum Fill {
    Read,
    /// Nothing to read yet.
    Empty,
    /// Kong closed the connection, or it failed.
    Closed,
}

/// Bytes asked of the socket per read: Kong's usual messages fit many times over.
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    /// Where reads land before the bytes join their connection's buffer: one per thread, not
    /// one per connection, so thousands of idle pooled connections hold no read space.
    static SCRATCH: RefCell<Box<[u8; READ_CHUNK]>> = RefCell::new(Box::new([0; READ_CHUNK]));
}

impl Parked for Connection {
    fn watch(&mut self) -> &mut Watch {
        &mut self.watch
    }

    fn readable(mut self: Box<Self>) -> Option<Box<dyn Parked>> {
        loop {
            match self.frames.next_message() {
                Ok(Some(message)) => {
                    self.route(message);
                    return None;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!("closing a connection: {error}");
                    return None;
                }
            }
            match self.fill() {
                Fill::Read => {}
                Fill::Empty => return Some(self),
                Fill::Closed => return None,
            }
        }
    }

    fn revisit(self: Box<Self>) {
        self.park()
    }
}

/// Counts open connections against `--max-connections`.
#[derive(Default)]
pub(crate) struct OpenConnections {
    count: Arc<AtomicUsize>,
    warnings: Throttle,
}

impl OpenConnections {
    pub(crate) fn take(&self, max: usize) -> Option<Place> {
        let place = Place::take(&self.count, max);
        if place.is_none() && self.warnings.allow() {
            tracing::warn!(
                "{max} connections open (--max-connections): closing new ones until some end"
            );
        }
        place
    }

    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}
