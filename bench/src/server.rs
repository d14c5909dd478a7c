//! The plugin servers under test, each started by the bench itself in a private dir (so nothing
//! else shares its sockets), optionally pinned to one CPU, with `/proc` readings for its CPU
//! time and peak RSS.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server may take to bind its socket (Python and Node start slowly on a busy box).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running plugin server; SIGTERMed (as Kong stops it) and its dir removed on drop.
pub struct Server {
    child: Option<Child>,
    dir: PathBuf,
    socket: PathBuf,
}

/// A fresh dir for one server: `<tmp>/kong-rust-bench-<pid>-<nanos>-<label>`.
fn private_dir(label: &str) -> Result<PathBuf, String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "kong-rust-bench-{}-{nanos}-{label}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Restricts the calling process (and the threads it starts later) to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `command` with no stdin or stdout (Kong reads neither), restricted to `cpu` if given.
pub fn quiet_on_cpu(command: &mut Command, cpu: Option<usize>) -> &mut Command {
    command.stdin(Stdio::null()).stdout(Stdio::null());
    if let Some(cpu) = cpu {
        // SAFETY: sched_setaffinity is a plain syscall, safe between fork and exec.
        unsafe { command.pre_exec(move || pin_to_cpu(cpu)) };
    }
    command
}

impl Server {
    /// `kong-rust-host serve` on a copy of `plugins_to_serve` with `extra_args`, ready once the
    /// socket of plugin `wait_for` exists. The host's stderr stays ours, so its warnings show.
    pub fn host(
        bin: &Path,
        plugins_to_serve: &[&Path],
        extra_args: &[&str],
        wait_for: &str,
        cpu: Option<usize>,
    ) -> Result<Server, String> {
        let dir = private_dir("host")?;
        let plugins = dir.join("plugins");
        let sockets = dir.join("sockets");
        for d in [&plugins, &sockets] {
            std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
        }
        for plugin in plugins_to_serve {
            let file_name = plugin.file_name().ok_or("a plugin path has no file name")?;
            std::fs::copy(plugin, plugins.join(file_name))
                .map_err(|e| format!("copy {}: {e}", plugin.display()))?;
        }
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .arg("--plugins-dir")
            .arg(&plugins)
            .arg("--socket-dir")
            .arg(&sockets)
            .args(extra_args);
        let socket = sockets.join(format!("{wait_for}.socket"));
        Server::spawn(command, dir, socket, cpu)
    }

    /// `command` with `{dir}` in its arguments replaced by a fresh private dir, ready once
    /// `<dir>/<socket_name>` exists: how the floor and Kong's Python and JS servers are run.
    pub fn command(
        program: &Path,
        args: &[&str],
        socket_name: &str,
        cpu: Option<usize>,
    ) -> Result<Server, String> {
        let label = program.file_name().map_or_else(
            || "server".into(),
            |name| name.to_string_lossy().into_owned(),
        );
        let dir = private_dir(&label)?;
        let mut command = Command::new(program);
        for arg in args {
            command.arg(arg.replace("{dir}", &dir.to_string_lossy()));
        }
        let socket = dir.join(socket_name);
        Server::spawn(command, dir, socket, cpu)
    }

    fn spawn(
        mut command: Command,
        dir: PathBuf,
        socket: PathBuf,
        cpu: Option<usize>,
    ) -> Result<Server, String> {
        let program = command.get_program().to_string_lossy().into_owned();
        // Constructed before anything can fail, so the dir is removed on every error path.
        let mut server = Server {
            child: None,
            dir,
            socket,
        };
        let child = quiet_on_cpu(&mut command, cpu)
            .spawn()
            .map_err(|e| format!("start {program}: {e}"))?;
        let child = server.child.insert(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !server.socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{program} exited before serving: {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no {} after {START_TIMEOUT:?}",
                    server.socket.display()
                ));
            }
            thread::sleep(Duration::from_millis(2));
        }
        Ok(server)
    }

    /// The socket waited for at start.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The socket of any plugin a host serves.
    pub fn socket_of(&self, plugin: &str) -> PathBuf {
        self.dir.join("sockets").join(format!("{plugin}.socket"))
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// User + system CPU time the server has used so far (utime + stime of `/proc/<pid>/stat`,
    /// which covers all its threads).
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

    /// Peak resident set size in KiB (`VmHWM` of `/proc/<pid>/status`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    /// Current resident set size in KiB (`VmRSS`).
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

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = terminate(&mut child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
