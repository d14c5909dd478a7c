//! Restart without dropped calls (`serve --upgrade`), the way Pingora upgrades: the new process
//! takes the running one's listening sockets, so Kong never meets a refused connection, then its
//! open Kong connections one by one, so Kong never meets a closed one (protocol.md §5: a pooled
//! connection closed under Kong fails its next call, with no retry).
//!
//! On the serving process's control socket (`<socket-dir>/.<server>.upgrade`, owner only):
//!
//! 1. old → new: the serving lock, a connection to old for the Steps of its unfinished events,
//!    every listening socket with its name, then the live instances (new adopts their ids, so
//!    Kong's workers keep using the ids they hold);
//! 2. new → old: `Ready`, once new accepts. Old stops accepting; each of its connections moves
//!    to new at its next request (or at once when idle), with the bytes old read of it, except
//!    a Step of an event still running in old, which old answers first;
//! 3. old → new: `Done` when it holds no connection and no event; old exits and leaves the
//!    sockets in place. Until then new forwards to old any Step for an event it does not know.
//!
//! A standby ([`standby`]) takes the same offer and answers `Standby` instead of `Ready`: it
//! keeps the listening sockets, old keeps serving (and leaves the socket files in place however
//! it stops), and on SIGTERM old asks it to take over as `serve --upgrade` does (`Succeed`).
//!
//! Each message is a big-endian u32 length and that much JSON; a message may carry one file
//! descriptor (SCM_RIGHTS) on its first bytes.

pub(crate) mod lock;
pub(crate) mod parent;
pub(crate) mod standby;

use crate::{
    runtime::dispatch::Predecessor,
    serve::{bind_restricted, Limits, MovingConnection, Server, SocketAccess},
    wire::frame::Scanner,
};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    io::{self, IoSlice, IoSliceMut, Read, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::{mpsc, Arc},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    runtime::Handle,
};

/// The control socket of the process serving `socket_dir` as `server`.
pub fn control_path(socket_dir: &Path, server: &str) -> PathBuf {
    socket_dir.join(format!(".{server}.upgrade"))
}

/// What crosses the control socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Message {
    /// Carries the serving lock's descriptor: new holds the lock once old exits.
    Lock,
    /// Carries a connection to old, served like Kong's, for Steps of old's events.
    Forward,
    /// Carries a listening socket, bound as `<socket-dir>/<name>.socket`.
    Listener { name: String },
    /// Old's live instance ids; ends old's offer.
    Instances { instances: Vec<Adopted> },
    /// New accepts on every socket: old stops accepting and hands over its connections.
    Ready,
    /// Carries a Kong connection accepted on socket `name`, and what old read of it unanswered;
    /// `greet` while its serverPid notification is still owed (it was never answered).
    Connection {
        name: String,
        buffered: Vec<u8>,
        #[serde(default)]
        greet: bool,
    },
    /// Old holds no connection and runs no event: it exits.
    Done,
    /// Instead of `Ready`: new stands by, holding the listening sockets, until old is gone.
    Standby { pid: u32 },
    /// Old keeps the socket files for the standby, and will ask it to take over on a signal.
    Standing { pid: u32 },
    /// Old is stopping: the standby takes over now, as `serve --upgrade` does.
    Succeed,
}

/// A live instance id new takes over: the runtime's adopted instance, as it crosses the
/// control socket.
pub(crate) use crate::runtime::instances::Adopted;

/// Binds the control socket at `path`, for the owner only, replacing the predecessor's (a
/// rename: there is always one to connect to).
pub fn listen(path: &Path) -> io::Result<UnixListener> {
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".{}", std::process::id()));
    let staging = PathBuf::from(staging);
    let _ = std::fs::remove_file(&staging);
    let access = SocketAccess {
        mode: 0o600,
        group: None,
    };
    let listener = bind_restricted(&staging, access)?;
    std::fs::rename(&staging, path)?;
    let listener = listener.into_std()?;
    // Served by a blocking thread of its own.
    listener.set_nonblocking(false)?;
    Ok(listener)
}

/// Offers this process's sockets, instances and connections to a successor that connects to
/// `control` (one at a time), on a thread of its own; a process that stands by instead joins
/// `standbys`. `lock` is the serving lock's descriptor.
pub fn offer(
    control: UnixListener,
    server: Arc<Server>,
    lock: OwnedFd,
    standbys: Arc<standby::Standbys>,
    runtime: Handle,
) {
    std::thread::Builder::new()
        .name("upgrade".into())
        .spawn(move || {
            for stream in control.incoming() {
                let stream = match stream {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::warn!("upgrade socket: {error}");
                        continue;
                    }
                };
                match hand_over(&stream, &server, &lock, &standbys, &runtime) {
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(error) => tracing::warn!("upgrade abandoned, serving on: {error}"),
                }
            }
        })
        .expect("start the upgrade thread");
}

/// One successor's takeover; false when it went away before accepting or stands by instead
/// (this process serves on).
fn hand_over(
    stream: &UnixStream,
    server: &Arc<Server>,
    lock: &OwnedFd,
    standbys: &standby::Standbys,
    runtime: &Handle,
) -> io::Result<bool> {
    let (ours, theirs) = UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    let _guard = runtime.enter();
    server.accept_forwarding(ours);
    send(stream, &Message::Lock, Some(lock.as_raw_fd()))?;
    send(stream, &Message::Forward, Some(theirs.as_raw_fd()))?;
    for (name, fd) in &server.listener_fds {
        let message = Message::Listener { name: name.clone() };
        send(stream, &message, Some(fd.as_raw_fd()))?;
    }
    let instances = server
        .dispatcher
        .instances()
        .ids()
        .into_iter()
        .map(|status| Adopted {
            id: status.id,
            plugin: status.plugin,
            config: status.config,
        })
        .collect();
    send(stream, &Message::Instances { instances }, None)?;
    match receive(stream)? {
        Some((Message::Ready, _)) => {}
        Some((Message::Standby { pid }, _)) => {
            let pid_here = std::process::id();
            send(stream, &Message::Standing { pid: pid_here }, None)?;
            standbys.add(pid, stream.try_clone()?);
            return Ok(false);
        }
        Some((other, _)) => {
            return Err(io::Error::other(format!("expected Ready, got {other:?}")));
        }
        None => return Ok(false),
    }
    let handed = server.upgrading.begin();
    let successor =
        nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
            .map(|credentials| credentials.pid().to_string())
            .unwrap_or_else(|_| "?".into());
    // This process no longer accepts: whatever happens now, it stops.
    let moved = move_connections(stream, server, handed);
    match &moved {
        Ok(moved) => tracing::warn!(
            "stopping: pid {successor} took over; handed over {moved} connections; no event left here"
        ),
        Err(error) => tracing::warn!(
            "stopping: pid {successor} went away while taking over ({error}); the connections \
             and events still here are lost"
        ),
    }
    server.upgrading.finished.notify_one();
    Ok(true)
}

/// Sends the successor each connection as it comes free, then `Done`; how many moved.
fn move_connections(
    stream: &UnixStream,
    server: &Server,
    handed: mpsc::Receiver<MovingConnection>,
) -> io::Result<usize> {
    let mut moved = 0usize;
    loop {
        match handed.recv_timeout(Duration::from_millis(20)) {
            Ok(MovingConnection {
                name,
                buffered,
                greet,
                fd,
            }) => {
                send(
                    stream,
                    &Message::Connection {
                        name,
                        buffered,
                        greet,
                    },
                    Some(fd.as_raw_fd()),
                )?;
                moved += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if server.open_connections() == 0 && server.dispatcher.events.in_flight() == 0 {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    send(stream, &Message::Done, None)?;
    Ok(moved)
}

/// The successor's connection to its predecessor, for Steps of the predecessor's events.
pub struct Forwarder {
    connection: tokio::sync::Mutex<Forwarding>,
    /// The runtime its socket is registered with: forwarded Steps wait on it through this.
    runtime: Handle,
}

struct Forwarding {
    stream: tokio::net::UnixStream,
    buffer: Vec<u8>,
    scanner: Scanner,
}

impl Forwarder {
    /// Within the tokio runtime.
    pub fn new(fd: OwnedFd, limits: Limits) -> io::Result<Self> {
        let stream = UnixStream::from(fd);
        stream.set_nonblocking(true)?;
        Ok(Forwarder {
            connection: tokio::sync::Mutex::new(Forwarding {
                stream: tokio::net::UnixStream::from_std(stream)?,
                buffer: Vec::with_capacity(1024),
                scanner: Scanner::new(limits.max_frame_bytes, limits.max_depth),
            }),
            runtime: Handle::current(),
        })
    }

    /// Sends one request, returns the predecessor's reply as it sent it.
    pub async fn call(&self, request: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
        let mut connection = self.connection.lock().await;
        let Forwarding {
            stream,
            buffer,
            scanner,
        } = &mut *connection;
        let exchange = async {
            stream.write_all(request).await?;
            loop {
                if let Some(len) = scanner.scan(buffer).map_err(io::Error::other)? {
                    return Ok::<_, io::Error>(buffer.drain(..len).collect::<Vec<u8>>());
                }
                if stream.read_buf(buffer).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => Err(format!("the previous host did not answer: {error}")),
            Err(_) => Err("the previous host did not answer in time".into()),
        }
    }
}

impl Predecessor for Forwarder {
    /// [`Forwarder::call`] from synchronous code: a loop's coroutine, which holds the loop's
    /// thread until the predecessor answers (the watchdog moves the loop's other work if that
    /// is long), or a runtime thread, which then lets the runtime move its other tasks.
    fn call_blocking(&self, request: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
        let call = || self.runtime.block_on(self.call(request, timeout));
        match Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(call),
            Err(_) => call(),
        }
    }
}

/// What the predecessor handed over.
pub struct Incoming {
    /// Tells the predecessor when this process accepts ([`Control::finish`]).
    pub control: Control,
    pub lock: OwnedFd,
    pub forward: OwnedFd,
    pub listeners: HashMap<String, OwnedFd>,
    pub instances: Vec<Adopted>,
}

/// Asks the process serving `socket_dir` as `server` for its sockets; `None` when no process
/// serves it (nothing to take over).
pub fn take_over(socket_dir: &Path, server: &str) -> io::Result<Option<Incoming>> {
    match connect(socket_dir, server)? {
        Some(control) => receive_offer(control).map(Some),
        None => Ok(None),
    }
}

/// A connection to the control socket of the process serving `socket_dir` as `server`; `None`
/// when none listens there.
fn connect(socket_dir: &Path, server: &str) -> io::Result<Option<UnixStream>> {
    match UnixStream::connect(control_path(socket_dir, server)) {
        Ok(control) => Ok(Some(control)),
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Reads the serving process's offer, up to its instances.
fn receive_offer(control: UnixStream) -> io::Result<Incoming> {
    let (mut lock, mut forward, mut listeners) = (None, None, HashMap::new());
    loop {
        let missing = || io::Error::other("the running host sent a message without its socket");
        match receive(&control)? {
            Some((Message::Lock, fd)) => lock = Some(fd.ok_or_else(missing)?),
            Some((Message::Forward, fd)) => forward = Some(fd.ok_or_else(missing)?),
            Some((Message::Listener { name }, fd)) => {
                listeners.insert(name, fd.ok_or_else(missing)?);
            }
            Some((Message::Instances { instances }, _)) => {
                let incomplete = || io::Error::other("the running host's offer is incomplete");
                return Ok(Incoming {
                    control: Control(control),
                    lock: lock.ok_or_else(incomplete)?,
                    forward: forward.ok_or_else(incomplete)?,
                    listeners,
                    instances,
                });
            }
            Some((other, _)) => {
                return Err(io::Error::other(format!("unexpected {other:?}")));
            }
            None => return Err(io::Error::other("the running host hung up mid-offer")),
        }
    }
}

/// The control connection to the predecessor.
pub struct Control(UnixStream);

impl Control {
    /// Tells the predecessor this process accepts, then runs the connections it hands over
    /// until it is done.
    pub fn finish(self, server: Arc<Server>, runtime: Handle) -> io::Result<()> {
        send(&self.0, &Message::Ready, None)?;
        let control = self.0;
        std::thread::Builder::new()
            .name("takeover".into())
            .spawn(move || {
                let mut moved = 0usize;
                loop {
                    match receive(&control) {
                        Ok(Some((
                            Message::Connection {
                                name,
                                buffered,
                                greet,
                            },
                            Some(fd),
                        ))) => {
                            let _guard = runtime.enter();
                            server.adopt_connection(fd, &name, buffered, greet);
                            moved += 1;
                        }
                        Ok(Some((Message::Done, _))) => {
                            tracing::info!(
                                "took over {moved} open connections; the previous host is done"
                            );
                            break;
                        }
                        Ok(Some((other, _))) => {
                            tracing::warn!("previous host sent {other:?}; ignoring it");
                        }
                        Ok(None) | Err(_) => {
                            tracing::warn!(
                                "the previous host went away before it was done; its \
                                 unfinished events are lost"
                            );
                            break;
                        }
                    }
                }
                server.dispatcher.forget_predecessor();
            })?;
        Ok(())
    }
}

/// The largest message accepted: an instance list, well above any real one.
const MAX_MESSAGE: usize = 256 << 20;

/// Sends `message`, with `fd` attached when given.
pub fn send(stream: &UnixStream, message: &Message, fd: Option<RawFd>) -> io::Result<()> {
    let json = serde_json::to_vec(message).map_err(io::Error::other)?;
    let mut bytes = Vec::with_capacity(4 + json.len());
    bytes.extend_from_slice(&(json.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&json);
    let fds: Vec<RawFd> = fd.into_iter().collect();
    let rights = [ControlMessage::ScmRights(&fds)];
    let control: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    let sent = loop {
        match sendmsg::<()>(
            stream.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            control,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(io::Error::from)?,
        }
    };
    (&*stream).write_all(&bytes[sent..])
}

/// Receives one message and the descriptor that came with it; `None` at end of stream.
pub fn receive(stream: &UnixStream) -> io::Result<Option<(Message, Option<OwnedFd>)>> {
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    let mut fd = None;
    while filled < prefix.len() {
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut prefix[filled..])];
        let received = match recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => other.map_err(io::Error::from)?,
        };
        for control in received.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = control {
                for raw in fds {
                    // SAFETY: the kernel just installed `raw` in this process for us; nothing
                    // else owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    fd.get_or_insert(owned);
                }
            }
        }
        if received.bytes == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        filled += received.bytes;
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("control message of {len} bytes"),
        ));
    }
    let mut json = vec![0u8; len];
    (&*stream).read_exact(&mut json)?;
    let message = serde_json::from_slice(&json)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
    Ok(Some((message, fd)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn messages_and_descriptors_cross_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let (passed, mut kept) = UnixStream::pair().unwrap();
        send(&a, &Message::Forward, Some(passed.as_fd().as_raw_fd())).unwrap();
        send(
            &a,
            &Message::Connection {
                name: "rust-hello".into(),
                buffered: vec![0x94, 0],
                greet: true,
            },
            None,
        )
        .unwrap();
        drop(a);

        let (first, fd) = receive(&b).unwrap().unwrap();
        assert!(matches!(first, Message::Forward));
        let mut received = UnixStream::from(fd.expect("a descriptor"));
        received.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        kept.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");

        let (second, fd) = receive(&b).unwrap().unwrap();
        assert!(fd.is_none());
        match second {
            Message::Connection {
                name,
                buffered,
                greet,
            } => {
                assert_eq!(
                    (name.as_str(), buffered, greet),
                    ("rust-hello", vec![0x94, 0], true)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(receive(&b).unwrap().is_none());
    }
}
