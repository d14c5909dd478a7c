//! Sockets: one listener per plugin, one task per connection, graceful shutdown.

use crate::{
    dispatch::{Dispatcher, Outcome, Serves},
    events::Sink,
    frame::Frames,
    handoff, rpc,
    throttle::Throttle,
};
use std::{
    collections::HashMap,
    io,
    io::Write,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    os::unix::fs::FileTypeExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    sync::Arc,
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{UnixListener, UnixStream},
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

/// A bound socket and what it serves.
pub struct Listener {
    /// `<name>.socket`: what a successor binds it as (`serve --upgrade`).
    pub name: String,
    pub path: PathBuf,
    pub serves: Serves,
    listener: UnixListener,
}

/// Who may connect to the sockets: Kong's nginx workers must, nobody else should.
#[derive(Clone, Copy, Debug)]
pub struct SocketAccess {
    /// Permission bits of each socket file (default 0660).
    pub mode: u32,
    /// Group to give the sockets, e.g. the group Kong's workers run as.
    pub group: Option<libc::gid_t>,
}

/// Binds `<socket_dir>/<name>.socket` for each (name, what it serves), replacing stale socket
/// files, or takes the socket from `inherited` (handed over by the host this one replaces).
/// Call within the tokio runtime.
pub fn bind(
    socket_dir: &Path,
    sockets: &[(String, Serves)],
    access: SocketAccess,
    inherited: &mut HashMap<String, OwnedFd>,
) -> io::Result<Vec<Listener>> {
    sockets
        .iter()
        .map(|(name, serves)| {
            let path = socket_dir.join(format!("{name}.socket"));
            let listener = match inherited.remove(name) {
                Some(fd) => {
                    let listener = std::os::unix::net::UnixListener::from(fd);
                    listener.set_nonblocking(true)?;
                    UnixListener::from_std(listener)?
                }
                None => {
                    remove_stale(&path)?;
                    bind_restricted(&path, access).map_err(|error| {
                        io::Error::new(
                            error.kind(),
                            format!("cannot bind {}: {error}", path.display()),
                        )
                    })?
                }
            };
            Ok(Listener {
                name: name.clone(),
                path,
                serves: serves.clone(),
                listener,
            })
        })
        .collect()
}

/// Binds with a umask that leaves the socket usable by its owner only, then opens it up to
/// `access`: no window in which others could connect. Runs at start-up, before anything else in
/// the process creates files, so the process-wide umask change is harmless.
pub(crate) fn bind_restricted(path: &Path, access: SocketAccess) -> io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask has no preconditions; the previous mask is restored below.
    let previous = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    unsafe { libc::umask(previous) };
    let listener = bound?;
    if let Some(gid) = access.group {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode))?;
    Ok(listener)
}

fn remove_stale(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ),
        )),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// The sockets' side of a serving host: accepts Kong's connections and runs them.
pub struct Server {
    pub dispatcher: Arc<Dispatcher>,
    limits: Limits,
    open: Arc<OpenConnections>,
    /// What each socket name serves, for connections a predecessor hands over.
    serves: HashMap<String, Serves>,
    /// Set when a successor takes over (`serve --upgrade`): connections move to it.
    pub outgoing: Arc<handoff::Outgoing>,
    /// Copies of the listening sockets, by name, to hand to a successor.
    pub(crate) listener_fds: Vec<(String, OwnedFd)>,
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
            open: Arc::default(),
            serves: listeners
                .iter()
                .map(|l| (l.name.clone(), l.serves.clone()))
                .collect(),
            outgoing: Arc::default(),
        }))
    }

    /// Kong connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.count.load(Ordering::Acquire)
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
        let mut ready = self.outgoing.ready.subscribe();
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
                self.outgoing.finished.notified().await;
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
                    self.spawn_connection(stream, &name, listener.serves.clone(), Vec::new(), true)
                }
                Err(error) => {
                    tracing::warn!("accept on {} failed: {error}", listener.path.display());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Runs a Kong connection accepted on socket `name`, or handed over from a predecessor
    /// (`fresh` false) with the bytes it had read of it.
    pub fn spawn_connection(
        self: &Arc<Self>,
        stream: UnixStream,
        name: &Arc<str>,
        serves: Serves,
        buffered: Vec<u8>,
        fresh: bool,
    ) {
        let Some(slot) = self.open.take(self.limits.max_connections) else {
            return;
        };
        let connection = Connection {
            server: Arc::clone(self),
            name: Arc::clone(name),
            serves,
            transferable: true,
        };
        tokio::spawn(async move {
            connection.serve(stream, buffered, fresh).await;
            drop(slot);
        });
    }

    /// Runs a connection handed over by a predecessor.
    pub fn adopt_connection(self: &Arc<Self>, fd: OwnedFd, name: &str, buffered: Vec<u8>) {
        let stream = std::os::unix::net::UnixStream::from(fd);
        let stream = match stream
            .set_nonblocking(true)
            .and_then(|()| UnixStream::from_std(stream))
        {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!("cannot take over a connection: {error}");
                return;
            }
        };
        let serves = self.serves.get(name).cloned().unwrap_or(Serves::All);
        self.spawn_connection(stream, &Arc::from(name), serves, buffered, false);
    }

    /// Serves the predecessor's end of a forwarding connection: never counted, never handed
    /// over (it is how the successor reaches this process's events).
    pub fn serve_forwarded(self: &Arc<Self>, stream: UnixStream) {
        let connection = Connection {
            server: Arc::clone(self),
            name: Arc::from(""),
            serves: Serves::All,
            transferable: false,
        };
        tokio::spawn(connection.serve(stream, Vec::new(), false));
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
}

/// Counts open connections against `--max-connections`.
#[derive(Default)]
struct OpenConnections {
    count: AtomicUsize,
    warnings: Throttle,
}

/// A connection's place under the limit, given back when dropped.
struct ConnectionSlot(Arc<OpenConnections>);

impl OpenConnections {
    fn take(self: &Arc<Self>, max: usize) -> Option<ConnectionSlot> {
        if self.count.fetch_add(1, Ordering::AcqRel) < max {
            return Some(ConnectionSlot(Arc::clone(self)));
        }
        self.count.fetch_sub(1, Ordering::AcqRel);
        if self.warnings.allow() {
            tracing::warn!(
                "{max} connections open (--max-connections): closing new ones until some end"
            );
        }
        None
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reclaims events Kong abandoned (spec §8).
async fn reap(dispatcher: Arc<Dispatcher>) {
    let period = (dispatcher.events.idle_timeout / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(period).await;
        dispatcher.reclaim_abandoned();
    }
}

/// One Kong connection: requests in, exactly one reply per request out, strictly in turn.
struct Connection {
    server: Arc<Server>,
    /// The socket it came in on, for a successor to know what it serves.
    name: Arc<str>,
    serves: Serves,
    /// False for a successor's forwarding connection: that one stays, it is how the successor
    /// reaches this process's events.
    transferable: bool,
}

/// What a connection does next while this process hands over to a successor.
enum Turn {
    Serve,
    HandOver,
}

impl Connection {
    async fn serve(self, mut stream: UnixStream, buffered: Vec<u8>, fresh: bool) {
        let Some(sink) = StreamSink::of(&stream) else {
            return;
        };
        // A handed-over connection sits in Kong's pool between calls: an unsolicited
        // notification now would be read as the reply to its next call (spec §6.1).
        if fresh {
            if let Err(error) = stream
                .write_all(&rpc::server_pid_notification(std::process::id()))
                .await
            {
                tracing::debug!("connection closed before the serverPid notification: {error}");
                return;
            }
        }
        let mut frames = self.frames();
        frames.buffer().extend_from_slice(&buffered);
        let mut handing_over = self.server.outgoing.ready.subscribe();
        loop {
            loop {
                let Ok(next) = self.next_message(&mut frames) else {
                    return;
                };
                let Some(message) = next else {
                    break;
                };
                if let Turn::HandOver = self.turn(&message) {
                    // Not answered here: the successor reads it again, ahead of what follows.
                    let mut unanswered = Vec::new();
                    rmpv::encode::write_value(&mut unanswered, &message).expect("Vec write");
                    unanswered.extend_from_slice(frames.buffer());
                    return self.hand_over(stream, unanswered);
                }
                if !self.answer(&mut stream, &sink, message).await {
                    return;
                }
            }
            if let Turn::HandOver = self.turn_when_idle() {
                let buffered = std::mem::take(frames.buffer());
                return self.hand_over(stream, buffered);
            }
            let read = tokio::select! {
                read = stream.read_buf(frames.buffer()) => read,
                _ = handing_over.wait_for(|ready| *ready), if self.transferable => continue,
            };
            if !self.read_more(read, frames.buffer()) {
                return;
            }
        }
    }

    fn frames(&self) -> Frames {
        let limits = self.server.limits;
        Frames::new(limits.max_frame_bytes, limits.max_depth)
    }

    /// The next complete message (`None` until more bytes arrive); `Err` (logged) when the
    /// stream cannot be followed and the connection must close.
    fn next_message(&self, frames: &mut Frames) -> Result<Option<rmpv::Value>, ()> {
        frames.next_message().map_err(|error| {
            tracing::warn!("closing a connection: {error}");
        })
    }

    fn handing_over(&self) -> bool {
        self.transferable && self.server.outgoing.handing_over()
    }

    /// Once a successor accepts, only Steps of this process's own events are answered here.
    fn turn(&self, message: &rmpv::Value) -> Turn {
        if !self.handing_over() || self.server.dispatcher.owns_step(message) {
            Turn::Serve
        } else {
            Turn::HandOver
        }
    }

    fn turn_when_idle(&self) -> Turn {
        if self.handing_over() {
            Turn::HandOver
        } else {
            Turn::Serve
        }
    }

    fn hand_over(&self, stream: UnixStream, buffered: Vec<u8>) {
        match stream.into_std() {
            Ok(stream) => self.server.outgoing.transfer(handoff::Transfer {
                name: self.name.to_string(),
                buffered,
                fd: stream.into(),
            }),
            Err(error) => tracing::warn!("cannot hand over a connection: {error}"),
        }
    }

    /// Answers one request; false when the connection must close.
    async fn answer(
        &self,
        stream: &mut UnixStream,
        sink: &Arc<dyn Sink>,
        message: rmpv::Value,
    ) -> bool {
        let dispatched = self.server.dispatcher.dispatch(&self.serves, message, sink);
        let reply = match dispatched.await {
            Outcome::Reply(reply) => reply,
            Outcome::Deferred => return true,
            Outcome::Close(reason) => {
                tracing::warn!("closing a connection: {reason}");
                return false;
            }
        };
        if let Err(error) = stream.write_all(&reply).await {
            tracing::warn!("Kong closed the connection before the reply was written: {error}");
            return false;
        }
        true
    }

    /// Whether to go on after a read into `buffer`.
    fn read_more(&self, read: io::Result<usize>, buffer: &[u8]) -> bool {
        match read {
            Ok(0) => {
                let buffered = buffer.len();
                if buffered > 0 {
                    tracing::debug!(
                        "connection closed in the middle of a message ({buffered} bytes)"
                    );
                }
                false
            }
            Ok(_) => true,
            Err(error) => {
                tracing::debug!("connection read failed: {error}");
                false
            }
        }
    }
}

/// The write side of a Kong connection for plugin threads: a second descriptor of the same
/// socket. Writes block the plugin thread (never a socket thread) while Kong's side is full.
struct StreamSink {
    stream: std::os::unix::net::UnixStream,
}

/// How long a reply may wait for Kong to make room; Kong's own read timeout is 60 s.
const SEND_TIMEOUT_MS: i32 = 60_000;

impl StreamSink {
    fn of(stream: &UnixStream) -> Option<Arc<dyn Sink>> {
        match stream.as_fd().try_clone_to_owned() {
            Ok(fd) => Some(Arc::new(StreamSink { stream: fd.into() })),
            Err(error) => {
                tracing::warn!("closing a connection: cannot duplicate its descriptor: {error}");
                None
            }
        }
    }
}

impl Sink for StreamSink {
    fn send(&self, reply: &[u8]) {
        let mut rest = reply;
        while !rest.is_empty() {
            match (&self.stream).write(rest) {
                Ok(0) => break,
                Ok(written) => rest = &rest[written..],
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // The socket is non-blocking (tokio owns it): wait for room.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    let mut poll = libc::pollfd {
                        fd: self.stream.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd, for a descriptor this sink owns.
                    if unsafe { libc::poll(&mut poll, 1, SEND_TIMEOUT_MS) } == 0 {
                        tracing::warn!("Kong did not read a reply within 60s; dropping it");
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        "Kong closed the connection before the reply was written: {error}"
                    );
                    return;
                }
            }
        }
    }
}

/// Serves `GET /metrics` (Prometheus text format) on a loopback TCP address until dropped.
pub async fn serve_metrics(listener: tokio::net::TcpListener, dispatcher: Arc<Dispatcher>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let dispatcher = Arc::clone(&dispatcher);
        tokio::spawn(async move {
            // A request head, bounded: this endpoint has no business with anything bigger.
            let mut head = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => head.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
            }
            let response = if head.starts_with(b"GET /metrics ")
                || head.starts_with(b"GET /metrics?")
            {
                let body = dispatcher.prometheus();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
