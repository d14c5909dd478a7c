//! Support for the end-to-end tests: builds the real host binary and plugin `.so` files once per
//! test run, and runs hosts as child processes on sockets in a private temporary directory.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, OnceLock},
    thread,
    time::{Duration, Instant},
};

/// Paths of the artifacts the tests run.
pub struct Artifacts {
    pub host: PathBuf,
    pub hello: PathBuf,
    /// rust-hello's dedicated server binary (`--features server`).
    pub hello_server: PathBuf,
    pub bench: PathBuf,
    /// The example plugins: rust-phases, rust-key-auth, rust-response-transformer,
    /// rust-request-logger.
    pub examples: [PathBuf; 4],
    pub faulty: PathBuf,
    pub not_a_plugin: PathBuf,
    /// A plugin built against an edited copy of the ABI crate.
    pub changed_abi: PathBuf,
    /// A plugin built with abi_stable 0.10.
    pub old_abi_stable: PathBuf,
    /// A plugin whose metadata panics when read.
    pub bad_metadata: PathBuf,
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Cargo's target directory, as cargo resolves it (`CARGO_TARGET_DIR`, a `.cargo/config.toml`
/// `build.target-dir`, or `target/`), asked once.
pub fn target_dir() -> PathBuf {
    static TARGET: OnceLock<PathBuf> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let output = Command::new(env!("CARGO"))
                .args(["metadata", "--format-version", "1", "--no-deps"])
                .current_dir(workspace_root())
                .output()
                .expect("run cargo metadata");
            assert!(output.status.success(), "cargo metadata failed");
            let metadata: serde_json::Value =
                serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
            PathBuf::from(
                metadata["target_directory"]
                    .as_str()
                    .expect("cargo metadata names target_directory"),
            )
        })
        .clone()
}

fn cargo_build(args: &[&str]) {
    cargo("build", args);
}

/// Runs `cargo <command> <args>` from the workspace root; panics if it fails.
pub fn cargo(command: &str, args: &[&str]) {
    let status = Command::new(env!("CARGO"))
        .arg(command)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .expect("run cargo");
    assert!(status.success(), "cargo {command} {args:?} failed");
}

/// Builds (once per test binary) the host, the example plugins and the fixtures.
pub fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        cargo_build(&[
            "-p",
            "kong-rust-host",
            "-p",
            "rust-hello",
            "--features",
            "rust-hello/server",
            "-p",
            "rust-bench",
            "-p",
            "rust-phases",
            "-p",
            "rust-key-auth",
            "-p",
            "rust-response-transformer",
            "-p",
            "rust-request-logger",
            "-p",
            "fixture-faulty",
            "-p",
            "fixture-not-a-plugin",
            "-p",
            "fixture-bad-metadata",
        ]);
        let target = target_dir();
        // Fixtures outside the workspace: each depends on something the workspace must not.
        for fixture in ["changed-abi", "old-abi-stable"] {
            let manifest = workspace_root().join(format!("tests/fixtures/{fixture}/Cargo.toml"));
            cargo_build(&[
                "--manifest-path",
                manifest.to_str().unwrap(),
                "--target-dir",
                target.to_str().unwrap(),
            ]);
        }
        let debug = target.join("debug");
        Artifacts {
            host: debug.join("kong-rust-host"),
            hello: debug.join("librust_hello.so"),
            hello_server: debug.join("rust-hello"),
            bench: debug.join("librust_bench.so"),
            examples: [
                "librust_phases.so",
                "librust_key_auth.so",
                "librust_response_transformer.so",
                "librust_request_logger.so",
            ]
            .map(|file| debug.join(file)),
            faulty: debug.join("libfixture_faulty.so"),
            not_a_plugin: debug.join("libfixture_not_a_plugin.so"),
            changed_abi: debug.join("libkong_rust_abi.so"),
            old_abi_stable: debug.join("libfixture_old_abi_stable.so"),
            bad_metadata: debug.join("libfixture_bad_metadata.so"),
        }
    })
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Short: socket paths must fit in sun_path (108 bytes).
        let path = std::env::temp_dir().join(format!("krh-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A plugins dir holding copies of the given files under the given names.
pub fn plugins_dir(files: &[(&Path, &str)]) -> TempDir {
    let dir = TempDir::new("plugins");
    for (source, name) in files {
        std::fs::copy(source, dir.path().join(name)).expect("copy plugin");
    }
    dir
}

/// A plugins dir and a socket dir that outlive any number of host processes (restart tests).
pub struct Setup {
    pub plugins: TempDir,
    pub sockets: TempDir,
}

impl Setup {
    /// `files`: (source `.so`, name in the plugins dir).
    pub fn new(files: &[(&Path, &str)]) -> Setup {
        Setup {
            plugins: plugins_dir(files),
            sockets: TempDir::new("sockets"),
        }
    }

    /// Starts a host on these dirs and waits until it is ready.
    pub fn start(&self, extra_args: &[&str]) -> Host {
        Host::start(self.plugins.path(), self.sockets.path(), extra_args)
    }

    /// Starts a host on these dirs without waiting for it to serve (a standby).
    pub fn spawn(&self, extra_args: &[&str]) -> Host {
        Host::spawn(self.plugins.path(), self.sockets.path(), extra_args)
    }

    /// Runs `serve` on these dirs to its exit, for a host that refuses to start:
    /// (status, stdout, stderr).
    pub fn serve_refused(&self, extra_args: &[&str]) -> (ExitStatus, String, String) {
        let mut args = vec![
            "serve",
            "--plugins-dir",
            self.plugins.path().to_str().unwrap(),
            "--socket-dir",
            self.sockets.path().to_str().unwrap(),
        ];
        args.extend_from_slice(extra_args);
        run_host(&args)
    }
}

/// A running `kong-rust-host serve`.
pub struct Host {
    child: Option<Child>,
    pub socket_dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Host {
    /// Starts the host and waits until it logs that it is ready.
    pub fn start(plugins_dir: &Path, socket_dir: &Path, extra_args: &[&str]) -> Host {
        let host = Host::spawn(plugins_dir, socket_dir, extra_args);
        host.wait_for_log("ready: serving", Duration::from_secs(20));
        host
    }

    /// Starts the host without waiting for anything.
    pub fn spawn(plugins_dir: &Path, socket_dir: &Path, extra_args: &[&str]) -> Host {
        let mut command = Command::new(&artifacts().host);
        command
            .arg("serve")
            .arg("--plugins-dir")
            .arg(plugins_dir)
            .arg("--socket-dir")
            .arg(socket_dir)
            .args(extra_args);
        Host::launch(command, socket_dir)
    }

    /// Starts a plugin's dedicated server, `binary -kong-prefix <socket_dir>`, and waits until
    /// it is ready.
    pub fn start_dedicated(binary: &Path, socket_dir: &Path) -> Host {
        let mut command = Command::new(binary);
        command.arg("-kong-prefix").arg(socket_dir);
        let host = Host::launch(command, socket_dir);
        host.wait_for_log("ready: serving", Duration::from_secs(20));
        host
    }

    fn launch(mut command: Command, socket_dir: &Path) -> Host {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Host {
            child: Some(child),
            socket_dir: socket_dir.to_path_buf(),
            log,
        }
    }

    pub fn socket(&self, plugin: &str) -> PathBuf {
        self.socket_dir.join(format!("{plugin}.socket"))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Everything the host wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`; panics with the whole log after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "no log line containing {needle:?} within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` without waiting for the process to react.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for kong-rust-host") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "kong-rust-host did not exit within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` and waits for the process to exit.
    pub fn stop_with(self, signal: i32) -> ExitStatus {
        self.signal(signal);
        self.wait(Duration::from_secs(30))
    }

    /// SIGTERM, as Kong stops its plugin servers.
    pub fn stop(self) -> ExitStatus {
        self.stop_with(libc::SIGTERM)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `kong-rust-host` with `args` to completion: (exit status, stdout, stderr).
pub fn run_host(args: &[&str]) -> (ExitStatus, String, String) {
    let output = Command::new(&artifacts().host)
        .args(args)
        .output()
        .expect("run kong-rust-host");
    (
        output.status,
        String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    )
}

/// The request rust-phases' contract is checked on, over either protocol: a service answering
/// 201 with a 12-byte body.
pub fn phases_request() -> kong_driver::SimRequest {
    kong_driver::SimRequest::new()
        .path("/orders?page=2")
        .status(201)
        .service_response(201, "twelve bytes")
}

/// What rust-phases leaves on [`phases_request`] once rewrite, access, response and log ran: one
/// effect per phase (`plugins/phases`).
pub fn assert_phases_contract(request: &kong_driver::SimRequest) {
    assert_eq!(request.upstream_headers().get_str("x-rewrite"), Some("1"));
    assert_eq!(request.upstream_headers().get_str("x-shared"), Some("r-ok"));
    assert_eq!(
        request.response_headers().get_str("x-upstream-status"),
        Some("201")
    );
    assert_eq!(
        request.response_headers().get_str("x-upstream-body-len"),
        Some("12")
    );
    assert_eq!(
        request.logs(),
        [(
            "notice".to_string(),
            "rust-phases log: status=201 uri=/orders?page=2".to_string()
        )]
    );
}

/// A map entry of an rmpv map by string key (`Value::Nil` when absent), for reading replies.
pub fn get<'a>(map: &'a rmpv::Value, key: &str) -> &'a rmpv::Value {
    static NIL: rmpv::Value = rmpv::Value::Nil;
    map.as_map()
        .and_then(|entries| entries.iter().find(|(k, _)| k.as_str() == Some(key)))
        .map(|(_, v)| v)
        .unwrap_or(&NIL)
}

/// A loopback TCP port free right now.
pub fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The whole response to `GET path` on a loopback port, head and body.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// A line of a process's `/proc/PID/status`, in kB (`VmRSS`, `VmHWM`) or a count (`Threads`).
pub fn proc_status(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{key} in {status}"))
}

/// Connects to `plugin`'s socket on `host` as Kong does and starts an instance of it with the
/// JSON `config`: the Kong client and the instance id. Panics if the host refuses.
pub async fn start_instance(
    host: &Host,
    plugin: &str,
    config: &str,
) -> (kong_driver::KongClient, i64) {
    let kong = kong_driver::KongClient::new(host.socket(plugin));
    let started = kong.start_instance(plugin, config).await;
    let id = started
        .unwrap_or_else(|error| panic!("StartInstance {plugin} {config}: {error}"))
        .id;
    (kong, id)
}

/// A rust-hello instance (config `{"message":"hi"}`) started on `host`, and the Kong client
/// that started it.
pub async fn hello_instance(host: &Host) -> (kong_driver::KongClient, i64) {
    start_instance(host, "rust-hello", r#"{"message":"hi"}"#).await
}

/// The files a Markdown document spells out: each fenced block right after a
/// `<!-- file: PATH -->` line, as (PATH, text).
pub fn marked_files(markdown: &str) -> Vec<(String, String)> {
    marked_blocks(markdown, "<!-- file: ")
}

/// Each fenced block right after a line `<!-- {marker}LABEL -->`, as (LABEL, text).
pub fn marked_blocks(markdown: &str, marker: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix(marker)
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().expect("a fenced block after the marker");
        assert!(
            fence.starts_with("```"),
            "{label}: expected a fence, got {fence:?}"
        );
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        blocks.push((label.to_string(), body.join("\n") + "\n"));
    }
    blocks
}

/// Writes `files` as a crate at `dir` (beside a `kong-rust-host` symlink to this workspace, so
/// `path = "../kong-rust-host/pdk"` resolves), with this workspace's `Cargo.lock` so the build
/// reuses what is compiled; returns the cargo arguments that build it into the shared target.
pub fn write_crate(dir: &Path, files: &[(String, String)]) -> Vec<String> {
    let beside = dir.parent().expect("a crate dir in a work dir");
    let link = beside.join("kong-rust-host");
    if !link.exists() {
        std::os::unix::fs::symlink(workspace_root(), &link).expect("link the workspace");
    }
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    std::fs::copy(workspace_root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    vec![
        "--manifest-path".into(),
        dir.join("Cargo.toml").to_str().unwrap().into(),
        "--target-dir".into(),
        target_dir().to_str().unwrap().into(),
    ]
}
