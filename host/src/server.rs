//! Sockets: one listener per plugin, one task per connection, graceful shutdown.

use crate::{
    dispatch::{Dispatcher, Outcome, Serves},
    frame::Frames,
    rpc,
    throttle::Throttle,
};
use std::{
    io,
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
/// files.
pub fn bind(
    socket_dir: &Path,
    sockets: &[(String, Serves)],
    access: SocketAccess,
) -> io::Result<Vec<Listener>> {
    sockets
        .iter()
        .map(|(name, serves)| {
            let path = socket_dir.join(format!("{name}.socket"));
            remove_stale(&path)?;
            let listener = bind_restricted(&path, access).map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("cannot bind {}: {error}", path.display()),
                )
            })?;
            Ok(Listener {
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
fn bind_restricted(path: &Path, access: SocketAccess) -> io::Result<UnixListener> {
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

/// Serves until `shutdown` completes, then stops accepting, removes the sockets, and waits up to
/// `grace` for in-flight events to finish.
pub async fn run(
    dispatcher: Arc<Dispatcher>,
    listeners: Vec<Listener>,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) {
    let mut accepting = JoinSet::new();
    let open = Arc::new(OpenConnections::default());
    let paths: Vec<PathBuf> = listeners.iter().map(|l| l.path.clone()).collect();
    for Listener {
        path,
        serves,
        listener,
    } in listeners
    {
        let dispatcher = Arc::clone(&dispatcher);
        let open = Arc::clone(&open);
        accepting.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let Some(slot) = open.take(limits.max_connections) else {
                            drop(stream);
                            continue;
                        };
                        let (dispatcher, serves) = (Arc::clone(&dispatcher), serves.clone());
                        tokio::spawn(async move {
                            serve_connection(stream, dispatcher, serves, limits).await;
                            drop(slot);
                        });
                    }
                    Err(error) => {
                        tracing::warn!("accept on {} failed: {error}", path.display());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    let reaper = tokio::spawn(reap(Arc::clone(&dispatcher)));
    shutdown.await;
    accepting.shutdown().await;
    for path in &paths {
        let _ = std::fs::remove_file(path);
    }
    dispatcher.start_draining();
    let waited = tokio::time::timeout(grace, async {
        while dispatcher.events.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if waited.is_err() {
        tracing::warn!(
            "{} events still in flight after {}s; exiting anyway",
            dispatcher.events.in_flight(),
            grace.as_secs()
        );
    }
    reaper.abort();
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
async fn serve_connection(
    mut stream: UnixStream,
    dispatcher: Arc<Dispatcher>,
    serves: Serves,
    limits: Limits,
) {
    if let Err(error) = stream
        .write_all(&rpc::server_pid_notification(std::process::id()))
        .await
    {
        tracing::debug!("connection closed before the serverPid notification: {error}");
        return;
    }
    let mut frames = Frames::new(limits.max_frame_bytes, limits.max_depth);
    loop {
        loop {
            let message = match frames.next_message() {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!("closing a connection: {error}");
                    return;
                }
            };
            let reply = match dispatcher.dispatch(&serves, message).await {
                Outcome::Reply(reply) => reply,
                Outcome::Close(reason) => {
                    tracing::warn!("closing a connection: {reason}");
                    return;
                }
            };
            if let Err(error) = stream.write_all(&reply).await {
                tracing::warn!("Kong closed the connection before the reply was written: {error}");
                return;
            }
        }
        match stream.read_buf(frames.buffer()).await {
            Ok(0) => {
                let buffered = frames.buffer().len();
                if buffered > 0 {
                    tracing::debug!(
                        "connection closed in the middle of a message ({buffered} bytes)"
                    );
                }
                return;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!("connection read failed: {error}");
                return;
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
