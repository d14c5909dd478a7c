//! `kong-rust-host status`: the running host's `plugin.GetStatus` reply, as JSON.

use std::path::{Path, PathBuf};

/// Asks the running host for `plugin.GetStatus` on one of its sockets.
pub(super) fn run(socket_dir: &Path, socket: Option<&str>) -> Result<(), String> {
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
