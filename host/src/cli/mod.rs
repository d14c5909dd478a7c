//! The `kong-rust-host` command line, and the serving both it and a plugin's dedicated server
//! ([`crate::cli::dedicated`]) run.

use crate::{
    loader,
    runtime::{dispatch, events, executor, ids, instances},
    serve,
    upgrade::{self, lock},
};
use tokio::runtime::Handle;

mod client;
pub mod dedicated;
mod doctor;
mod dump;
mod kong_conf;
mod plugin_entry;
mod wait_ready;

use clap::{Parser, Subcommand};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

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
        Command::Status { socket_dir, socket } => status(&socket_dir, socket.as_deref()),
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
        } => dump(name.as_deref(), &plugins_dir, protocol),
        Command::KongConf(args) => kong_conf(args),
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
    /// through, for --fail-open plugins), so one stuck plugin cannot take every thread.
    #[arg(long, default_value_t = 256)]
    max_events_per_plugin: usize,
    /// Plugin threads at most (each in-flight event holds one while it waits for Kong).
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

fn serve(args: ServeArgs) -> Result<(), String> {
    let only = |mut plugins: Vec<loader::LoadedPlugin>| {
        for wanted in &args.only {
            if !plugins.iter().any(|p| &p.name == wanted) {
                return Err(format!(
                    "--only {wanted}: no such plugin in {}",
                    args.plugins_dir.display()
                ));
            }
        }
        if !args.only.is_empty() {
            plugins.retain(|p| args.only.contains(&p.name));
        }
        Ok(plugins)
    };
    let (serving, plugins) = start_serving(&args.options, "kong-rust-host", || {
        load_plugins(&args.plugins_dir).and_then(only)
    })?;
    run_host(plugins, args.single_socket, &args.options, serving)
}

/// The right to serve a socket dir, and what the host this one replaces handed over.
pub(crate) struct Serving {
    /// `kong-rust-host`, or a dedicated server's plugin name: names the lock and control socket.
    server: String,
    lock: lock::ServingLock,
    /// What the host serving the dir handed over (`--upgrade`).
    upgrade: Option<upgrade::Incoming>,
}

/// Takes the socket dir: from the host serving it (`--upgrade`), or by its lock, standing by
/// while another process holds it. Plugins are loaded before an upgrade (the old host serves
/// meanwhile) and after a standby (it picks up the dir as it is when it takes over).
pub(crate) fn start_serving(
    options: &ServeOptions,
    server: &str,
    load: impl FnOnce() -> Result<Vec<loader::LoadedPlugin>, String>,
) -> Result<(Serving, Vec<loader::LoadedPlugin>), String> {
    let dir = &options.socket_dir;
    let lock = || {
        lock::acquire(dir, server)
            .map_err(|error| format!("cannot lock socket dir {}: {error}", dir.display()))
    };
    if !options.upgrade {
        let lock = lock()?;
        let plugins = load()?;
        let serving = Serving {
            server: server.into(),
            lock,
            upgrade: None,
        };
        return Ok((serving, plugins));
    }
    let plugins = load()?;
    let handed_over = upgrade::take_over(dir, server).map_err(|error| {
        format!(
            "--upgrade: cannot take over from the host serving {}: {error}",
            dir.display()
        )
    })?;
    let lock = match &handed_over {
        Some(incoming) => incoming
            .lock
            .try_clone()
            .and_then(lock::ServingLock::inherit)
            .map_err(|error| format!("--upgrade: cannot take the serving lock: {error}"))?,
        None => {
            tracing::info!("--upgrade: no host serves {}: starting", dir.display());
            lock()?
        }
    };
    let serving = Serving {
        server: server.into(),
        lock,
        upgrade: handed_over,
    };
    Ok((serving, plugins))
}

/// Serves `plugins` until a signal (one socket each, or all on `single_socket`), holding the
/// socket dir's lock throughout, or until a successor takes over.
pub(crate) fn run_host(
    plugins: Vec<loader::LoadedPlugin>,
    single_socket: Option<String>,
    options: &ServeOptions,
    serving: Serving,
) -> Result<(), String> {
    for name in &options.fail_open {
        if !plugins.iter().any(|p| &p.name == name) {
            return Err(format!(
                "--fail-open {name}: this host serves no such plugin"
            ));
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("socket")
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    runtime.block_on(run_host_on_runtime(
        plugins,
        single_socket,
        options,
        serving,
    ))
}

async fn run_host_on_runtime(
    plugins: Vec<loader::LoadedPlugin>,
    single_socket: Option<String>,
    options: &ServeOptions,
    serving: Serving,
) -> Result<(), String> {
    let summary: Vec<String> = plugins
        .iter()
        .map(|p| {
            let phases: Vec<&str> = p.phases.iter().map(|phase| phase.as_str()).collect();
            format!("{} {} ({})", p.name, p.version, phases.join(", "))
        })
        .collect();
    let Serving {
        server: server_name,
        lock,
        upgrade,
    } = serving;
    let limits = serve::Limits {
        max_frame_bytes: options.max_frame_bytes,
        max_depth: 128,
        max_connections: options.max_connections,
    };
    let (mut inherited, control, forward, adopted) = match upgrade {
        Some(incoming) => (
            incoming.listeners,
            Some(incoming.control),
            Some(incoming.forward),
            incoming.instances,
        ),
        None => Default::default(),
    };
    let listeners = bind_sockets(&plugins, single_socket, options, &mut inherited)?;
    let dispatcher = Arc::new(dispatcher(plugins, options));
    dispatcher.adopt(adopted);
    if let Some(forward) = forward {
        let forwarder = upgrade::Forwarder::new(forward, limits)
            .map_err(|error| format!("--upgrade: {error}"))?;
        dispatcher.forward_to_predecessor(Arc::new(forwarder));
    }
    let executor = executor::Executor::new(options.max_plugin_threads);
    let server = serve::Server::new(Arc::clone(&dispatcher), executor, limits, &listeners)
        .map_err(|error| format!("cannot keep the listening sockets: {error}"))?;
    let control_path = upgrade::control_path(&options.socket_dir, &server_name);
    let lock_fd = lock
        .share()
        .map_err(|error| format!("cannot share the serving lock: {error}"))?;
    let upgrades = upgrade::listen(&control_path)
        .map_err(|error| format!("cannot bind {}: {error}", control_path.display()))?;
    upgrade::offer(upgrades, Arc::clone(&server), lock_fd, Handle::current());
    if let Some(addr) = options.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|error| format!("cannot listen on {addr} for metrics: {error}"))?;
        tokio::spawn(serve::run_metrics_endpoint(
            listener,
            Arc::clone(&dispatcher),
        ));
    }
    if let Some(control) = control {
        control
            .finish(Arc::clone(&server), Handle::current())
            .map_err(|error| format!("--upgrade: the old host went away: {error}"))?;
    }
    tracing::info!(
        "ready: serving {} on {} (pid {})",
        summary.join("; "),
        options.socket_dir.display(),
        std::process::id()
    );
    let grace = Duration::from_secs(options.shutdown_grace);
    let stopped = server.run(listeners, shutdown_signal(), grace).await;
    if stopped == serve::Stopped::Signal {
        let _ = std::fs::remove_file(&control_path);
    }
    drop(lock);
    tracing::info!("stopped");
    Ok(())
}

/// Binds a socket per plugin (or the one `--single-socket`), taking those a predecessor
/// handed over from `inherited`; a handed-over socket no plugin here serves is removed.
fn bind_sockets(
    plugins: &[loader::LoadedPlugin],
    single_socket: Option<String>,
    options: &ServeOptions,
    inherited: &mut HashMap<String, std::os::fd::OwnedFd>,
) -> Result<Vec<serve::Listener>, String> {
    let access = serve::SocketAccess {
        mode: options.socket_mode,
        group: options.socket_group,
    };
    let sockets: Vec<(String, dispatch::Serves)> = match single_socket {
        Some(name) => vec![(name, dispatch::Serves::All)],
        None => plugins
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    dispatch::Serves::One(Arc::from(p.name.as_str())),
                )
            })
            .collect(),
    };
    let listeners = serve::bind(&options.socket_dir, &sockets, access, inherited)
        .map_err(|error| error.to_string())?;
    for name in inherited.keys() {
        tracing::info!("no longer serving {name}: removing its socket");
        let _ = std::fs::remove_file(options.socket_dir.join(format!("{name}.socket")));
    }
    Ok(listeners)
}

fn dispatcher(plugins: Vec<loader::LoadedPlugin>, options: &ServeOptions) -> dispatch::Dispatcher {
    dispatch::Dispatcher::new(
        plugins,
        instances::Instances::new(ids::InstanceIds::new(
            options.socket_dir.join(".kong-rust-host.ids"),
        )),
        events::Events::new(events::Timeouts {
            handler: Duration::from_secs(options.event_timeout),
            kong_step: Duration::from_secs(options.kong_step_timeout),
            make_room_after: events::MAKE_ROOM_AFTER,
        }),
        dispatch::Policy {
            max_instances: options.max_instances,
            max_events_per_plugin: options.max_events_per_plugin,
            fail_open: options.fail_open.clone(),
        },
    )
}

/// SIGTERM (what Kong sends), SIGINT, or the parent nginx worker going away: a server orphaned
/// by a dead worker would otherwise keep running beside the one the new worker starts.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    let orphaned = async {
        let parent = nix::unistd::getppid();
        if parent == nix::unistd::Pid::from_raw(1) {
            // Started by init/systemd (or a container's pid 1): there is no worker to outlive.
            std::future::pending::<()>().await;
        }
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if nix::unistd::getppid() != parent {
                return;
            }
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
        _ = orphaned => tracing::info!("parent process exited: stopping"),
    }
}

/// Loads every plugin in `dir`, logging one line per file that cannot be used; an error when
/// nothing loads.
fn load_plugins(dir: &Path) -> Result<Vec<loader::LoadedPlugin>, String> {
    let (plugins, errors) = read_plugins_dir(dir)?;
    for error in &errors {
        tracing::error!("skipping {error}");
    }
    if plugins.is_empty() {
        return Err(format!("no plugin could be loaded from {}", dir.display()));
    }
    Ok(plugins)
}

type DirContents = (Vec<loader::LoadedPlugin>, Vec<loader::LoadError>);

fn read_plugins_dir(dir: &Path) -> Result<DirContents, String> {
    loader::load_dir(dir)
        .map_err(|error| format!("cannot read plugins dir {}: {error}", dir.display()))
}

fn dump(name: Option<&str>, plugins_dir: &Path, protocol: dump::Protocol) -> Result<(), String> {
    let plugins = match name {
        Some(name) => vec![find_plugin(name, plugins_dir)?],
        None => load_plugins(plugins_dir)?,
    };
    println!("{}", dump::dump(&plugins, protocol));
    Ok(())
}

/// Finds one plugin by name, trying the file names a cargo build gives it before loading the
/// whole directory: Kong runs the query command once per plugin at every start.
fn find_plugin(name: &str, plugins_dir: &Path) -> Result<loader::LoadedPlugin, String> {
    let stem = name.replace('-', "_");
    for candidate in [
        format!("lib{stem}.so"),
        format!("{name}.so"),
        format!("{stem}.so"),
    ] {
        let path = plugins_dir.join(candidate);
        if path.is_file() {
            if let Ok(plugin) = loader::load_file(&path) {
                if plugin.name == name {
                    return Ok(plugin);
                }
            }
        }
    }
    let (plugins, errors) = read_plugins_dir(plugins_dir)?;
    plugins.into_iter().find(|p| p.name == name).ok_or_else(|| {
        let skipped: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!(
            "plugin {name} not found in {}{}",
            plugins_dir.display(),
            if skipped.is_empty() {
                String::new()
            } else {
                format!("; files that failed to load: {}", skipped.join("; "))
            }
        )
    })
}

fn kong_conf(args: KongConfArgs) -> Result<(), String> {
    let version = args.kong_version;
    if args.single_socket.is_some() && version == kong_conf::KongVersion::V3_9 {
        return Err(
            "--single-socket is for Kong 3.0–3.8: Kong 3.9+ registers only the first plugin of an entry"
                .into(),
        );
    }
    let plugins = load_plugins(&args.plugins_dir)?;
    let binary = match args.binary {
        Some(binary) => binary,
        None => std::env::current_exe()
            .map_err(|error| format!("cannot locate this executable: {error}"))?,
    };
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let names: Vec<String> = plugins.iter().map(|p| p.name.clone()).collect();
    for (name, _) in &args.protocols {
        let entry = args.single_socket.as_deref() == Some(name.as_str());
        if !entry && !names.contains(name) {
            return Err(format!(
                "--protocol {name}=…: {name} is not a plugin in {}{}",
                args.plugins_dir.display(),
                args.single_socket
                    .as_deref()
                    .map(|entry| format!(" (nor the --single-socket entry {entry})"))
                    .unwrap_or_default()
            ));
        }
    }
    let plugins_dir = args.kong_plugins_dir.unwrap_or(args.plugins_dir);
    let text = kong_conf::render(&kong_conf::Request {
        version,
        format: args.format,
        single_socket: args.single_socket.as_deref(),
        kong_start: args.kong_start,
        names: &names,
        protocols: &args.protocols,
        binary: &absolute(&binary),
        plugins_dir: &absolute(&plugins_dir),
        socket_dir: &absolute(&args.socket_dir),
    })?;
    if args.kong_start && version == kong_conf::KongVersion::V3_9 {
        tracing::warn!(
            "--kong-start: {}; the ingress controller and anything else reading GET / break. \
             Run the host under systemd or as a sidecar instead (docs/operators.md, docs/kubernetes.md)",
            kong_conf::KONG_39_START_BUG
        );
    }
    print!("{text}");
    Ok(())
}

/// Asks the running host for `plugin.GetStatus` on one of its sockets.
fn status(socket_dir: &Path, socket: Option<&str>) -> Result<(), String> {
    let path = match socket {
        Some(name) => socket_dir.join(format!("{name}.socket")),
        None => {
            let mut sockets: Vec<PathBuf> = std::fs::read_dir(socket_dir)
                .map_err(|error| format!("cannot read {}: {error}", socket_dir.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "socket"))
                .collect();
            sockets.sort();
            sockets.into_iter().next().ok_or_else(|| {
                format!(
                    "no socket in {}: is the host running?",
                    socket_dir.display()
                )
            })?
        }
    };
    let reply = crate::cli::client::call(&path, "plugin.GetStatus", rmpv::Value::Nil)
        .map_err(|error| format!("{}: {error}", path.display()))?;
    let json: serde_json::Value = rmpv::ext::from_value(reply)
        .map_err(|error| format!("unexpected status reply: {error}"))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json).expect("JSON values serialize")
    );
    Ok(())
}
