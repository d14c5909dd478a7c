//! Binding the plugin sockets, for Kong's workers and nobody else.

use crate::runtime::connection::Serves;
use nix::sys::stat::{umask, Mode};
use std::{
    collections::HashMap,
    io,
    os::fd::OwnedFd,
    os::unix::fs::FileTypeExt,
    path::{Path, PathBuf},
};
use tokio::net::UnixListener;

/// A bound socket and what it serves.
pub struct Listener {
    /// `<name>.socket`: what a successor binds it as (`serve --upgrade`).
    pub name: String,
    pub path: PathBuf,
    pub serves: Serves,
    pub(super) listener: UnixListener,
}

/// Who may connect to the sockets: Kong's nginx workers must, nobody else should.
#[derive(Clone, Copy, Debug)]
pub struct SocketAccess {
    /// Permission bits of each socket file (default 0660).
    pub mode: u32,
    /// Group to give the sockets, e.g. the group Kong's workers run as.
    pub group: Option<u32>,
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
    let previous = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(previous);
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
