//! Sockets: one listener per plugin; each Kong connection read by the plugin thread that
//! answered on it last, or watched by the runtime while idle; graceful shutdown.

mod metrics;
mod sockets;
mod upgrading;

pub(crate) use metrics::run_metrics_endpoint;
pub(crate) use sockets::{bind, bind_restricted, Listener, SocketAccess};
pub(crate) use upgrading::{MovingConnection, Upgrading};

use crate::{
    runtime::connection::{Conn, Connection, Fill, Home, OpenConnections, Read, Serves},
    runtime::dispatch::Dispatcher,
    runtime::executor::Executor,
    runtime::place::Place,
    wire::frame::Frames,
    wire::Message,
};
use std::{
    collections::HashMap,
    io,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    path::PathBuf,
    sync::{atomic::AtomicUsize, Arc},
    time::Duration,
};
use tokio::{
    io::{unix::AsyncFd, Interest},
    net::UnixStream,
    runtime::Handle,
    task::JoinSet,
};

/// Limits on what one connection may send.
#[derive(Clone, Copy)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_depth: usize,
    /// Open Kong connections at most, over all sockets; more are closed at once.
    pub max_connections: usize,
}

/// The sockets' side of a serving host: accepts Kong's connections, watches the idle ones, and
/// runs the busy ones on plugin threads.
pub struct Server {
    pub dispatcher: Arc<Dispatcher>,
    limits: Limits,
    open: OpenConnections,
    /// Threads holding an idle connection now, at most [`MAX_HOLDERS`].
    holders: Arc<AtomicUsize>,
    /// What each socket name serves, for connections a predecessor hands over.
    serves: HashMap<String, Serves>,
    /// Set when a successor takes over (`serve --upgrade`): connections move to it.
    pub(crate) upgrading: Upgrading,
    /// Copies of the listening sockets, by name, to hand to a successor.
    pub(crate) listener_fds: Vec<(String, OwnedFd)>,
    /// The plugin threads, which read and answer busy connections.
    executor: Executor,
    /// The socket runtime, which watches idle connections; plugin threads park them on it.
    runtime: Handle,
}

/// How [`Server::run`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// A signal: the sockets were removed.
    Signal,
    /// A successor serves the sockets now; they stay.
    HandedOver,
}

/// How long a plugin thread keeps reading a connection Kong sends nothing on before it parks it
/// on the runtime: long enough to cover Kong's gaps between a busy worker's requests, short
/// enough that idle pooled connections do not each hold a thread.
const HOLD: Duration = Duration::from_secs(1);
/// How often a thread holding an idle connection checks whether it should let it go sooner (a
/// successor takes over, or events wait for a thread).
const HOLD_CHECK: Duration = Duration::from_millis(100);
/// Idle connections held by threads at most: Kong reuses the connections it returned last, so
/// the busy ones are few (about the requests in flight); any more wait parked, costing no thread.
const MAX_HOLDERS: usize = 128;

impl Server {
    /// Within the tokio runtime, which watches idle connections.
    pub fn new(
        dispatcher: Arc<Dispatcher>,
        executor: Executor,
        limits: Limits,
        listeners: &[Listener],
    ) -> io::Result<Arc<Self>> {
        let listener_fds = listeners
            .iter()
            .map(|l| Ok((l.name.clone(), l.listener.as_fd().try_clone_to_owned()?)))
            .collect::<io::Result<_>>()?;
        Ok(Arc::new(Server {
            listener_fds,
            dispatcher,
            limits,
            open: OpenConnections::default(),
            holders: Arc::default(),
            serves: listeners
                .iter()
                .map(|l| (l.name.clone(), l.serves.clone()))
                .collect(),
            upgrading: Upgrading::default(),
            executor,
            runtime: Handle::current(),
        }))
    }

    /// Kong connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.count()
    }

    /// Serves until `shutdown` completes, then stops accepting, removes the sockets, and waits
    /// up to `grace` for in-flight events to finish; or until a successor has taken every
    /// connection over.
    pub async fn run(
        self: &Arc<Self>,
        listeners: Vec<Listener>,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) -> Stopped {
        let mut accepting = JoinSet::new();
        let paths: Vec<PathBuf> = listeners.iter().map(|l| l.path.clone()).collect();
        for listener in listeners {
            accepting.spawn(Arc::clone(self).accept(listener));
        }
        let reaper = tokio::spawn(reap(Arc::clone(&self.dispatcher)));
        let mut ready = self.upgrading.ready.subscribe();
        let stopped = tokio::select! {
            _ = shutdown => Stopped::Signal,
            _ = ready.wait_for(|ready| *ready) => Stopped::HandedOver,
        };
        accepting.shutdown().await;
        match stopped {
            Stopped::Signal => {
                for path in &paths {
                    let _ = std::fs::remove_file(path);
                }
                self.drain(grace).await;
            }
            Stopped::HandedOver => {
                tracing::info!("the new host accepts now: handing over open connections");
                self.upgrading.finished.notified().await;
            }
        }
        reaper.abort();
        stopped
    }

    async fn accept(self: Arc<Self>, listener: Listener) {
        let name: Arc<str> = Arc::from(listener.name.as_str());
        loop {
            match listener.listener.accept().await {
                Ok((stream, _)) => {
                    let serves = listener.serves.clone();
                    tokio::spawn(Arc::clone(&self).open(stream, Arc::clone(&name), serves));
                }
                Err(error) => {
                    tracing::warn!("accept on {} failed: {error}", listener.path.display());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// A connection Kong just opened: watched until Kong's first bytes say which protocol it
    /// speaks (a MsgPack:1 one gets its serverPid notification ahead of its first reply).
    async fn open(self: Arc<Self>, stream: UnixStream, name: Arc<str>, serves: Serves) {
        let Some(slot) = self.open.take(self.limits.max_connections) else {
            return;
        };
        match stream.into_std() {
            Ok(stream) => {
                let mut conn = self.conn(stream, name, serves, Some(slot), Vec::new());
                conn.greet = true;
                self.watch(conn).await
            }
            Err(error) => tracing::warn!("closing a connection: {error}"),
        }
    }

    fn conn(
        self: &Arc<Self>,
        stream: std::os::unix::net::UnixStream,
        name: Arc<str>,
        serves: Serves,
        slot: Option<Place>,
        buffered: Vec<u8>,
    ) -> Conn {
        let limits = self.limits;
        let mut frames = Frames::from_kong(limits.max_frame_bytes, limits.max_depth);
        frames.buffer().extend_from_slice(&buffered);
        Box::new(Connection {
            stream,
            frames,
            name,
            serves,
            home: Arc::clone(self) as Arc<dyn Home>,
            slot,
            greet: false,
        })
    }

    /// Runs a connection handed over by a predecessor, with the bytes it read of it. The
    /// serverPid notification goes ahead of its first reply only if the predecessor never sent
    /// it (`greet`): Kong would read a second one as the reply to its next call
    /// (protocol.md §6.1).
    pub fn adopt_connection(
        self: &Arc<Self>,
        fd: OwnedFd,
        name: &str,
        buffered: Vec<u8>,
        greet: bool,
    ) {
        let Some(slot) = self.open.take(self.limits.max_connections) else {
            return;
        };
        let stream = std::os::unix::net::UnixStream::from(fd);
        if let Err(error) = stream.set_nonblocking(true) {
            tracing::warn!("cannot take over a connection: {error}");
            return;
        }
        let serves = self.serves.get(name).cloned().unwrap_or(Serves::All);
        let mut conn = self.conn(stream, Arc::from(name), serves, Some(slot), buffered);
        conn.greet = greet;
        conn.park();
    }

    /// Serves a MsgPack:1 connection made elsewhere, as if accepted on a socket that `serves`
    /// (without the serverPid notification): the fuzz target's way in.
    #[cfg(feature = "fuzzing")]
    pub fn adopt_stream(self: &Arc<Self>, stream: std::os::unix::net::UnixStream, serves: Serves) {
        let slot = self.open.take(self.limits.max_connections);
        let mut conn = self.conn(stream, Arc::from("fuzz"), serves, slot, Vec::new());
        // The target checks MsgPack:1 replies, whatever bytes open its input.
        conn.frames = Frames::new(self.limits.max_frame_bytes, self.limits.max_depth);
        conn.park();
    }

    /// Serves the predecessor's end of a forwarding connection: never counted, never handed
    /// over (it is how the successor reaches this process's events).
    pub fn accept_forwarding(self: &Arc<Self>, stream: std::os::unix::net::UnixStream) {
        let conn = self.conn(stream, Arc::from(""), Serves::All, None, Vec::new());
        conn.park();
    }

    async fn drain(&self, grace: Duration) {
        self.dispatcher.start_draining();
        let waited = tokio::time::timeout(grace, async {
            while self.dispatcher.events.in_flight() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if waited.is_err() {
            tracing::warn!(
                "{} events still in flight after {}s; exiting anyway",
                self.dispatcher.events.in_flight(),
                grace.as_secs()
            );
        }
    }

    /// Watches an idle connection on the runtime until Kong sends on it, then sends the
    /// message where it is answered.
    async fn watch(self: Arc<Self>, mut conn: Conn) {
        // SAFETY: `conn` owns the descriptor and outlives `watched`, which is dropped before
        // the connection goes anywhere.
        let registered =
            unsafe { AsyncFd::register_with_interest(conn.stream.as_raw_fd(), Interest::READABLE) };
        let watched = match registered {
            Ok(watched) => watched,
            Err(error) => {
                tracing::warn!("closing a connection: cannot watch it: {error}");
                return;
            }
        };
        let mut handing_over = self.upgrading.ready.subscribe();
        loop {
            match conn.frames.next_message() {
                Ok(Some(message)) => {
                    drop(watched);
                    return self.route(conn, message);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!("closing a connection: {error}");
                    return;
                }
            }
            if self.hands_over(&conn, None) {
                drop(watched);
                return self.hand_over(*conn, None);
            }
            tokio::select! {
                ready = watched.readable() => {
                    let Ok(mut ready) = ready else { return };
                    match conn.fill() {
                        Fill::Read => {}
                        Fill::Empty => ready.clear_ready(),
                        Fill::Closed => return,
                    }
                }
                _ = handing_over.wait_for(|ready| *ready), if conn.transferable() => {}
            }
        }
    }

    /// Runs on a plugin thread: answers `conn`'s messages, starting with `next`, for as long as
    /// this thread holds it.
    fn answer_on_this_thread(self: Arc<Self>, mut conn: Conn, mut next: Option<Message>) {
        loop {
            let message = match next.take() {
                Some(message) => message,
                None => match self.hold(conn) {
                    Some((held, message)) => {
                        conn = held;
                        message
                    }
                    None => return,
                },
            };
            if self.hands_over(&conn, Some(&message)) {
                return self.hand_over(*conn, Some(message));
            }
            match self.dispatcher.dispatch(conn, message) {
                Some(kept) => conn = kept,
                None => return,
            }
        }
    }

    /// Waits for Kong's next message on `conn` while that is worth a thread; `None` once the
    /// connection is parked on the runtime, or closed.
    fn hold(&self, conn: Conn) -> Option<(Conn, Message)> {
        let Some(_holding) = Place::take(&self.holders, MAX_HOLDERS) else {
            conn.park();
            return None;
        };
        let mut conn = conn;
        let mut idle = Duration::ZERO;
        while idle < HOLD && !self.hands_over(&conn, None) && !self.executor.has_waiting_jobs() {
            match conn.read(None, HOLD_CHECK) {
                Read::Message(message) => return Some((conn, message)),
                Read::Idle | Read::Woken => idle += HOLD_CHECK,
                Read::Closed => return None,
            }
        }
        conn.park();
        None
    }

    /// Whether `conn` moves to the successor now: once it accepts, only Steps of this
    /// process's own events are answered here.
    fn hands_over(&self, conn: &Conn, message: Option<&Message>) -> bool {
        conn.transferable()
            && self.upgrading.under_way()
            && !message.is_some_and(|message| self.dispatcher.owns_step(message))
    }

    /// Sends `conn` to the successor; `unanswered` is read there again, ahead of what follows.
    fn hand_over(&self, conn: Connection, unanswered: Option<Message>) {
        let Connection {
            stream,
            mut frames,
            name,
            greet,
            ..
        } = conn;
        let mut buffered = unanswered.map_or_else(Vec::new, |message| message.to_bytes());
        buffered.extend_from_slice(frames.buffer());
        self.upgrading.hand_over(MovingConnection {
            name: name.to_string(),
            buffered,
            greet,
            fd: stream.into(),
        });
    }
}

impl Home for Server {
    fn route(self: Arc<Self>, conn: Conn, message: Message) {
        if self.hands_over(&conn, Some(&message)) {
            return self.hand_over(*conn, Some(message));
        }
        if self.dispatcher.needs_plugin_thread(&message) {
            let server = Arc::clone(&self);
            return self
                .executor
                .spawn(move || server.answer_on_this_thread(conn, Some(message)));
        }
        if let Some(answered_on) = self.dispatcher.dispatch(conn, message) {
            answered_on.park();
        }
    }

    fn park(self: Arc<Self>, conn: Conn) {
        let runtime = self.runtime.clone();
        runtime.spawn(self.watch(conn));
    }
}

/// Reclaims events Kong abandoned (protocol.md §8).
async fn reap(dispatcher: Arc<Dispatcher>) {
    let period = (dispatcher.events.timeouts.kong_step / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(period).await;
        dispatcher.reclaim_abandoned();
    }
}
