//! Serving: taking the socket dir, assembling the dispatcher, sockets and loops, and
//! running them until a signal or a successor. `serve` and a plugin's dedicated server
//! ([`crate::cli::dedicated`]) both run it.

use super::{plugins_dir::load_plugins, ServeArgs, ServeOptions};
use crate::{
    loader,
    runtime::{connection, dispatch, events, ids, instances, loops},
    serve,
    upgrade::{self, lock, parent::FollowedParent, standby},
};
use std::{collections::HashMap, sync::Arc, time::Duration};
use tokio::runtime::Handle;

pub(super) fn serve(args: ServeArgs) -> Result<(), String> {
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
    let started = start_serving(&args.options, "kong-rust-host", || {
        load_plugins(&args.plugins_dir).and_then(only)
    })?;
    match started {
        Some((serving, plugins)) => run_host(plugins, args.single_socket, &args.options, serving),
        None => Ok(()),
    }
}

/// The right to serve a socket dir, and what the host this one replaces handed over.
pub(crate) struct Serving {
    /// `kong-rust-host`, or a dedicated server's plugin name: names the lock and control socket.
    server: String,
    lock: lock::ServingLock,
    /// What the host serving the dir handed over (`--upgrade`).
    upgrade: Option<upgrade::Incoming>,
    /// The listening sockets a host that died passed to this process while it stood by.
    held: HashMap<String, std::os::fd::OwnedFd>,
    /// `--follow-parent`: the process whose exit stops this host.
    parent: Option<FollowedParent>,
}

/// Takes the socket dir: from the host serving it (`--upgrade`, or a standby it asks to take
/// over), or by its lock, standing by while another process holds it. Plugins are loaded before
/// an upgrade (the old host serves meanwhile) and after a standby (it picks up the dir as it is
/// when it takes over). `None` when it stopped while standing by.
pub(crate) fn start_serving(
    options: &ServeOptions,
    server: &str,
    load: impl FnOnce() -> Result<Vec<loader::LoadedPlugin>, String>,
) -> Result<Option<(Serving, Vec<loader::LoadedPlugin>)>, String> {
    let parent = FollowedParent::at_start(options.follow_parent);
    let dir = &options.socket_dir;
    let mut load = Some(load);
    let mut plugins = None;
    let mut load_once = |plugins: &mut Option<Vec<loader::LoadedPlugin>>| match plugins.take() {
        Some(loaded) => Ok(loaded),
        None => load.take().expect("loaded once")(),
    };
    let mut take_over_now = options.upgrade;
    loop {
        if take_over_now {
            let loaded = load_once(&mut plugins)?;
            let handed_over = upgrade::take_over(dir, server).map_err(|error| {
                format!(
                    "--upgrade: cannot take over from the host serving {}: {error}",
                    dir.display()
                )
            })?;
            if let Some(incoming) = handed_over {
                let lock = incoming
                    .lock
                    .try_clone()
                    .and_then(lock::ServingLock::inherit)
                    .map_err(|error| format!("--upgrade: cannot take the serving lock: {error}"))?;
                let serving = Serving {
                    server: server.into(),
                    lock,
                    upgrade: Some(incoming),
                    held: HashMap::new(),
                    parent,
                };
                return Ok(Some((serving, loaded)));
            }
            tracing::info!("--upgrade: no host serves {}: starting", dir.display());
            plugins = Some(loaded);
        }
        let standby = standby::stand_by(dir, server, parent)
            .map_err(|error| format!("cannot lock socket dir {}: {error}", dir.display()))?;
        match standby {
            standby::Standby::Serve { lock, listeners } => {
                let serving = Serving {
                    server: server.into(),
                    lock,
                    upgrade: None,
                    held: listeners,
                    parent,
                };
                return Ok(Some((serving, load_once(&mut plugins)?)));
            }
            standby::Standby::Succeed => take_over_now = true,
            standby::Standby::Stopped => return Ok(None),
        }
    }
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
        held,
        parent,
    } = serving;
    if let (Some(_), Some(cause)) = (&upgrade, standby::stop_before_serving(parent)) {
        // The host this one was taking over from serves on (it never heard Ready).
        tracing::warn!("{cause}: stopping (before taking over)");
        return Ok(());
    }
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
        None => (held, None, None, Vec::new()),
    };
    let listeners = bind_sockets(&plugins, single_socket, options, &mut inherited)?;
    let dispatcher = Arc::new(dispatcher(plugins, options));
    dispatcher.adopt(adopted);
    if let Some(forward) = forward {
        let forwarder = upgrade::Forwarder::new(forward, limits)
            .map_err(|error| format!("--upgrade: {error}"))?;
        dispatcher.forward_to_predecessor(Arc::new(forwarder));
    }
    let loops = loops::Loops::new(options.max_plugin_threads)
        .map_err(|error| format!("cannot start serving: {error}"))?;
    let server = serve::Server::new(Arc::clone(&dispatcher), loops, limits, &listeners)
        .map_err(|error| format!("cannot keep the listening sockets: {error}"))?;
    let control_path = upgrade::control_path(&options.socket_dir, &server_name);
    let lock_fd = lock
        .share()
        .map_err(|error| format!("cannot share the serving lock: {error}"))?;
    let upgrades = upgrade::listen(&control_path)
        .map_err(|error| format!("cannot bind {}: {error}", control_path.display()))?;
    let standbys = Arc::new(standby::Standbys::default());
    upgrade::offer(
        upgrades,
        Arc::clone(&server),
        lock_fd,
        Arc::clone(&standbys),
        Handle::current(),
    );
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
    let stop = stop_when_asked(parent, &standbys, grace);
    let stopped = server.run(listeners, stop, grace).await;
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
    let sockets: Vec<(String, connection::Serves)> = match single_socket {
        Some(name) => vec![(name, connection::Serves::All)],
        None => plugins
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    connection::Serves::One(Arc::from(p.name.as_str())),
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

/// Completes when this host is to stop, having logged why. Standing by, a process holds the
/// sockets: it is asked to take over as `serve --upgrade` does (`run` then ends handed over, the
/// socket files in place); with none left, the host stops and removes them.
async fn stop_when_asked(
    parent: Option<FollowedParent>,
    standbys: &standby::Standbys,
    grace: Duration,
) {
    let cause = shutdown_signal(parent).await;
    standbys
        .hand_over(&cause, grace.max(Duration::from_secs(1)))
        .await;
    tracing::warn!("{cause}: stopping");
}

/// Waits for SIGTERM (what Kong sends), SIGINT, or the followed parent's exit; returns the
/// cause.
async fn shutdown_signal(parent: Option<FollowedParent>) -> String {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    if let Some(signal) = standby::signal_before_serving() {
        return signal.into();
    }
    let orphaned = async {
        let Some(parent) = parent else {
            return std::future::pending().await;
        };
        loop {
            if parent.exited() {
                return parent.cause();
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM".into(),
        _ = int.recv() => "SIGINT".into(),
        cause = orphaned => cause,
    }
}
