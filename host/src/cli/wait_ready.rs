//! `kong-rust-host wait-ready`: holds Kong back until the host answers on every plugin socket.
//!
//! Kong fails open: a request whose plugin server cannot be reached is logged and runs on without
//! the plugin (protocol.md §12; on 3.1–3.4 also until Kong's readiness probe connects). So whatever
//! starts Kong (systemd `ExecStartPre=`, a Kubernetes sidecar's startupProbe, an entrypoint) waits
//! for this first. A socket counts only when the host behind it answers `plugin.GetStatus`: a file
//! left by a dead host, or a listener that never answers, does not.

use crate::cli::client;
use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::{Duration, Instant},
};

/// Between two rounds of checks.
const POLL: Duration = Duration::from_millis(100);
/// At most this long for one socket's answer (less near the deadline).
const CALL: Duration = Duration::from_secs(2);

pub(super) fn run(dir: &Path, timeout: Duration, only: &[String]) -> Result<(), String> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut answered = BTreeMap::new();
    loop {
        match check(dir, only, deadline, &mut answered) {
            Ok(ready) => {
                tracing::info!(
                    "ready: {} answering in {} (after {} ms)",
                    ready.join(", "),
                    dir.display(),
                    started.elapsed().as_millis()
                );
                return Ok(());
            }
            Err(missing) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(format!(
                        "not ready after {} ms: {missing}",
                        timeout.as_millis()
                    ));
                }
                std::thread::sleep(POLL.min(deadline - now));
            }
        }
    }
}

/// One round: the names whose sockets answer, or what is missing (one clause per socket).
///
/// `answered` keeps, across rounds, each socket that has answered and the plugins its host
/// serves: asked again, it would get only what is left before the deadline, and a last round
/// begun a few milliseconds before it would name a serving host as not answering.
fn check(
    dir: &Path,
    only: &[String],
    deadline: Instant,
    answered: &mut BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>, String> {
    let discover = only.is_empty();
    let mut pending: BTreeSet<String> = only.iter().cloned().collect();
    if discover {
        let entries = std::fs::read_dir(dir)
            .map_err(|error| format!("cannot read {}: {error}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "socket") {
                if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                    pending.insert(stem.to_string());
                }
            }
        }
        if pending.is_empty() {
            return Err(format!(
                "no socket in {} (is the host running? --only NAME waits for a plugin by name)",
                dir.display()
            ));
        }
    }
    let mut checked = BTreeSet::new();
    let mut ready = Vec::new();
    let mut missing = Vec::new();
    while let Some(name) = pending.pop_first() {
        checked.insert(name.clone());
        let socket = dir.join(format!("{name}.socket"));
        if !socket.exists() {
            missing.push(format!("{name} ({}: no such socket)", socket.display()));
            continue;
        }
        let served = match answered.get(&name) {
            Some(served) => served,
            None => {
                let within = deadline.saturating_duration_since(Instant::now()).min(CALL);
                match client::call_within(&socket, "plugin.GetStatus", rmpv::Value::Nil, within) {
                    Ok(status) => answered.entry(name.clone()).or_insert(
                        status["Plugins"]
                            .as_map()
                            .map(|plugins| {
                                plugins
                                    .iter()
                                    .filter_map(|(k, _)| k.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    ),
                    Err(error) => {
                        missing.push(format!("{name} ({}: {error})", socket.display()));
                        continue;
                    }
                }
            }
        };
        // One socket per plugin (not --single-socket): the host's other plugins must answer on
        // theirs too.
        if discover && served.contains(&name) {
            for other in served {
                if !checked.contains(other) {
                    pending.insert(other.clone());
                }
            }
        }
        ready.push(name);
    }
    if missing.is_empty() {
        ready.sort();
        Ok(ready)
    } else {
        Err(missing.join(", "))
    }
}
