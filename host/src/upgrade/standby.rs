//! A standby with no gap: a second `serve` on a socket dir holds the serving host's listening
//! sockets (the same open sockets, passed over the control socket), so connections Kong makes
//! while the serving host dies wait in their shared backlog, and the standby accepts them the
//! moment the kernel hands it the serving lock. The serving host leaves the socket files in place
//! for it however it stops, and on SIGTERM asks it to take over as `serve --upgrade` does.
//!
//! A serving host of an older build answers a standby's `Standby` by hanging up: the standby then
//! waits on the lock alone and binds the sockets again when it gets it, as before.

use super::{connect, lock, parent::FollowedParent, receive, receive_offer, send, Message};
use parking_lot::Mutex;
use std::{
    collections::HashMap,
    io,
    os::{fd::OwnedFd, unix::fs::FileTypeExt, unix::net::UnixStream},
    path::Path,
    sync::mpsc,
    time::Duration,
};

/// The serving host's side: the processes standing by for it, each on its control connection.
#[derive(Default)]
pub struct Standbys {
    /// (pid, connection), longest waiting first.
    standing: Mutex<Vec<(u32, UnixStream)>>,
}

impl Standbys {
    pub(super) fn add(&self, pid: u32, connection: UnixStream) {
        tracing::info!("pid {pid} stands by, holding the sockets: they stay in place");
        self.standing.lock().push((pid, connection));
    }

    /// Asks the standbys, longest waiting first, to take over as `serve --upgrade` does, each
    /// given `patience` (while it runs); returns once none is left, having logged why each did
    /// not. The serving host is meanwhile told the successor accepts, and stops handed over.
    pub async fn hand_over(&self, cause: &str, patience: Duration) {
        while let Some(pid) = self.ask_one_to_succeed() {
            tracing::info!("{cause}: asking the standby pid {pid} to take over");
            let deadline = tokio::time::Instant::now() + patience;
            while tokio::time::Instant::now() < deadline && runs(pid) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let why = if runs(pid) {
                "in time"
            } else {
                "before it exited"
            };
            tracing::warn!("the standby pid {pid} did not take over {why}");
        }
    }

    /// Asks the standby that has waited longest, and is still there, to take over now; its pid,
    /// or `None` when no standby is left.
    fn ask_one_to_succeed(&self) -> Option<u32> {
        let mut standing = self.standing.lock();
        while !standing.is_empty() {
            let (pid, connection) = standing.remove(0);
            if still_there(&connection) && send(&connection, &Message::Succeed, None).is_ok() {
                return Some(pid);
            }
        }
        None
    }
}

/// Whether process `pid` still runs (or cannot be signalled by this user, so it does).
fn runs(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let signalled = unsafe { libc::kill(pid as i32, 0) } == 0;
    signalled || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Whether the other end of `connection` is still open: a standby sends nothing once it stands
/// by, so reading would wait, and end of stream means it is gone.
fn still_there(connection: &UnixStream) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    match recv(
        connection.as_raw_fd(),
        &mut byte,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(0) => false,
        Ok(_) => true,
        Err(error) => error == nix::errno::Errno::EAGAIN,
    }
}

/// How a standby ends.
pub enum Standby {
    /// This process holds the serving lock: it serves, on the listening sockets the last serving
    /// host passed and left in place (the others it binds).
    Serve {
        lock: lock::ServingLock,
        listeners: HashMap<String, OwnedFd>,
    },
    /// The serving host is stopping and asks this process to take over as `serve --upgrade`
    /// does.
    Succeed,
    /// A signal, or the followed parent's exit, while standing by (logged): exit.
    Stopped,
}

/// How often a standby that holds no sockets asks the serving host for them again (one that is
/// starting, or that another standby just replaced).
const RETRY: Duration = Duration::from_millis(100);
/// How long the serving host may take to make its offer to a standby.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a standby looks at the parent it follows.
const PARENT_CHECK: Duration = Duration::from_secs(1);

/// Takes the socket dir's serving lock for `server`, standing by while another process holds
/// it; returns at once when the lock is free.
pub fn stand_by(
    socket_dir: &Path,
    server: &str,
    parent: Option<FollowedParent>,
) -> io::Result<Standby> {
    let taken = match lock::try_acquire(socket_dir, server)? {
        Ok(lock) => {
            return Ok(Standby::Serve {
                lock,
                listeners: HashMap::new(),
            })
        }
        Err(taken) => taken,
    };
    let (events, arrived) = mpsc::channel();
    let lock_event = events.clone();
    // The kernel releases the lock however its holder dies; a thread of its own waits for it.
    std::thread::Builder::new()
        .name("standby".into())
        .spawn(move || {
            let _ = lock_event.send(Event::Lock(taken.wait()));
        })?;
    watch_signals(events.clone())?;
    let dir = socket_dir.display();
    let mut holding = Holding::default();
    // The registration in force: its reader's number, or none while no host holds us.
    let mut registered: Option<u64> = None;
    let mut registrations = 0u64;
    // A host that cannot pass its sockets (an older build), not asked again.
    let mut older_host = None;
    let mut announced = None;
    let mut attempts = 0u32;
    loop {
        if registered.is_none() {
            let holder = lock::holder(socket_dir, server);
            if older_host != Some(holder) {
                match register(socket_dir, server) {
                    Registration::Holding(held, connection) => {
                        tracing::info!(
                            "pid {} serves {dir}: standing by, holding its {} listening sockets",
                            held.pid,
                            held.listeners.len()
                        );
                        registrations += 1;
                        registered = Some(registrations);
                        watch(connection, registrations, events.clone())?;
                        holding = held;
                        announced = Some(holding.pid);
                    }
                    Registration::OlderHost => {
                        tracing::info!(
                            "pid {holder} serves {dir}: standing by to take over if it exits \
                             (it cannot pass its sockets, an older build: they will be bound again)"
                        );
                        older_host = Some(holder);
                        holding = Holding {
                            pid: holder,
                            listeners: HashMap::new(),
                        };
                        announced = Some(holder);
                    }
                    Registration::NoHost => {
                        attempts += 1;
                        // A host starting up answers within a few retries; say so once otherwise.
                        if attempts == 10 && announced != Some(holder) {
                            tracing::info!(
                                "pid {holder} serves {dir} without passing its sockets: standing \
                                 by to take over if it exits"
                            );
                            announced = Some(holder);
                        }
                    }
                }
            }
        }
        if let Some(parent) = parent.filter(|parent| parent.exited()) {
            tracing::warn!("{}: stopping (standing by)", parent.cause());
            return Ok(Standby::Stopped);
        }
        let event = match registered {
            Some(_) => arrived.recv_timeout(PARENT_CHECK),
            None => arrived.recv_timeout(RETRY),
        };
        match event {
            Ok(Event::Lock(lock)) => {
                let lock = lock?;
                let pid = holding.pid;
                let listeners = holding.still_in_place(socket_dir);
                let pid = match pid {
                    0 => String::from("the serving host"),
                    pid => format!("pid {pid}"),
                };
                if listeners.is_empty() {
                    tracing::info!("{pid} is gone: taking over {dir}, binding its sockets");
                } else {
                    tracing::info!(
                        "{pid} is gone: taking over {dir}, accepting on the {} sockets it passed",
                        listeners.len()
                    );
                }
                return Ok(Standby::Serve { lock, listeners });
            }
            Ok(Event::Signal(signal)) => {
                tracing::warn!("{signal}: stopping (standing by)");
                return Ok(Standby::Stopped);
            }
            // Stopping too (Kong stops all its processes at once): the host asks the next one.
            Ok(Event::Succeed) if stop_before_serving(parent).is_some() => {}
            Ok(Event::Succeed) => {
                tracing::info!("pid {} is stopping: taking over {dir} from it", holding.pid);
                return Ok(Standby::Succeed);
            }
            // Kept: if that host died, these sockets are still the ones in place.
            Ok(Event::HostGone(registration)) if registered == Some(registration) => {
                registered = None;
                attempts = 0;
            }
            Ok(Event::HostGone(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                unreachable!("this function holds a sender")
            }
        }
    }
}

enum Event {
    /// The serving lock came free and is this process's now.
    Lock(io::Result<lock::ServingLock>),
    /// The serving host asks this process to take over.
    Succeed,
    /// The connection of registration n ended: its host exited (or handed over to another).
    HostGone(u64),
    /// SIGTERM or SIGINT.
    Signal(&'static str),
}

/// A signal that came after this process stood by, before the serving host it became listens
/// for signals itself: it is not lost ([`signal_before_serving`]).
static SIGNALLED: std::sync::Mutex<Option<&'static str>> = std::sync::Mutex::new(None);

/// The signal that came while this process stood by or took over, if any.
pub fn signal_before_serving() -> Option<&'static str> {
    *SIGNALLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a process about to take over should stop instead: a signal came, or the parent it
/// follows exited. The host it would take over from then serves on and asks its next standby.
pub fn stop_before_serving(parent: Option<FollowedParent>) -> Option<String> {
    signal_before_serving().map(String::from).or_else(|| {
        parent
            .filter(|parent| parent.exited())
            .map(FollowedParent::cause)
    })
}

/// Turns SIGTERM and SIGINT into events, on a thread of its own; once a standby catches them,
/// they no longer end the process by themselves.
fn watch_signals(events: mpsc::Sender<Event>) -> io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let (mut term, mut int) = {
        let _entered = runtime.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                loop {
                    let signal = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    *SIGNALLED
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(signal);
                    let _ = events.send(Event::Signal(signal));
                }
            })
        })?;
    Ok(())
}

/// The serving host's pid and the listening sockets it passed.
#[derive(Default)]
struct Holding {
    pid: u32,
    listeners: HashMap<String, OwnedFd>,
}

impl Holding {
    /// The sockets whose files are still in place: one removed since (a host stopped without
    /// knowing of this standby) is bound again instead.
    fn still_in_place(self, socket_dir: &Path) -> HashMap<String, OwnedFd> {
        self.listeners
            .into_iter()
            .filter(|(name, _)| {
                let path = socket_dir.join(format!("{name}.socket"));
                let there =
                    std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_socket());
                if !there {
                    tracing::info!("{} was removed: binding it again", path.display());
                }
                there
            })
            .collect()
    }
}

enum Registration {
    /// The serving host passed its sockets and keeps their files for this standby.
    Holding(Holding, UnixStream),
    /// It hung up on `Standby`: a build without standbys that hold the sockets.
    OlderHost,
    /// No host answers the control socket (yet, or any more).
    NoHost,
}

/// Takes the serving host's offer and stands by instead of taking over.
fn register(socket_dir: &Path, server: &str) -> Registration {
    let Ok(Some(control)) = connect(socket_dir, server) else {
        return Registration::NoHost;
    };
    // A host busy with an upgrade, or stopped, answers later or never: ask again instead.
    if control
        .set_read_timeout(Some(REGISTRATION_TIMEOUT))
        .is_err()
    {
        return Registration::NoHost;
    }
    // The lock's and the forwarding connection's descriptors are dropped here: a standby must
    // not keep the serving lock's open file, or the lock would outlive its holder.
    let Ok(offer) = receive_offer(control) else {
        return Registration::NoHost;
    };
    let connection = offer.control.0;
    let standby = Message::Standby {
        pid: std::process::id(),
    };
    if send(&connection, &standby, None).is_err() {
        return Registration::OlderHost;
    }
    match receive(&connection) {
        Ok(Some((Message::Standing { pid }, _))) if connection.set_read_timeout(None).is_ok() => {
            Registration::Holding(
                Holding {
                    pid,
                    listeners: offer.listeners,
                },
                connection,
            )
        }
        _ => Registration::OlderHost,
    }
}

/// Reads the serving host's word on `connection`, on a thread of its own, until it hangs up.
fn watch(connection: UnixStream, registration: u64, events: mpsc::Sender<Event>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("standing".into())
        .spawn(move || loop {
            match receive(&connection) {
                Ok(Some((Message::Succeed, _))) => {
                    let _ = events.send(Event::Succeed);
                    return;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    let _ = events.send(Event::HostGone(registration));
                    return;
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::control_path;
    use std::os::{fd::AsRawFd, unix::net::UnixListener};

    /// Serves one connection on `dir`'s control socket as a serving host does up to its
    /// instances, then answers the standby's message with `answer` (none: hangs up, as a build
    /// without standbys does).
    fn serving_host(dir: &Path, answer: Option<Message>) -> std::thread::JoinHandle<()> {
        let control = UnixListener::bind(control_path(dir, "kong-rust-host")).unwrap();
        let plugin_socket = UnixListener::bind(dir.join("rust-hello.socket")).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = control.accept().unwrap();
            let (lock, _) = UnixStream::pair().unwrap();
            let (forward, _) = UnixStream::pair().unwrap();
            send(&stream, &Message::Lock, Some(lock.as_raw_fd())).unwrap();
            send(&stream, &Message::Forward, Some(forward.as_raw_fd())).unwrap();
            let listener = Message::Listener {
                name: "rust-hello".into(),
            };
            send(&stream, &listener, Some(plugin_socket.as_raw_fd())).unwrap();
            let instances = Message::Instances { instances: vec![] };
            send(&stream, &instances, None).unwrap();
            let standing_by = receive(&stream).unwrap();
            assert!(matches!(standing_by, Some((Message::Standby { .. }, None))));
            if let Some(answer) = answer {
                send(&stream, &answer, None).unwrap();
            }
        })
    }

    fn socket_dir(label: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("krh-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_standby_holds_the_listening_sockets_a_host_keeps_for_it() {
        let dir = socket_dir("standing");
        let host = serving_host(&dir, Some(Message::Standing { pid: 4242 }));
        let Registration::Holding(held, _connection) = register(&dir, "kong-rust-host") else {
            panic!("not holding");
        };
        host.join().unwrap();
        assert_eq!(held.pid, 4242);
        let names: Vec<&String> = held.listeners.keys().collect();
        assert_eq!(names, ["rust-hello"]);
        // The same socket: a connect to the file is queued on the descriptor the standby holds.
        let _client = UnixStream::connect(dir.join("rust-hello.socket")).unwrap();
        let held_listener = UnixListener::from(held.listeners.into_values().next().unwrap());
        held_listener.set_nonblocking(true).unwrap();
        assert!(held_listener.accept().is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_host_that_hangs_up_on_a_standby_is_an_older_build_whose_sockets_are_not_kept() {
        let dir = socket_dir("older");
        let host = serving_host(&dir, None);
        assert!(matches!(
            register(&dir, "kong-rust-host"),
            Registration::OlderHost
        ));
        host.join().unwrap();
        assert!(matches!(
            register(&dir, "kong-rust-host"),
            Registration::NoHost
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_longest_waiting_standby_still_there_is_asked_to_succeed() {
        let standbys = Standbys::default();
        let (gone, gone_far_end) = UnixStream::pair().unwrap();
        let (waiting, waiting_far_end) = UnixStream::pair().unwrap();
        let (later, later_far_end) = UnixStream::pair().unwrap();
        standbys.add(11, gone);
        standbys.add(22, waiting);
        standbys.add(33, later);
        drop(gone_far_end);

        assert_eq!(standbys.ask_one_to_succeed(), Some(22));
        assert!(matches!(
            receive(&waiting_far_end).unwrap(),
            Some((Message::Succeed, None))
        ));
        drop(later_far_end);
        assert_eq!(standbys.ask_one_to_succeed(), None);
    }
}
