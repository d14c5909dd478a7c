//! One serving host per socket dir.
//!
//! Kong 3.1–3.4 marks a plugin-server entry ready only if Kong starts it itself, so every entry
//! gets a start command and Kong runs (and respawns) all of them. With the same command for
//! every entry, the first process to lock the socket dir serves every plugin; the others stand
//! by, blocked on the lock, and the kernel hands it to one of them the moment the serving
//! process dies, however it dies: that one binds the sockets again and serves.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Seek, Write},
    os::fd::{AsFd, AsRawFd, OwnedFd},
    path::Path,
};

/// Held for the life of the serving process; the kernel releases it when the process exits.
pub struct ServingLock {
    file: File,
}

/// Takes the socket dir's serving lock for `server` (`kong-rust-host`, or a dedicated server's
/// plugin name), waiting (standing by) while another process holds it.
pub fn acquire(socket_dir: &Path, server: &str) -> io::Result<ServingLock> {
    let path = socket_dir.join(format!(".{server}.lock"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    if !flock(&file, libc::LOCK_EX | libc::LOCK_NB)? {
        let mut holder = String::new();
        file.read_to_string(&mut holder)?;
        tracing::info!(
            "pid {} serves {}: standing by to take over if it exits",
            holder.trim(),
            socket_dir.display()
        );
        flock(&file, libc::LOCK_EX)?;
        tracing::info!(
            "pid {} is gone: taking over {}",
            holder.trim(),
            socket_dir.display()
        );
    }
    ServingLock::held(file)
}

impl ServingLock {
    /// The lock a predecessor handed over (`serve --upgrade`): the same open file, so the
    /// kernel's lock passes to this process without ever being free.
    pub fn inherit(fd: OwnedFd) -> io::Result<ServingLock> {
        ServingLock::held(File::from(fd))
    }

    /// Records this process as the holder, for standby processes' log lines.
    fn held(mut file: File) -> io::Result<ServingLock> {
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(ServingLock { file })
    }

    /// A descriptor of the locked file, to hand to a successor.
    pub fn share(&self) -> io::Result<OwnedFd> {
        self.file.as_fd().try_clone_to_owned()
    }
}

/// `flock(2)`; `Ok(false)` when a non-blocking attempt finds the lock taken. Not nix's `Flock`:
/// that unlocks when dropped, and the lock here must outlive this process's descriptor when a
/// successor shares the same open file (`serve --upgrade`).
fn flock(file: &File, operation: i32) -> io::Result<bool> {
    loop {
        // SAFETY: flock on a descriptor `file` owns.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(true);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(error),
        }
    }
}
