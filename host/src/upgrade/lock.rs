//! One serving host per socket dir.
//!
//! Kong 3.1–3.4 marks a plugin-server entry ready only if Kong starts it itself, so every entry
//! gets a start command and Kong runs (and respawns) all of them. With the same command for
//! every entry, the first process to lock the socket dir serves every plugin; the others stand
//! by ([`super::standby`]), blocked on the lock, and the kernel hands it to one of them the
//! moment the serving process dies, however it dies.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Seek, Write},
    os::fd::{AsFd, AsRawFd, OwnedFd},
    path::{Path, PathBuf},
};

/// Held for the life of the serving process; the kernel releases it when the process exits.
pub struct ServingLock {
    file: File,
}

/// The socket dir's lock, held by another process.
pub struct Taken {
    file: File,
}

fn path(socket_dir: &Path, server: &str) -> PathBuf {
    socket_dir.join(format!(".{server}.lock"))
}

/// Takes the socket dir's serving lock for `server` (`kong-rust-host`, or a dedicated server's
/// plugin name) if it is free.
pub fn try_acquire(socket_dir: &Path, server: &str) -> io::Result<Result<ServingLock, Taken>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path(socket_dir, server))?;
    if flock(&file, libc::LOCK_EX | libc::LOCK_NB)? {
        ServingLock::held(file).map(Ok)
    } else {
        Ok(Err(Taken { file }))
    }
}

/// The pid of the process holding the lock, as it recorded itself (0 while it is writing).
pub fn holder(socket_dir: &Path, server: &str) -> u32 {
    let mut text = String::new();
    let _ = File::open(path(socket_dir, server)).and_then(|mut f| f.read_to_string(&mut text));
    text.trim().parse().unwrap_or(0)
}

impl Taken {
    /// Blocks until the holder releases the lock (exits, however it dies), then holds it.
    pub fn wait(self) -> io::Result<ServingLock> {
        flock(&self.file, libc::LOCK_EX)?;
        ServingLock::held(self.file)
    }
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
