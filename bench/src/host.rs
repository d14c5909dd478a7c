//! The host under test when the bench starts it itself: a private plugins dir and socket dir,
//! so nothing else shares its sockets, and `/proc` readings for its CPU time and peak RSS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the host may take to bind its sockets.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `kong-rust-host serve`; SIGTERMed (as Kong stops it) and its dirs removed on drop.
pub struct Host {
    child: Option<Child>,
    dir: PathBuf,
    socket: PathBuf,
}

impl Host {
    /// Copies `plugins` into a fresh plugins dir, starts `bin serve` on it with `extra_args` and
    /// waits until the socket of plugin `wait_for` exists. The host's stderr stays ours, so its
    /// warnings are visible.
    pub fn start(
        bin: &Path,
        plugins_to_serve: &[&Path],
        extra_args: &[&str],
        wait_for: &str,
    ) -> Result<Host, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("kong-rust-bench-{}-{nanos}", std::process::id()));
        let plugins = dir.join("plugins");
        let sockets = dir.join("sockets");
        for d in [&plugins, &sockets] {
            std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
        }
        // Constructed before anything can fail, so the dir is removed on every error path.
        let mut host = Host {
            child: None,
            socket: sockets.join(format!("{wait_for}.socket")),
            dir,
        };
        for plugin in plugins_to_serve {
            let file_name = plugin.file_name().ok_or("a plugin path has no file name")?;
            std::fs::copy(plugin, plugins.join(file_name))
                .map_err(|e| format!("copy {}: {e}", plugin.display()))?;
        }
        let child = Command::new(bin)
            .arg("serve")
            .arg("--plugins-dir")
            .arg(&plugins)
            .arg("--socket-dir")
            .arg(&sockets)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        let child = host.child.insert(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !host.socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{} exited before serving: {status}", bin.display()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no {} after {START_TIMEOUT:?}",
                    host.socket.display()
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(host)
    }

    /// The socket of the plugin named at start.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The socket of any served plugin.
    pub fn socket_of(&self, plugin: &str) -> PathBuf {
        self.dir.join("sockets").join(format!("{plugin}.socket"))
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// User + system CPU time the host has used so far (utime + stime of `/proc/<pid>/stat`).
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // The command name (field 2) may contain spaces; fields after it are plain. utime and
        // stime are fields 14 and 15, i.e. the 12th and 13th after the closing parenthesis.
        let mut rest = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
        let utime: u64 = rest.next()?.parse().ok()?;
        let stime: u64 = rest.next()?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let ticks_per_sec = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?;
        Some(Duration::from_secs_f64(
            (utime + stime) as f64 / ticks_per_sec as f64,
        ))
    }

    /// The host's peak resident set size in KiB (`VmHWM` of `/proc/<pid>/status`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    /// The host's current resident set size in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix(field))?;
        line.trim().trim_end_matches("kB").trim().parse().ok()
    }

    /// SIGTERM, as Kong stops its plugin servers, then waits for the exit.
    pub fn stop(mut self) -> std::io::Result<ExitStatus> {
        let mut child = self.child.take().expect("stop is only called once");
        terminate(&mut child)
    }
}

fn terminate(child: &mut Child) -> std::io::Result<ExitStatus> {
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    child.wait()
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = terminate(&mut child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
