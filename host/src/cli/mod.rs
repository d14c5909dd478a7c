//! The `kong-rust-host` command line: its arguments, and which module runs each command.

mod client;
pub mod dedicated;
mod doctor;
mod dump;
mod kong_conf;
mod new;
mod plugin_entry;
mod plugins_dir;
mod serving;
mod status;
mod wait_ready;

pub(crate) use serving::{run_host, start_serving};

use clap::{Parser, Subcommand};
use serving::serve;
use std::{path::PathBuf, process::ExitCode, time::Duration};

#[derive(Parser)]
#[command(version, about = "Serve Rust plugins to Kong Gateway")]
struct Cli {
    #[command(flatten)]
    logging: Logging,
    #[command(subcommand)]
    command: Command,
}

/// Where log lines go and how much detail they carry.
#[derive(clap::Args)]
pub(crate) struct Logging {
    /// More log detail: -v debug, -vv trace (RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// `text`: one readable line per event; `json`: one JSON object per line, for log shippers.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check the plugins dir, the socket dir and the running host; exit 1 if anything fails.
    Doctor {
        #[arg(long, env = "KONG_RUST_PLUGINS_DIR")]
        plugins_dir: PathBuf,
        #[arg(long, env = "KONG_RUST_SOCKET_DIR")]
        socket_dir: PathBuf,
    },
    /// Print the running host's status (instances, events in flight) as JSON.
    Status {
        #[arg(long, env = "KONG_RUST_SOCKET_DIR")]
        socket_dir: PathBuf,
        /// The socket to ask (default: the first in the dir); any socket of the host answers.
        #[arg(long, value_name = "NAME")]
        socket: Option<String>,
    },
    /// Load every plugin in the plugins dir and serve each on <socket-dir>/<name>.socket.
    Serve(ServeArgs),
    /// Print the query-command JSON Kong reads (only JSON goes to stdout).
    Dump {
        /// The plugin to describe (Kong 3.9+ registers only the first plugin of a dump).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Every plugin in the directory (Kong 3.0–3.8 single-entry use).
        #[arg(long)]
        all: bool,
        #[arg(long, env = "KONG_RUST_PLUGINS_DIR")]
        plugins_dir: PathBuf,
        /// The protocol Kong is told to speak (the dump's "Protocol"): protobuf (on Kong 3.8+ a
        /// request fails with 500 when the host is gone) or msgpack (the request goes on
        /// without the plugin). The host answers both on every socket.
        #[arg(long, value_enum, default_value = "msgpack")]
        protocol: dump::Protocol,
    },
    /// Print the kong.conf lines (or KONG_* variables) for every plugin in the plugins dir.
    KongConf(KongConfArgs),
    /// Write a new plugin crate: a typed config, one phase, a harness test.
    New(new::NewArgs),
    /// Wait until every plugin socket in the socket dir accepts and answers; exit 1 naming the
    /// missing ones after --timeout. Run it before Kong starts (systemd, a Kubernetes
    /// startupProbe, an entrypoint): Kong runs a request without a plugin it cannot reach.
    WaitReady {
        #[arg(long, env = "KONG_RUST_SOCKET_DIR")]
        socket_dir: PathBuf,
        /// How long to wait: 10s, 500ms, 2m (a bare number is seconds).
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        timeout: Duration,
        /// The plugins (sockets) to wait for, repeatable or comma-separated like
        /// pluginserver_names. Default: every socket in the dir and every plugin the host
        /// answering there serves. Name them: a plugin that failed to load is then reported.
        #[arg(long = "only", value_name = "NAME", value_delimiter = ',')]
        only: Vec<String>,
    },
}

#[derive(clap::Args)]
struct KongConfArgs {
    #[arg(long, env = "KONG_RUST_PLUGINS_DIR")]
    plugins_dir: PathBuf,
    /// Where the sockets are: Kong's prefix by default (3.9+ looks for <prefix>/<name>.socket;
    /// 3.0–3.8 always use /usr/local/kong). Kong's Helm chart's prefix is /kong_prefix.
    #[arg(long, env = "KONG_RUST_SOCKET_DIR", default_value = kong_conf::DEFAULT_SOCKET_DIR)]
    socket_dir: PathBuf,
    #[arg(long, value_enum, default_value = "3.9")]
    kong_version: kong_conf::KongVersion,
    /// `conf`: kong.conf lines; `env`: KONG_* variables (Kubernetes, containers, systemd).
    #[arg(long, value_enum, default_value = "conf")]
    format: kong_conf::Format,
    /// Path of this binary as Kong should run it (default: this executable).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// The plugins dir as Kong's commands should name it (default: --plugins-dir), when Kong
    /// sees it elsewhere (another container, an image being built).
    #[arg(long, value_name = "DIR")]
    kong_plugins_dir: Option<PathBuf>,
    /// Kong 3.9: let Kong start the host (a start_cmd on the first entry). Kong 3.9.0–3.9.3's
    /// Admin API then fails GET / (Kong #14260): prefer systemd or a sidecar.
    #[arg(long)]
    kong_start: bool,
    /// Kong 3.0–3.8 only: one pluginserver_names entry NAME, one process and one socket
    /// for every plugin (`serve --single-socket`, `dump --all`).
    #[arg(long, value_name = "NAME")]
    single_socket: Option<String>,
    /// The protocol Kong speaks to plugin NAME (to every plugin of the --single-socket entry
    /// NAME), overriding the version's: protobuf is Kong 3.8+'s default here (a request fails
    /// with 500 when the host is gone), msgpack 3.4–3.7's (the request goes on without the
    /// plugin). Repeatable.
    #[arg(long = "protocol", value_name = "NAME=msgpack|protobuf", value_parser = parse_protocol)]
    protocols: Vec<(String, dump::Protocol)>,
}

fn parse_protocol(text: &str) -> Result<(String, dump::Protocol), String> {
    use clap::ValueEnum;
    let (name, protocol) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=msgpack or NAME=protobuf"))?;
    let protocol = dump::Protocol::from_str(protocol, false)
        .map_err(|_| format!("{protocol:?} is not msgpack or protobuf"))?;
    Ok((name.to_string(), protocol))
}

/// Runs the `kong-rust-host` command line.
pub fn main() -> ExitCode {
    let args = match plugin_entry::rewrite(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("kong-rust-host: {message}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(args);
    cli.logging.init();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Status { socket_dir, socket } => status::run(&socket_dir, socket.as_deref()),
        Command::Doctor {
            plugins_dir,
            socket_dir,
        } => {
            let (report, failed) = crate::cli::doctor::check(&plugins_dir, &socket_dir);
            print!("{report}");
            if failed {
                Err("doctor found problems (FAIL lines above)".into())
            } else {
                Ok(())
            }
        }
        Command::Dump {
            name,
            all: _,
            plugins_dir,
            protocol,
        } => dump::run(name.as_deref(), &plugins_dir, protocol),
        Command::KongConf(args) => kong_conf::run(args),
        Command::New(args) => new::run(args),
        Command::WaitReady {
            socket_dir,
            timeout,
            only,
        } => wait_ready::run(&socket_dir, timeout, &only),
    };
    exit_code(result)
}

/// Failure is one log line saying what to fix, and exit status 1.
pub(crate) fn exit_code(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

impl Logging {
    /// Logs go to stderr (Kong captures it; stdout is reserved for `dump`'s JSON).
    pub(crate) fn init(&self) {
        let default = match self.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
        let logs = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_target(false);
        match self.log_format {
            LogFormat::Text => logs.init(),
            LogFormat::Json => logs.json().init(),
        }
    }
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, env = "KONG_RUST_PLUGINS_DIR")]
    plugins_dir: PathBuf,
    /// Serve only these plugins (repeatable). One host serves a socket dir: processes serving
    /// different subsets need different socket dirs.
    #[arg(long = "only", value_name = "NAME")]
    only: Vec<String>,
    /// Serve every plugin on one socket, <socket-dir>/<NAME>.socket, instead of one socket per
    /// plugin: Kong 3.0–3.8 with a single pluginserver_names entry and `dump --all`.
    #[arg(long, value_name = "NAME")]
    single_socket: Option<String>,
    #[command(flatten)]
    options: ServeOptions,
}

/// How to serve, whichever plugins are served: the options `serve` and a dedicated server share.
#[derive(clap::Args)]
pub(crate) struct ServeOptions {
    /// Where the sockets go: Kong's prefix (3.9+ looks for <prefix>/<plugin>.socket).
    #[arg(
        long,
        env = "KONG_RUST_SOCKET_DIR",
        visible_alias = "kong-prefix",
        default_value = "/usr/local/kong"
    )]
    pub(crate) socket_dir: PathBuf,
    /// Permission bits of the socket files, in octal. Kong's nginx workers must be able to
    /// connect: run the host as Kong's user or give the sockets Kong's group.
    #[arg(long, default_value = "0660", value_parser = parse_mode)]
    socket_mode: u32,
    /// Group (name or number) to give the socket files.
    #[arg(long, value_parser = parse_group)]
    socket_group: Option<u32>,
    /// Seconds a handler may run plugin code between two PDK calls before its event is
    /// reclaimed (Kong's request then gets an error). Kong's own read timeout is 60 s.
    #[arg(long, default_value_t = 65)]
    event_timeout: u64,
    /// Seconds Kong may leave a PDK call unanswered before the event is reclaimed: Kong stops
    /// an event without a word when a PDK call raises inside it. Kong answers within
    /// microseconds unless the call waits on its database; 10 s is twice Kong's default
    /// `pg_timeout`.
    #[arg(long, default_value_t = 10)]
    kong_step_timeout: u64,
    /// Largest message accepted from Kong, in bytes; a larger one closes the connection.
    #[arg(long, default_value_t = 64 << 20)]
    max_frame_bytes: usize,
    /// Open connections at most, over all sockets; more are closed at once.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Live instance ids at most; StartInstance beyond it is refused (the request fails).
    #[arg(long, default_value_t = 65536)]
    max_instances: usize,
    /// Events of one plugin in flight at most; beyond it the request fails with 503 (or goes
    /// through, for --fail-open plugins), so one stuck plugin cannot take the host.
    #[arg(long, default_value_t = 256)]
    max_events_per_plugin: usize,
    /// Threads running plugin code at most: an event loop per core runs handlers as coroutines,
    /// and another starts whenever plugin code that blocks holds every loop.
    #[arg(long, default_value_t = 1024)]
    max_plugin_threads: usize,
    /// Let requests through when this plugin fails or is overloaded, instead of ending them
    /// with 500/503 (repeatable). For plugins whose failure must not block traffic.
    #[arg(long = "fail-open", value_name = "NAME")]
    fail_open: Vec<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics; a loopback address only (127.0.0.1:9542).
    #[arg(long, value_name = "ADDR", value_parser = parse_loopback)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Seconds to let in-flight events finish after SIGTERM/SIGINT.
    #[arg(long, default_value_t = 10)]
    shutdown_grace: u64,
    /// Take over from the host serving the socket dir, without a refused or dropped call: its
    /// listening sockets and live instances at once, its open connections as they come free;
    /// it exits when it has no event left. Without a running host, start as usual.
    #[arg(long)]
    pub(crate) upgrade: bool,
    /// Stop when the parent process exits: for a host Kong starts (`start_cmd`), which
    /// otherwise outlives a dead nginx worker beside the one the next worker starts. Without
    /// it the host never stops because its parent exited.
    #[arg(long)]
    pub(crate) follow_parent: bool,
}

fn parse_loopback(text: &str) -> Result<std::net::SocketAddr, String> {
    let addr: std::net::SocketAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not an address like 127.0.0.1:9542"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address: metrics are served on loopback only"
        ));
    }
    Ok(addr)
}

/// `10s`, `500ms`, `2m`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration like 10s, 500ms or 2m");
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(bad()),
    }
}

fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("{text:?} is not an octal permission mode like 0660"))
}

fn parse_group(text: &str) -> Result<u32, String> {
    if let Ok(gid) = text.parse() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(text) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(format!("no group named {text:?}")),
        Err(error) => Err(format!("cannot look up group {text:?}: {error}")),
    }
}
