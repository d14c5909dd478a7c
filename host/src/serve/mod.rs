//! Sockets: one listener per plugin; each Kong connection read by the handler that answered on
//! it last, or watched by a loop while idle; graceful shutdown.

mod metrics;
mod sockets;
mod upgrading;

pub(crate) use metrics::run_metrics_endpoint;
pub(crate) use sockets::{bind, bind_restricted, Listener, SocketAccess};
pub(crate) use upgrading::{MovingConnection, Upgrading};

use crate::{
    runtime::connection::{Conn, Connection, Home, OpenConnections, Serves},
    runtime::dispatch::Dispatcher,
    runtime::loops::Loops,
    runtime::place::Place,
    wire::frame::Frames,
    wire::Message,
};
use std::{
    collections::HashMap,
    io,
    os::fd::{AsFd, OwnedFd},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};
use tokio::{net::UnixStream, task::JoinSet};

/// Limits on what one connection may send.
#[derive(Clone, Copy)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_depth: usize,
    /// Open Kong connections at most, over all sockets; more are closed at once.
    pub max_connections: usize,
}

/// The sockets' side of a serving host: accepts Kong's connections and hands them to the loops,
/// which watch the idle ones and run handlers.
pub struct Server {
    pub dispatcher: Arc<Dispatcher>,
    limits: Limits,
    open: OpenConnections,
    /// What each socket name serves, for connections a predecessor hands over.
    serves: HashMap<String, Serves>,
    /// Set when a successor takes over (`serve --upgrade`): connections move to it.
    pub(crate) upgrading: Upgrading,
    /// Copies of the listening sockets, by name, to hand to a successor.
    pub(crate) listener_fds: Vec<(String, OwnedFd)>,
    /// The threads that watch connections and run handlers.
    loops: Loops,
}

/// How [`Server::run`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// A signal: the sockets were removed.
    Signal,
    /// A successor serves the sockets now; they stay.
    HandedOver,
}

impl Server {
    pub fn new(
        dispatcher: Arc<Dispatcher>,
        loops: Loops,
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
            serves: listeners
                .iter()
                .map(|l| (l.name.clone(), l.serves.clone()))
                .collect(),
            upgrading: Upgrading::default(),
            loops,
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
                self.loops.revisit_idle();
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
                    self.open(stream, Arc::clone(&name), serves);
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
    fn open(self: &Arc<Self>, stream: UnixStream, name: Arc<str>, serves: Serves) {
        let Some(slot) = self.open.take(self.limits.max_connections) else {
            return;
        };
        match stream.into_std() {
            Ok(stream) => {
                let mut conn = self.conn(stream, name, serves, Some(slot), Vec::new());
                conn.greet = true;
                conn.park();
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
        let home = Arc::clone(self) as Arc<dyn Home>;
        Box::new(Connection::new(stream, frames, name, serves, home, slot))
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

    /// Runs on a loop: answers `message`, then lets the loop watch the connection for the next.
    fn answer(&self, conn: Conn, message: Message) {
        if let Some(kept) = self.dispatcher.dispatch(conn, message) {
            kept.park();
        }
    }

    /// Whether `conn` moves to the successor now: once it accepts, only Steps of this
    /// process's own events are answered here.
    fn hands_over(&self, conn: &Conn, message: Option<&Message>) -> bool {
        conn.transferable()
            && self.upgrading.under_way()
            && !message.is_some_and(|message| self.dispatcher.owns_step(message))
    }

    /// Sends `conn` to the successor; `unanswered` is read there again, ahead of what follows.
    fn hand_over(&self, mut conn: Connection, unanswered: Option<Message>) {
        conn.unwatch();
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
        let server = Arc::clone(&self);
        self.loops.run(move || server.answer(conn, message));
    }

    fn park(self: Arc<Self>, conn: Conn) {
        if self.hands_over(&conn, None) {
            return self.hand_over(*conn, None);
        }
        self.loops.park(conn);
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
